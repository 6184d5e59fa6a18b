package mqtt

import "time"

// Clock is the client's one source of time: every time it reads and every
// timer it waits on comes from it.
//
// It tells two times apart. Now is the door's clock, the wall time that
// stamps events and is judged against the site's signed times (freshness,
// command expiry, the clock floor); it may be wrong and may step, forward
// or back. Elapsed measures the intervals of the client's timers (retries,
// back-off, rate limits, uptime) and never steps, so a wall clock set back
// does not hold a retry back for the hours it was set back by.
//
// SystemClock is the default. Under testing/synctest it runs on the
// bubble's fake time; a test that moves the door's clock on its own (set
// back, skewed from the site's) replaces Now and keeps the rest.
type Clock interface {
	// Now returns the door's wall time.
	Now() time.Time
	// Elapsed returns the time elapsed since a fixed origin of the clock.
	Elapsed() time.Duration
	// NewTimer returns a timer that fires once after d has elapsed.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Timer is a Clock's one-shot timer, as time.Timer.
type Timer interface {
	// C returns the channel the timer fires on.
	C() <-chan time.Time
	// Reset makes the timer fire after d, as time.Timer.Reset.
	Reset(d time.Duration) bool
	// Stop stops the timer, as time.Timer.Stop.
	Stop() bool
}

// Ticker is a Clock's ticker, as time.Ticker.
type Ticker interface {
	// C returns the channel the ticker fires on.
	C() <-chan time.Time
	// Stop stops the ticker.
	Stop()
}

// SystemClock returns the clock of the time package: time.Now for the
// door's time and the monotonic clock for intervals.
func SystemClock() Clock { return &systemClock{origin: time.Now()} }

type systemClock struct{ origin time.Time }

func (s *systemClock) Now() time.Time                 { return time.Now() }
func (s *systemClock) Elapsed() time.Duration         { return time.Since(s.origin) }
func (s *systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }
func (s *systemClock) NewTicker(d time.Duration) Ticker {
	return sysTicker{time.NewTicker(d)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }

type sysTicker struct{ t *time.Ticker }

func (t sysTicker) C() <-chan time.Time { return t.t.C }
func (t sysTicker) Stop()               { t.t.Stop() }

// monoEpoch turns the readings of Clock.Elapsed into times, so that the
// parts of the client keep monotonic instants as time.Time values whose
// zero means "never".
var monoEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// monoNow returns the clock's monotonic instant.
func monoNow(c Clock) time.Time { return monoEpoch.Add(c.Elapsed()) }
