// Package keypadtest emulates keypads at the GPIO pin level, for tests and
// for latchd's simulator: a matrix keypad (Matrix) whose row and column pins
// behave like the wires of a real membrane keypad, and a Wiegand reader
// (Wiegand) that pulses its D0 and D1 lines.
//
// It also emulates the I²C GPIO expanders of keypad backpacks (Expander:
// PCF8574, PCF8574A, PCF8575, MCP23008, MCP23017) at the byte level, as an
// i2c.Bus with a Matrix wired to the chip's pins and the chip's INT output
// as a pin, so periph's own drivers of those chips run against it.
//
// The pins implement periph's gpio.PinIO, so keypad.NewMatrix and
// keypad.NewWiegand drive them exactly as they drive a Raspberry Pi's GPIO.
// Everything is safe for concurrent use. Edges are queued one by one, like
// the Linux GPIO character device does, and WaitForEdge honours its timeout
// on the time package's clock, so inside a testing/synctest bubble the
// emulators run on the bubble's fake clock.
package keypadtest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
)

// edgeQueue is how many edges a pin keeps for WaitForEdge; more are
// dropped, as a kernel drops events from a full queue.
const edgeQueue = 256

type role int

const (
	roleRow  role = iota // matrix row: driven low, driven high, or released
	roleCol              // matrix column: input, needs the pull-up
	roleLine             // Wiegand data line: input
)

// device is the emulated hardware a pin belongs to. Its methods are called
// with the device's lock held.
type device interface {
	// update recomputes every pin's level after a change.
	update()
	// observe notes that p was read.
	observe(p *Pin)
}

// Pin is an emulated GPIO pin of a Matrix or a Wiegand. It implements
// gpio.PinIO: row pins accept Out and In (In releases the row to a
// high-impedance input with pull-up); column and Wiegand pins are inputs
// and refuse Out.
type Pin struct {
	name string
	num  int
	role role
	mu   *sync.Mutex // the device's lock
	dev  device

	// Guarded by *mu.
	input  bool       // In was called since the last Out
	driven bool       // Out was called since the last In
	out    gpio.Level // level driven, when driven
	pull   gpio.Pull
	edge   gpio.Edge
	level  gpio.Level // level a Read returns
	edges  chan struct{}
	intr   chan struct{} // closed to end pending WaitForEdge calls
}

func newPin(mu *sync.Mutex, dev device, r role, name string, num int) *Pin {
	return &Pin{
		name:  name,
		num:   num,
		role:  r,
		mu:    mu,
		dev:   dev,
		level: gpio.High,
		edges: make(chan struct{}, edgeQueue),
		intr:  make(chan struct{}),
	}
}

// String returns the pin's name, such as "ROW1" or "D0".
func (p *Pin) String() string { return p.name }

// Name returns the pin's name, such as "ROW1" or "D0".
func (p *Pin) Name() string { return p.name }

// Number returns the pin's number, unique within its device.
func (p *Pin) Number() int { return p.num }

// Function returns "Out" for a pin driving its line, else "In".
func (p *Pin) Function() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.driven {
		return "Out"
	}
	return "In"
}

// Halt ends any WaitForEdge in progress, which returns false.
func (p *Pin) Halt() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interrupt()
	return nil
}

// In configures the pin as an input. A column refuses any pull but
// gpio.PullUp: a keypad has no pull-ups of its own, so without one a
// column floats. Queued edges are discarded and a WaitForEdge in progress
// returns false.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	if p.role == roleCol && pull != gpio.PullUp {
		return fmt.Errorf("keypadtest: %s: a keypad column needs gpio.PullUp, not %s", p.name, pull)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.input, p.driven = true, false
	p.pull, p.edge = pull, edge
	for len(p.edges) > 0 {
		<-p.edges
	}
	p.interrupt()
	p.dev.update()
	return nil
}

// Read returns the pin's level: what it drives, or what the emulated wiring
// pulls it to.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dev.observe(p)
	return p.level
}

// WaitForEdge waits up to timeout for an edge of the kind In asked for,
// returning at once if one is queued. A negative timeout waits until an
// edge, In or Halt. It returns false at once on a pin not set up for edges.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	p.mu.Lock()
	if !p.input || p.edge == gpio.NoEdge {
		p.mu.Unlock()
		return false
	}
	intr := p.intr
	p.mu.Unlock()
	if timeout < 0 {
		select {
		case <-p.edges:
			return true
		case <-intr:
			return false
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.edges:
		return true
	case <-intr:
		return false
	case <-t.C:
		// An edge queued at the same moment still counts.
		select {
		case <-p.edges:
			return true
		default:
			return false
		}
	}
}

// Pull returns the pull set by In.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull returns gpio.Float: the emulated pins have no pull until In
// sets one.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.Float }

// Out drives a row pin. Other pins are inputs and return an error.
func (p *Pin) Out(l gpio.Level) error {
	if p.role != roleRow {
		return fmt.Errorf("keypadtest: %s is an input", p.name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.input, p.driven, p.out = false, true, l
	p.interrupt()
	p.dev.update()
	return nil
}

// PWM returns an error: no keypad line carries PWM.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("keypadtest: " + p.name + ": PWM not supported")
}

// Driven returns the level the pin drives, and false if it drives none
// (an input, or a row released by In).
func (p *Pin) Driven() (gpio.Level, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out, p.driven
}

// interrupt ends the WaitForEdge calls in progress. p.mu is held.
func (p *Pin) interrupt() {
	close(p.intr)
	p.intr = make(chan struct{})
}

// set changes the pin's level, queueing an edge if In asked for that kind.
// p.mu is held.
func (p *Pin) set(l gpio.Level) {
	if l == p.level {
		return
	}
	p.level = l
	if !p.input {
		return
	}
	if p.edge == gpio.BothEdges || (p.edge == gpio.RisingEdge && l == gpio.High) || (p.edge == gpio.FallingEdge && l == gpio.Low) {
		select {
		case p.edges <- struct{}{}:
		default:
		}
	}
}

var _ gpio.PinIO = (*Pin)(nil)
