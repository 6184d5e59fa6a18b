package displaytest

import (
	"image"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ssd1306/image1bit"
)

// Addressing modes (command 0x20).
const (
	modeHorizontal = 0
	modeVertical   = 1
	modePage       = 2
)

// OLED is an SSD1306 controller with a 128-column panel of 32 or 64 rows
// on its own I²C bus. It keeps the controller's 128×64 GDDRAM from the
// command and data streams: the three addressing modes, the column and
// page ranges of horizontal and vertical mode, and the page and column
// start of page mode. As the datasheet gives them, Set Page Start Address
// (0xB0–0xB7) and Set Lower/Higher Column Start Address (0x00–0x1F) act
// in page addressing mode only; in the other modes they change nothing.
//
// When the display is turned on (0xAF) it checks the settings a panel of
// its height needs (the multiplex ratio, the COM pins configuration, the
// charge pump) and records each one that is wrong. Scrolling, a display
// offset and a start line other than 0 are recorded as not emulated.
type OLED struct {
	device
	height int

	ram      [8][128]byte
	mode     int
	col, pg  int // the address pointers
	colStart int // the column start of page mode (0x00–0x1F)
	colLo    int // horizontal and vertical mode's column range (0x21)
	colHi    int
	pgLo     int // and page range (0x22)
	pgHi     int
	on       bool
	mux      int  // multiplex ratio + 1
	comPins  byte // 0xDA's parameter
	pump     bool // charge pump enabled
	cmd      []byte
}

var _ i2c.Bus = (*OLED)(nil)

// NewOLED returns an SSD1306 answering on addr (0x3C or 0x3D) with a
// panel height rows high (32 or 64). The controller starts in its reset
// state: page addressing mode, display off; its GDDRAM holds a
// checkerboard, as a real one holds noise, until it is written.
func NewOLED(addr uint16, height int) *OLED {
	o := &OLED{device: device{chip: "ssd1306", addr: addr, maxHz: 400 * physic.KiloHertz}, height: height}
	o.device.reset = o.reset
	o.reset()
	return o
}

// reset is the power-on state.
func (o *OLED) reset() {
	o.mode, o.col, o.pg, o.colStart = modePage, 0, 0, 0
	o.colLo, o.colHi, o.pgLo, o.pgHi = 0, 127, 0, 7
	o.on, o.mux, o.comPins, o.pump, o.cmd = false, 64, 0x12, false, o.cmd[:0]
	for p := range o.ram {
		for c := range o.ram[p] {
			o.ram[p][c] = 0x55 << (c & 1)
		}
	}
}

// Tx implements i2c.Bus. A write starts with a control byte: Co (0x80)
// clear makes the rest one stream, of commands (D/C# 0x40 clear) or of
// GDDRAM data (set); Co set makes the control byte apply to the next byte
// alone, followed by another control byte. A read returns the status byte
// (bit 6: display off).
func (o *OLED) Tx(addr uint16, w, r []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.begin(addr, w); err != nil {
		return err
	}
	for i := range r {
		r[i] = 0
		if !o.on {
			r[i] = 0x40
		}
	}
	for len(w) > 0 {
		ctl := w[0]
		w = w[1:]
		if ctl&0x3F != 0 {
			o.errorf("control byte %#02x: the low six bits must be 0", ctl)
			return nil
		}
		n := len(w)
		if ctl&0x80 != 0 && n > 0 {
			n = 1
		}
		if ctl&0x40 != 0 {
			for _, b := range w[:n] {
				o.data(b)
			}
		} else {
			for _, b := range w[:n] {
				o.command(b)
			}
		}
		w = w[n:]
	}
	if len(o.cmd) > 0 {
		o.errorf("command %#02x: its parameters did not follow in the same transaction", o.cmd[0])
		o.cmd = o.cmd[:0]
	}
	return nil
}

// params is how many parameter bytes follow each command that takes any.
var params = map[byte]int{
	0x81: 1, 0x8D: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xDA: 1,
	0xD5: 1, 0xD9: 1, 0xDB: 1, 0xA3: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5,
}

