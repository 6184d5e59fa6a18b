package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWatcher: the watcher passes link changes to the controller once per
// change (again after a refused one), a drop only once it lasted linkGrace, publishes a changed summary only,
// logs clock steps of a second or more in either direction and changes of
// the kernel's synchronisation.
func TestWatcher(t *testing.T) {
	var logs bytes.Buffer
	up := false
	var told []bool
	refuse := false
	summary := "door front: locked"
	var published []string
	k := kernelClockState{Known: true}
	w := &watcher{
		log:  slog.New(slog.NewTextHandler(&logs, nil)),
		link: func() bool { return up },
		tell: func(_ context.Context, online bool) error {
			if refuse {
				return errors.New("door: controller stopped")
			}
			told = append(told, online)
			return nil
		},
		summary:   func() string { return summary },
		setStatus: func(s string) { published = append(published, s) },
		kernel:    func() kernelClockState { return k },
		downSince: -1,
	}
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	mono := time.Duration(0)
	tick := func(wallStep time.Duration) {
		mono += time.Second
		t0 = t0.Add(wallStep)
		w.tick(t.Context(), t0, mono)
	}
	// Down at start: the display is told only once the link stayed down
	// for linkGrace, not while it is still connecting.
	w.tick(t.Context(), t0, mono)
	for range 3 {
		tick(time.Second)
	}
	up = true
	tick(time.Second)
	if len(told) != 1 || !told[0] {
		t.Fatalf("told the controller %v while connecting, want only [true]", told)
	}
	// A drop that mends within linkGrace is not told.
	up = false
	tick(time.Second)
	up = true
	tick(time.Second)
	// A drop that lasts is told once it lasted linkGrace, also after a
	// refused report.
	up = false
	for range 4 {
		tick(time.Second)
	}
	refuse = true
	tick(time.Second)
	refuse = false
	tick(time.Second)
	tick(time.Second)
	if want := []bool{true, false}; !slices.Equal(told, want) {
		t.Errorf("told the controller %v, want %v", told, want)
	}

	summary = "door front: unlocked"
	tick(time.Second)
	tick(time.Second)
	if want := []string{"door front: locked", "door front: unlocked"}; strings.Join(published, "|") != strings.Join(want, "|") {
		t.Errorf("published %q, want %q", published, want)
	}

	if strings.Contains(logs.String(), "stepped") {
		t.Fatalf("a step logged while the clocks agreed:\n%s", logs.String())
	}
	tick(time.Second + 900*time.Millisecond) // 0.9 s: slewing territory
	if strings.Contains(logs.String(), "stepped") {
		t.Fatalf("a 0.9 s difference logged as a step:\n%s", logs.String())
	}
	tick(time.Hour + time.Second)
	tick(-time.Minute + time.Second)
	for _, want := range []string{"by=1h0m0s", "by=-1m0s"} {
		if !strings.Contains(logs.String(), "clock: stepped") || !strings.Contains(logs.String(), want) {
			t.Errorf("no clock step %s logged:\n%s", want, logs.String())
		}
	}

	if !strings.Contains(logs.String(), "clock: not synchronised") {
		t.Errorf("the first state of the clock not logged:\n%s", logs.String())
	}
	k = kernelClockState{Known: true, Synced: true, MaxError: 16 * time.Millisecond, EstError: 2 * time.Millisecond}
	tick(time.Second)
	k.Synced = false
	tick(time.Second)
	for _, want := range []string{"clock: synchronised, estimated error 2ms, at most 16ms", "clock: no longer synchronised"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q logged:\n%s", want, logs.String())
		}
	}
}

// TestKernelClock reads this machine's kernel clock state: on Linux the
// kernel answers, with error bounds that are not negative.
func TestKernelClock(t *testing.T) {
	k := kernelClock()
	if !k.Known {
		t.Skip("no adjtimex off Linux")
	}
	if k.MaxError < 0 || k.EstError < 0 {
		t.Errorf("kernel clock %+v: negative error bounds", k)
	}
	t.Logf("kernel clock: %s", k)
}
