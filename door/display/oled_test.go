package display_test

import (
	"errors"
	"fmt"
	"image"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/ssd1306/image1bit"

	"github.com/latchdoor/latch/door/display"
	"github.com/latchdoor/latch/door/display/displaytest"
)

// textImage is the picture Show should leave for lines.
func textImage(t testing.TB, lines [2]string, height int) *image1bit.VerticalLSB {
	t.Helper()
	img, err := display.TextImage(lines, height)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dataWrite is a GDDRAM write of columns c0 to c1-1 of a page of img.
func dataWrite(img *image1bit.VerticalLSB, page, c0, c1 int) []byte {
	w := img.Rect.Dx()
	return append([]byte{0x40}, img.Pix[page*w+c0:page*w+c1]...)
}

func TestOLEDPlayback(t *testing.T) {
	blank := textImage(t, [2]string{}, 32)
	shown := textImage(t, [2]string{"Enter PIN", ""}, 32)
	// The columns "Enter PIN" covers.
	c0, c1 := display.OLEDWidth, 0
	for x := range display.OLEDWidth {
		for y := range 16 {
			if shown.BitAt(x, y) == image1bit.On {
				c0, c1 = min(c0, x), max(c1, x+1)
			}
		}
	}
	ops := []i2ctest.IO{
		// Command stream (control byte 0x00), periph's ssd1306 init: display
		// off, offset 0, start line 0, segment remap, COM scan reversed,
		// COM pins 0x02 (sequential, for 32 rows), contrast 0xFF, RAM
		// display, normal, clock 0xF0, charge pump on, precharge 0xF1,
		// VCOMH 0x40, scroll off, multiplex 32, horizontal addressing,
		// columns 0-127, pages 0-3, display on.
		{Addr: 0x3C, W: []byte{0x00, 0xAE, 0xD3, 0x00, 0x40, 0xA1, 0xC8, 0xDA, 0x02, 0x81, 0xFF,
			0xA4, 0xA6, 0xD5, 0xF0, 0x8D, 0x14, 0xD9, 0xF1, 0xDB, 0x40, 0x2E, 0xA8, 0x1F,
			0x20, 0x00, 0x21, 0x00, 0x7F, 0x22, 0x00, 0x03, 0xAF}},
		// Page addressing mode, in which the page and column start
		// commands of each draw take effect.
		{Addr: 0x3C, W: []byte{0x00, 0x20, 0x02}},
	}
	// The first draw sends every page: page start 0xB0+p, column start 0
	// (0x00, 0x10), then the page's 128 columns in a data stream (0x40).
	for p := range 4 {
		ops = append(ops, i2ctest.IO{Addr: 0x3C, W: []byte{0x00, 0xB0 | byte(p), 0x00, 0x10}},
			i2ctest.IO{Addr: 0x3C, W: dataWrite(blank, p, 0, 128)})
	}
	// "Enter PIN" on line 1: pages 0 and 1, only the columns it covers.
	for p := range 2 {
		ops = append(ops, i2ctest.IO{Addr: 0x3C, W: []byte{0x00, 0xB0 | byte(p), byte(c0 & 0x0F), 0x10 | byte(c0>>4)}},
			i2ctest.IO{Addr: 0x3C, W: dataWrite(shown, p, c0, c1)})
	}
	// Halt: display off.
	ops = append(ops, i2ctest.IO{Addr: 0x3C, W: []byte{0x00, 0xAE}})
	bus := &i2ctest.Playback{DontPanic: true, Ops: ops}
	d, err := display.NewOLED(bus, 0x3C, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Show([2]string{"Enter PIN", ""}); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// newOLED is an OLED on an emulated SSD1306.
func newOLED(t testing.TB, addr uint16, height int) (*display.OLED, *displaytest.OLED) {
	t.Helper()
	emu := displaytest.NewOLED(addr, height)
	d, err := display.NewOLED(emu, addr, &display.OLEDOpts{Height: height})
	if err != nil {
		t.Fatal(err)
	}
	return d, emu
}

func checkOLED(t *testing.T, emu *displaytest.OLED, lines [2]string, height int) {
	t.Helper()
	got := emu.Image()
	if want := textImage(t, lines, height); !equalImages(got, want) {
		t.Errorf("the OLED does not show %q; it reads as %q", lines, displaytest.ReadText(got))
	}
	if err := errors.Join(emu.Errors()...); err != nil {
		t.Errorf("the OLED saw: %v", err)
	}
}

func equalImages(a, b *image1bit.VerticalLSB) bool {
	return a.Rect == b.Rect && string(a.Pix) == string(b.Pix)
}

func TestOLEDShow(t *testing.T) {
	for _, h := range []int{32, 64} {
		for _, addr := range []uint16{0x3C, 0x3D} {
			d, emu := newOLED(t, addr, h)
			checkOLED(t, emu, [2]string{}, h)
			for _, lines := range [][2]string{
				{"Enter PIN", ""},
				{"Enter PIN", "*"},
				{"Enter PIN", "****"},
				{"Locked out", "try in 30s"},
				{"", "Offline"},
				{"0123456789abcdef", "ABCDEFGHIJKLMNOP"},
				{"Welcome, Zoë Müller-Lüdenscheidt", "a\tb"},
				{"", ""},
			} {
				if err := d.Show(lines); err != nil {
					t.Fatalf("128x%d at %#02x: Show(%q): %v", h, addr, lines, err)
				}
				checkOLED(t, emu, lines, h)
			}
			if !emu.On() {
				t.Errorf("128x%d: display off after Show", h)
			}
		}
	}
}

func TestOLEDReadsBack(t *testing.T) {
	d, emu := newOLED(t, 0x3C, 32)
	if err := d.Show([2]string{"Welcome, Zoë", "~ok\\ 100%"}); err != nil {
		t.Fatal(err)
	}
	want := [2]string{"Welcome, Zo?    ", "~ok\\ 100%       "}
	if got := displaytest.ReadText(emu.Image()); got != want {
		t.Errorf("OLED reads %q, want %q", got, want)
	}
}

// Each character stays inside its cell, which ReadText relies on.
func TestTextCellHoldsItsCharacter(t *testing.T) {
	for _, h := range []int{32, 64} {
		for c := rune(0x20); c < 0x7F; c++ {
			for _, pos := range [][2]int{{0, 0}, {0, 15}, {1, 0}, {1, 7}} {
				var lines [2]string
				lines[pos[0]] = strings.Repeat(" ", pos[1]) + string(c)
				img := textImage(t, lines, h)
				cell := display.TextCell(h, pos[0], pos[1])
				for y := range h {
					for x := range display.OLEDWidth {
						if img.BitAt(x, y) == image1bit.On && !(image.Pt(x, y).In(cell)) {
							t.Fatalf("128x%d: %q at %v has pixel (%d,%d) outside %v", h, c, pos, x, y, cell)
						}
					}
				}
			}
		}
	}
}

// A changed line rewrites its own pages only; unchanged lines cost nothing.
func TestOLEDWritesWhatChanged(t *testing.T) {
	for _, h := range []int{32, 64} {
		emu := displaytest.NewOLED(0x3C, h)
		rec := &i2ctest.Record{Bus: emu}
		d, err := display.NewOLED(rec, 0x3C, &display.OLEDOpts{Height: h})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Show([2]string{"Enter PIN", "***"}); err != nil {
			t.Fatal(err)
		}
		for _, lines := range [][2]string{{"Enter PIN", "***"}, {"Enter PIN    ", "***"}} {
			n := len(rec.Ops)
			if err := d.Show(lines); err != nil {
				t.Fatal(err)
			}
			if len(rec.Ops) != n {
				t.Errorf("128x%d: unchanged Show(%q) cost %d transactions", h, lines, len(rec.Ops)-n)
			}
		}
		n := len(rec.Ops)
		if err := d.Show([2]string{"Enter PIN", "****"}); err != nil {
			t.Fatal(err)
		}
		var pages []byte
		data := 0
		for _, op := range rec.Ops[n:] {
			if op.W[0] == 0x00 && op.W[1]&0xF8 == 0xB0 {
				pages = append(pages, op.W[1]&7)
			}
			if op.W[0] == 0x40 {
				data += len(op.W) - 1
			}
		}
		want := []byte{2, 3}
		if h == 64 {
			want = []byte{5, 6}
		}
		if string(pages) != string(want) || data > 2*7 {
			t.Errorf("128x%d: one more digit wrote pages %v, %d data bytes; want pages %v and at most one 7-column cell each", h, pages, data, want)
		}
		checkOLED(t, emu, [2]string{"Enter PIN", "****"}, h)
	}
}

func TestOLEDHalt(t *testing.T) {
	d, emu := newOLED(t, 0x3C, 32)
	lines := [2]string{"Door open", ""}
	if err := d.Show(lines); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if emu.On() {
		t.Error("display on after Halt")
	}
	if err := d.Show(lines); err != nil {
		t.Fatal(err)
	}
	if !emu.On() {
		t.Error("display off after Show")
	}
	checkOLED(t, emu, lines, 32)
}

// A display unplugged fails Show; plugged back in (and so reset: the
// OLED's GDDRAM holds noise), the next Show initialises it again and shows
// the whole text.
func TestComesBack(t *testing.T) {
	lcd, lcdEmu := newLCD(t)
	oled, oledEmu := newOLED(t, 0x3C, 32)
	for _, tc := range []struct {
		chip string
		show func([2]string) error
		emu  interface {
			Disconnect()
			Connect()
		}
		check func(lines [2]string)
	}{
		{"hd44780", lcd.Show, lcdEmu, func(lines [2]string) {
			checkLCD(t, lcdEmu, [2]string{fmt.Sprintf("%-16s", lines[0]), fmt.Sprintf("%-16s", lines[1])})
		}},
		{"ssd1306", oled.Show, oledEmu, func(lines [2]string) { checkOLED(t, oledEmu, lines, 32) }},
	} {
		if err := tc.show([2]string{"Enter PIN", "*"}); err != nil {
			t.Fatal(err)
		}
		tc.emu.Disconnect()
		err := tc.show([2]string{"Enter PIN", "**"})
		if !errors.Is(err, displaytest.ErrNoDevice) || !strings.HasPrefix(err.Error(), tc.chip+": ") {
			t.Fatalf("Show on an unplugged %s: %v", tc.chip, err)
		}
		tc.emu.Connect()
		if err := tc.show([2]string{"Enter PIN", "**"}); err != nil {
			t.Fatal(err)
		}
		tc.check([2]string{"Enter PIN", "**"})
	}
}

func TestNewOLEDErrors(t *testing.T) {
	emu := displaytest.NewOLED(0x3C, 32)
	if _, err := display.NewOLED(emu, 0x3D, nil); !errors.Is(err, displaytest.ErrNoDevice) || !strings.Contains(err.Error(), "0x3d") {
		t.Errorf("NewOLED at an address without a display: %v", err)
	}
	if _, err := display.NewOLED(emu, 0x27, nil); err == nil || !strings.Contains(err.Error(), "0x3c or 0x3d") {
		t.Errorf("NewOLED at 0x27: %v", err)
	}
	if _, err := display.NewOLED(emu, 0x3C, &display.OLEDOpts{Height: 48}); err == nil || !strings.Contains(err.Error(), "height 48") {
		t.Errorf("NewOLED 48 high: %v", err)
	}
	// A 64-row setup on a 32-row panel is seen by the panel.
	if _, err := display.NewOLED(emu, 0x3C, &display.OLEDOpts{Height: 64}); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(emu.Errors()...); err == nil || !strings.Contains(err.Error(), "multiplex ratio 64") {
		t.Errorf("a 128x64 setup on a 32-row panel: %v", err)
	}
}