// command takes one command byte, gathering a command's parameters.
func (o *OLED) command(b byte) {
	o.cmd = append(o.cmd, b)
	if len(o.cmd)-1 < params[o.cmd[0]] {
		return
	}
	c := o.cmd
	o.cmd = o.cmd[:0]
	switch op := c[0]; {
	case op <= 0x0F: // lower column start, page mode
		if o.mode == modePage {
			o.colStart = o.colStart&0xF0 | int(op)
			o.col = o.colStart
		}
	case op <= 0x1F: // higher column start, page mode
		if o.mode == modePage {
			o.colStart = o.colStart&0x0F | int(op&0x07)<<4
			o.col = o.colStart
		}
	case op == 0x20:
		if c[1]&0x03 == 3 {
			o.errorf("addressing mode %#02x: invalid", c[1])
			return
		}
		o.mode = int(c[1] & 0x03)
	case op == 0x21:
		o.colLo, o.colHi = int(c[1]&0x7F), int(c[2]&0x7F)
		o.col = o.colLo
	case op == 0x22:
		o.pgLo, o.pgHi = int(c[1]&0x07), int(c[2]&0x07)
		o.pg = o.pgLo
	case op >= 0xB0 && op <= 0xB7: // page start, page mode
		if o.mode == modePage {
			o.pg = int(op & 0x07)
		}
	case op == 0x40: // start line 0
	case op > 0x40 && op <= 0x7F:
		o.errorf("display start line %d: not emulated", op&0x3F)
	case op == 0xD3:
		if c[1] != 0 {
			o.errorf("display offset %d: not emulated", c[1])
		}
	case op == 0xA8:
		o.mux = int(c[1]&0x3F) + 1
		if o.mux < 16 {
			o.errorf("multiplex ratio %d: below the minimum 16", o.mux)
		}
	case op == 0xDA:
		o.comPins = c[1]
	case op == 0x8D:
		o.pump = c[1]&0x04 != 0
	case op == 0xAE:
		o.on = false
	case op == 0xAF:
		o.on = true
		o.checkPanel()
	case op == 0x2E: // deactivate scroll
	case op == 0x2F, op == 0x26, op == 0x27, op == 0x29, op == 0x2A, op == 0xA3:
		o.errorf("scrolling command %#02x: not emulated", op)
	case op == 0x81, op == 0xA0, op == 0xA1, op == 0xA4, op == 0xA5, op == 0xA6, op == 0xA7,
		op == 0xC0, op == 0xC8, op == 0xD5, op == 0xD9, op == 0xDB, op == 0xE3:
		// Contrast, remaps, entire display on, inversion, clock, precharge,
		// VCOMH, NOP: they change how GDDRAM looks on the panel, not
		// GDDRAM.
	default:
		o.errorf("command %#02x: not an SSD1306 command", op)
	}
}

// checkPanel records the settings that would not show this panel's rows.
func (o *OLED) checkPanel() {
	if o.mux != o.height {
		o.errorf("display on with multiplex ratio %d on a %d-row panel", o.mux, o.height)
	}
	want := byte(0x12) // alternative COM pin configuration
	if o.height == 32 {
		want = 0x02 // sequential
	}
	if o.comPins&0x12 != want {
		o.errorf("display on with COM pins configuration %#02x on a %d-row panel, which is wired for %#02x: rows would be lost", o.comPins, o.height, want)
	}
	if !o.pump {
		o.errorf("display on without the charge pump: the panel stays dark")
	}
}

// data writes one byte of GDDRAM, eight rows of one column, and moves the
// pointers as the addressing mode does.
func (o *OLED) data(b byte) {
	o.ram[o.pg][o.col] = b
	switch o.mode {
	case modePage:
		// Within the page, back to column 0 after 127 (figure 10-2).
		advance(&o.col, 0, 127)
	case modeHorizontal:
		if advance(&o.col, o.colLo, o.colHi) {
			advance(&o.pg, o.pgLo, o.pgHi)
		}
	case modeVertical:
		if advance(&o.pg, o.pgLo, o.pgHi) {
			advance(&o.col, o.colLo, o.colHi)
		}
	}
}

// advance moves a pointer on within [lo, hi], and reports whether it
// wrapped back to lo.
func advance(p *int, lo, hi int) bool {
	*p++
	if *p > hi {
		*p = lo
		return true
	}
	return false
}

// Image returns the panel's rows of GDDRAM: 128 by the panel's height.
func (o *OLED) Image() *image1bit.VerticalLSB {
	o.mu.Lock()
	defer o.mu.Unlock()
	img := image1bit.NewVerticalLSB(image.Rect(0, 0, 128, o.height))
	for p := range o.height / 8 {
		copy(img.Pix[p*128:], o.ram[p][:])
	}
	return img
}

// On reports whether the display is on.
func (o *OLED) On() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.on
}
