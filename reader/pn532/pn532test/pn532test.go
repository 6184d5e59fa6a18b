// Package pn532test is a PN532 that lives in memory: an spi.Port whose
// connections behave like the chip on the wire, for tests and for running
// latch without a reader.
//
// The emulator sees every byte as the chip would: bit-reversed when the
// host reverses in software, and as sent when the host's controller shifts
// LSB first. It answers status reads, acknowledges command frames and
// answers GetFirmwareVersion, SAMConfiguration, RFConfiguration,
// SetParameters, InListPassiveTarget (type A, 106 kbps), InDataExchange,
// InRelease, InDeselect, PowerDown and the Diagnose echo test with the
// frames of UM0701-02; other commands get the chip's error frame.
//
// Cards enter and leave its field at any time (Present, Remove), from any
// goroutine. Like a real card, a card that InListPassiveTarget selected
// does not answer another InListPassiveTarget until the field is switched
// off, it is released or deselected, or it leaves the field.
//
// Faults are injected with DropCommands, Busy, CorruptResponses,
// SyntaxErrors, LeaveStaleResponse, Unplug and Plug, PowerCycle and the
// reset pin. Everything is counted (Stats). All of it is deterministic:
// the chip is never slower than Opts.Latency plus, for a card's
// activation, Opts.RFTime, both zero by default and measured on the
// clock of the time package, which testing/synctest makes a fake one;
// Opts.ACKBusy and Opts.ResponseBusy count status reads instead.
//
// A frame may be read in several transactions, as the chip allows in SPI
// mode: the first read of a frame gets its first byte after the
// operation byte, and each further read of the same frame gets its next
// byte already under the operation byte, so that no byte is lost or sent
// twice. A host that reads past the end gets zeros.
package pn532test

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
)

// Opts configures a Chip.
type Opts struct {
	// Firmware is the answer to GetFirmwareVersion: IC, version, revision,
	// support. Zero means a PN532 v1.6: 32 01 06 07.
	Firmware [4]byte
	// AllowLSBFirst accepts a Connect with spi.LSBFirst. By default it is
	// refused, as a Raspberry Pi's SPI controller refuses it.
	AllowLSBFirst bool
	// LoseFirstCommand makes the chip ignore the first command frame after
	// each power-up (New, PowerCycle, Plug, a reset pulse) and after a wake
	// from power-down, as a PN532 leaving low-battery mode may.
	LoseFirstCommand bool
	// Latency is how long a command runs before its response is ready,
	// in real time. Zero: at once. Tests use Busy instead; the simulator
	// and the CPU benchmarks use this.
	Latency time.Duration
	// RFTime is how long activating a card takes on the RF, added to
	// Latency: from the moment InListPassiveTarget finds a card in the
	// field, or a card enters the field of a chip waiting for one, until
	// the answer is ready. The card counts as selected from that moment.
	// A PN532 needs about 2.4 ms for a 4-byte UID and 4.5 ms for a 7-byte
	// one. Zero: at once.
	RFTime time.Duration
	// ACKBusy and ResponseBusy are the status reads that find the chip
	// still busy before each ACK and each response is ready, as a real
	// chip is when the host looks at once. Busy overrides ResponseBusy for
	// one response. Like Busy they hold the IRQ line high too: a host on
	// the IRQ line leaves them at zero.
	ACKBusy, ResponseBusy int
}

// Card is a type A card for the field.
type Card struct {
	// UID is the card's UID: 4, 7 or 10 bytes.
	UID []byte
	// ATQA is the answer to request, first byte on the wire high. Zero
	// means the usual value for the UID's size: 0x0004, 0x0044 or 0x0084.
	ATQA uint16
	// SAK is the select acknowledge. A card with ATS gets bit 0x20.
	SAK byte
	// ATS is the answer to select of an ISO/IEC 14443-4 card, its length
	// byte first, or nil.
	ATS []byte
	// RandomUID makes the card a phone or privacy-mode card: at every
	// activation from a fresh field it answers with a new 4-byte UID
	// starting with 0x08. UID is ignored.
	RandomUID bool
	// APDU answers InDataExchange: req is what the host sent, status is
	// the PN532 status byte to report (0 for success; e.g. 0x01 for a card
	// that did not answer, 0x14 for failed authentication). Nil: the card
	// does not answer (status 0x01). It runs with the chip locked and must
	// not call the Chip's methods.
	APDU func(req []byte) (resp []byte, status byte)
}

