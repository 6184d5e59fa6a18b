package display_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/door/display"
	"github.com/latchdoor/latch/door/display/displaytest"
)

var (
	_ door.Display = (*display.LCD)(nil)
	_ door.Display = (*display.OLED)(nil)
)

func TestWidthIsTheDoors(t *testing.T) {
	if display.Width != door.DisplayWidth {
		t.Fatalf("display.Width %d, door.DisplayWidth %d", display.Width, door.DisplayWidth)
	}
}

// sleeps records the waits a driver asks for instead of waiting.
type sleeps []time.Duration

func (s *sleeps) sleep(d time.Duration) { *s = append(*s, d) }

// The port bytes: P0 RS, P2 E, P3 backlight, P4-P7 D4-D7. Each nibble is
// the data with E high, then with E low (the LCD latches on the fall).
func TestLCDPlayback(t *testing.T) {
	bus := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		// Port to backlight on, E, RS and RW low: the backpack answers.
		{Addr: 0x27, W: []byte{0x08}},
		// (50 ms) Function set 8-bit, as a single nibble 0x3.
		{Addr: 0x27, W: []byte{0x3C, 0x38}},
		// (5 ms) Function set 8-bit again.
		{Addr: 0x27, W: []byte{0x3C, 0x38}},
		// (150 µs) The third 0x3, then 0x2: 4-bit interface from here on.
		// Then function set 0x28 (4-bit, two lines, 5×8 dots), display off
		// 0x08, clear 0x01, each as two nibbles.
		{Addr: 0x27, W: []byte{
			0x3C, 0x38, 0x2C, 0x28,
			0x2C, 0x28, 0x8C, 0x88,
			0x0C, 0x08, 0x8C, 0x88,
			0x0C, 0x08, 0x1C, 0x18,
		}},
		// (2 ms) Entry mode 0x06 (increment, no shift); display on 0x0C
		// (no cursor, no blink).
		{Addr: 0x27, W: []byte{0x0C, 0x08, 0x6C, 0x68, 0x0C, 0x08, 0xCC, 0xC8}},
		// Show "Enter PIN" on line 1: DDRAM address 0x00 (0x80), then RS
		// high with E low (0x09) before the characters 'E' 'n' 't' 'e' 'r'
		// ' ' 'P' 'I' 'N', RS high in every byte (0x_D, 0x_9). Line 2 is
		// blank already.
		{Addr: 0x27, W: []byte{
			0x8C, 0x88, 0x0C, 0x08,
			0x49,
			0x4D, 0x49, 0x5D, 0x59,
			0x6D, 0x69, 0xED, 0xE9,
			0x7D, 0x79, 0x4D, 0x49,
			0x6D, 0x69, 0x5D, 0x59,
			0x7D, 0x79, 0x2D, 0x29,
			0x2D, 0x29, 0x0D, 0x09,
			0x5D, 0x59, 0x0D, 0x09,
			0x4D, 0x49, 0x9D, 0x99,
			0x4D, 0x49, 0xED, 0xE9,
		}},
		// Show "*" on line 2: RS low with E low (0xC8) before DDRAM address
		// 0x40 (0xC0), RS high again (0x29) before '*' (0x2A).
		{Addr: 0x27, W: []byte{0xC8, 0xCC, 0xC8, 0x0C, 0x08, 0x29, 0x2D, 0x29, 0xAD, 0xA9}},
		// Halt: RS low (0x08), display off 0x08, then the backlight off.
		{Addr: 0x27, W: []byte{0x08, 0x0C, 0x08, 0x8C, 0x88, 0x80}},
	}}
	var waits sleeps
	l, err := display.NewLCD(bus, 0x27, &display.LCDOpts{Sleep: waits.sleep})
	if err != nil {
		t.Fatal(err)
	}
	want := sleeps{50 * time.Millisecond, 5 * time.Millisecond, 150 * time.Microsecond, 2 * time.Millisecond}
	if !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v (power-on >40ms, >4.1ms, >100µs, clear >1.52ms)", waits, want)
	}
	if err := l.Show([2]string{"Enter PIN", ""}); err != nil {
		t.Fatal(err)
	}
	if err := l.Show([2]string{"Enter PIN", "*"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// newLCD is an LCD on an emulated backpack at 0x27.
func newLCD(t testing.TB) (*display.LCD, *displaytest.LCD) {
	t.Helper()
	emu := displaytest.NewLCD(0x27)
	l, err := display.NewLCD(emu, 0x27, &display.LCDOpts{Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	return l, emu
}

func checkLCD(t *testing.T, emu *displaytest.LCD, want [2]string) {
	t.Helper()
	if got := emu.Text(); got != want {
		t.Errorf("LCD shows %q, want %q", got, want)
	}
	if err := errors.Join(emu.Errors()...); err != nil {
		t.Errorf("the LCD saw: %v", err)
	}
}

func TestLCDShow(t *testing.T) {
	l, emu := newLCD(t)
	checkLCD(t, emu, [2]string{strings.Repeat(" ", 16), strings.Repeat(" ", 16)})
	if !emu.Backlight() || !emu.On() {
		t.Errorf("after NewLCD: backlight %v, display on %v; want both on", emu.Backlight(), emu.On())
	}
	for _, tc := range []struct {
		lines [2]string
		want  [2]string
	}{
		{[2]string{"Enter PIN", ""}, [2]string{"Enter PIN       ", "                "}},
		{[2]string{"Enter PIN", "*"}, [2]string{"Enter PIN       ", "*               "}},
		{[2]string{"Enter PIN", "****"}, [2]string{"Enter PIN       ", "****            "}},
		{[2]string{"Locked out", "try in 30s"}, [2]string{"Locked out      ", "try in 30s      "}},
		{[2]string{"Offline", ""}, [2]string{"Offline         ", "                "}},
		// Cut at 16, non-ASCII and control characters as '?', and the two
		// ASCII characters the LCD's ROM draws otherwise.
		{[2]string{"Welcome, Zoë Müller-Lüdenscheidt", "a\tb\\c~d"}, [2]string{"Welcome, Zo? M?l", "a?b?c?d         "}},
		{[2]string{"0123456789abcdef", "ABCDEFGHIJKLMNOP"}, [2]string{"0123456789abcdef", "ABCDEFGHIJKLMNOP"}},
		{[2]string{"", ""}, [2]string{"                ", "                "}},
	} {
		if err := l.Show(tc.lines); err != nil {
			t.Fatalf("Show(%q): %v", tc.lines, err)
		}
		checkLCD(t, emu, tc.want)
	}
}

func TestLCDUnchangedShowIsFree(t *testing.T) {
	l, emu := newLCD(t)
	lines := [2]string{"Enter PIN", "***"}
	if err := l.Show(lines); err != nil {
		t.Fatal(err)
	}
	n, b := emu.Traffic()
	// The same text, and text that fits to the same.
	for _, again := range [][2]string{lines, {"Enter PIN       ", "***"}} {
		if err := l.Show(again); err != nil {
			t.Fatal(err)
		}
	}
	if n2, b2 := emu.Traffic(); n2 != n || b2 != b {
		t.Errorf("unchanged Show cost %d transactions, %d bytes; want none", n2-n, b2-b)
	}
	// One more digit: one transaction.
	if err := l.Show([2]string{"Enter PIN", "****"}); err != nil {
		t.Fatal(err)
	}
	if n2, b2 := emu.Traffic(); n2 != n+1 || b2-b > 20 {
		t.Errorf("one digit cost %d transactions, %d bytes; want 1 and at most 20", n2-n, b2-b)
	}
	checkLCD(t, emu, [2]string{"Enter PIN       ", "****            "})
}

func TestLCDHalt(t *testing.T) {
	l, emu := newLCD(t)
	lines := [2]string{"Door open", ""}
	if err := l.Show(lines); err != nil {
		t.Fatal(err)
	}
	if err := l.Halt(); err != nil {
		t.Fatal(err)
	}
	if emu.On() || emu.Backlight() {
		t.Errorf("after Halt: display on %v, backlight %v; want both off", emu.On(), emu.Backlight())
	}
	checkLCD(t, emu, [2]string{strings.Repeat(" ", 16), strings.Repeat(" ", 16)})
	// The same lines again turn it on.
	if err := l.Show(lines); err != nil {
		t.Fatal(err)
	}
	if !emu.On() || !emu.Backlight() {
		t.Errorf("Show after Halt: display on %v, backlight %v; want both on", emu.On(), emu.Backlight())
	}
	checkLCD(t, emu, [2]string{"Door open       ", strings.Repeat(" ", 16)})
}

func TestNewLCDErrors(t *testing.T) {
	emu := displaytest.NewLCD(0x27)
	nosleep := &display.LCDOpts{Sleep: func(time.Duration) {}}
	_, err := display.NewLCD(emu, 0x3F, nosleep)
	if !errors.Is(err, displaytest.ErrNoDevice) || !strings.Contains(err.Error(), "0x3f") {
		t.Errorf("NewLCD at an address without a backpack: %v", err)
	}
	_, err = display.NewLCD(emu, 0x50, nosleep)
	if err == nil || !strings.Contains(err.Error(), "0x50") || !strings.Contains(err.Error(), "0x20 to 0x27") {
		t.Errorf("NewLCD at 0x50, not a PCF8574 address: %v", err)
	}
	if n, _ := emu.Traffic(); n != 0 {
		t.Errorf("%d transactions reached the backpack at 0x27", n)
	}
}

func TestCheckLCDAddress(t *testing.T) {
	for a := range uint16(0x80) {
		ok := a >= 0x20 && a <= 0x27 || a >= 0x38 && a <= 0x3F
		if err := display.CheckLCDAddress(a); (err == nil) != ok {
			t.Errorf("CheckLCDAddress(%#02x) = %v", a, err)
		}
	}
}
