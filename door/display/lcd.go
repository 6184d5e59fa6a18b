package display

import (
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
)

// The PCF8574 backpack's port bits. P1, RW, stays low: the driver only
// writes.
const (
	portRS = 1 << 0 // register select: 0 instruction, 1 data
	portE  = 1 << 2 // enable: the HD44780 latches D4–D7 as it falls
	portBL = 1 << 3 // backlight transistor
)

// HD44780 instructions (datasheet table 6) and the flags the driver uses.
const (
	cmdClear      = 0x01
	cmdEntryMode  = 0x04
	entryIncr     = 0x02 // cursor moves right after each character
	cmdDisplay    = 0x08
	displayOn     = 0x04 // cursor and blink stay off
	cmdFunction   = 0x20
	function8Bit  = 0x10
	function2Line = 0x08
	cmdDDRAM      = 0x80
	line2Addr     = 0x40 // DDRAM address of the second line
)

// Start-up times, from the datasheet's initialisation by instruction, with
// a margin.
const (
	lcdPowerOn = 50 * time.Millisecond  // more than 40 ms after VCC reaches 2.7 V
	lcdWait1   = 5 * time.Millisecond   // more than 4.1 ms after the first function set
	lcdWait2   = 150 * time.Microsecond // more than 100 µs after the second
	lcdClear   = 2 * time.Millisecond   // clear display takes 1.52 ms
)

// LCDOpts are the LCD's options. The zero value is the default.
type LCDOpts struct {
	// Sleep waits out the controller's start-up times, about 60 ms in all,
	// in NewLCD and in the Show that follows a failed write. Nil means
	// time.Sleep.
	Sleep func(time.Duration)
}

// LCD is a 16×2 HD44780 character LCD behind a PCF8574 I²C backpack.
//
// The driver writes the backpack's port a whole byte at a time, several
// bytes to one I²C transaction: each 4-bit half of an instruction or a
// character is two bytes, D4–D7 with E high and then with E low, plus one
// byte before them, with E low, when RS changes. At the PCF8574's 100 kHz
// each byte takes 90 µs, longer than any instruction Show sends takes to
// run (37 µs), so the driver never reads the busy flag and RW stays low.
type LCD struct {
	mu    sync.Mutex
	dev   i2c.Dev
	sleep func(time.Duration)
	port  byte   // the backpack's port as last written
	ready bool   // initialised: shown is what DDRAM holds
	on    bool   // display and backlight on; false after Halt
	shown screen // what DDRAM holds, when ready
}

var _ conn.Resource = (*LCD)(nil)

