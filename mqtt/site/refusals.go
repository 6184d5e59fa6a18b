package site

import (
	"log/slog"
	"sync"
	"time"
)

// Refused messages are logged at most refusalBurst times per door in
// each refusalWindow: a flood of bad messages must not flood the site's
// log. The counters (Stats) count every one; a suppressed run is
// summarised in one line when the next window opens.
const (
	refusalBurst  = 10
	refusalWindow = time.Minute
)

// refusalLog limits the log lines of refused messages per door.
type refusalLog struct {
	mu      sync.Mutex
	windows map[string]*refusalRun
}

type refusalRun struct {
	start   time.Time
	logged  int
	dropped int
}

// warn logs msg for door unless door used its lines in this window.
func (l *refusalLog) warn(log *slog.Logger, now time.Time, door, msg string, args ...any) {
	l.mu.Lock()
	if l.windows == nil {
		l.windows = make(map[string]*refusalRun)
	}
	r := l.windows[door]
	var dropped int
	if r == nil || now.Sub(r.start) >= refusalWindow || now.Before(r.start) {
		if r != nil {
			dropped = r.dropped
		}
		r = &refusalRun{start: now}
		l.windows[door] = r
	}
	ok := r.logged < refusalBurst
	if ok {
		r.logged++
	} else {
		r.dropped++
	}
	l.mu.Unlock()
	if dropped > 0 {
		log.Warn("site: refused messages not logged (the counters have them)", "door", door, "count", dropped, "window", refusalWindow)
	}
	if ok {
		log.Warn(msg, append([]any{"door", door}, args...)...)
	}
}
