package pn532

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
)

// Command codes (UM0701-02 chapter 7).
const (
	cmdDiagnose            = 0x00
	cmdGetFirmwareVersion  = 0x02
	cmdSetParameters       = 0x12
	cmdSAMConfiguration    = 0x14
	cmdPowerDown           = 0x16
	cmdRFConfiguration     = 0x32
	cmdInDataExchange      = 0x40
	cmdInListPassiveTarget = 0x4A
	cmdInRelease           = 0x52
)

const (
	// sendAttempts is how often a command frame is sent before giving up
	// on its ACK; initAttempts is the same for the first command after
	// power-up, which may only wake the chip.
	sendAttempts = 2
	initAttempts = 3
	// maxNACKs is how often a damaged response is asked for again.
	maxNACKs = 2
	// reinitAfter is how many commands in a row may fail on the bus before
	// the next call starts with a re-initialisation.
	reinitAfter = 2
	// maxDataExchange is the most bytes InDataExchange carries to a card.
	maxDataExchange = 262
	// irqSlice bounds one wait for an IRQ edge.
	irqSlice = 100 * time.Millisecond
)

// Opts is the configuration of a PN532. The zero value of a duration or of
// Clock means its value in DefaultOpts.
type Opts struct {
	// Clock is the SPI clock (SCK). The PN532 takes up to 5 MHz; lower it
	// if the wires are longer than 20 cm or not twisted with ground. From
	// 50 kHz to 5 MHz.
	Clock physic.Frequency
	// Reset is the output wired to the PN532's RSTPDN pin (active low), or
	// nil if it is not wired. With it the chip starts from a clean reset
	// and is reset again when it stops answering.
	Reset gpio.PinOut
	// ResetTime is how long RSTPDN is held low, and again how long the chip
	// is given to start after it is released.
	ResetTime time.Duration
	// IRQ is the input wired to the PN532's P70_IRQ pin, or nil. The chip
	// pulls it low when an answer is ready; with it the driver sleeps until
	// the falling edge instead of reading the status byte over SPI, and a
	// Tracker lets the chip wait for a card (WaitCard): a card is seen as
	// soon as the RF has activated it instead of at the next poll. The
	// driver enables the pin's pull-up.
	IRQ gpio.PinIn
	// ACKTimeout is how long the chip has to acknowledge a command frame
	// before the frame is sent again. The manual gives it 15 ms; the rest
	// covers the host's scheduling.
	ACKTimeout time.Duration
	// ResponseTimeout is how long the chip has to answer a command it
	// acknowledged, the exchange with the card included. Past it the
	// command is aborted.
	ResponseTimeout time.Duration
	// StatusInterval is the longest pause between two reads of the status
	// byte while the chip works and there is no IRQ pin. The pauses start
	// short and double up to it: lower it for a faster answer, raise it to
	// spend less CPU and bus time.
	StatusInterval time.Duration
	// MaxRetries is how many times the PN532 tries again to activate a
	// card in one Poll when none answers (RFConfiguration item 5,
	// MxRtyPassiveActivation); 0 tries once. Each try keeps the field busy
	// for a few milliseconds. 0xFF, the chip's own setting, retries
	// forever and is refused: a Poll of an empty field would never end.
	MaxRetries uint8
	// PollPeriod is the time from one poll of a Tracker to the next: how
	// long a card may wait to be seen without an IRQ line, and, with or
	// without one, how often a card on the reader is looked for, which
	// bounds how long its removal takes to be noticed.
	PollPeriod time.Duration
	// LSBFirst has the SPI controller shift bytes LSB first, as the PN532
	// does, instead of the driver reversing their bits. The Raspberry Pi's
	// controllers (Pi 0 to 4) cannot, and periph cannot Connect again on a
	// port that refused it: leave it false there.
	LSBFirst bool
	// PowerDownOnHalt has Halt put the chip into power-down once the RF
	// field is off; the next command wakes it through SPI.
	PowerDownOnHalt bool
	// Logger receives retries, dropped frames and re-initialisations. Nil
	// discards them.
	Logger *slog.Logger
}