// Stats counts what crossed the bus.
type Stats struct {
	// Tx is the number of SPI transactions (chip select cycles), Bytes the
	// bytes clocked in them (each is written and read at once).
	Tx, Bytes int
	// StatusReads, DataWrites and DataReads split Tx by operation byte.
	StatusReads, DataWrites, DataReads int
	// Commands is the number of command frames the chip acknowledged.
	Commands int
	// Aborts and NACKs count ACK and NACK frames from the host.
	Aborts, NACKs int
	// Dropped counts command frames the chip ignored: lost at power-up,
	// dropped by DropCommands, or sent while a response waited.
	Dropped int
	// Resets counts pulses on the reset pin (low, then high), PowerUps
	// every power-up.
	Resets, PowerUps int
}

type power int

const (
	powerOn power = iota
	powerAsleep
	powerReset
	powerUnplugged
)

type cardState int

const (
	cardIdle   cardState = iota // powered, answers activation
	cardActive                  // selected
	cardHalt                    // released or deselected
)

// Chip is an emulated PN532 on an SPI bus. It implements spi.PortCloser;
// Connect may be called more than once, each connection talking to the
// same chip (a host that restarts connects again). It is safe for
// concurrent use.
type Chip struct {
	mu sync.Mutex
	o  Opts
	fw [4]byte

	power    power
	miso     byte // what MISO reads while unplugged
	wakeLoss bool // the next command frame only wakes the chip
	drop     int  // command frames to ignore

	// configuration
	lowVbat    bool
	irqEnabled bool
	retries    byte // MxRtyPassiveActivation
	params     byte
	field      bool

	// exchange state
	out       []byte // frame being read by the host
	outIsACK  bool
	partial   bool // the host has read part of out
	readyAt   time.Time
	busy      int    // status reads before the response is ready; <0: never
	cmd       []byte // acknowledged command waiting for its ACK to be read
	waiting   []byte // InListPassiveTarget waiting for a card
	last      []byte // last response, for NACK
	sleepNext bool   // PowerDown: sleep once the response is read

	// faults
	busyNext int
	hasBusy  bool
	corrupt  int
	syntax   int

	card   *card
	tg     byte // 1 while a card is selected
	rnd    uint32
	stats  Stats
	cmds   []byte
	limit  physic.Frequency
	irq    *IRQPin
	reset  *ResetPin
	irqLow bool
}

type card struct {
	Card
	state cardState
	uid   []byte
}

// New returns a chip just powered up, with an empty field.
func New(opts *Opts) *Chip {
	c := &Chip{rnd: 0x2545F491}
	if opts != nil {
		c.o = *opts
	}
	c.fw = c.o.Firmware
	if c.fw == [4]byte{} {
		c.fw = [4]byte{0x32, 0x01, 0x06, 0x07}
	}
	c.irq = &IRQPin{c: c, edges: make(chan struct{}, 1)}
	c.reset = &ResetPin{c: c, level: gpio.High}
	c.powerUp()
	return c
}

// String names the port.
func (c *Chip) String() string { return "pn532test" }

// Close does nothing: the chip stays as it is.
func (c *Chip) Close() error { return nil }

// LimitSpeed records the highest clock the port may use.
func (c *Chip) LimitSpeed(f physic.Frequency) error {
	if f <= 0 {
		return errors.New("pn532test: LimitSpeed needs a positive frequency")
	}
	c.mu.Lock()
	c.limit = f
	c.mu.Unlock()
	return nil
}

// Connect opens a connection to the chip. Like the PN532 it takes SPI mode
// 0, 8 bits a word, at most 5 MHz; spi.LSBFirst only with
// Opts.AllowLSBFirst.
func (c *Chip) Connect(f physic.Frequency, mode spi.Mode, bits int) (spi.Conn, error) {
	switch {
	case bits != 8:
		return nil, fmt.Errorf("pn532test: %d bits per word, the PN532 takes 8", bits)
	case mode&spi.Mode3 != spi.Mode0:
		return nil, fmt.Errorf("pn532test: %s: the PN532 speaks SPI mode 0 only", mode)
	case mode&(spi.HalfDuplex|spi.NoCS) != 0:
		return nil, fmt.Errorf("pn532test: %s: the PN532 needs full duplex and chip select", mode)
	case mode&spi.LSBFirst != 0 && !c.o.AllowLSBFirst:
		return nil, errors.New("pn532test: this SPI controller cannot shift LSB first")
	case f > 5*physic.MegaHertz:
		return nil, fmt.Errorf("pn532test: %s is above the PN532's 5MHz", f)
	}
	return &spiConn{c: c, lsb: mode&spi.LSBFirst != 0}, nil
}

