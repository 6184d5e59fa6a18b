package keypad_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// A 3×4 keypad wired as in the package documentation. Keys go to a channel
// for the door controller; Run keeps scanning until the signal.
func ExampleNewMatrix() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	var rows []gpio.PinOut
	for _, name := range []string{"GPIO5", "GPIO6", "GPIO13", "GPIO26"} {
		p := gpioreg.ByName(name)
		if p == nil {
			log.Fatalf("no pin %s", name)
		}
		rows = append(rows, p)
	}
	var cols []gpio.PinIn
	for _, name := range []string{"GPIO22", "GPIO23", "GPIO24"} {
		p := gpioreg.ByName(name)
		if p == nil {
			log.Fatalf("no pin %s", name)
		}
		cols = append(cols, p)
	}
	kp, err := keypad.NewMatrix(rows, cols, &keypad.MatrixOpts{Layout: keypad.Layout3x4})
	if err != nil {
		log.Fatal(err)
	}
	defer kp.Halt()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	keys := make(chan keypad.Key, 16)
	go func() {
		for k := range keys {
			fmt.Println("key", k) // a real door hands k to its controller, never to a log
		}
	}()
	if err := kp.Run(ctx, func(k keypad.Key) { keys <- k }); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// A Wiegand keypad with card reader behind a level shifter on GPIO17 (D0)
// and GPIO27 (D1).
func ExampleNewWiegand() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	d0, d1 := gpioreg.ByName("GPIO17"), gpioreg.ByName("GPIO27")
	if d0 == nil || d1 == nil {
		log.Fatal("no GPIO17 or GPIO27")
	}
	r, err := keypad.NewWiegand(d0, d1, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Halt()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = r.Run(ctx,
		func(k keypad.Key) { fmt.Println("key", k) },
		func(c keypad.Card) { fmt.Printf("card uid=%x (%d bits)\n", c.UID, c.Bits) })
	if err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", r.Stats())
}

// The driver on an emulated keypad, as latchd's simulator runs it: TypeKeys
// holds each key until the driver has taken it.
func ExampleMatrix_Run() {
	em, err := keypadtest.NewMatrix(keypad.Layout3x4)
	if err != nil {
		log.Fatal(err)
	}
	kp, err := keypad.NewMatrix(em.Rows(), em.Cols(), nil)
	if err != nil {
		log.Fatal(err)
	}
	keys := make(chan keypad.Key, 16)
	done := make(chan error)
	go func() { done <- kp.Run(context.Background(), func(k keypad.Key) { keys <- k }) }()

	if err := em.TypeKeys(context.Background(), "1234#"); err != nil {
		log.Fatal(err)
	}
	if err := kp.Halt(); err != nil {
		log.Fatal(err)
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	close(keys)
	for k := range keys {
		fmt.Print(k)
	}
	fmt.Println()
	// Output: 1234#
}