// DefaultOpts is the configuration used when NewSPI is given nil opts.
var DefaultOpts = Opts{
	Clock:           1 * physic.MegaHertz,
	ResetTime:       10 * time.Millisecond,
	ACKTimeout:      30 * time.Millisecond,
	ResponseTimeout: time.Second,
	StatusInterval:  5 * time.Millisecond,
	MaxRetries:      1,
	PollPeriod:      100 * time.Millisecond,
}

// fill replaces zero values by the defaults and checks the ranges.
func (o *Opts) fill() error {
	if o.Clock == 0 {
		o.Clock = DefaultOpts.Clock
	}
	if o.Clock < 50*physic.KiloHertz || o.Clock > 5*physic.MegaHertz {
		return fmt.Errorf("clock %s is outside the PN532's 50kHz to 5MHz", o.Clock)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ResetTime", &o.ResetTime, DefaultOpts.ResetTime},
		{"ACKTimeout", &o.ACKTimeout, DefaultOpts.ACKTimeout},
		{"ResponseTimeout", &o.ResponseTimeout, DefaultOpts.ResponseTimeout},
		{"StatusInterval", &o.StatusInterval, DefaultOpts.StatusInterval},
		{"PollPeriod", &o.PollPeriod, DefaultOpts.PollPeriod},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			return fmt.Errorf("%s is negative (%s)", d.name, *d.v)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if o.MaxRetries == 0xFF {
		return errors.New("MaxRetries 0xFF retries forever: a poll of an empty field would never end")
	}
	return nil
}

// Dev is a PN532 on an SPI port. Its methods are safe for concurrent use;
// they run one command at a time.
type Dev struct {
	mu   sync.Mutex
	c    spi.Conn
	name string
	o    Opts
	log  *slog.Logger

	fw       Firmware
	ready    bool // configured; false means the next call initialises first
	halted   bool
	failures int  // commands in a row that failed on the bus
	active   bool // a Poll activated a card that is still selected
	useIRQ   bool
	pending  bool // the chip runs WaitCard's InListPassiveTarget
	retries  byte // MxRtyPassiveActivation as the chip has it
	halts    int  // calls of Halt that stopped the chip

	irqDone chan struct{} // closed when the running IRQ wait ends
	timer   *time.Timer
	req     []byte
	w, r    []byte
	frame   []byte   // the frame being read
	expect  [256]int // response frame length to read, by command code
	bus     busHealth
}

var _ conn.Resource = (*Dev)(nil)

// NewSPI connects to a PN532 on p in SPI mode 0, wakes it, configures it
// (SAMConfiguration normal mode, RFConfiguration MaxRetries, SetParameters
// for automatic RATS) and checks that it is a PN532. It returns a ready
// device, or an error that says what failed: ErrNoDevice when nothing
// answers on the bus, ErrWrongChip for another chip, ErrNoACK or
// ErrNoResponse when the chip is there but does not answer. opts is
// copied; nil means DefaultOpts.
func NewSPI(p spi.Port, opts *Opts) (*Dev, error) {
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if err := o.fill(); err != nil {
		return nil, fmt.Errorf("pn532: %w", err)
	}
	mode := spi.Mode0
	if o.LSBFirst {
		mode |= spi.LSBFirst
	}
	c, err := p.Connect(o.Clock, mode, 8)
	if err != nil {
		if o.LSBFirst {
			return nil, fmt.Errorf("pn532: %s: connect LSB first (if the SPI controller cannot shift LSB first, leave Opts.LSBFirst false): %w", p, err)
		}
		return nil, fmt.Errorf("pn532: %s: connect: %w", p, err)
	}
	d := &Dev{
		c:     c,
		name:  p.String(),
		o:     o,
		log:   o.Logger,
		req:   make([]byte, 0, maxFrameLen),
		frame: make([]byte, 0, maxFrameLen),
		w:     make([]byte, 1+2*maxFrameLen),
		r:     make([]byte, 1+2*maxFrameLen),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if o.Reset != nil {
		if err := o.Reset.Out(gpio.High); err != nil {
			return nil, fmt.Errorf("pn532: reset pin %s: %w", o.Reset, err)
		}
	}
	if o.IRQ != nil {
		if err := o.IRQ.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			return nil, fmt.Errorf("pn532: IRQ pin %s: %w", o.IRQ, err)
		}
	}
	if err := d.init(context.Background()); err != nil {
		return nil, fmt.Errorf("pn532: %s: %w", d.name, err)
	}
	return d, nil
}

// String returns the driver and its port, e.g. "PN532{SPI0.0}".
func (d *Dev) String() string { return "PN532{" + d.name + "}" }

// FirmwareVersion returns what the chip answered to GetFirmwareVersion
// when it was last initialised.
func (d *Dev) FirmwareVersion() Firmware {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw
}

// Poll looks once for one ISO/IEC 14443 type A card at 106 kbps
// (InListPassiveTarget) and returns it, still selected for DataExchange.
// It returns ErrNoTarget when no card answered. A card left selected by an
// earlier Poll is reset first (RF field off) so that it answers again;
// Release does that ahead of time. When the last Poll found no card, or
// after Release, Poll is one command exchange.
func (d *Dev) Poll(ctx context.Context) (Target, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.prepare(ctx); err != nil {
		return Target{}, fmt.Errorf("pn532: InListPassiveTarget: %w", err)
	}
	if err := d.settle(); err != nil {
		return Target{}, err
	}
	if d.active {
		if err := d.fieldOff(ctx); err != nil {
			return Target{}, err
		}
	}
	if err := d.setRetries(ctx, d.o.MaxRetries); err != nil {
		return Target{}, err
	}
	p, err := d.command(ctx, "InListPassiveTarget", cmdInListPassiveTarget, 0x01, 0x00)
	if err != nil {
		// The chip may have selected a card before the command failed.
		d.active = true
		return Target{}, err
	}
	return d.target(p)
}

// target decodes the answer p to InListPassiveTarget.
func (d *Dev) target(p []byte) (Target, error) {
	t, err := parseTarget(p)
	switch {
	case errors.Is(err, ErrNoTarget):
		d.failures = 0
		return Target{}, ErrNoTarget
	case err != nil:
		d.failed(err)
		d.active = true
		return Target{}, fmt.Errorf("pn532: InListPassiveTarget: %w", err)
	}
	d.active = true
	d.failures = 0
	return t, nil
}

// Release ends the session with the card the last Poll selected by
// switching the RF field off: the card resets, and a card left on the
// reader answers the next Poll afresh. The field stays off until then.
// Without a selected card it does nothing.
func (d *Dev) Release(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.settle(); err != nil {
		return err
	}
	if !d.active {
		return nil
	}
	if !d.ready {
		d.active = false
		return nil
	}
	return d.fieldOff(ctx)
}

// DataExchange sends apdu (at most 262 bytes) to the selected target tg
// (Target.Tg) with InDataExchange and returns the card's answer. A status
// from the PN532 other than success is a *StatusError (errors.Is matches
// ErrTimeout, ErrCRC, ErrAuth...). An answer flagged incomplete comes
// back with ErrMoreData.
func (d *Dev) DataExchange(ctx context.Context, tg byte, apdu []byte) ([]byte, error) {
	if len(apdu) > maxDataExchange {
		return nil, fmt.Errorf("pn532: InDataExchange: %d bytes, at most %d", len(apdu), maxDataExchange)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.prepare(ctx); err != nil {
		return nil, fmt.Errorf("pn532: InDataExchange: %w", err)
	}
	if err := d.settle(); err != nil {
		return nil, err
	}
	cmd := make([]byte, 0, 2+len(apdu))
	cmd = append(cmd, cmdInDataExchange, tg)
	cmd = append(cmd, apdu...)
	p, err := d.command(ctx, "InDataExchange", cmd...)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		d.failed(ErrFrame)
		return nil, fmt.Errorf("pn532: InDataExchange: %w", &FrameError{Offset: -1, Reason: "response without status byte"})
	}
	d.failures = 0
	if code := p[0] & 0x3F; code != 0 {
		return nil, fmt.Errorf("pn532: InDataExchange: %w", &StatusError{Code: code})
	}
	if p[0]&0x40 != 0 {
		return p[1:], fmt.Errorf("pn532: InDataExchange: %w", ErrMoreData)
	}
	return p[1:], nil
}

// Ping checks the link to the chip end to end with the Diagnose
// communication test: the chip must echo what it was sent.
func (d *Dev) Ping(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.prepare(ctx); err != nil {
		return fmt.Errorf("pn532: Diagnose: %w", err)
	}
	if err := d.settle(); err != nil {
		return err
	}
	probe := []byte{cmdDiagnose, 0x00, 'l', 'a', 't', 'c', 'h'}
	p, err := d.command(ctx, "Diagnose", probe...)
	if err != nil {
		return err
	}
	if !bytes.Equal(p, probe[1:]) {
		d.failed(ErrFrame)
		return fmt.Errorf("pn532: Diagnose: %w", &FrameError{Offset: -1, Reason: fmt.Sprintf("echo % X, sent % X", p, probe[1:])})
	}
	d.failures = 0
	return nil
}

// Halt ends a wait for a card (WaitCard, which then returns ErrHalted),
// releases the card, switches the RF field off and, with
// Opts.PowerDownOnHalt, puts the chip into power-down. Calling it again
// does nothing; any other call wakes and re-initialises the chip.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.irqDone != nil {
		<-d.irqDone
		d.irqDone = nil
	}
	if d.halted {
		return nil
	}
	d.halts++
	ctx := context.Background()
	if err := d.settle(); err != nil {
		return err
	}
	if d.ready {
		if d.active {
			if _, err := d.command(ctx, "InRelease", cmdInRelease, 0x00); err != nil {
				return err
			}
			d.active = false
		}
		if _, err := d.command(ctx, "RFConfiguration", cmdRFConfiguration, 0x01, 0x00); err != nil {
			return err
		}
		if d.o.PowerDownOnHalt {
			// Wake-up enable: SPI (bit 5).
			p, err := d.command(ctx, "PowerDown", cmdPowerDown, 0x20)
			if err != nil {
				return err
			}
			if len(p) != 1 || p[0]&0x3F != 0 {
				return fmt.Errorf("pn532: PowerDown: %w", &FrameError{Offset: -1, Reason: fmt.Sprintf("status % X", p)})
			}
		}
	}
	d.ready = false
	d.active = false
	d.halted = true
	return nil
}