// Present puts card in the field, in place of any card there. An
// InListPassiveTarget waiting for a card answers at once.
func (c *Chip) Present(cd Card) error {
	if !cd.RandomUID {
		switch len(cd.UID) {
		case 4, 7, 10:
		default:
			return fmt.Errorf("pn532test: a UID has 4, 7 or 10 bytes, not %d", len(cd.UID))
		}
	}
	if len(cd.ATS) > 0 && int(cd.ATS[0]) != len(cd.ATS) {
		return fmt.Errorf("pn532test: ATS length byte %d but %d bytes", cd.ATS[0], len(cd.ATS))
	}
	cd.UID = append([]byte(nil), cd.UID...)
	cd.ATS = append([]byte(nil), cd.ATS...)
	if len(cd.ATS) == 0 {
		cd.ATS = nil
	} else {
		cd.SAK |= 0x20
	}
	if cd.ATQA == 0 {
		n := len(cd.UID)
		if cd.RandomUID {
			n = 4
		}
		cd.ATQA = map[int]uint16{4: 0x0004, 7: 0x0044, 10: 0x0084}[n]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.card = &card{Card: cd, uid: cd.UID}
	c.tg = 0
	if c.waiting != nil && c.power == powerOn {
		cmd := c.waiting
		c.waiting = nil
		c.respond(c.listPassive(cmd), c.rfTime(cmd))
	}
	c.updateIRQ()
	return nil
}

// Remove takes the card out of the field. If it was selected, the chip
// still lists it: InDataExchange gets no answer (status 0x01).
func (c *Chip) Remove() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.card = nil
}

// DropCommands makes the chip ignore the next n command frames, as if it
// had not heard them: no ACK, no response.
func (c *Chip) DropCommands(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop = n
}

// Busy keeps the next response not ready for reads status reads; a
// negative count keeps it so until the host aborts the command. An IRQ
// line stays high as long.
func (c *Chip) Busy(reads int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busyNext, c.hasBusy = reads, true
}

// CorruptResponses damages the next n response frames the chip sends: one
// data byte changes and the checksum no longer matches. A response sent
// again after a NACK counts as another one.
func (c *Chip) CorruptResponses(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corrupt = n
}

// SyntaxErrors answers the next n command frames with the error frame.
func (c *Chip) SyntaxErrors(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syntax = n
}

// LeaveStaleResponse leaves the chip as a host leaves it when it restarts
// between sending SAMConfiguration and reading the answer: the answer is
// ready to read, and the chip ignores command frames until it has been
// read or the host aborts with an ACK frame.
func (c *Chip) LeaveStaleResponse() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearExchange()
	c.last = chipFrame(0x15)
	c.out, c.partial = append([]byte(nil), c.last...), false
	c.updateIRQ()
}

// Unplug takes the reader off the bus: every byte read is miso (0xFF for a
// floating line with a pull-up, 0x00 for one pulled low) and writes are
// lost. The chip forgets its state.
func (c *Chip) Unplug(miso byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.power = powerUnplugged
	c.miso = miso
	c.clearExchange()
	c.updateIRQ()
}

// Plug puts the reader back: it powers up afresh.
func (c *Chip) Plug() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.powerUp()
}

// PowerCycle powers the chip off and on: it forgets its configuration and
// the command it was running, and starts in low-battery mode.
func (c *Chip) PowerCycle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.powerUp()
}

// Stats returns the counters.
func (c *Chip) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Commands returns the codes of the command frames the chip acknowledged,
// in order.
func (c *Chip) Commands() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.cmds...)
}

// Field reports whether the RF field is on.
func (c *Chip) Field() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.field && c.power == powerOn
}

// Configured reports whether the chip left low-battery mode through
// SAMConfiguration, and its passive activation retry count
// (RFConfiguration item 5; 0xFF after power-up).
func (c *Chip) Configured() (samDone bool, maxRetries byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.lowVbat, c.retries
}

// Asleep reports whether the chip is in power-down.
func (c *Chip) Asleep() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.power == powerAsleep
}

// IRQ returns the chip's P70_IRQ line: low while a frame is ready to read
// (when SAMConfiguration left it enabled).
func (c *Chip) IRQ() *IRQPin { return c.irq }

