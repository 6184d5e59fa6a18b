package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/latchdoor/latch/store"
)

// core is what the parts of a client share: its options, its clock, its
// log, the door, the audit events it writes, the rate limits of its
// refusals, its Stats and the error that ends Run. All but the Stats
// belong to Run's goroutine.
type core struct {
	o     *Options
	clock Clock
	log   *slog.Logger
	j     Journal
	door  Door
	// status publishes the status when it is due (Client.maybeStatus);
	// force publishes it anyway. Nil publishes nothing.
	status func(force bool)
	fatal  error // set by storeErr: Run ends with it

	rejACL, rejCmd limiter

	mu      sync.Mutex
	stats   Stats
	updated chan struct{}
}

func newCore(o *Options, j Journal, door Door) *core {
	return &core{
		o: o, clock: o.Clock, j: j, door: door,
		log:     o.Logger.With("site", o.Site, "door", o.Door),
		rejACL:  limiter{burst: o.RejectBurst, window: o.RejectWindow, reason: store.ReasonACLRejected},
		rejCmd:  limiter{burst: o.RejectBurst, window: o.RejectWindow, reason: store.ReasonCommandRejected},
		updated: make(chan struct{}),
	}
}

// mono returns the clock's monotonic instant (see Clock.Elapsed).
func (c *core) mono() time.Time { return monoNow(c.clock) }

// update changes the Stats and wakes whoever waits on Updated.
func (c *core) update(fn func(s *Stats)) {
	c.mu.Lock()
	fn(&c.stats)
	close(c.updated)
	c.updated = make(chan struct{})
	c.mu.Unlock()
}

// statusDue publishes the status if it changed.
func (c *core) statusDue() {
	if c.status != nil {
		c.status(false)
	}
}

// storeErr handles a store failure: a closed or damaged store ends Run;
// anything else is logged and retried by the timers.
func (c *core) storeErr(what string, err error) {
	if errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrCorrupt) {
		c.fatal = fmt.Errorf("mqtt: %s: %w", what, err)
		return
	}
	c.log.Error("mqtt: store", "op", what, "err", err)
}

// quality is the door's clock quality, unsynced when the door does not
// say.
func (c *core) quality() store.TimeQuality {
	if q := c.door.Status().Clock; q != "" {
		return q
	}
	return store.TimeUnsynced
}

// event hands one of the client's audit events (type sync) to the journal,
// which writes it in order with the door's events, keeps it while the disk
// fails and counts it if it is lost. The client sends it once Notify says
// it is stored.
func (c *core) event(reason store.Reason, detail string) {
	c.j.Add(store.JournalEntry{Events: []store.Event{{
		Time:   c.clock.Now(),
		Clock:  c.quality(),
		BootID: c.o.BootID,
		Door:   c.o.Door,
		Type:   store.TypeSync,
		Reason: reason,
		Detail: detail,
	}}})
}

// reject counts a refused message and writes a rate-limited audit event.
func (c *core) reject(in inbound, err error) {
	lim := &c.rejACL
	if in.cmd {
		lim = &c.rejCmd
	}
	// Debug only: the audit event (or the summary of a flood) says it, and
	// a flood must not fill the system log either.
	c.log.Debug("mqtt: refused a message", "topic", in.topic, "kid", in.kid, "retained", in.retained, "err", err)
	if lim.allow(c.mono()) {
		c.event(lim.reason, fmt.Sprintf("%s: %v", in.topic, err))
	}
	// Counted after the event is handed to the journal, which writes it in
	// order with everything before it (allEvents in the tests waits for
	// the journal before reading).
	if in.cmd {
		c.update(func(s *Stats) { s.CommandsRejected++ })
	} else {
		c.update(func(s *Stats) { s.ACLRejected++ })
	}
}

// flushRejects writes the summary of rejections beyond the burst when a
// window ends.
func (c *core) flushRejects(now time.Time) {
	for _, lim := range []*limiter{&c.rejACL, &c.rejCmd} {
		if n, w := lim.flush(now); n > 0 {
			c.event(lim.reason, fmt.Sprintf("%d more messages refused in %s, not logged one by one", n, w))
		}
	}
}

// drainRejects writes the summaries of the refusals the rate limits held
// back, whether or not their window is over: at a stop, so that no count
// is lost.
func (c *core) drainRejects() {
	for _, lim := range []*limiter{&c.rejACL, &c.rejCmd} {
		if n := lim.suppressed; n > 0 {
			lim.suppressed = 0
			c.event(lim.reason, fmt.Sprintf("%d more messages refused in the last %s, not logged one by one", n, lim.window))
		}
	}
}

// limiter lets burst events through per window and counts the rest.
type limiter struct {
	burst  int
	window time.Duration
	reason store.Reason

	start      time.Time // monotonic start of the window
	n          int
	suppressed int
}

// allow reports whether one more event may be written now.
func (l *limiter) allow(now time.Time) bool {
	if l.start.IsZero() || now.Sub(l.start) >= l.window {
		if l.suppressed > 0 {
			// flush has not run yet: keep counting into the old window;
			// the summary goes out on the next tick.
			l.suppressed++
			return false
		}
		l.start, l.n = now, 0
	}
	if l.n < l.burst {
		l.n++
		return true
	}
	l.suppressed++
	return false
}

// flush ends a window that is over and returns how many events it
// suppressed, and the window length.
func (l *limiter) flush(now time.Time) (int, time.Duration) {
	if l.start.IsZero() || now.Sub(l.start) < l.window || l.suppressed == 0 {
		return 0, 0
	}
	n := l.suppressed
	l.suppressed = 0
	l.start, l.n = now, 0
	return n, l.window
}

// publisher is the session's end the parts send through.
type publisher interface {
	// connected reports whether a session is up.
	connected() bool
	// publish queues one QoS 1 message; false when it was not queued
	// (no session, a full queue): the caller's timers send it again.
	publish(topic string, payload []byte, retained bool) bool
}