// NewLCD initialises the LCD behind the backpack at addr on bus (0x27, or
// 0x3F for a PCF8574A: see CheckLCDAddress) and leaves it blank with the
// backlight on. It takes about 60 ms.
func NewLCD(bus i2c.Bus, addr uint16, opts *LCDOpts) (*LCD, error) {
	if err := CheckLCDAddress(addr); err != nil {
		return nil, fmt.Errorf("hd44780: %w", err)
	}
	var o LCDOpts
	if opts != nil {
		o = *opts
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	l := &LCD{dev: i2c.Dev{Bus: bus, Addr: addr}, sleep: o.Sleep}
	if err := l.init(); err != nil {
		return nil, fmt.Errorf("hd44780 backpack at %#02x on %s: %w (is it wired, and at this address?)", addr, bus, err)
	}
	return l, nil
}

// String implements conn.Resource.
func (l *LCD) String() string {
	return fmt.Sprintf("hd44780 16x2 LCD at %#02x on %s", l.dev.Addr, l.dev.Bus)
}

// Show implements door.Display: it writes the characters of lines that
// differ from what the LCD shows, all in one I²C transaction, and nothing
// when none does.
func (l *LCD) Show(lines [2]string) error {
	s := fit(lines)
	for i := range s {
		for j, c := range s[i] {
			s[i][j] = lcdChar(c)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready && l.on && s == l.shown {
		return nil
	}
	if !l.ready {
		if err := l.init(); err != nil {
			return fmt.Errorf("hd44780: show: %w", err)
		}
	}
	f := lcdFrame{port: l.port | portBL}
	if !l.on {
		f.instr(cmdDisplay | displayOn)
	}
	for i := range s {
		first, last := changed(&l.shown[i], &s[i])
		if first < 0 {
			continue
		}
		f.instr(cmdDDRAM | byte(i*line2Addr+first))
		for _, c := range s[i][first : last+1] {
			f.data(c)
		}
	}
	if err := l.write(f); err != nil {
		return fmt.Errorf("hd44780: show: %w", err)
	}
	l.shown, l.on = s, true
	return nil
}

// Halt implements conn.Resource: it turns the display and the backlight
// off. DDRAM keeps the text, which the next Show turns on again.
func (l *LCD) Halt() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := lcdFrame{port: l.port}
	f.instr(cmdDisplay)
	f.port &^= portBL
	f.b = append(f.b, f.port)
	if err := l.write(f); err != nil {
		return fmt.Errorf("hd44780: halt: %w", err)
	}
	l.on = false
	return nil
}

// init runs the HD44780's initialisation by instruction for a 4-bit
// interface, which works whatever state the controller is in (just powered,
// or halfway through a byte), and leaves it blank and on.
func (l *LCD) init() error {
	l.ready = false
	// E and RS low, backlight on; the first write finds the backpack.
	if err := l.write(lcdFrame{port: portBL, b: []byte{portBL}}); err != nil {
		return err
	}
	l.sleep(lcdPowerOn)
	// Function set "8-bit" three times, as single nibbles: the controller
	// reads D4–D7 as the upper half of an 8-bit instruction.
	for _, wait := range []time.Duration{lcdWait1, lcdWait2} {
		f := lcdFrame{port: l.port}
		f.nibble(cmdFunction|function8Bit, false)
		if err := l.write(f); err != nil {
			return err
		}
		l.sleep(wait)
	}
	f := lcdFrame{port: l.port}
	f.nibble(cmdFunction|function8Bit, false)
	f.nibble(cmdFunction, false) // now 4-bit: every byte is two nibbles
	f.instr(cmdFunction | function2Line)
	f.instr(cmdDisplay)
	f.instr(cmdClear)
	if err := l.write(f); err != nil {
		return err
	}
	l.sleep(lcdClear)
	f = lcdFrame{port: l.port}
	f.instr(cmdEntryMode | entryIncr)
	f.instr(cmdDisplay | displayOn)
	if err := l.write(f); err != nil {
		return err
	}
	l.shown, l.ready, l.on = blank, true, true
	return nil
}

// write sends a frame to the backpack in one transaction. After a failure
// the LCD's state is unknown, and the next Show initialises it again.
func (l *LCD) write(f lcdFrame) error {
	if len(f.b) == 0 {
		return nil
	}
	if err := l.dev.Tx(f.b, nil); err != nil {
		l.ready = false
		return err
	}
	l.port = f.port
	return nil
}

// lcdFrame builds the port bytes of one write to the backpack.
type lcdFrame struct {
	b    []byte
	port byte // the port after the last byte of b
}

// nibble clocks the upper four bits of v into the HD44780.
func (f *lcdFrame) nibble(v byte, rs bool) {
	p := v&0xF0 | f.port&portBL
	if rs {
		p |= portRS
	}
	if (p^f.port)&portRS != 0 {
		// RS settles while E is low before E rises.
		f.b = append(f.b, p)
	}
	f.b = append(f.b, p|portE, p)
	f.port = p
}

// instr sends an instruction, upper half first.
func (f *lcdFrame) instr(v byte) {
	f.nibble(v, false)
	f.nibble(v<<4, false)
}

// data writes a character at the cursor.
func (f *lcdFrame) data(c byte) {
	f.nibble(c, true)
	f.nibble(c<<4, true)
}

// changed returns the first and last columns in which a and b differ, or
// -1, -1.
func changed(a, b *[Width]byte) (first, last int) {
	first, last = -1, -1
	for i := range a {
		if a[i] != b[i] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// lcdChar maps printable ASCII to the HD44780's character ROM (A00, the
// common Japanese one), which has a yen sign for '\' and arrows for '~'.
func lcdChar(c byte) byte {
	if c == '\\' || c == '~' {
		return '?'
	}
	return c
}
