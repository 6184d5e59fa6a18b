package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// watchEvery is how often the daemon looks at what it reports beyond the
// controller's own events: the site link (for the display's "Offline"),
// systemd's status line and the clock.
const watchEvery = time.Second

// clockStepMin is the smallest jump of the wall clock against the
// monotonic clock that is logged as a step. NTP slews smaller errors.
const clockStepMin = time.Second

// watcher turns slow-changing states into reports: a link change into the
// controller's SiteLink, a new summary into systemd's STATUS=, and clock
// steps and changes of synchronisation into log lines. Its tick runs on
// one goroutine.
type watcher struct {
	log *slog.Logger
	// link reports whether the site link is up; nil when the door has no
	// site. tell passes a change on to the controller.
	link func() bool
	tell func(ctx context.Context, online bool) error
	// summary is the one-line status; setStatus publishes a changed one.
	summary   func() string
	setStatus func(string)
	// kernel reads the kernel's clock state.
	kernel func() kernelClockState

	linkKnown, online bool
	downSince         time.Duration // the monotonic reading at which the link was first seen down, -1 while up
	status            string
	clock             kernelClockState
	clockKnown        bool
	wall              time.Time     // the wall clock at the last tick (no monotonic reading)
	mono              time.Duration // the monotonic clock at the last tick
}

// run ticks every watchEvery, from when ready is closed until ctx ends.
func (w *watcher) run(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-ready:
	}
	start := time.Now()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		now := time.Now()
		w.tick(ctx, now.Round(0), now.Sub(start))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick reports what changed since the last tick, given the wall clock
// and a monotonic reading taken together.
func (w *watcher) tick(ctx context.Context, wall time.Time, mono time.Duration) {
	if w.link != nil {
		w.watchLink(ctx, mono)
	}
	if w.summary != nil {
		if s := w.summary(); s != w.status {
			w.status = s
			w.setStatus(s)
		}
	}
	if !w.wall.IsZero() {
		if step := wall.Sub(w.wall) - (mono - w.mono); step >= clockStepMin || step <= -clockStepMin {
			w.log.Warn("clock: stepped", "by", step, "from", w.wall.Add(mono-w.mono).Format(time.RFC3339), "to", wall.Format(time.RFC3339),
				"note", "open windows and lockouts run on the monotonic clock; schedules use the new time")
		}
	}
	w.wall, w.mono = wall, mono
	if w.kernel != nil {
		k := w.kernel()
		switch {
		case !w.clockKnown:
			w.log.Info("clock: " + k.String())
		case k.Known && k.Synced && !w.clock.Synced:
			w.log.Info("clock: " + k.String())
		case k.Known && !k.Synced && w.clock.Synced:
			w.log.Warn("clock: no longer synchronised; event times are marked unsynced and time rules follow security.untrusted_clock")
		}
		w.clock, w.clockKnown = k, true
	}
}

// linkGrace is how long the site link must stay down before the door's
// display says "Offline": a link that is still connecting at start, or
// reconnects at once, is not worth alarming the person at the door.
const linkGrace = 5 * time.Second

// watchLink tells the controller the site link came up at once, and that
// it went down once it stayed down for linkGrace.
func (w *watcher) watchLink(ctx context.Context, mono time.Duration) {
	up := w.link()
	if up {
		w.downSince = -1
	} else if w.downSince < 0 {
		w.downSince = mono
	}
	if w.linkKnown && up == w.online {
		return
	}
	if !up && mono-w.downSince < linkGrace {
		return
	}
	if err := w.tell(ctx, up); err == nil {
		w.linkKnown, w.online = true, up
	}
}

// summary is the door's state in one line for systemd's STATUS=, most
// urgent first.
func (d *daemon) summary() string {
	s := d.ctrl.Status()
	var parts []string
	if len(s.Alarms) > 0 {
		al := make([]string, len(s.Alarms))
		for i, a := range s.Alarms {
			al[i] = string(a)
		}
		parts = append(parts, "ALARM "+strings.Join(al, ","))
	}
	if !s.JournalOK {
		parts = append(parts, "journal "+s.Journal)
	}
	if !s.ReaderOK {
		parts = append(parts, "reader fault")
	}
	lock := "locked"
	if !s.Locked {
		lock = "unlocked"
	}
	if s.Lockdown {
		lock += ", lockdown"
	}
	parts = append(parts, lock)
	if d.client != nil {
		if d.client.Stats().Connected {
			parts = append(parts, "site connected")
		} else {
			parts = append(parts, "site offline")
		}
	}
	if ss, err := d.st.SyncState(); err == nil {
		parts = append(parts, fmt.Sprintf("allowlist seq %d", ss.AppliedSeq))
	}
	if s.Stale {
		parts = append(parts, "allowlist stale")
	}
	if n, err := d.st.OutboxDepth(); err == nil && n > 0 {
		parts = append(parts, fmt.Sprintf("%d events to send", n))
	}
	if !s.ClockTrusted {
		parts = append(parts, "clock not trusted")
	}
	return "door " + s.Door + ": " + strings.Join(parts, ", ")
}

// newWatcher makes the daemon's watcher.
func (d *daemon) newWatcher() *watcher {
	w := &watcher{log: d.log, summary: d.summary, setStatus: d.systemd.status, kernel: kernelClock, downSince: -1}
	if d.client != nil {
		cl := d.client
		w.link = func() bool { return cl.Stats().Connected }
		w.tell = d.ctrl.SiteLink
	}
	return w
}
