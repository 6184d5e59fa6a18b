// Command pn532-smoke checks a PN532 reader wired to a Raspberry Pi: it
// brings the chip up, prints its firmware, checks the link with an echo
// test, reports the cards that come and go, and can record every SPI
// transaction to a file that a Playback test can replay.
//
//	go run ./hack/pn532-smoke -spi SPI0.0 -reset GPIO25 -irq GPIO24 -record pn532.trace
//
// See hack/pn532.md for the wiring.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"periph.io/x/conn/v3/conntest"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/conn/v3/spi/spitest"
	"periph.io/x/host/v3"

	"github.com/latchdoor/latch/reader/pn532"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, openHost)
	stop()
	os.Exit(code)
}

// hardware is what the reader is wired to; the pins may be nil.
type hardware struct {
	port  spi.PortCloser
	reset gpio.PinOut
	irq   gpio.PinIn
}

// opener opens the named SPI port and GPIOs ("" for a pin not wired).
type opener func(spiName, resetName, irqName string) (hardware, error)

// openHost opens them through periph's registries on this host.
func openHost(spiName, resetName, irqName string) (hardware, error) {
	var hw hardware
	if _, err := host.Init(); err != nil {
		return hw, fmt.Errorf("periph host init: %w", err)
	}
	pin := func(name string) (gpio.PinIO, error) {
		if name == "" {
			return nil, nil
		}
		p := gpioreg.ByName(name)
		if p == nil {
			return nil, fmt.Errorf("no GPIO named %q on this host", name)
		}
		return p, nil
	}
	var err error
	if hw.reset, err = pin(resetName); err != nil {
		return hw, err
	}
	if hw.irq, err = pin(irqName); err != nil {
		return hw, err
	}
	if hw.port, err = spireg.Open(spiName); err != nil {
		return hw, fmt.Errorf("open %s (is SPI enabled: dtparam=spi=on in config.txt?): %w", spiName, err)
	}
	return hw, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) int {
	fs := flag.NewFlagSet("pn532-smoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spiName := fs.String("spi", "SPI0.0", "SPI port the PN532 is on (bus.chip-select)")
	resetName := fs.String("reset", "", "GPIO wired to the PN532's RSTPDN, e.g. GPIO25 (none if empty)")
	irqName := fs.String("irq", "", "GPIO wired to the PN532's P70_IRQ, e.g. GPIO24 (none if empty)")
	clock := pn532.DefaultOpts.Clock
	fs.Var(&clock, "hz", "SPI clock, 50kHz to 5MHz")
	lsb := fs.Bool("lsb", false, "have the SPI controller shift LSB first (not on a Raspberry Pi)")
	polls := fs.Int("polls", 0, "stop after this many polls (0: until interrupted)")
	period := fs.Duration("period", pn532.DefaultOpts.PollPeriod, "time between polls")
	record := fs.String("record", "", "write every SPI transaction to this file as conntest.IO records for spitest.Playback")
	verbose := fs.Bool("v", false, "log the driver's retries and recoveries")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "pn532-smoke: unexpected arguments %q\n", fs.Args())
		return 2
	}

	hw, err := open(*spiName, *resetName, *irqName)
	if err != nil {
		fmt.Fprintln(stderr, "pn532-smoke:", err)
		return 1
	}
	defer hw.port.Close()

	var port spi.Port = hw.port
	var rec *spitest.Record
	if *record != "" {
		rec = &spitest.Record{Port: hw.port}
		port = rec
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	o := pn532.DefaultOpts
	o.Clock = clock
	o.Reset = hw.reset
	o.IRQ = hw.irq
	o.LSBFirst = *lsb
	o.PollPeriod = *period
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	code := smoke(ctx, port, &o, *polls, stdout, stderr)
	if rec != nil {
		if err := writeTranscript(*record, *spiName, *lsb, rec); err != nil {
			fmt.Fprintln(stderr, "pn532-smoke:", err)
			return 1
		}
		fmt.Fprintf(stdout, "transcript: %d transactions in %s\n", len(rec.Ops), *record)
	}
	return code
}

