package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdNotify runs the simulated door as systemd runs the service
// (Type=notify with WatchdogSec): READY=1 comes once, with a status line,
// when the door is up, then WATCHDOG=1 pings from the controller's loop.
// That READY waits for the relay's locked level and that a stuck loop
// stops the pings is TestReadyAndAlive's, in the door package.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000") // pings every 100 ms
	sim := startSim(t)
	buf := make([]byte, 4096)
	read := func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notify message: %v (stderr: %s)", err, sim.stderr.String())
		}
		return string(buf[:n])
	}
	if m := read(); !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=door front ready, relay locked") {
		t.Fatalf("first notify message %q, want READY=1 and the status", m)
	}
	// Then watchdog pings, and the status line the door keeps current.
	pings, status := 0, ""
	for pings < 3 || status == "" {
		switch m := read(); {
		case m == "WATCHDOG=1":
			pings++
		case strings.HasPrefix(m, "STATUS=door front: "):
			status = m
		default:
			t.Fatalf("notify message %q, want WATCHDOG=1 or STATUS=door front: …", m)
		}
	}
	if !strings.Contains(status, "locked") || !strings.Contains(status, "allowlist seq") {
		t.Errorf("status %q: want the lock state and the allowlist seq", status)
	}
	sim.quit()
}

// TestSystemdNotifyOff: without NOTIFY_SOCKET the notifier does nothing,
// and a nil one too.
func TestSystemdNotifyOff(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier(slog.New(slog.DiscardHandler))
	if n.aliveFunc() != nil || n.aliveEvery() != 0 {
		t.Error("watchdog pings without systemd")
	}
	n.ready("x")
	var none *notifier
	none.ready("x")
	none.fault(t.Context(), "x")
	if none.aliveFunc() != nil {
		t.Error("a nil notifier pings")
	}
}
