package door

import (
	"sync"
	"time"
)

// Clock is the door's source of time. Every duration the controller, the
// feedback patterns and the input debouncers measure goes through a Clock, so
// tests can drive time by hand.
type Clock interface {
	// Now returns the current time. Deadlines are computed from it with
	// Add and compared with Before/After, so a reading that carries Go's
	// monotonic clock (as time.Now does) keeps the door's timings immune to
	// wall-clock jumps such as the first NTP sync of a Raspberry Pi.
	Now() time.Time
	// NewTimer returns a Timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer from a Clock. As with time.Timer since Go 1.23,
// after Stop or ResetAt returns no stale value is received from C.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the timer was
	// active.
	Stop() bool
	// ResetAt makes the timer fire when the clock reaches t, at once if it
	// already has. It reports whether the timer was active. A deadline
	// rather than a duration, so that no time passes between reading the
	// clock and arming the timer.
	ResetAt(t time.Time) bool
}

// SystemClock is the real Clock: time.Now and time.NewTimer.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time       { return t.t.C }
func (t systemTimer) Stop() bool                { return t.t.Stop() }
func (t systemTimer) ResetAt(at time.Time) bool { return t.t.Reset(time.Until(at)) }

// ManualClock is a Clock that only moves when told to: Advance and Set fire
// the timers that fall due. It is safe for concurrent use. Tests, simulations
// and benchmarks use it to run the door without waiting for real time.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements Clock.
func (c *ManualClock) NewTimer(d time.Duration) Timer {
	t := &manualTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	t.resetLocked(c.now.Add(d))
	c.mu.Unlock()
	return t
}

// Advance moves the clock forward by d (a negative d moves it back) and fires
// every timer that is due.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.setLocked(c.now.Add(d))
	c.mu.Unlock()
}

// Set moves the clock to t and fires every timer that is due.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.setLocked(t)
	c.mu.Unlock()
}

func (c *ManualClock) setLocked(t time.Time) {
	c.now = t
	for _, tm := range c.timers {
		if tm.active && !tm.when.After(t) {
			tm.fireLocked(t)
		}
	}
}

type manualTimer struct {
	c      *ManualClock
	ch     chan time.Time
	when   time.Time // guarded by c.mu
	active bool      // guarded by c.mu
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	t.drainLocked()
	return was
}

func (t *manualTimer) ResetAt(at time.Time) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.resetLocked(at)
}

func (t *manualTimer) resetLocked(at time.Time) bool {
	was := t.active
	t.drainLocked()
	t.when, t.active = at, true
	if !at.After(t.c.now) {
		t.fireLocked(t.c.now)
	}
	return was
}

func (t *manualTimer) fireLocked(now time.Time) {
	t.active = false
	select {
	case t.ch <- now:
	default:
	}
}

func (t *manualTimer) drainLocked() {
	select {
	case <-t.ch:
	default:
	}
}
