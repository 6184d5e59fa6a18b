package door

import (
	"errors"
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // the schedule tests need Europe/Berlin on any host

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// t0 is a Monday, 09:00 UTC.
var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

// testPin is a fake GPIO pin with the behaviour of periph's gpiotest.Pin
// (same fields: L, P, EdgesChan; an edge received by WaitForEdge becomes the
// level). gpiotest itself needs github.com/jonboulle/clockwork, which the
// module's go.sum does not carry. Besides, testPin records every level
// written and can be made to fail.
type testPin struct {
	N string

	sync.Mutex
	L         gpio.Level
	P         gpio.Pull
	EdgesChan chan gpio.Level
	OutErr    error        // returned by Out when set
	Outs      []gpio.Level // every level written by Out, in order
}

var _ gpio.PinIO = (*testPin)(nil)

func newOutPin(name string) *testPin { return &testPin{N: name} }

func newInPin(name string, l gpio.Level) *testPin {
	return &testPin{N: name, L: l, EdgesChan: make(chan gpio.Level, 16)}
}

func (p *testPin) String() string             { return p.N }
func (p *testPin) Halt() error                { return nil }
func (p *testPin) Name() string               { return p.N }
func (p *testPin) Number() int                { return -1 }
func (p *testPin) Function() string           { return "" }
func (p *testPin) Func() pin.Func             { return gpio.IN }
func (p *testPin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN, gpio.OUT} }
func (p *testPin) SetFunc(pin.Func) error     { return errors.New("testPin: not supported") }
func (p *testPin) DefaultPull() gpio.Pull     { return gpio.PullNoChange }
func (p *testPin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("testPin: no PWM")
}

func (p *testPin) Pull() gpio.Pull {
	p.Lock()
	defer p.Unlock()
	return p.P
}

// In keeps the level the test set (the wiring decides it, not the pull) but
// records the pull; like gpiotest it needs EdgesChan for edges.
func (p *testPin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.Lock()
	defer p.Unlock()
	p.P = pull
	if edge != gpio.NoEdge && p.EdgesChan == nil {
		return errors.New("testPin: no EdgesChan")
	}
	return nil
}

func (p *testPin) Read() gpio.Level {
	p.Lock()
	defer p.Unlock()
	return p.L
}

func (p *testPin) WaitForEdge(timeout time.Duration) bool {
	if timeout < 0 {
		panic("testPin: WaitForEdge without a timeout")
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l := <-p.EdgesChan:
		p.Lock()
		p.L = l
		p.Unlock()
		return true
	case <-t.C:
		return false
	}
}

func (p *testPin) Out(l gpio.Level) error {
	p.Lock()
	defer p.Unlock()
	if p.OutErr != nil {
		return fmt.Errorf("%s: %w", p.N, p.OutErr)
	}
	p.L = l
	p.Outs = append(p.Outs, l)
	return nil
}

// level returns the current level.
func (p *testPin) level() gpio.Level { return p.Read() }

// set changes the level without an edge, as if the kernel lost it.
func (p *testPin) set(l gpio.Level) {
	p.Lock()
	p.L = l
	p.Unlock()
}

// outs returns a copy of the levels written so far.
func (p *testPin) outs() []gpio.Level {
	p.Lock()
	defer p.Unlock()
	return append([]gpio.Level(nil), p.Outs...)
}

func (p *testPin) failOut(err error) {
	p.Lock()
	p.OutErr = err
	p.Unlock()
}
