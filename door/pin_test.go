package door

import (
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // the schedule tests need Europe/Berlin on any host

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// t0 is a Monday, 09:00 UTC.
var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

// outPin is a gpiotest.Pin used as an output that also records every level
// written and can be made to fail.
type outPin struct {
	*gpiotest.Pin
	mu      sync.Mutex
	written []gpio.Level
	err     error
	hold    chan struct{} // when set, Out waits until it is closed
}

func newOutPin(name string) *outPin { return &outPin{Pin: &gpiotest.Pin{N: name}} }

// Out implements gpio.PinOut.
func (p *outPin) Out(l gpio.Level) error {
	p.mu.Lock()
	hold := p.hold
	p.mu.Unlock()
	if hold != nil {
		<-hold
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("%s: %w", p.N, p.err)
	}
	p.written = append(p.written, l)
	return p.Pin.Out(l)
}

// level returns the level on the pin.
func (p *outPin) level() gpio.Level { return p.Pin.Read() }

// outs returns a copy of the levels written so far.
func (p *outPin) outs() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gpio.Level(nil), p.written...)
}

// failOut makes every later Out fail with err.
func (p *outPin) failOut(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// newInPin returns a gpiotest.Pin with edge detection. Note that In (called
// by NewInput) sets its level from the pull, as a floating input would be:
// tests set the wired level afterwards with setLevel.
func newInPin(name string) *gpiotest.Pin {
	return &gpiotest.Pin{N: name, EdgesChan: make(chan gpio.Level, 16)}
}

// setLevel changes the level without an edge, as if the kernel lost it.
func setLevel(p *gpiotest.Pin, l gpio.Level) {
	p.Lock()
	p.L = l
	p.Unlock()
}
