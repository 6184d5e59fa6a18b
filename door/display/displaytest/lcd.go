package displaytest

import (
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// The backpack's wiring: PCF8574 port bit to LCD pin.
const (
	pRS = 1 << 0
	pRW = 1 << 1
	pE  = 1 << 2
	pBL = 1 << 3
)

// LCD is a 16×2 HD44780 LCD behind a PCF8574 backpack on its own I²C bus.
// It decodes the port's writes as the LCD's pins: D4–D7 are latched on E's
// falling edge, as one nibble of an instruction or a character. It starts
// as the chips do at power-on: the PCF8574's port all high, the HD44780
// with an 8-bit interface, one line, the display off and DDRAM filled with
// spaces.
type LCD struct {
	device
	port      byte // the PCF8574's port
	fourBit   bool // DL=0
	twoLines  bool // N=1
	pending   int  // the upper nibble of a 4-bit byte, or -1
	pendingRS bool
	on        bool // D=1
	incr      bool // I/D=1
	ddram     [0x68]byte
	ac        int  // address counter
	cgram     bool // data goes to CGRAM (after Set CGRAM Address)
}

var _ i2c.Bus = (*LCD)(nil)

// NewLCD returns an LCD whose backpack answers on addr (0x27 is the usual
// one).
func NewLCD(addr uint16) *LCD {
	l := &LCD{device: device{chip: "hd44780", addr: addr, maxHz: 100 * physic.KiloHertz}}
	l.device.reset = l.reset
	l.reset()
	return l
}

// reset is the power-on state.
func (l *LCD) reset() {
	l.port, l.fourBit, l.twoLines, l.pending, l.on, l.incr, l.ac, l.cgram = 0xFF, false, false, -1, false, true, 0, false
	for i := range l.ddram {
		l.ddram[i] = ' '
	}
}

// Tx implements i2c.Bus: each byte written sets the PCF8574's port; a read
// returns the port's levels (the LCD never drives its data lines here: RW
// reads are not emulated).
func (l *LCD) Tx(addr uint16, w, r []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.begin(addr, w); err != nil {
		return err
	}
	for _, b := range w {
		l.set(b)
	}
	for i := range r {
		r[i] = l.port
	}
	return nil
}

// set is one byte written to the port.
func (l *LCD) set(p byte) {
	old := l.port
	l.port = p
	if old&pE != 0 && p&pE != 0 && (old^p)&(pRS|pRW) != 0 {
		l.errorf("RS or RW changed while E was high (port %#02x to %#02x)", old, p)
	}
	if old&pE != 0 && p&pE == 0 {
		l.latch(old&0xF0, old&pRS != 0, old&pRW != 0)
	}
	if old&pE == 0 && p&pE != 0 && (old^p)&(pRS|pRW) != 0 {
		l.errorf("RS or RW changed with E's rising edge, before the address setup time (port %#02x to %#02x)", old, p)
	}
}

// latch takes D4–D7 (the upper bits of hi) on E's falling edge.
func (l *LCD) latch(hi byte, rs, rw bool) {
	if rw {
		// A read: the LCD drives D4–D7 against the port's weak highs.
		// Harmless, as when the port comes up all high at power-on; in
		// 4-bit mode it would take half a byte, which is not emulated.
		if l.fourBit {
			l.errorf("read cycle (RW high) in 4-bit mode: not emulated")
		}
		return
	}
	if !l.fourBit {
		// 8-bit interface: D0–D3 are not wired and read as low.
		if rs {
			l.errorf("data %#02x written while the interface is 8-bit: D0–D3 are not wired", hi)
		}
		l.run(hi, rs)
		return
	}
	if l.pending < 0 {
		l.pending, l.pendingRS = int(hi), rs
		return
	}
	v := byte(l.pending) | hi>>4
	if l.pendingRS != rs {
		l.errorf("RS changed between the two halves of byte %#02x", v)
	}
	l.pending = -1
	l.run(v, rs)
}

// run executes an instruction or writes a character.
func (l *LCD) run(v byte, rs bool) {
	if rs {
		if l.cgram {
			l.step()
			return
		}
		l.ddram[l.ac] = v
		l.step()
		return
	}
	switch {
	case v&0x80 != 0: // Set DDRAM address
		a := int(v & 0x7F)
		if !l.validAddr(a) {
			l.errorf("set DDRAM address %#02x: not in this display's DDRAM (%s)", a, l.lineMode())
			return
		}
		l.ac, l.cgram = a, false
	case v&0x40 != 0: // Set CGRAM address
		l.cgram = true
	case v&0x20 != 0: // Function set
		l.fourBit = v&0x10 == 0
		l.twoLines = v&0x08 != 0
		if v&0x04 != 0 && l.twoLines {
			l.errorf("function set %#02x: 5×10 dots needs one line", v)
		}
		l.pending = -1
	case v&0x10 != 0: // Cursor or display shift
		if v&0x08 != 0 {
			l.errorf("display shift %#02x: not emulated", v)
			return
		}
		l.incr = v&0x04 != 0
		l.step()
		l.incr = true
	case v&0x08 != 0: // Display on/off control
		l.on = v&0x04 != 0
	case v&0x04 != 0: // Entry mode set
		l.incr = v&0x02 != 0
		if v&0x01 != 0 {
			l.errorf("entry mode %#02x: display shift on write not emulated", v)
		}
	case v&0x02 != 0: // Return home
		l.ac, l.cgram = 0, false
	case v == 0x01: // Clear display
		for i := range l.ddram {
			l.ddram[i] = ' '
		}
		l.ac, l.incr, l.cgram = 0, true, false
	default:
		l.errorf("instruction 0x00: not an HD44780 instruction")
	}
}

// validAddr reports whether a is a DDRAM address in the current line mode.
func (l *LCD) validAddr(a int) bool {
	if l.twoLines {
		return a <= 0x27 || a >= 0x40 && a <= 0x67
	}
	return a <= 0x4F
}

func (l *LCD) lineMode() string {
	if l.twoLines {
		return "two-line mode: 0x00-0x27 and 0x40-0x67"
	}
	return "one-line mode: 0x00-0x4f"
}

// step moves the address counter after a write, wrapping as the HD44780
// does from the end of one line to the start of the other.
func (l *LCD) step() {
	if l.cgram {
		return
	}
	if l.incr {
		l.ac++
	} else {
		l.ac--
	}
	if !l.twoLines {
		l.ac = (l.ac + 0x50) % 0x50
		return
	}
	switch l.ac {
	case 0x28:
		l.ac = 0x40
	case 0x68:
		l.ac = 0x00
	case -1:
		l.ac = 0x67
	case 0x3F:
		l.ac = 0x27
	}
}

// Text returns the two lines the LCD shows: DDRAM 0x00–0x0F and 0x40–0x4F
// in two-line mode, spaces while the display is off. A one-line display
// shows only the first.
func (l *LCD) Text() [2]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t [2]string
	for i := range t {
		line := make([]byte, 16)
		for j := range line {
			line[j] = ' '
			if l.on && (i == 0 || l.twoLines) {
				line[j] = l.ddram[i*0x40+j]
			}
		}
		t[i] = string(line)
	}
	return t
}

// Backlight reports whether the backlight is on.
func (l *LCD) Backlight() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.port&pBL != 0
}

// On reports whether the display is on.
func (l *LCD) On() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.on
}
