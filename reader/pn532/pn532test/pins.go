package pn532test

import (
	"errors"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// IRQPin is the chip's P70_IRQ output as the host sees it: a gpio.PinIn
// that reads low while the chip has a frame ready, with a falling edge
// for WaitForEdge each time one becomes ready.
type IRQPin struct {
	c     *Chip
	edges chan struct{}
}

// String names the pin.
func (p *IRQPin) String() string { return "pn532test.IRQ" }

// Halt does nothing.
func (p *IRQPin) Halt() error { return nil }

// Name names the pin.
func (p *IRQPin) Name() string { return "P70_IRQ" }

// Number is -1: the pin is on no header.
func (p *IRQPin) Number() int { return -1 }

// Function returns "In".
func (p *IRQPin) Function() string { return string(gpio.IN) }

// Func returns gpio.IN.
func (p *IRQPin) Func() pin.Func { return gpio.IN }

// SupportedFuncs returns gpio.IN only.
func (p *IRQPin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN} }

// SetFunc accepts gpio.IN only.
func (p *IRQPin) SetFunc(f pin.Func) error {
	if f != gpio.IN {
		return errors.New("pn532test: the IRQ pin is an input")
	}
	return nil
}

// In forgets edges seen so far. Only falling edges (or both) are
// reported; the pull is ignored, the chip drives the line.
func (p *IRQPin) In(pull gpio.Pull, edge gpio.Edge) error {
	if edge == gpio.RisingEdge {
		return errors.New("pn532test: the IRQ pin reports falling edges")
	}
	select {
	case <-p.edges:
	default:
	}
	return nil
}

// Read returns the line's level.
func (p *IRQPin) Read() gpio.Level {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.updateIRQ()
	if p.c.irqLow {
		return gpio.Low
	}
	return gpio.High
}

// WaitForEdge waits up to timeout (-1: forever) for the line to fall, and
// returns at once if it fell since the last call.
func (p *IRQPin) WaitForEdge(timeout time.Duration) bool {
	if timeout < 0 {
		<-p.edges
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.edges:
		return true
	case <-t.C:
		return false
	}
}

// Pull returns gpio.PullUp, the pull an open IRQ line needs.
func (p *IRQPin) Pull() gpio.Pull { return gpio.PullUp }

// DefaultPull returns gpio.PullUp.
func (p *IRQPin) DefaultPull() gpio.Pull { return gpio.PullUp }

// ResetPin is the chip's RSTPDN input as the host drives it: a
// gpio.PinOut. Low holds the chip in reset (MISO floats high); the rising
// edge powers it up.
type ResetPin struct {
	c     *Chip
	level gpio.Level // guarded by c.mu
}

// String names the pin.
func (p *ResetPin) String() string { return "pn532test.RSTPDN" }

// Halt does nothing.
func (p *ResetPin) Halt() error { return nil }

// Name names the pin.
func (p *ResetPin) Name() string { return "RSTPDN" }

// Number is -1: the pin is on no header.
func (p *ResetPin) Number() int { return -1 }

// Function returns "Out".
func (p *ResetPin) Function() string { return string(gpio.OUT) }

// Out drives the line.
func (p *ResetPin) Out(l gpio.Level) error {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := p.level
	p.level = l
	switch {
	case l == gpio.Low && c.power != powerUnplugged:
		c.power = powerReset
		c.clearExchange()
		c.updateIRQ()
	case l == gpio.High && prev == gpio.Low:
		c.stats.Resets++
		if c.power == powerReset {
			c.powerUp()
		}
	}
	return nil
}

// PWM is not possible on this line.
func (p *ResetPin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("pn532test: no PWM on the reset pin")
}

// Level returns the level last driven.
func (p *ResetPin) Level() gpio.Level {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.level
}

var (
	_ gpio.PinIn  = (*IRQPin)(nil)
	_ pin.PinFunc = (*IRQPin)(nil)
	_ gpio.PinOut = (*ResetPin)(nil)
)
