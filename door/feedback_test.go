package door

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
)

func TestPatternAt(t *testing.T) {
	p := patDenied.pattern()
	tests := []struct {
		at      time.Duration
		on      lights
		left    time.Duration
		playing bool
	}{
		{0, red | buzzer, 100 * ms, true},
		{50 * ms, red | buzzer, 50 * ms, true},
		{100 * ms, red, 100 * ms, true},
		{450 * ms, red | buzzer, 50 * ms, true},
		{999 * ms, red, ms, true},
		{time.Second, 0, 0, false},
	}
	for _, tc := range tests {
		on, left, playing := p.at(tc.at)
		if on != tc.on || left != tc.left || playing != tc.playing {
			t.Errorf("denied at %v: %03b %v %t, want %03b %v %t", tc.at, on, left, playing, tc.on, tc.left, tc.playing)
		}
	}
	blink := patAwaitingPIN.pattern()
	if on, left, _ := blink.at(1260 * ms); on != 0 || left != 240*ms {
		t.Errorf("awaiting PIN loops: %03b %v", on, left)
	}
	steady := patUnlocked.pattern()
	if on, left, playing := steady.at(time.Hour * 5); on != green || left != 0 || !playing {
		t.Errorf("steady pattern: %03b %v %t", on, left, playing)
	}
}

// TestPatternsDistinct checks that the patterns the door shows can be told
// apart, and that denial reasons cannot.
func TestPatternsDistinct(t *testing.T) {
	ids := []patternID{patGranted, patDenied, patAwaitingPIN, patLockedOut, patAlarm, patFault}
	seen := map[string]patternID{}
	for _, id := range ids {
		key := ""
		p := id.pattern()
		for _, s := range p.steps {
			key += s.d.String() + "/" + string(rune('0'+s.on)) + ";"
		}
		if other, dup := seen[key]; dup {
			t.Errorf("%v and %v look the same", id, other)
		}
		seen[key] = id
	}
}

func TestFeedbackOverlay(t *testing.T) {
	g, r, b := newOutPin("green"), newOutPin("red"), newOutPin("buzzer")
	f, err := NewFeedback(g, r, b, &FeedbackOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	// All off, active-low: high.
	for _, p := range []*outPin{g, r, b} {
		if p.level() != gpio.High {
			t.Fatalf("%s not off at start", p)
		}
	}
	now := t0
	f.setBase(patUnlocked, now)
	f.play(patKey, now)
	nextAt, err := f.update(now)
	if err != nil {
		t.Fatal(err)
	}
	// Green from the base, buzzer from the key beep.
	if g.level() != gpio.Low || r.level() != gpio.High || b.level() != gpio.Low {
		t.Fatalf("levels g=%v r=%v b=%v", g.level(), r.level(), b.level())
	}
	if !nextAt.Equal(now.Add(60 * ms)) {
		t.Fatalf("next change %v, want +60ms", nextAt.Sub(now))
	}
	nextAt, _ = f.update(nextAt)
	if b.level() != gpio.High || g.level() != gpio.Low {
		t.Fatalf("after the beep: g=%v b=%v", g.level(), b.level())
	}
	if !nextAt.IsZero() {
		t.Fatalf("steady base should not need a tick, got %v", nextAt)
	}
	// Only changed outputs are written.
	writes := len(g.outs())
	f.update(now.Add(time.Second))
	if len(g.outs()) != writes {
		t.Error("unchanged output rewritten")
	}
	if err := f.Halt(); err != nil {
		t.Fatal(err)
	}
	if g.level() != gpio.High || b.level() != gpio.High {
		t.Error("Halt left an output on")
	}
}

func TestFeedbackAbsentPins(t *testing.T) {
	b := newOutPin("buzzer")
	f, err := NewFeedback(nil, nil, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.setBase(patAlarm, t0)
	if _, err := f.update(t0); err != nil {
		t.Fatal(err)
	}
	if b.level() != gpio.High {
		t.Error("buzzer off during alarm")
	}
	if s := f.String(); s != "feedback(buzzer=buzzer(0))" {
		t.Errorf("String %q", s)
	}
	b.failOut(errors.New("EIO"))
	if _, err := f.update(t0.Add(400 * ms)); err == nil {
		t.Error("write error not reported")
	}
	if _, err := f.update(t0.Add(800 * ms)); err != nil {
		t.Error("repeated write error reported again")
	}
}

// ShowFault blinks red with a chirp every 10 s until its context ends, then
// turns everything off.
func TestFeedbackShowFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, r, b := newOutPin("G"), newOutPin("R"), newOutPin("B")
		f, err := NewFeedback(g, r, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		clock := NewManualClock(t0)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- f.ShowFault(ctx, clock) }()
		want := func(step string, green, red, buzz gpio.Level) {
			t.Helper()
			synctest.Wait()
			if g.level() != green || r.level() != red || b.level() != buzz {
				t.Fatalf("%s: green %v red %v buzzer %v; want %v %v %v", step, g.level(), r.level(), b.level(), green, red, buzz)
			}
		}
		want("start", gpio.Low, gpio.High, gpio.High)
		clock.Advance(100 * ms)
		want("after the chirp", gpio.Low, gpio.High, gpio.Low)
		clock.Advance(400 * ms)
		want("blink off", gpio.Low, gpio.Low, gpio.Low)
		clock.Advance(500 * ms)
		want("blink on, silent", gpio.Low, gpio.High, gpio.Low)
		clock.Advance(9 * time.Second)
		want("the next chirp", gpio.Low, gpio.High, gpio.High)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want("stopped", gpio.Low, gpio.Low, gpio.Low)
	})
}

// TestFeedbackOnPattern: OnPattern hears each steady pattern once as it
// starts, and every one-shot pattern, in words.
func TestFeedbackOnPattern(t *testing.T) {
	var heard []Pattern
	f, err := NewFeedback(newOutPin("green"), newOutPin("red"), newOutPin("buzzer"), &FeedbackOpts{OnPattern: func(p Pattern) { heard = append(heard, p) }})
	if err != nil {
		t.Fatal(err)
	}
	f.setBase(patAwaitingPIN, t0)
	f.setBase(patAwaitingPIN, t0.Add(time.Second)) // no change
	f.play(patKey, t0.Add(time.Second))
	f.play(patKey, t0.Add(2*time.Second))
	f.play(patGranted, t0.Add(3*time.Second))
	f.setBase(patUnlocked, t0.Add(3*time.Second))
	want := []Pattern{
		{Name: "awaiting_pin", Looks: "green and red blinking together"},
		{Name: "key", Looks: "one short beep", OneShot: true},
		{Name: "key", Looks: "one short beep", OneShot: true},
		{Name: "granted", Looks: "green, one beep", OneShot: true},
		{Name: "unlocked", Looks: "green steady"},
	}
	if !slices.Equal(heard, want) {
		t.Errorf("heard %+v\nwant %+v", heard, want)
	}
	for id := patIdle; id <= patPreAlarm; id++ {
		if id.looks() == id.String() {
			t.Errorf("pattern %v has no description", id)
		}
	}
}
