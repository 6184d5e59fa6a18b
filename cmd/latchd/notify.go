package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks systemd's notify protocol (sd_notify) when latchd runs
// as a Type=notify service: READY=1 once the relay is locked and the store
// open, WATCHDOG=1 from the door controller's own loop (so that a loop
// that hangs is restarted), and a one-line STATUS=. Without NOTIFY_SOCKET,
// or nil, it does nothing.
type notifier struct {
	log      *slog.Logger
	on       bool
	watchdog time.Duration // WatchdogSec, 0 when off
	once     sync.Once     // the first failure is logged, not each
}

// newNotifier reads the environment systemd sets: NOTIFY_SOCKET, and
// WATCHDOG_USEC (with WATCHDOG_PID, when set, naming this process).
func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log, on: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.on {
		return n
	}
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd: WATCHDOG_USEC cannot be read; no watchdog pings", "err", err)
	}
	n.watchdog = d
	return n
}

func (n *notifier) send(state string) {
	if n == nil || !n.on {
		return
	}
	if _, err := sd.SdNotify(false, state); err != nil {
		n.once.Do(func() { n.log.Warn("systemd: notify failed", "err", err) })
	}
}

// ready says the door is ready, with a status line, made one line: the
// protocol separates assignments by newlines.
func (n *notifier) ready(status string) {
	n.send(sd.SdNotifyReady + "\nSTATUS=" + oneLine(status, 400))
}

// status replaces the status line systemd shows (systemctl status).
func (n *notifier) status(line string) {
	n.send("STATUS=" + oneLine(line, 400))
}

// alive is one watchdog ping.
func (n *notifier) alive() { n.send(sd.SdNotifyWatchdog) }

// aliveEvery is how often to ping: half the watchdog time, or 0 (no
// pings) without a watchdog.
func (n *notifier) aliveEvery() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

// aliveFunc is alive when systemd wants pings, else nil.
func (n *notifier) aliveFunc() func() {
	if n == nil || n.watchdog <= 0 {
		return nil
	}
	return n.alive
}

// fault says the door is up but holding a fault that a restart would not
// mend, and pings the watchdog until ctx is done, so that systemd neither
// times the start out nor restarts latchd over and over.
func (n *notifier) fault(ctx context.Context, what string) {
	n.ready("fault: " + what + "; the door stays locked until latchd is stopped")
	if n == nil || n.watchdog <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(n.aliveEvery())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.alive()
			}
		}
	}()
}