// Reset returns the chip's RSTPDN line: driving it low holds the chip in
// reset, driving it high again powers it up.
func (c *Chip) Reset() *ResetPin { return c.reset }

// powerUp puts the chip in its state after power-on.
func (c *Chip) powerUp() {
	c.power = powerOn
	c.lowVbat = true
	c.irqEnabled = true
	c.retries = 0xFF
	c.params = 0x14
	c.field = false
	c.wakeLoss = c.o.LoseFirstCommand
	c.clearExchange()
	c.last = nil
	c.stats.PowerUps++
	c.updateIRQ()
}

func (c *Chip) clearExchange() {
	c.out, c.outIsACK, c.partial = nil, false, false
	c.cmd, c.waiting = nil, nil
	c.busy = 0
	c.sleepNext = false
	c.tg = 0
	if c.card != nil {
		c.card.state = cardIdle
	}
}

// ready reports whether a frame is ready to read. A status read counts
// down Busy.
func (c *Chip) ready(statusRead bool) bool {
	if c.power != powerOn || len(c.out) == 0 || time.Now().Before(c.readyAt) {
		return false
	}
	if c.busy != 0 {
		if statusRead && c.busy > 0 {
			c.busy--
		}
		return false
	}
	return true
}

// updateIRQ sets the IRQ line from the chip's state and signals a falling
// edge.
func (c *Chip) updateIRQ() {
	low := c.irqEnabled && c.ready(false)
	if low && !c.irqLow {
		select {
		case c.irq.edges <- struct{}{}:
		default:
		}
	}
	c.irqLow = low
}

// transact is one SPI transaction: in is MOSI and out MISO, both in the
// chip's bit order.
func (c *Chip) transact(in, out []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.updateIRQ()
	c.stats.Tx++
	c.stats.Bytes += len(in)
	switch c.power {
	case powerUnplugged:
		fill(out, c.miso)
		return
	case powerReset:
		fill(out, 0xFF)
		return
	case powerAsleep:
		// Chip select wakes the chip; this transaction is lost.
		fill(out, 0xFF)
		c.power = powerOn
		c.wakeLoss = c.o.LoseFirstCommand
		return
	}
	if len(in) == 0 {
		return
	}
	switch in[0] {
	case 0x02:
		c.stats.StatusReads++
		st := byte(0x00)
		if c.ready(true) {
			st = 0x01
		}
		fill(out[1:], st)
	case 0x01:
		c.stats.DataWrites++
		c.hostWrite(in[1:])
	case 0x03:
		c.stats.DataReads++
		if !c.ready(false) {
			return
		}
		// The chip shifts a frame out from its first byte after the
		// operation byte. Once part of it has been read, it has the next
		// byte in its shift register already: a continuation read gets it
		// under the operation byte.
		dst := out[1:]
		if c.partial {
			dst = out
		}
		n := copy(dst, c.out)
		c.out = c.out[n:]
		c.partial = len(c.out) > 0
		if len(c.out) == 0 {
			c.frameRead()
		}
	}
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// hostWrite handles a frame written by the host.
func (c *Chip) hostWrite(b []byte) {
	kind, data := parseHost(b)
	switch kind {
	case hostACK:
		c.stats.Aborts++
		c.out, c.outIsACK, c.partial = nil, false, false
		c.cmd, c.waiting = nil, nil
		c.busy = 0
		c.sleepNext = false
	case hostNACK:
		c.stats.NACKs++
		if c.last != nil && c.cmd == nil && c.waiting == nil {
			c.send(c.last)
		}
	case hostInfo:
		switch {
		case len(c.out) > 0 || c.cmd != nil || c.waiting != nil:
			c.stats.Dropped++ // an answer waits: the chip delivers it first
		case c.wakeLoss:
			c.wakeLoss = false
			c.stats.Dropped++
		case c.drop > 0:
			c.drop--
			c.stats.Dropped++
		default:
			c.stats.Commands++
			c.cmds = append(c.cmds, data[0])
			c.cmd = append([]byte(nil), data...)
			c.out, c.outIsACK, c.partial = append([]byte(nil), ackFrame...), true, false
			c.readyAt = time.Time{}
			c.busy = c.o.ACKBusy
		}
	}
}

// frameRead runs after the host has read a whole frame.
func (c *Chip) frameRead() {
	if c.outIsACK {
		c.outIsACK = false
		cmd := c.cmd
		c.cmd = nil
		if c.syntax > 0 {
			c.syntax--
			c.respond(errorFrame, 0)
			return
		}
		resp := c.run(cmd)
		if resp == nil {
			c.waiting = cmd
			return
		}
		c.respond(resp, c.rfTime(cmd))
		return
	}
	if c.sleepNext {
		c.sleepNext = false
		c.power = powerAsleep
	}
}

// rfTime is the RF time of cmd, which just ran: RFTime when it was
// InListPassiveTarget and selected a card.
func (c *Chip) rfTime(cmd []byte) time.Duration {
	if cmd[0] == 0x4A && c.tg != 0 {
		return c.o.RFTime
	}
	return 0
}

// respond queues the response to a command, after Latency, rf and Busy.
func (c *Chip) respond(frame []byte, rf time.Duration) {
	c.last = frame
	c.send(frame)
	c.busy = c.o.ResponseBusy
	if c.hasBusy {
		c.busy, c.hasBusy = c.busyNext, false
	}
	if wait := c.o.Latency + rf; wait > 0 {
		c.readyAt = time.Now().Add(wait)
		time.AfterFunc(wait, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.updateIRQ()
		})
	}
}

