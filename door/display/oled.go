package display

import (
	"fmt"
	"image"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/devices/v3/ssd1306"
	"periph.io/x/devices/v3/ssd1306/image1bit"
)

// OLEDWidth is the SSD1306 panels' width in pixels.
const OLEDWidth = 128

// The text layout: basicfont.Face7x13 cells, the 16 columns centred.
const (
	cellW   = 7
	cellH   = 13
	ascent  = 11
	marginX = (OLEDWidth - Width*cellW) / 2
)

// OLEDOpts are the OLED's options. The zero value is the default.
type OLEDOpts struct {
	// Height is the panel's height in pixels: 32 for the 0.91" modules
	// (the default), 64 for the 0.96" ones. A wrong height shows every
	// other pixel row or only half of the text.
	Height int
}

// CheckOLEDHeight checks a panel height given in OLEDOpts.
func CheckOLEDHeight(h int) error {
	if h != 32 && h != 64 {
		return fmt.Errorf("height %d: an SSD1306 panel is 32 (0.91\") or 64 (0.96\") pixels high", h)
	}
	return nil
}

// OLED is a 128×32 or 128×64 SSD1306 OLED on I²C, showing two lines of
// text. It uses periph's ssd1306 driver, which sends only the smallest
// rectangle of pixels that changed.
type OLED struct {
	mu     sync.Mutex
	bus    i2c.Bus // reaches addr whatever address the ssd1306 driver asks for
	addr   uint16
	height int
	dev    *ssd1306.Dev // nil before the first Show and after a failed write
	off    bool         // the display is off (Halt)
	img    *image1bit.VerticalLSB
	shown  screen // what GDDRAM holds, when dev is set
}

var _ conn.Resource = (*OLED)(nil)

// NewOLED initialises the SSD1306 at addr on bus (0x3C, or 0x3D: see
// CheckOLEDAddress) and leaves it blank and on.
func NewOLED(bus i2c.Bus, addr uint16, opts *OLEDOpts) (*OLED, error) {
	if err := CheckOLEDAddress(addr); err != nil {
		return nil, fmt.Errorf("ssd1306: %w", err)
	}
	var o OLEDOpts
	if opts != nil {
		o = *opts
	}
	if o.Height == 0 {
		o.Height = 32
	}
	if err := CheckOLEDHeight(o.Height); err != nil {
		return nil, fmt.Errorf("ssd1306: %w", err)
	}
	d := &OLED{bus: atAddr{Bus: bus, addr: addr}, addr: addr, height: o.Height,
		img: image1bit.NewVerticalLSB(image.Rect(0, 0, OLEDWidth, o.Height))}
	if err := d.show(blank); err != nil {
		return nil, fmt.Errorf("ssd1306 at %#02x on %s: %w (is it wired, and at this address?)", addr, bus, err)
	}
	return d, nil
}

// String implements conn.Resource.
func (d *OLED) String() string {
	return fmt.Sprintf("ssd1306 128x%d OLED at %#02x on %s", d.height, d.addr, d.bus.(atAddr).Bus)
}

// Show implements door.Display: it draws lines and sends the pixels that
// changed, nothing when the lines are the ones shown.
func (d *OLED) Show(lines [2]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.show(fit(lines)); err != nil {
		return fmt.Errorf("ssd1306: show: %w", err)
	}
	return nil
}

func (d *OLED) show(s screen) error {
	if d.dev != nil && !d.off && s == d.shown {
		return nil
	}
	if d.dev == nil {
		if err := d.init(); err != nil {
			return err
		}
	}
	if d.off {
		if err := d.command(0xAF); err != nil { // display on
			return err
		}
		d.off = false
	}
	drawText(d.img, s)
	if err := d.dev.Draw(d.img.Rect, d.img, image.Point{}); err != nil {
		d.dev = nil
		return err
	}
	d.shown = s
	return nil
}

// init sets the controller up; the first Draw after it sends every page.
func (d *OLED) init() error {
	dev, err := ssd1306.NewI2C(d.bus, &ssd1306.Opts{W: OLEDWidth, H: d.height,
		// 128×32 modules wire the COM pins in sequence, 128×64 ones
		// alternately (datasheet §10.1.18, command 0xDA).
		Sequential: d.height == 32})
	if err != nil {
		return err
	}
	// The driver's init leaves horizontal addressing mode, but its Draw
	// places each page with Set Page Start Address and Set Column Start
	// Address, which the datasheet gives for page addressing mode only: in
	// horizontal mode a partial update would land where the previous write
	// ended. Page addressing mode makes them take effect.
	if err := d.command(0x20, 0x02); err != nil {
		return err
	}
	d.dev, d.off = dev, false
	return nil
}

// command sends one command with its parameters.
func (d *OLED) command(c ...byte) error {
	if err := d.bus.Tx(d.addr, append([]byte{0x00}, c...), nil); err != nil {
		d.dev = nil
		return err
	}
	return nil
}

// Halt implements conn.Resource: it turns the display off (Set Display
// OFF, 0xAE). GDDRAM keeps the picture, which the next Show turns on again.
func (d *OLED) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.command(0xAE); err != nil {
		return fmt.Errorf("ssd1306: halt: %w", err)
	}
	d.off = true
	return nil
}

// TextImage is lines as an OLED of the given height (32 or 64) shows them,
// after the same replacements and cuts as Show: each line in the middle of
// its half of the screen, in basicfont.Face7x13, the 16 columns centred.
func TextImage(lines [2]string, height int) (*image1bit.VerticalLSB, error) {
	if err := CheckOLEDHeight(height); err != nil {
		return nil, err
	}
	img := image1bit.NewVerticalLSB(image.Rect(0, 0, OLEDWidth, height))
	drawText(img, fit(lines))
	return img, nil
}

// TextCell is the rectangle of a TextImage of the given height that holds
// the character at line (0 or 1) and column (0 to 15); no pixel of that
// character lies outside it.
func TextCell(height, line, col int) image.Rectangle {
	top := lineTop(height, line)
	x := marginX + col*cellW
	return image.Rect(x, top, x+cellW, top+cellH)
}

// lineTop is the first pixel row of a line's cells: the 16 rows from one
// above it are whole 8-row pages, so that a line changes only its own.
func lineTop(height, line int) int {
	band := height / 2
	return line*band + (band-16)/2 + 1
}

// drawText clears img and draws s into it.
func drawText(img *image1bit.VerticalLSB, s screen) {
	clear(img.Pix)
	h := img.Rect.Dy()
	for i := range s {
		dr := font.Drawer{Dst: img, Src: image.NewUniform(image1bit.On), Face: basicfont.Face7x13,
			Dot: fixed.P(marginX, lineTop(h, i)+ascent)}
		dr.DrawString(string(s[i][:]))
	}
}

// atAddr sends every transaction to addr: ssd1306.NewI2C always asks for
// 0x3C, and a module can be set to 0x3D.
type atAddr struct {
	i2c.Bus
	addr uint16
}

// Tx implements i2c.Bus.
func (b atAddr) Tx(_ uint16, w, r []byte) error { return b.Bus.Tx(b.addr, w, r) }
