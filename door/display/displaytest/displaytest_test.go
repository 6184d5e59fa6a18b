package displaytest_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/latchdoor/latch/door/display/displaytest"
)

// nibbles is the port bytes clocking the upper nibble of each v into the
// LCD, with the backlight on: RS, data and E high, then E low.
func nibbles(rs bool, vs ...byte) []byte {
	var out []byte
	for _, v := range vs {
		p := v&0xF0 | 0x08
		if rs {
			p |= 0x01
		}
		out = append(out, p|0x04, p)
	}
	return out
}

// bytes4 is each v as two nibbles.
func bytes4(rs bool, vs ...byte) []byte {
	var out []byte
	for _, v := range vs {
		out = append(out, nibbles(rs, v, v<<4)...)
	}
	return out
}

// initLCD puts lcd in 4-bit, two-line mode with the display on.
func initLCD(t *testing.T, lcd *displaytest.LCD) {
	t.Helper()
	// E low first: the port comes up all high.
	w := append([]byte{0x08}, nibbles(false, 0x30, 0x30, 0x30, 0x20)...)
	w = append(w, bytes4(false, 0x28, 0x0C, 0x01, 0x06)...)
	if err := lcd.Tx(0x27, w, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLCDDecodes(t *testing.T) {
	lcd := displaytest.NewLCD(0x27)
	if !lcd.Backlight() || lcd.On() {
		t.Errorf("at power-on: backlight %v (port all high), display on %v", lcd.Backlight(), lcd.On())
	}
	initLCD(t, lcd)
	w := bytes4(false, 0x80+3)
	w = append(w, 0x09) // RS high before E rises
	w = append(w, bytes4(true, 'h', 'i')...)
	w = append(w, 0x08)
	w = append(w, bytes4(false, 0xC0+15)...)
	w = append(w, 0x09)
	w = append(w, bytes4(true, '!')...)
	if err := lcd.Tx(0x27, w, nil); err != nil {
		t.Fatal(err)
	}
	want := [2]string{"   hi           ", "               !"}
	if got := lcd.Text(); got != want {
		t.Errorf("Text %q, want %q", got, want)
	}
	if err := errors.Join(lcd.Errors()...); err != nil {
		t.Error(err)
	}
	// Display off: nothing shows; the text is kept.
	if err := lcd.Tx(0x27, append([]byte{0x08}, bytes4(false, 0x08)...), nil); err != nil {
		t.Fatal(err)
	}
	if got := lcd.Text(); got[0] != strings.Repeat(" ", 16) || lcd.On() {
		t.Errorf("display off shows %q", got)
	}
	if err := lcd.Tx(0x27, append(bytes4(false, 0x0C), 0x00), nil); err != nil {
		t.Fatal(err)
	}
	if got := lcd.Text(); got != want || lcd.Backlight() {
		t.Errorf("display on again shows %q, backlight %v (want off)", got, lcd.Backlight())
	}
	if n, b := lcd.Traffic(); n != 4 || b == 0 {
		t.Errorf("Traffic %d, %d", n, b)
	}
}

// Without the 4-bit function set with N=1 the second line does not show,
// and DDRAM is one line of 80 characters.
func TestLCDOneLineMode(t *testing.T) {
	lcd := displaytest.NewLCD(0x27)
	w := append([]byte{0x08}, nibbles(false, 0x30, 0x30, 0x30, 0x20)...)
	w = append(w, bytes4(false, 0x0C, 0xC0)...)
	w = append(w, 0x09)
	w = append(w, bytes4(true, 'x')...)
	if err := lcd.Tx(0x27, w, nil); err != nil {
		t.Fatal(err)
	}
	if got := lcd.Text(); got[1] != strings.Repeat(" ", 16) {
		t.Errorf("one-line mode shows line 2 %q", got[1])
	}
	if err := errors.Join(lcd.Errors()...); err != nil {
		t.Error(err)
	}
	if err := lcd.Tx(0x27, append([]byte{0x08}, bytes4(false, 0xD0)...), nil); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(lcd.Errors()...); err == nil || !strings.Contains(err.Error(), "set DDRAM address 0x50") {
		t.Errorf("errors %v, want the address 0x50 refused in one-line mode", err)
	}
}

func TestLCDRecordsMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    func() []byte
		want string
	}{
		{"RS between halves", func() []byte { return append(nibbles(false, 0x80), nibbles(true, 0x00)...) }, "RS changed between the two halves"},
		{"RS with E rising", func() []byte { return append(bytes4(false, 0x80), nibbles(true, 'a')...) }, "before the address setup time"},
		{"RS while E high", func() []byte { return []byte{0x0C, 0x0D, 0x09} }, "while E was high"},
		{"address out of range", func() []byte { return bytes4(false, 0x80|0x30) }, "set DDRAM address 0x30"},
		{"display shift", func() []byte { return bytes4(false, 0x18) }, "display shift"},
		{"4-bit read", func() []byte { return []byte{0x0A, 0x0E, 0x0A} }, "read cycle"},
	} {
		lcd := displaytest.NewLCD(0x27)
		initLCD(t, lcd)
		if err := lcd.Tx(0x27, tc.w(), nil); err != nil {
			t.Fatal(err)
		}
		err := errors.Join(lcd.Errors()...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: errors %v, want %q", tc.name, err, tc.want)
		}
	}
	// Data before the 4-bit mode is set.
	lcd := displaytest.NewLCD(0x27)
	if err := lcd.Tx(0x27, []byte{0x09, 0x4D, 0x49}, nil); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(lcd.Errors()...); err == nil || !strings.Contains(err.Error(), "8-bit") {
		t.Errorf("data in 8-bit mode: %v", err)
	}
}

