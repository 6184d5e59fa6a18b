package keypadtest

import (
	"fmt"
	"slices"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Chip is an I²C I/O expander that Expander emulates.
type Chip string

// The chips Expander emulates, and the pin numbers NewExpander takes for
// them.
const (
	// PCF8574 has 8 quasi-bidirectional pins, P0–P7 (pins 0–7), at
	// 0x20–0x27. A 1 written to a pin is a weak pull-up (an input), a 0
	// drives it low; a write sets the whole port, a read returns it.
	PCF8574 Chip = "PCF8574"
	// PCF8574A is the PCF8574 at 0x38–0x3F.
	PCF8574A Chip = "PCF8574A"
	// PCF8575 is the 16-pin PCF8574, at 0x20–0x27: P00–P07 are pins 0–7
	// and P10–P17 pins 8–15. It reads and writes two bytes, P0x first.
	PCF8575 Chip = "PCF8575"
	// MCP23008 has 8 pins, GP0–GP7 (pins 0–7), at 0x20–0x27, and
	// registers: IODIR (1 = input), GPPU (pull-ups), OLAT, GPIO and the
	// interrupt-on-change registers.
	MCP23008 Chip = "MCP23008"
	// MCP23017 has 16 pins in two ports, GPA0–GPA7 (pins 0–7) and
	// GPB0–GPB7 (pins 8–15), at 0x20–0x27, with the MCP23008's registers
	// for each port, interleaved (IOCON.BANK = 0, the power-on mapping).
	MCP23017 Chip = "MCP23017"
)

// MCP230xx register indexes within a port, in the order of the MCP23008's
// addresses; the MCP23017's BANK = 0 address of register k of port p is
// 2k+p.
const (
	regIODIR = iota
	regIPOL
	regGPINTEN
	regDEFVAL
	regINTCON
	regIOCON
	regGPPU
	regINTF
	regINTCAP
	regGPIO
	regOLAT
	nReg
)

// IOCON bits.
const (
	ioconINTPOL = 1 << 1 // INT active high (when not open-drain)
	ioconODR    = 1 << 2 // INT open-drain
	ioconSEQOP  = 1 << 5 // the address pointer does not advance
	ioconMIRROR = 1 << 6 // INTA and INTB both report either port
	ioconBANK   = 1 << 7 // the other register mapping: not emulated
)

var regNames = [nReg]string{"IODIR", "IPOL", "GPINTEN", "DEFVAL", "INTCON", "IOCON", "GPPU", "INTF", "INTCAP", "GPIO", "OLAT"}

// BusStats counts an Expander's I²C traffic at its address.
type BusStats struct {
	// Transactions is the number of Tx calls: each is one I²C transfer
	// from START to STOP (a write then a read is one, with a repeated
	// START between them).
	Transactions int64
	// Bytes is the bytes on the wire, acknowledged by either side: the
	// address byte of each direction and every data byte.
	Bytes int64
}

// Expander is an emulated I²C GPIO expander with the wires of an emulated
// keypad (a Matrix) on its pins. It implements periph's i2c.Bus, answering
// at its own address, so periph's own drivers (pcf857x, mcp23xxx) talk to
// it as to the chip; what they write drives the keypad's rows and columns,
// and what they read is the keypad's levels. The Matrix's Tap and TypeKeys
// then wait for the driver's scans through the expander as they do for
// scans of its own pins.
//
// An Expander shares its Matrix's lock and is safe for concurrent use. A
// transfer to another address fails as a missing device does (no
// acknowledge); a write the chip would not take (a register that does not
// exist, a read-only register, an odd byte to a PCF8575) is recorded in
// Faults, never a panic. Pins with no keypad wire read what the chip would
// make of them: high when written 1 or pulled up, low when driven low or
// floating.
type Expander struct {
	m      *Matrix
	chip   Chip
	addr   uint16
	width  int
	wires  []*Pin // by expander pin: the keypad wire on it, nil if none
	isCol  []bool // by expander pin: the wire is a column
	intr   [2]*Pin
	stats  BusStats
	faults []string
	inTx   bool // a transfer is under way

	// PCF857x.
	latch uint16 // written: 1 = weak pull-up, 0 = driven low
	snap  uint16 // levels at the last read or write: INT is low while they differ

	// MCP230xx, by port.
	reg   [2][nReg]byte
	iocon byte
	ptr   byte
	prev  [2]byte // levels at the last look, for interrupt-on-change
}

// NewExpander returns chip at addr with keypad m's wires on its pins:
// row i of m on pin rows[i] and column j on pin cols[j], numbered as the
// Chip constants say (P0 is 0, GPB0 is 8). Every row and column of m must
// be wired, each pin at most once. The chip starts as at power-on: a
// PCF857x with every pin written 1, an MCP230xx with every pin an input
// without pull-up. From then on, drive m only through the expander.
func NewExpander(chip Chip, addr uint16, m *Matrix, rows, cols []int) (*Expander, error) {
	e := &Expander{m: m, chip: chip, addr: addr}
	base := uint16(0x20)
	switch chip {
	case PCF8574, MCP23008:
		e.width = 8
	case PCF8574A:
		e.width, base = 8, 0x38
	case PCF8575, MCP23017:
		e.width = 16
	default:
		return nil, fmt.Errorf("keypadtest: chip %q: want PCF8574, PCF8574A, PCF8575, MCP23008 or MCP23017", chip)
	}
	if addr&^7 != base {
		return nil, fmt.Errorf("keypadtest: %s at %#02x: its addresses are %#02x to %#02x", chip, addr, base, base+7)
	}
	if len(rows) != m.nr || len(cols) != m.nc {
		return nil, fmt.Errorf("keypadtest: %s: %d rows and %d columns wired, the keypad has %d and %d", chip, len(rows), len(cols), m.nr, m.nc)
	}
	e.wires = make([]*Pin, e.width)
	e.isCol = make([]bool, e.width)
	wire := func(n int, p *Pin, col bool) error {
		if n < 0 || n >= e.width {
			return fmt.Errorf("keypadtest: %s: %s on pin %d: the chip has pins 0 to %d", chip, p.name, n, e.width-1)
		}
		if e.wires[n] != nil {
			return fmt.Errorf("keypadtest: %s: pin %d has %s and %s", chip, n, e.wires[n].name, p.name)
		}
		e.wires[n], e.isCol[n] = p, col
		return nil
	}
	for i, n := range rows {
		if err := wire(n, m.rows[i], false); err != nil {
			return nil, err
		}
	}
	for i, n := range cols {
		if err := wire(n, m.cols[i], true); err != nil {
			return nil, err
		}
	}
	switch chip {
	case MCP23008:
		e.intr[0] = newPin(&m.mu, e, roleLine, "INT", 0)
	case MCP23017:
		e.intr[0] = newPin(&m.mu, e, roleLine, "INTA", 0)
		e.intr[1] = newPin(&m.mu, e, roleLine, "INTB", 1)
	default:
		e.intr[0] = newPin(&m.mu, e, roleLine, "INT", 0)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.isPCF() {
		e.latch = uint16(1)<<e.width - 1
	} else {
		e.reg[0][regIODIR], e.reg[1][regIODIR] = 0xFF, 0xFF
	}
	e.m.changed = append(e.m.changed, e.interrupt)
	e.drive()
	e.snap = e.levels()
	e.prev = [2]byte{byte(e.snap), byte(e.snap >> 8)}
	e.interrupt()
	return e, nil
}

// Interrupt returns the chip's interrupt output: INT, or INTA of an
// MCP23017. It is an input *Pin for the host side of the wire. A PCF857x's
// INT is open-drain: it reads high only with a pull-up (In with
// gpio.PullUp), and low while the port differs from what was last read or
// written. An MCP230xx's is driven, active low, unless IOCON says
// otherwise, while an enabled interrupt is not yet cleared by reading
// GPIO or INTCAP.
func (e *Expander) Interrupt() *Pin { return e.intr[0] }

// InterruptB returns an MCP23017's INTB, which reports port B (and port A
// with IOCON.MIRROR); nil for other chips.
func (e *Expander) InterruptB() *Pin { return e.intr[1] }

// String returns the chip and its address, such as "PCF8574@0x20".
func (e *Expander) String() string { return fmt.Sprintf("%s@%#02x", e.chip, e.addr) }

// SetSpeed accepts any speed: the emulation has no clock.
func (e *Expander) SetSpeed(physic.Frequency) error { return nil }

// Stats returns the traffic so far.
func (e *Expander) Stats() BusStats {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	return e.stats
}

// Faults returns the writes the chip would not have taken, in order.
func (e *Expander) Faults() []string {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	return slices.Clone(e.faults)
}

// Tx does one I²C transfer: w is written, then r read.
func (e *Expander) Tx(addr uint16, w, r []byte) error {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if addr != e.addr {
		return fmt.Errorf("keypadtest: %s: no device acknowledged address %#02x", e, addr)
	}
	e.stats.Transactions++
	if len(w) > 0 || len(r) == 0 {
		e.stats.Bytes += 1 + int64(len(w))
	}
	if len(r) > 0 {
		e.stats.Bytes += 1 + int64(len(r))
	}
	e.inTx = true
	if e.isPCF() {
		e.pcfTx(w, r)
	} else {
		e.mcpTx(w, r)
	}
	e.inTx = false
	e.interrupt()
	return nil
}

func (e *Expander) isPCF() bool {
	return e.chip == PCF8574 || e.chip == PCF8574A || e.chip == PCF8575
}

func (e *Expander) fault(format string, a ...any) {
	e.faults = append(e.faults, fmt.Sprintf("%s: ", e)+fmt.Sprintf(format, a...))
}

// pcfTx carries out a transfer to a PCF857x: each byte (each pair on a
// PCF8575) written sets the port, each read returns it; both reset INT.
func (e *Expander) pcfTx(w, r []byte) {
	n := e.width / 8
	if len(w)%n != 0 {
		e.fault("write of %d bytes: a PCF8575 takes bytes in pairs, P0x then P1x; the last byte was ignored", len(w))
	}
	for i := 0; i+n <= len(w); i += n {
		v := uint16(w[i])
		if n == 2 {
			v |= uint16(w[i+1]) << 8
		}
		e.latch = v
		e.drive()
		e.snap = e.levels()
	}
	for i := range r {
		if i%n == 0 {
			e.snap = e.levels()
			e.observeColumns(0, e.width)
		}
		r[i] = byte(e.snap >> (8 * (i % n)))
	}
}

// mcpTx carries out a transfer to an MCP230xx: the first byte written sets
// the register address, further bytes are written from there on, and reads
// go on from where the address stands, which advances after each byte
// unless IOCON.SEQOP is set.
func (e *Expander) mcpTx(w, r []byte) {
	if len(w) > 0 {
		if int(w[0]) >= e.nAddr() {
			e.fault("register address %#02x: the chip has 0x00 to %#02x; %d bytes ignored", w[0], e.nAddr()-1, len(w)-1+len(r))
			for i := range r {
				r[i] = 0
			}
			return
		}
		e.ptr = w[0]
		for _, b := range w[1:] {
			e.mcpWrite(b)
			e.advance()
		}
	}
	for i := range r {
		r[i] = e.mcpRead()
		e.advance()
	}
}

// nAddr is the number of register addresses.
func (e *Expander) nAddr() int { return nReg * e.width / 8 }

// at returns the register and port the address pointer is at.
func (e *Expander) at() (reg, port int) {
	if e.width == 16 {
		return int(e.ptr) / 2, int(e.ptr) % 2
	}
	return int(e.ptr), 0
}

func (e *Expander) advance() {
	if e.iocon&ioconSEQOP == 0 {
		e.ptr = byte((int(e.ptr) + 1) % e.nAddr())
	}
}

func (e *Expander) mcpWrite(b byte) {
	reg, port := e.at()
	switch reg {
	case regIOCON:
		if b&ioconBANK != 0 {
			e.fault("IOCON %#02x: BANK = 1 is not emulated; the bit was ignored", b)
			b &^= ioconBANK
		}
		e.iocon = b
	case regINTF, regINTCAP:
		e.fault("%s at %#02x is read-only; %#02x ignored", regNames[reg], e.ptr, b)
	case regGPIO:
		e.reg[port][regOLAT] = b
		e.drive()
	case regIODIR, regGPPU, regOLAT:
		e.reg[port][reg] = b
		e.drive()
	default:
		e.reg[port][reg] = b
	}
}

func (e *Expander) mcpRead() byte {
	reg, port := e.at()
	switch reg {
	case regIOCON:
		return e.iocon
	case regGPIO:
		e.observeColumns(8*port, 8*port+8)
		v := e.portLevels(port) ^ (e.reg[port][regIPOL] & e.reg[port][regIODIR])
		e.reg[port][regINTF] = 0
		e.mcpEval()
		return v
	case regINTCAP:
		v := e.reg[port][regINTCAP]
		e.reg[port][regINTF] = 0
		e.mcpEval()
		return v
	}
	return e.reg[port][reg]
}

// mcpEval latches the interrupt of each port whose enabled inputs changed
// since the last look (INTCON 0) or differ from DEFVAL (INTCON 1), unless
// one is already latched.
func (e *Expander) mcpEval() {
	for port := range e.width / 8 {
		rg := &e.reg[port]
		lv := e.portLevels(port)
		en := rg[regGPINTEN] & rg[regIODIR]
		cond := (lv^e.prev[port])&en&^rg[regINTCON] | (lv^rg[regDEFVAL])&en&rg[regINTCON]
		e.prev[port] = lv
		if cond != 0 && rg[regINTF] == 0 {
			rg[regINTF] = cond
			rg[regINTCAP] = lv ^ (rg[regIPOL] & rg[regIODIR])
		}
	}
}

// interrupt updates the INT outputs. It runs after every change of the
// keypad's levels; a PCF857x's INT waits for the end of a transfer, which
// resets it. m.mu is held.
func (e *Expander) interrupt() {
	if e.isPCF() {
		if e.inTx {
			return
		}
		e.intr[0].set(e.openDrain(e.levels() != e.snap, e.intr[0]))
		return
	}
	e.mcpEval()
	a, b := e.reg[0][regINTF] != 0, e.reg[1][regINTF] != 0
	if e.iocon&ioconMIRROR != 0 {
		a, b = a || b, a || b
	}
	for i, on := range []bool{a, b} {
		p := e.intr[i]
		switch {
		case p == nil:
		case e.iocon&ioconODR != 0:
			p.set(e.openDrain(on, p))
		default:
			p.set(gpio.Level(on == (e.iocon&ioconINTPOL != 0)))
		}
	}
}

// openDrain is the level of an open-drain output that pulls low when on:
// high only through the pull-up of the pin reading it.
func (e *Expander) openDrain(on bool, p *Pin) gpio.Level {
	return gpio.Level(!on && p.input && p.pull == gpio.PullUp)
}

// drive sets the keypad wires as the chip's pins drive them. m.mu is held.
func (e *Expander) drive() {
	for i, p := range e.wires {
		if p == nil {
			continue
		}
		driven, out, pull := e.pinDrive(i)
		p.input, p.driven, p.out, p.pull, p.edge = !driven, driven, out, pull, gpio.NoEdge
	}
	e.m.update()
}

// pinDrive returns what pin i does: drives out, or is an input with pull.
func (e *Expander) pinDrive(i int) (driven bool, out gpio.Level, pull gpio.Pull) {
	if e.isPCF() {
		if e.latch&(1<<i) == 0 {
			return true, gpio.Low, gpio.Float
		}
		return false, gpio.High, gpio.PullUp
	}
	rg, bit := &e.reg[i/8], byte(1)<<(i%8)
	if rg[regIODIR]&bit == 0 {
		return true, gpio.Level(rg[regOLAT]&bit != 0), gpio.Float
	}
	if rg[regGPPU]&bit != 0 {
		return false, gpio.High, gpio.PullUp
	}
	return false, gpio.High, gpio.Float
}

// levels returns every pin's level, bit i for pin i.
func (e *Expander) levels() uint16 {
	var v uint16
	for i := range e.width {
		if e.level(i) {
			v |= 1 << i
		}
	}
	return v
}

func (e *Expander) portLevels(port int) byte {
	return byte(e.levels() >> (8 * port))
}

// level returns pin i's level: its wire's, or for a pin with none, what the
// chip drives or pulls it to (a floating input reads low).
func (e *Expander) level(i int) gpio.Level {
	if p := e.wires[i]; p != nil {
		return p.level
	}
	driven, out, pull := e.pinDrive(i)
	if driven {
		return out
	}
	return gpio.Level(pull == gpio.PullUp)
}

// observeColumns tells the keypad that pins lo to hi-1 were read, for its
// count of the driver's scans.
func (e *Expander) observeColumns(lo, hi int) {
	for i := lo; i < hi; i++ {
		if e.isCol[i] {
			e.m.observe(e.wires[i])
		}
	}
}

// update is called by the interrupt pins when the host reconfigures them.
// m.mu is held.
func (e *Expander) update() { e.interrupt() }

// observe does nothing: reading an interrupt pin tells the chip nothing.
func (e *Expander) observe(*Pin) {}

var _ i2c.Bus = (*Expander)(nil)
