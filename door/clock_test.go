package door

import (
	"testing"
	"time"
)

func fired(tm Timer) bool {
	select {
	case <-tm.C():
		return true
	default:
		return false
	}
}

func TestManualClock(t *testing.T) {
	c := NewManualClock(t0)
	tm := c.NewTimer(time.Second)
	c.Advance(999 * time.Millisecond)
	if fired(tm) {
		t.Fatal("fired early")
	}
	c.Advance(time.Millisecond)
	if !fired(tm) {
		t.Fatal("did not fire on time")
	}
	if !c.Now().Equal(t0.Add(time.Second)) {
		t.Fatalf("now %v", c.Now())
	}

	// A deadline already reached fires at once.
	if tm.ResetAt(t0) {
		t.Error("fired timer reported active")
	}
	if !fired(tm) {
		t.Fatal("past deadline did not fire at once")
	}

	// The deadline is absolute: advancing between reading the clock and
	// arming the timer does not push it back.
	deadline := c.Now().Add(5 * time.Second)
	c.Advance(5 * time.Second)
	tm.ResetAt(deadline)
	if !fired(tm) {
		t.Fatal("deadline reached before arming did not fire")
	}

	// Stop and ResetAt drop a value not yet received.
	tm.ResetAt(c.Now().Add(time.Second))
	c.Advance(time.Second)
	if tm.Stop() {
		t.Error("fired timer reported active on Stop")
	}
	if fired(tm) {
		t.Error("stale value after Stop")
	}
	tm.ResetAt(c.Now().Add(time.Second))
	if !tm.Stop() {
		t.Error("armed timer reported inactive on Stop")
	}
	c.Advance(time.Hour)
	if fired(tm) {
		t.Error("stopped timer fired")
	}

	// Moving the clock back fires nothing.
	tm.ResetAt(c.Now().Add(time.Second))
	c.Set(t0)
	if fired(tm) {
		t.Error("fired when the clock moved back")
	}
}

func TestSystemClock(t *testing.T) {
	var c Clock = SystemClock{}
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Error("new timer not active")
	}
	tm.ResetAt(c.Now().Add(-time.Second))
	<-tm.C() // a past deadline fires at once
}