// An unknown command, missing parameters and a bad control byte are
// recorded, and the GDDRAM kept.
func TestOLEDRecordsMalformed(t *testing.T) {
	for _, tc := range []struct {
		w    []byte
		want string
	}{
		{[]byte{0x00, 0xFF}, "command 0xff: not an SSD1306 command"},
		{[]byte{0x00, 0x21, 0x00}, "did not follow"},
		{[]byte{0x01, 0xAF}, "control byte 0x01"},
		{[]byte{0x00, 0x20, 0x03}, "addressing mode 0x03"},
		{[]byte{0x00, 0x2F}, "scrolling"},
		{[]byte{0x00, 0xAF}, "charge pump"},
	} {
		o := displaytest.NewOLED(0x3C, 32)
		if err := o.Tx(0x3C, tc.w, nil); err != nil {
			t.Fatal(err)
		}
		err := errors.Join(o.Errors()...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("% x: errors %v, want %q", tc.w, err, tc.want)
		}
	}
}

// The three addressing modes, as the datasheet's §10.1.3 has them; Co
// set sends one byte per control byte.
func TestOLEDAddressing(t *testing.T) {
	o := displaytest.NewOLED(0x3C, 32)
	tx := func(w ...byte) {
		t.Helper()
		if err := o.Tx(0x3C, w, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Page mode (the reset state): page 1, column 0x7F, two bytes: the
	// column wraps to 0 within the page.
	tx(0x80, 0xB1, 0x80, 0x0F, 0x80, 0x17)
	tx(0x40, 0x01, 0x02)
	// Horizontal mode, columns 10-11, pages 2-3: four bytes fill the box.
	tx(0x00, 0x20, 0x00, 0x21, 10, 11, 0x22, 2, 3)
	tx(0x40, 0x11, 0x12, 0x13, 0x14)
	// In horizontal mode the page mode commands change nothing: the next
	// byte goes where the box wrapped to, column 10 of page 2.
	tx(0x00, 0xB0, 0x00, 0x10)
	tx(0x40, 0x15)
	// Vertical mode, columns 20-21, pages 0-1.
	tx(0x00, 0x20, 0x01, 0x21, 20, 21, 0x22, 0, 1)
	tx(0x40, 0x21, 0x22, 0x23)
	img := o.Image()
	at := func(page, col int) byte { return img.Pix[page*128+col] }
	for _, c := range []struct {
		page, col int
		want      byte
	}{
		{1, 127, 0x01}, {1, 0, 0x02},
		{2, 10, 0x15}, {2, 11, 0x12}, {3, 10, 0x13}, {3, 11, 0x14},
		{0, 20, 0x21}, {1, 20, 0x22}, {0, 21, 0x23},
	} {
		if got := at(c.page, c.col); got != c.want {
			t.Errorf("page %d column %d: %#02x, want %#02x", c.page, c.col, got, c.want)
		}
	}
	if err := errors.Join(o.Errors()...); err != nil {
		t.Error(err)
	}
}

func TestWrongAddressNACKs(t *testing.T) {
	lcd := displaytest.NewLCD(0x27)
	oled := displaytest.NewOLED(0x3C, 32)
	if err := lcd.Tx(0x3F, []byte{0x08}, nil); !errors.Is(err, displaytest.ErrNoDevice) {
		t.Errorf("LCD at 0x3f: %v", err)
	}
	if err := oled.Tx(0x3D, []byte{0x00, 0xAE}, nil); !errors.Is(err, displaytest.ErrNoDevice) {
		t.Errorf("OLED at 0x3d: %v", err)
	}
	if n, _ := lcd.Traffic(); n != 0 {
		t.Errorf("the LCD counted %d transactions", n)
	}
	if n, _ := oled.Traffic(); n != 0 {
		t.Errorf("the OLED counted %d transactions", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	lcd := displaytest.NewLCD(0x27)
	oled := displaytest.NewOLED(0x3C, 32)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 50 {
				_ = lcd.Tx(0x27, bytes4(true, 'x'), nil)
				_ = oled.Tx(0x3C, []byte{0x40, 0xFF}, nil)
				_ = lcd.Text()
				_ = oled.Image()
				if i == 0 {
					_ = displaytest.ReadText(oled.Image())
				}
			}
		})
	}
	wg.Wait()
	if n, _ := lcd.Traffic(); n != 200 {
		t.Errorf("%d transactions counted, want 200", n)
	}
}

// Any bytes: no panic, and the errors stay bounded.
func FuzzEmulators(f *testing.F) {
	f.Add([]byte{0x3C, 0x38, 0x2C, 0x28}, []byte{0x00, 0x21, 0x00, 0x7F, 0x40, 0xFF})
	f.Add([]byte{0x0E, 0x0A, 0xFF}, []byte{0x80, 0xB7, 0xC0, 0x13, 0x40})
	f.Fuzz(func(t *testing.T, lw, ow []byte) {
		lcd := displaytest.NewLCD(0x27)
		oled := displaytest.NewOLED(0x3C, 64)
		for range 3 {
			_ = lcd.Tx(0x27, lw, make([]byte, 1))
			_ = oled.Tx(0x3C, ow, make([]byte, 1))
		}
		_ = lcd.Text()
		_ = displaytest.ReadText(oled.Image())
		if len(lcd.Errors()) > 100 || len(oled.Errors()) > 100 {
			t.Fatal("unbounded errors")
		}
	})
}

func TestReadTextOfNoise(t *testing.T) {
	o := displaytest.NewOLED(0x3C, 32)
	got := displaytest.ReadText(o.Image())
	if !strings.ContainsRune(got[0], displaytest.Unreadable) {
		t.Errorf("the power-on checkerboard reads as %q", got)
	}
}
