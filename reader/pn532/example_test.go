package pn532_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/host/v3"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// A reader on a Raspberry Pi: SPI0 chip select 0, RSTPDN on GPIO25, IRQ
// on GPIO24. Poll once and print what is in the field.
func ExampleNewSPI() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	port, err := spireg.Open("SPI0.0")
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()

	o := pn532.DefaultOpts
	if p := gpioreg.ByName("GPIO25"); p != nil {
		o.Reset = p
	}
	if p := gpioreg.ByName("GPIO24"); p != nil {
		o.IRQ = p
	}
	d, err := pn532.NewSPI(port, &o)
	if err != nil {
		// Says which: no device on the bus, not a PN532, or no answer.
		log.Fatal(err)
	}
	defer d.Halt()
	fmt.Println(d, d.FirmwareVersion())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch tg, err := d.Poll(ctx); {
	case errors.Is(err, pn532.ErrNoTarget):
		fmt.Println("no card")
	case err != nil:
		log.Fatal(err)
	case tg.RandomUID:
		fmt.Println("a phone or a privacy-mode card: its UID means nothing")
	default:
		fmt.Println("card", hex.EncodeToString(tg.UID))
	}
}

// A tracker reports each card once, then its removal, and the reader's
// health. The emulator stands in for the reader here, as in latchd -sim.
func ExampleTracker_Run() {
	chip := pn532test.New(nil)
	d, err := pn532.NewSPI(chip, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Halt()
	if err := chip.Present(pn532test.Card{UID: []byte{0x04, 0xC6, 0x3A, 0x63, 0x11, 0x01, 0x89}}); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = pn532.NewTracker(d, nil).Run(ctx, func(e pn532.TrackEvent) {
		switch e := e.(type) {
		case pn532.Presented:
			fmt.Println("presented", hex.EncodeToString(e.Target.UID))
			chip.Remove()
		case pn532.Removed:
			fmt.Println("removed", hex.EncodeToString(e.Target.UID))
			cancel()
		case pn532.Fault:
			fmt.Println("reader_fault:", e.Err)
		case pn532.Recovered:
			fmt.Println("reader_ok")
		}
	})
	fmt.Println(err)
	// Output:
	// presented 04c63a63110189
	// removed 04c63a63110189
	// context canceled
}
