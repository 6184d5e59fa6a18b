package keypadtest

import (
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
)

func newExpander(t *testing.T, chip Chip, addr uint16, rows, cols []int) (*Matrix, *Expander) {
	t.Helper()
	m, err := NewMatrix(keypad.Layout3x4)
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewExpander(chip, addr, m, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	return m, x
}

func tx(t *testing.T, x *Expander, w []byte, n int) []byte {
	t.Helper()
	r := make([]byte, n)
	if err := x.Tx(0x20, w, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewExpanderErrors(t *testing.T) {
	m, err := NewMatrix(keypad.Layout3x4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		chip       Chip
		addr       uint16
		rows, cols []int
		want       string
	}{
		{"PCF9999", 0x20, []int{0, 1, 2, 3}, []int{4, 5, 6}, "want PCF8574"},
		{PCF8574, 0x38, []int{0, 1, 2, 3}, []int{4, 5, 6}, "0x20 to 0x27"},
		{PCF8574A, 0x20, []int{0, 1, 2, 3}, []int{4, 5, 6}, "0x38 to 0x3f"},
		{PCF8574, 0x20, []int{0, 1, 2}, []int{4, 5, 6}, "3 rows"},
		{PCF8574, 0x20, []int{0, 1, 2, 3}, []int{4, 5, 8}, "pins 0 to 7"},
		{MCP23017, 0x20, []int{0, 1, 2, 3}, []int{3, 9, 10}, "pin 3 has ROW4 and COL1"},
	} {
		if _, err := NewExpander(tc.chip, tc.addr, m, tc.rows, tc.cols); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewExpander(%s, %#x, %v, %v) = %v, want an error with %q", tc.chip, tc.addr, tc.rows, tc.cols, err, tc.want)
		}
	}
}

// A PCF8574 sets its port from each byte written and returns it on a
// read: a 0 drives a row low, which a held key carries to its column.
func TestExpanderPCF8574(t *testing.T) {
	m, x := newExpander(t, PCF8574, 0x20, []int{0, 1, 2, 3}, []int{4, 5, 6})
	if got := tx(t, x, nil, 1)[0]; got != 0xFF {
		t.Fatalf("power-on read %#02x, want 0xff", got)
	}
	if err := x.Tx(0x21, []byte{0xFF}, nil); err == nil {
		t.Fatal("a write to 0x21 succeeded: nothing is there")
	}
	if err := m.Press('5'); err != nil { // row 2, column 2
		t.Fatal(err)
	}
	// Row 2 (P1) low, the unused P7 low: column 2 (P5) follows.
	if got := tx(t, x, []byte{0x7D}, 1)[0]; got != 0x5D {
		t.Fatalf("row 2 driven with 5 held: read %#02x, want 0x5d", got)
	}
	// Row 1 (P0) low instead: nothing.
	if got := tx(t, x, []byte{0xFE}, 1)[0]; got != 0xFE {
		t.Fatalf("row 1 driven with 5 held: read %#02x, want 0xfe", got)
	}
	// The write to 0x21 found nobody: it is not the chip's traffic.
	if s := x.Stats(); s.Transactions != 3 || s.Bytes != 2+4+4 {
		t.Errorf("stats %+v, want 3 transactions, 10 bytes", s)
	}
	if f := x.Faults(); len(f) != 0 {
		t.Errorf("faults %q", f)
	}
}

// INT, open-drain, reads high through the host's pull-up until the port
// differs from what was last read or written.
func TestExpanderPCF8574Interrupt(t *testing.T) {
	m, x := newExpander(t, PCF8574, 0x20, []int{0, 1, 2, 3}, []int{4, 5, 6})
	intr := x.Interrupt()
	if err := intr.In(gpio.Float, gpio.FallingEdge); err != nil {
		t.Fatal(err)
	}
	if intr.Read() != gpio.Low {
		t.Fatal("INT without a pull-up reads high")
	}
	if err := intr.In(gpio.PullUp, gpio.FallingEdge); err != nil {
		t.Fatal(err)
	}
	tx(t, x, []byte{0xF0}, 0) // every row low
	if intr.Read() != gpio.High {
		t.Fatal("INT asserted after a write")
	}
	if err := m.Press('1'); err != nil {
		t.Fatal(err)
	}
	if intr.Read() != gpio.Low || !intr.WaitForEdge(0) {
		t.Fatal("a key press did not assert INT with a falling edge")
	}
	tx(t, x, nil, 1)
	if intr.Read() != gpio.High {
		t.Fatal("INT still asserted after a read")
	}
	if err := m.Release('1'); err != nil {
		t.Fatal(err)
	}
	if intr.Read() != gpio.Low {
		t.Fatal("a key release did not assert INT")
	}
	if err := m.Press('1'); err != nil {
		t.Fatal(err)
	}
	if intr.Read() != gpio.High {
		t.Fatal("INT still asserted with the port back as last read")
	}
}

// A PCF8575 takes and returns two bytes, P0x then P1x; an odd byte is
// recorded, not taken.
func TestExpanderPCF8575(t *testing.T) {
	m, x := newExpander(t, PCF8575, 0x20, []int{0, 1, 2, 3}, []int{8, 9, 10})
	if err := m.Press('9'); err != nil { // row 3, column 3
		t.Fatal(err)
	}
	if got := tx(t, x, []byte{0xFB, 0xFF}, 2); got[0] != 0xFB || got[1] != 0xFB {
		t.Fatalf("row 3 driven with 9 held: read % x, want fb fb", got)
	}
	tx(t, x, []byte{0x00, 0xFF, 0xF0}, 0)
	f := x.Faults()
	if len(f) != 1 || !strings.Contains(f[0], "in pairs") {
		t.Fatalf("faults %q, want one about pairs", f)
	}
	// Every row low: the held 9 pulls P12 low.
	if got := tx(t, x, nil, 2); got[0] != 0x00 || got[1] != 0xFB {
		t.Fatalf("read % x after the odd write, want 00 fb", got)
	}
}

// An MCP23017's registers, at their BANK = 0 addresses: pins are inputs
// until IODIR says otherwise, pull-ups are GPPU's, reads and writes go on
// from the address written first, and reading GPIO clears an interrupt
// enabled in GPINTEN.
func TestExpanderMCP23017(t *testing.T) {
	m, x := newExpander(t, MCP23017, 0x20, []int{0, 1, 2, 3}, []int{8, 9, 10})
	if got := tx(t, x, []byte{0x00}, 2); got[0] != 0xFF || got[1] != 0xFF {
		t.Fatalf("IODIRA, IODIRB at power-on: % x, want ff ff", got)
	}
	// OLATA = 0, IODIRA: GPA0-3 outputs (rows low); GPPUB: pull-ups on
	// the columns; GPINTENB: interrupt on change of the columns.
	tx(t, x, []byte{0x14, 0x00}, 0)
	tx(t, x, []byte{0x00, 0xF0}, 0)
	tx(t, x, []byte{0x0D, 0x07}, 0)
	tx(t, x, []byte{0x05, 0x07}, 0)
	intb := x.InterruptB()
	if err := intb.In(gpio.PullUp, gpio.FallingEdge); err != nil {
		t.Fatal(err)
	}
	if got := tx(t, x, []byte{0x12}, 2); got[0] != 0x00 || got[1] != 0x07 {
		t.Fatalf("GPIOA, GPIOB idle: % x, want 00 07", got)
	}
	if err := m.Press('0'); err != nil { // row 4, column 2
		t.Fatal(err)
	}
	if intb.Read() != gpio.Low || x.Interrupt().Read() != gpio.High {
		t.Fatal("a change on port B did not assert INTB alone")
	}
	if got := tx(t, x, []byte{0x0F}, 3); got[0] != 0x02 || got[2] != 0x05 {
		t.Fatalf("INTFB, INTCAPA, INTCAPB: % x, want 02 xx 05", got)
	}
	if intb.Read() != gpio.High {
		t.Fatal("INTB still asserted after INTCAPB was read")
	}
	tx(t, x, []byte{0x11, 0x00}, 0)
	tx(t, x, []byte{0x16}, 0)
	tx(t, x, []byte{0x0A, 0x80}, 0)
	f := x.Faults()
	if len(f) != 3 || !strings.Contains(f[0], "INTCAP at 0x11 is read-only") || !strings.Contains(f[1], "register address 0x16") || !strings.Contains(f[2], "BANK") {
		t.Fatalf("faults %q", f)
	}
}
