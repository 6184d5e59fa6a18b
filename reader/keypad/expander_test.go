package keypad_test

import (
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/devices/v3/mcp23xxx"
	"periph.io/x/devices/v3/pcf857x"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// board is a keypad wired to an emulated expander: which chip, at which
// address, and which of its pins the rows and columns are on.
type board struct {
	chip       keypadtest.Chip
	addr       uint16
	rows, cols []int
}

// The boards the tests run on, 4×3 keypads wired as the package
// documentation suggests: rows on the low pins, columns above them; on the
// 16-pin chips the columns are on the second port.
var boards = []board{
	{keypadtest.PCF8574, 0x20, []int{0, 1, 2, 3}, []int{4, 5, 6}},
	{keypadtest.PCF8574A, 0x3F, []int{0, 1, 2, 3}, []int{4, 5, 6}},
	{keypadtest.PCF8575, 0x27, []int{0, 1, 2, 3}, []int{8, 9, 10}},
	{keypadtest.MCP23008, 0x21, []int{0, 1, 2, 3}, []int{4, 5, 6}},
	{keypadtest.MCP23017, 0x20, []int{0, 1, 2, 3}, []int{8, 9, 10}},
}

// openChip opens periph's driver of b's chip on bus and returns the keypad's
// row and column pins and a group of the columns. For an MCP230xx with an
// interrupt line, it enables interrupt-on-change on the columns, which the
// driver has no call for: GPINTEN, 0x02 on an MCP23008, 0x04 (port A) or
// 0x05 (port B) on an MCP23017.
func openChip(t testing.TB, bus i2c.Bus, b board, intr bool) ([]gpio.PinOut, []gpio.PinIn, keypad.PortReader) {
	t.Helper()
	var rows []gpio.PinOut
	var cols []gpio.PinIn
	switch b.chip {
	case keypadtest.PCF8574, keypadtest.PCF8574A, keypadtest.PCF8575:
		v := pcf857x.PCF8574
		if b.chip == keypadtest.PCF8575 {
			v = pcf857x.PCF8575
		}
		dev, err := pcf857x.New(bus, b.addr, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range b.rows {
			rows = append(rows, dev.Pins[n])
		}
		for _, n := range b.cols {
			cols = append(cols, dev.Pins[n])
		}
		g, err := dev.Group(b.cols...)
		if err != nil {
			t.Fatal(err)
		}
		return rows, cols, g
	}
	v := mcp23xxx.MCP23008
	if b.chip == keypadtest.MCP23017 {
		v = mcp23xxx.MCP23017
	}
	dev, err := mcp23xxx.NewI2C(bus, v, b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	for _, n := range b.rows {
		rows = append(rows, dev.Pins[n/8][n%8])
	}
	port, bits, mask := b.cols[0]/8, []int{}, byte(0)
	for _, n := range b.cols {
		cols = append(cols, dev.Pins[n/8][n%8])
		bits = append(bits, n%8)
		mask |= 1 << (n % 8)
	}
	if intr {
		reg := byte(0x02)
		if b.chip == keypadtest.MCP23017 {
			reg = byte(0x04 + port)
		}
		if err := (&i2c.Dev{Bus: bus, Addr: b.addr}).Tx([]byte{reg, mask}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return rows, cols, *dev.Group(port, bits)
}

// newExpanderMatrix returns an emulated 3×4 keypad behind b's emulated
// chip, and a keypad.Matrix on it through periph's driver of the chip;
// with intr, the chip's INT (INTB for the columns on an MCP23017's port B)
// is wired to the Matrix's Interrupt.
func newExpanderMatrix(tb testing.TB, b board, intr bool) (*keypadtest.Matrix, *keypadtest.Expander, []gpio.PinOut, []gpio.PinIn, *keypad.MatrixOpts) {
	tb.Helper()
	em, err := keypadtest.NewMatrix(keypad.Layout3x4)
	if err != nil {
		tb.Fatal(err)
	}
	x, err := keypadtest.NewExpander(b.chip, b.addr, em, b.rows, b.cols)
	if err != nil {
		tb.Fatal(err)
	}
	rows, cols, g := openChip(tb, x, b, intr)
	opts := &keypad.MatrixOpts{Expander: &keypad.Expander{Columns: g}}
	if intr {
		opts.Expander.Interrupt = x.Interrupt()
		if b.chip == keypadtest.MCP23017 && b.cols[0] >= 8 {
			opts.Expander.Interrupt = x.InterruptB()
		}
	}
	return em, x, rows, cols, opts
}

// startExpander runs a keypad.Matrix as newExpanderMatrix sets it up.
func startExpander(t *testing.T, b board, intr bool) (*matrixRig, *keypadtest.Expander) {
	t.Helper()
	em, x, rows, cols, opts := newExpanderMatrix(t, b, intr)
	return startRig(t, em, rows, cols, opts), x
}

// onEveryBoard runs test in a synctest bubble on a keypad running on each
// board, polled and with the interrupt line.
func onEveryBoard(t *testing.T, test func(t *testing.T, r *matrixRig, x *keypadtest.Expander, intr bool)) {
	for _, b := range boards {
		for _, intr := range []bool{false, true} {
			name := string(b.chip) + "/poll"
			if intr {
				name = string(b.chip) + "/interrupt"
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r, x := startExpander(t, b, intr)
					defer r.close()
					test(t, r, x, intr)
				})
			})
		}
	}
}

// A PIN typed on the keypad arrives through the chip, periph's driver of
// it and the Matrix, polled or woken by the chip's interrupt line.
func TestExpanderTypeKeys(t *testing.T) {
	onEveryBoard(t, func(t *testing.T, r *matrixRig, x *keypadtest.Expander, _ bool) {
		if err := r.em.TypeKeys(r.ctx, "1590*#"); err != nil {
			t.Fatal(err)
		}
		if got := r.typed(); got != "1590*#" {
			t.Errorf("typed %q, want 1590*#", got)
		}
		if f := x.Faults(); len(f) > 0 {
			t.Errorf("the chip refused writes: %q", f)
		}
	})
}

// The two-key lockout works through the expander as on GPIO: two keys at
// once, overlapping keys, keys in one column and ghosting keys.
func TestExpanderTwoKeys(t *testing.T) {
	onEveryBoard(t, func(t *testing.T, r *matrixRig, _ *keypadtest.Expander, _ bool) {
		checkTwoKeys(t, r)
	})
}

// An idle keypad costs one transaction per poll, or none with the
// interrupt line; a held key costs at most two per poll once taken.
func TestExpanderIdleTraffic(t *testing.T) {
	onEveryBoard(t, func(t *testing.T, r *matrixRig, x *keypadtest.Expander, intr bool) {
		advance(time.Second) // past any start-up wake
		want := int64(10 * time.Second / keypad.DefaultPoll)
		if intr {
			want = 0
		}
		before := x.Stats().Transactions
		advance(10 * time.Second)
		if got := x.Stats().Transactions - before; got != want {
			t.Errorf("idle for 10s: %d transactions, want %d", got, want)
		}
		r.press("5")
		advance(time.Second)
		if got := r.typed(); got != "5" {
			t.Fatalf("typed %q, want 5", got)
		}
		before = x.Stats().Transactions
		advance(10 * time.Second)
		// A PCF857x's driver writes a column that read low back high
		// before each read: two per poll.
		if got := x.Stats().Transactions - before; got > 2*want {
			t.Errorf("a key held for 10s: %d transactions, want at most %d", got, 2*want)
		}
	})
}