func smoke(ctx context.Context, port spi.Port, o *pn532.Opts, polls int, stdout, stderr io.Writer) int {
	d, err := pn532.NewSPI(port, o)
	if err != nil {
		fmt.Fprintln(stderr, "pn532-smoke:", err)
		switch {
		case errors.Is(err, pn532.ErrNoDevice):
			fmt.Fprintln(stderr, "  check the board's interface switches (SPI), the wires to MOSI, MISO, SCK and SS, and the 3.3 V supply")
		case errors.Is(err, pn532.ErrWrongChip):
			fmt.Fprintln(stderr, "  another chip answers on this chip select")
		default:
			fmt.Fprintln(stderr, "  the chip is there but does not answer: try a lower -hz, shorter wires, or -reset")
		}
		return 1
	}
	defer func() {
		if err := d.Halt(); err != nil {
			fmt.Fprintln(stderr, "pn532-smoke: halt:", err)
		}
	}()
	fmt.Fprintf(stdout, "reader: %s, firmware: %s\n", d, d.FirmwareVersion())
	if err := d.Ping(ctx); err != nil {
		fmt.Fprintln(stderr, "pn532-smoke: echo test:", err)
		return 1
	}
	fmt.Fprintln(stdout, "echo test: ok")
	if polls > 0 {
		fmt.Fprintf(stdout, "polling %d times, every %s\n", polls, o.PollPeriod)
	} else {
		fmt.Fprintf(stdout, "polling every %s until interrupted: present a card\n", o.PollPeriod)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	wait := func(ctx context.Context, dur time.Duration) error {
		n++
		if polls > 0 && n >= polls {
			cancel()
			return ctx.Err()
		}
		return pn532.WaitTimer(ctx, dur)
	}
	faulted := false
	err = pn532.NewTracker(d, &pn532.TrackerOpts{Wait: wait}).Run(ctx, func(e pn532.TrackEvent) {
		switch e := e.(type) {
		case pn532.Presented:
			note := ""
			if e.Target.RandomUID {
				note = " (random UID: a phone or a privacy-mode card)"
			}
			fmt.Fprintf(stdout, "poll %d: card %s%s\n", n+1, e.Target, note)
		case pn532.Removed:
			fmt.Fprintf(stdout, "poll %d: card gone %x\n", n+1, e.Target.UID)
		case pn532.Fault:
			faulted = true
			fmt.Fprintf(stdout, "poll %d: reader fault: %v\n", n+1, e.Err)
		case pn532.Recovered:
			faulted = false
			fmt.Fprintf(stdout, "poll %d: reader ok again\n", n+1)
		}
	})
	fmt.Fprintf(stdout, "%d polls\n", n)
	if !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "pn532-smoke:", err)
		return 1
	}
	if faulted {
		return 1
	}
	return 0
}

// writeTranscript writes the recorded transactions as Go source: a slice
// of conntest.IO with the bytes as sent, each commented with what it is.
func writeTranscript(path, portName string, lsb bool, rec *spitest.Record) error {
	rec.Lock()
	ops := append([]conntest.IO(nil), rec.Ops...)
	rec.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "// PN532 on %s, recorded by hack/pn532-smoke on %s.\n", portName, time.Now().UTC().Format(time.RFC3339))
	if lsb {
		b.WriteString("// The controller shifted LSB first: bytes are as in the user manual.\n")
	} else {
		b.WriteString("// Bits reversed in software: each byte is sent MSB first; comments show them as the chip reads them.\n")
	}
	b.WriteString("// Replay: &spitest.Playback{Playback: conntest.Playback{Ops: ops, DontPanic: true}}\n")
	b.WriteString("var ops = []conntest.IO{\n")
	for _, op := range ops {
		fmt.Fprintf(&b, "\t// %s\n", describe(op, lsb))
		fmt.Fprintf(&b, "\t{W: %s", goBytes(op.W))
		if op.R != nil {
			fmt.Fprintf(&b, ", R: %s", goBytes(op.R))
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// describe says what one transaction was, in the chip's bit order.
func describe(op conntest.IO, lsb bool) string {
	chip := func(b []byte) []byte {
		o := append([]byte(nil), b...)
		if !lsb {
			for i, v := range o {
				o[i] = bits.Reverse8(v)
			}
		}
		return o
	}
	w, r := chip(op.W), chip(op.R)
	if len(w) == 0 {
		return "empty"
	}
	switch w[0] {
	case 0x01:
		return fmt.Sprintf("data write: % X", w[1:])
	case 0x02:
		if len(r) < 2 {
			return "status read"
		}
		state := "busy"
		if r[1] == 0x01 {
			state = "ready"
		}
		return fmt.Sprintf("status read: %02X %s", r[1], state)
	case 0x03:
		if len(r) < 2 {
			return "data read"
		}
		return fmt.Sprintf("data read: % X", r[1:])
	}
	return fmt.Sprintf("unknown operation %02X", w[0])
}

func goBytes(b []byte) string {
	var s strings.Builder
	s.WriteString("[]byte{")
	for i, v := range b {
		if i > 0 {
			s.WriteString(", ")
		}
		fmt.Fprintf(&s, "0x%02x", v)
	}
	s.WriteString("}")
	return s.String()
}
