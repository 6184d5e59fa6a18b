package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// Input timing limits.
const (
	// DefaultDebounce is how long a switch level must hold before it counts.
	DefaultDebounce = 50 * time.Millisecond
	// MaxDebounce bounds InputOpts.Debounce.
	MaxDebounce = 200 * time.Millisecond
	// inputRecheck is how often an Input re-reads its pin when no edge comes,
	// so that a level held for MaxDebounce+inputRecheck (400 ms) is always
	// reported even if the kernel lost an edge.
	inputRecheck = 200 * time.Millisecond
)

// InputOpts describes how a switch (door contact, exit button, tamper) is
// wired. The zero value is a normally-open switch between the pin and ground,
// with the Pi's internal pull-up, debounced for 50 ms.
type InputOpts struct {
	// NormallyClosed is true when the switch conducts at rest (door closed,
	// button released, cover on) and opens when active. Door contacts and
	// tamper loops are usually wired this way, so that a cut wire reads as
	// open. Default: normally open (the switch closes when active).
	NormallyClosed bool
	// PullDown is true when the switch connects the pin to 3.3 V and the pin
	// is pulled down. Default: the switch connects the pin to ground and the
	// pin is pulled up.
	PullDown bool
	// Debounce is how long a new level must hold before it is reported;
	// shorter pulses are ignored. Raise it for a switch that chatters.
	// Default 50 ms, at most 200 ms.
	Debounce time.Duration
	// Clock times the debouncer and stamps the changes. Default SystemClock.
	Clock Clock
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Input is a debounced switch on a GPIO input: the door contact, the exit
// button or the tamper switch. Active means door open, button pressed or
// tamper tripped, whatever the wiring.
type Input struct {
	pin     gpio.PinIn
	opts    InputOpts
	pull    gpio.Pull
	edges   bool
	pollGap time.Duration
	log     *slog.Logger
}

var _ conn.Resource = (*Input)(nil)

// NewInput configures pin as an input with its pull resistor and edge
// detection. If the pin has no edge detection it is polled instead.
func NewInput(pin gpio.PinIn, opts *InputOpts) (*Input, error) {
	if pin == nil {
		return nil, errors.New("door: input: no pin")
	}
	in := &Input{pin: pin}
	if opts != nil {
		in.opts = *opts
	}
	switch {
	case in.opts.Debounce == 0:
		in.opts.Debounce = DefaultDebounce
	case in.opts.Debounce < 0 || in.opts.Debounce > MaxDebounce:
		return nil, fmt.Errorf("door: input %s: debounce %v: want 0 (default %v) up to %v", pin, in.opts.Debounce, DefaultDebounce, MaxDebounce)
	}
	if in.opts.Clock == nil {
		in.opts.Clock = SystemClock{}
	}
	in.log = in.opts.Logger
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	in.pull = gpio.PullUp
	if in.opts.PullDown {
		in.pull = gpio.PullDown
	}
	in.edges = true
	in.pollGap = inputRecheck
	if err := pin.In(in.pull, gpio.BothEdges); err != nil {
		if err2 := pin.In(in.pull, gpio.NoEdge); err2 != nil {
			return nil, fmt.Errorf("door: input %s: %w", pin, errors.Join(err, err2))
		}
		in.edges = false
		in.pollGap = max(in.opts.Debounce/5, 2*time.Millisecond)
		in.log.Warn("input has no edge detection; polling", "pin", pin.String(), "every", in.pollGap, "err", err)
	}
	return in, nil
}

// active converts a pin level to the switch's meaning.
func (in *Input) active(l gpio.Level) bool {
	closedLevel := gpio.Low
	if in.opts.PullDown {
		closedLevel = gpio.High
	}
	closed := l == closedLevel
	return closed != in.opts.NormallyClosed
}

// Active reads the pin now, without debouncing.
func (in *Input) Active() bool {
	return in.active(in.pin.Read())
}

// Run watches the pin until ctx is done and calls fn with every debounced
// change, starting with the first stable level. fn runs on Run's goroutine.
// Run returns nil when ctx is done.
func (in *Input) Run(ctx context.Context, fn func(active bool, at time.Time)) error {
	if fn == nil {
		return errors.New("door: input: Run needs a callback")
	}
	d := debouncer{hold: in.opts.Debounce}
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := in.opts.Clock.Now()
		if v, changed := d.observe(in.Active(), now); changed {
			fn(v, now)
		}
		wait := in.pollGap
		if due, ok := d.due(); ok {
			wait = min(wait, max(due.Sub(now), time.Millisecond))
		}
		// Never block without a bound: WaitForEdge(-1) cannot be interrupted.
		in.pin.WaitForEdge(wait)
	}
}

// Halt implements conn.Resource. It has nothing to stop: Run ends with its
// context.
func (in *Input) Halt() error { return nil }

// String implements conn.Resource.
func (in *Input) String() string {
	wiring := "NO"
	if in.opts.NormallyClosed {
		wiring = "NC"
	}
	return fmt.Sprintf("input(%s, %s)", in.pin, wiring)
}

// debouncer turns raw samples into stable changes. It is pure: time comes in
// with every sample.
type debouncer struct {
	hold     time.Duration
	known    bool // a stable level has been reported
	stable   bool // the last reported level
	started  bool // a sample has been seen
	cand     bool // the latest sample
	candFrom time.Time
}

// observe takes a sample at now and reports the new stable level when the
// sample has held for the debounce time (the first stable level counts as a
// change).
func (d *debouncer) observe(v bool, now time.Time) (stable bool, changed bool) {
	if !d.started || v != d.cand || now.Before(d.candFrom) {
		d.started, d.cand, d.candFrom = true, v, now
	}
	if (!d.known || d.cand != d.stable) && now.Sub(d.candFrom) >= d.hold {
		d.known, d.stable = true, d.cand
		return d.stable, true
	}
	return d.stable, false
}

// due returns when the pending level will have held long enough, if a level
// is pending.
func (d *debouncer) due() (time.Time, bool) {
	if !d.started || (d.known && d.cand == d.stable) {
		return time.Time{}, false
	}
	return d.candFrom.Add(d.hold), true
}