// send puts frame on the wire for the host to read, damaged when asked.
func (c *Chip) send(frame []byte) {
	f := append([]byte(nil), frame...)
	if c.corrupt > 0 && len(f) > 8 {
		c.corrupt--
		f[len(f)-3] ^= 0x01 // the last data byte: DCS no longer matches
	}
	c.out, c.outIsACK, c.partial = f, false, false
	c.readyAt = time.Time{}
	c.busy = 0
}

// spiConn is one connection to the chip.
type spiConn struct {
	c   *Chip
	lsb bool
}

func (s *spiConn) String() string { return "pn532test" }

func (s *spiConn) Duplex() conn.Duplex { return conn.Full }

// MaxTxSize is the limit of a Linux spidev transfer.
func (s *spiConn) MaxTxSize() int { return 4096 }

// Tx runs one transaction; r is nil or as long as w.
func (s *spiConn) Tx(w, r []byte) error {
	if r != nil && len(r) != len(w) {
		return fmt.Errorf("pn532test: Tx with %d bytes to write and %d to read: full duplex needs the same length", len(w), len(r))
	}
	out := make([]byte, len(w))
	s.tx(w, out)
	copy(r, out)
	return nil
}

func (s *spiConn) tx(w, out []byte) {
	in := append([]byte(nil), w...)
	if !s.lsb {
		reverse(in)
	}
	s.c.transact(in, out)
	if !s.lsb {
		reverse(out)
	}
}

// TxPackets runs packets, those joined by KeepCS as one transaction. It
// refuses to leave chip select asserted after the last packet.
func (s *spiConn) TxPackets(pkts []spi.Packet) error {
	var w []byte
	var group []spi.Packet
	for i, p := range pkts {
		if p.BitsPerWord != 0 && p.BitsPerWord != 8 {
			return fmt.Errorf("pn532test: packet %d: %d bits per word, the PN532 takes 8", i, p.BitsPerWord)
		}
		if len(p.R) != 0 && len(p.W) != 0 && len(p.R) != len(p.W) {
			return fmt.Errorf("pn532test: packet %d: %d bytes to write and %d to read", i, len(p.W), len(p.R))
		}
		n := max(len(p.W), len(p.R))
		w = append(w, p.W...)
		w = append(w, make([]byte, n-len(p.W))...)
		group = append(group, p)
		if p.KeepCS {
			if i == len(pkts)-1 {
				return errors.New("pn532test: the last packet leaves chip select asserted")
			}
			continue
		}
		out := make([]byte, len(w))
		s.tx(w, out)
		off := 0
		for _, g := range group {
			n := max(len(g.W), len(g.R))
			copy(g.R, out[off:off+n])
			off += n
		}
		w, group = w[:0], group[:0]
	}
	return nil
}

func reverse(b []byte) {
	for i, v := range b {
		v = v>>4 | v<<4
		v = (v&0xCC)>>2 | (v&0x33)<<2
		b[i] = (v&0xAA)>>1 | (v&0x55)<<1
	}
}

var (
	_ spi.PortCloser = (*Chip)(nil)
	_ spi.Conn       = (*spiConn)(nil)
	_ conn.Limits    = (*spiConn)(nil)
)
