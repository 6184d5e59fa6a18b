package keypad_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/pcf857x"

	"github.com/latchdoor/latch/reader/keypad"
)

// The bytes below are a PCF8574's port, P7 (high bit) to P0: rows 1–4 on
// P0–P3, columns 1–3 on P4–P6, P7 unused. A 1 written is a released pin
// (weak pull-up), a 0 a pin driven low; a byte read is every pin's level.
// periph's pcf857x driver writes the whole port from what it last wrote or
// read, so it starts from 0x00 (every pin low) and writes back low a
// column that last read low, until the next read raises it again.

// pcfScanWith5 is one scan of the keypad with key 5 (row 2 on P1, column
// 2 on P5) held, starting from a read of 0x50 (rows low, 5 pulling P5
// low).
func pcfScanWith5() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x20, W: []byte{0x51}}, // release row 1 (P5 written low: it read low)
		{Addr: 0x20, W: []byte{0x53}}, // release row 2
		{Addr: 0x20, W: []byte{0x57}}, // release row 3
		{Addr: 0x20, W: []byte{0x5F}}, // release row 4
		{Addr: 0x20, W: []byte{0x5E}}, // drive row 1 low
		{Addr: 0x20, W: []byte{0x7E}}, // columns released before reading them
		{Addr: 0x20, R: []byte{0x7E}}, // row 1: no column low
		{Addr: 0x20, W: []byte{0x7F}}, // release row 1
		{Addr: 0x20, W: []byte{0x7D}}, // drive row 2 low
		{Addr: 0x20, R: []byte{0x5D}}, // row 2: column 2 low, key 5
		{Addr: 0x20, W: []byte{0x5F}}, // release row 2 (P5 written low again)
		{Addr: 0x20, W: []byte{0x5B}}, // drive row 3 low
		{Addr: 0x20, W: []byte{0x7B}}, // columns released before reading them
		{Addr: 0x20, R: []byte{0x7B}}, // row 3: no column low
		{Addr: 0x20, W: []byte{0x7F}}, // release row 3
		{Addr: 0x20, W: []byte{0x77}}, // drive row 4 low
		{Addr: 0x20, R: []byte{0x77}}, // row 4: no column low
		{Addr: 0x20, W: []byte{0x7F}}, // release row 4
		{Addr: 0x20, W: []byte{0x7E}}, // every row low again, one at a time
		{Addr: 0x20, W: []byte{0x7C}}, // rows 1 and 2 low
		{Addr: 0x20, W: []byte{0x78}}, // rows 1 to 3 low
		{Addr: 0x20, W: []byte{0x70}}, // rows 1 to 4 low
		{Addr: 0x20, R: []byte{0x50}}, // columns with every row low: 5 still held
	}
}

// The driver's traffic through periph's pcf857x driver, replayed: start,
// the first scan, an idle poll, and key 5 pressed, found and confirmed.
func TestExpanderPlaybackPCF8574(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ops := []i2ctest.IO{
			// NewMatrix: the columns are made inputs one by one, from 0x00.
			{Addr: 0x20, W: []byte{0x10}}, // column 1 (P4) released
			{Addr: 0x20, W: []byte{0x30}}, // column 2 (P5) released
			{Addr: 0x20, W: []byte{0x70}}, // column 3 (P6) released
			// The rows are released.
			{Addr: 0x20, W: []byte{0x71}}, // row 1 (P0)
			{Addr: 0x20, W: []byte{0x73}}, // row 2 (P1)
			{Addr: 0x20, W: []byte{0x77}}, // row 3 (P2)
			{Addr: 0x20, W: []byte{0x7F}}, // row 4 (P3)
			{Addr: 0x20, R: []byte{0x7F}}, // no column low with no row driven: wired right
			// Run's first scan, no key held: each row low alone, the
			// columns read, the row released.
			{Addr: 0x20, W: []byte{0x7E}}, // row 1 low
			{Addr: 0x20, R: []byte{0x7E}}, // columns high
			{Addr: 0x20, W: []byte{0x7F}}, // row 1 released
			{Addr: 0x20, W: []byte{0x7D}}, // row 2 low
			{Addr: 0x20, R: []byte{0x7D}}, // columns high
			{Addr: 0x20, W: []byte{0x7F}}, // row 2 released
			{Addr: 0x20, W: []byte{0x7B}}, // row 3 low
			{Addr: 0x20, R: []byte{0x7B}}, // columns high
			{Addr: 0x20, W: []byte{0x7F}}, // row 3 released
			{Addr: 0x20, W: []byte{0x77}}, // row 4 low
			{Addr: 0x20, R: []byte{0x77}}, // columns high
			{Addr: 0x20, W: []byte{0x7F}}, // row 4 released
			{Addr: 0x20, W: []byte{0x7E}}, // every row low, to wait for a key
			{Addr: 0x20, W: []byte{0x7C}}, // rows 1 and 2 low
			{Addr: 0x20, W: []byte{0x78}}, // rows 1 to 3 low
			{Addr: 0x20, W: []byte{0x70}}, // rows 1 to 4 low
			{Addr: 0x20, R: []byte{0x70}}, // columns high, as the scan implies
			// Idle: one read each poll, nothing more.
			{Addr: 0x20, R: []byte{0x70}}, // poll 1: columns high
			{Addr: 0x20, R: []byte{0x50}}, // poll 2: column 2 low, a key is down
		}
		ops = append(ops, pcfScanWith5()...) // the scan finds 5
		ops = append(ops, pcfScanWith5()...) // the debounce time later: 5 is delivered
		ops = append(ops,
			// Halt releases the rows.
			i2ctest.IO{Addr: 0x20, W: []byte{0x51}}, // row 1
			i2ctest.IO{Addr: 0x20, W: []byte{0x53}}, // row 2
			i2ctest.IO{Addr: 0x20, W: []byte{0x57}}, // row 3
			i2ctest.IO{Addr: 0x20, W: []byte{0x5F}}, // row 4
		)
		bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
		dev, err := pcf857x.New(bus, 0x20, pcf857x.PCF8574)
		if err != nil {
			t.Fatal(err)
		}
		g, err := dev.Group(4, 5, 6)
		if err != nil {
			t.Fatal(err)
		}
		rows := []gpio.PinOut{dev.Pins[0], dev.Pins[1], dev.Pins[2], dev.Pins[3]}
		cols := []gpio.PinIn{dev.Pins[4], dev.Pins[5], dev.Pins[6]}
		m, err := keypad.NewMatrix(rows, cols, &keypad.MatrixOpts{Expander: &keypad.Expander{Columns: g}})
		if err != nil {
			t.Fatal(err)
		}
		keys := make(chan keypad.Key, 4)
		done := make(chan error, 1)
		go func() { done <- m.Run(context.Background(), func(k keypad.Key) { keys <- k }) }()
		// The polls come at 25 and 50 ms; the debounce scan 20 ms later.
		advance(71 * time.Millisecond)
		if err := m.Halt(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(keys) != 1 || <-keys != '5' {
			t.Error("key 5 not delivered once")
		}
		if err := bus.Close(); err != nil {
			t.Error(err)
		}
	})
}
