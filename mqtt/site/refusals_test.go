package site

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of refused messages from one door logs refusalBurst lines a
// window, then one line with the count of those not logged; another door
// has lines of its own.
func TestRefusalLogLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l refusalLog
	for i := range 25 {
		l.warn(log, t0.Add(time.Duration(i)*time.Second), "front", "site: bad event")
	}
	l.warn(log, t0.Add(2*time.Second), "back", "site: bad event")
	if n := strings.Count(buf.String(), "door=front"); n != refusalBurst {
		t.Fatalf("%d lines for front in a window, want %d:\n%s", n, refusalBurst, buf.String())
	}
	if !strings.Contains(buf.String(), "door=back") {
		t.Fatal("back's refusal not logged")
	}
	buf.Reset()
	l.warn(log, t0.Add(refusalWindow), "front", "site: bad event")
	if out := buf.String(); !strings.Contains(out, "count=15") || strings.Count(out, "\n") != 2 {
		t.Fatalf("the next window:\n%s", out)
	}
}