// prepare wakes a halted chip and (re-)initialises one that needs it.
func (d *Dev) prepare(ctx context.Context) error {
	d.halted = false
	if d.ready {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.log.Info("pn532: initialising the reader", "port", d.name, "reset_pin", d.o.Reset != nil)
	if err := d.init(ctx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

// init brings the chip from any state to ready: reset pulse when there is
// a reset pin, wake-up, a stale response dropped, SAMConfiguration (sent
// until the chip answers: the first command after power-up may only wake
// it), firmware check, passive activation retries, parameters and, when
// no reset pulse switched it off, the RF field off.
func (d *Dev) init(ctx context.Context) error {
	d.ready = false
	d.active = false
	d.useIRQ = false
	// A wait for a card the chip still runs: the status read below finds
	// it busy, and the command frames that follow abort it when the chip
	// ignores them.
	d.pending = false
	if d.o.Reset != nil {
		if err := d.pulseReset(ctx); err != nil {
			return err
		}
	}
	// A status read pulls chip select low, which wakes the chip from
	// power-down and low-battery mode. "Ready" here means a response that
	// a host sent for before it restarted.
	st, err := d.status()
	if err != nil {
		return err
	}
	if st == statusReady {
		d.log.Warn("pn532: the chip holds a response from before: dropping it", "port", d.name)
		if err := d.drain(); err != nil {
			return err
		}
	}
	irq := byte(0x00)
	if d.o.IRQ != nil {
		irq = 0x01
	}
	// Normal mode; the timeout (20 × 50 ms) only matters in virtual card mode.
	if _, err := d.exchange(ctx, []byte{cmdSAMConfiguration, 0x01, 0x14, irq}, initAttempts); err != nil {
		return fmt.Errorf("SAMConfiguration: %w", err)
	}
	p, err := d.exchange(ctx, []byte{cmdGetFirmwareVersion}, sendAttempts)
	if err != nil {
		return fmt.Errorf("GetFirmwareVersion: %w", err)
	}
	fw, err := parseFirmware(p)
	if err != nil {
		return fmt.Errorf("GetFirmwareVersion: %w", err)
	}
	if fw.IC != 0x32 {
		return fmt.Errorf("GetFirmwareVersion: %w: IC 0x%02X (firmware %d.%d)", ErrWrongChip, fw.IC, fw.Version, fw.Revision)
	}
	d.fw = fw
	// Item 5: MxRtyATR (default), MxRtyPSL (default), MxRtyPassiveActivation.
	if _, err := d.exchange(ctx, []byte{cmdRFConfiguration, 0x05, 0xFF, 0x01, d.o.MaxRetries}, sendAttempts); err != nil {
		return fmt.Errorf("RFConfiguration: %w", err)
	}
	d.retries = d.o.MaxRetries
	// fAutomaticATR_RES and fAutomaticRATS: ISO-DEP cards come back with
	// their ATS, ready for InDataExchange.
	if _, err := d.exchange(ctx, []byte{cmdSetParameters, 0x14}, sendAttempts); err != nil {
		return fmt.Errorf("SetParameters: %w", err)
	}
	if d.o.Reset == nil {
		// Without a reset pulse the field may still be on, with a card an
		// earlier host selected, which would not answer a Poll.
		if _, err := d.exchange(ctx, []byte{cmdRFConfiguration, 0x01, 0x00}, sendAttempts); err != nil {
			return fmt.Errorf("RFConfiguration: %w", err)
		}
	}
	// The field is off: no card is selected.
	d.ready = true
	d.failures = 0
	d.useIRQ = d.o.IRQ != nil
	d.log.Debug("pn532: ready", "port", d.name, "firmware", fw.String())
	return nil
}

func (d *Dev) pulseReset(ctx context.Context) error {
	if err := d.o.Reset.Out(gpio.Low); err != nil {
		return fmt.Errorf("reset pin %s: %w", d.o.Reset, err)
	}
	err := d.sleep(ctx, d.o.ResetTime)
	// Release the chip from reset even when the wait was cut short.
	if err2 := d.o.Reset.Out(gpio.High); err2 != nil {
		return fmt.Errorf("reset pin %s: %w", d.o.Reset, err2)
	}
	if err != nil {
		return err
	}
	return d.sleep(ctx, d.o.ResetTime)
}

// setRetries sets MxRtyPassiveActivation (RFConfiguration item 5) unless
// the chip has it already: MaxRetries for Poll, 0xFF for WaitCard.
func (d *Dev) setRetries(ctx context.Context, n byte) error {
	if d.retries == n {
		return nil
	}
	if _, err := d.command(ctx, "RFConfiguration", cmdRFConfiguration, 0x05, 0xFF, 0x01, n); err != nil {
		return err
	}
	d.retries = n
	return nil
}

// fieldOff switches the RF field off, which resets the cards in it.
func (d *Dev) fieldOff(ctx context.Context) error {
	if _, err := d.command(ctx, "RFConfiguration", cmdRFConfiguration, 0x01, 0x00); err != nil {
		return err
	}
	d.active = false
	return nil
}

// command runs one command and returns the response parameters; errors
// are wrapped with the command's name. Failures of the bus or the frames
// are counted so that the next call re-initialises the chip after
// reinitAfter calls in a row failed; a call that succeeds whole resets
// the count (one command that works, such as switching the field off, says
// little about a chip that forgot its configuration).
func (d *Dev) command(ctx context.Context, name string, cmd ...byte) ([]byte, error) {
	p, err := d.exchange(ctx, cmd, sendAttempts)
	if err != nil {
		d.failed(err)
		return nil, fmt.Errorf("pn532: %s: %w", name, err)
	}
	return p, nil
}

// failed counts err if it says the link to the chip is broken.
func (d *Dev) failed(err error) {
	var se *StatusError
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrSyntax) || errors.As(err, &se) {
		return
	}
	d.failures++
	if d.failures >= reinitAfter && d.ready {
		d.log.Warn("pn532: the reader keeps failing: it will be initialised again", "port", d.name, "failures", d.failures, "err", err)
		d.ready = false
	}
}
