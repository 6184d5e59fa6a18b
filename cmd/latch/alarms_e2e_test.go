package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// fakeClock is the wall clock moved ahead by what a test adds.
type fakeClock struct{ ahead atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *fakeClock) add(d time.Duration) { c.ahead.Add(int64(d)) }

// alarmList is latch alarm list --json.
func (s *testSite) alarmList(t testing.TB, open bool) []site.Alarm {
	t.Helper()
	args := []string{"alarm", "list", "--json"}
	if open {
		args = append(args, "--open")
	}
	var as []site.Alarm
	if err := json.Unmarshal([]byte(s.ok(t, "", args...)), &as); err != nil {
		t.Fatal(err)
	}
	return as
}

// logOps is the change log's entries of target, in order, each as
// "OP:RESULT" (the result's first word), separated by spaces.
func logOps(t testing.TB, db *site.DB, target string) string {
	t.Helper()
	es, _, err := db.Changes(site.ChangeFilter{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		ops = append(ops, e.Op+":"+strings.SplitN(e.Result, " ", 2)[0])
	}
	return strings.Join(ops, " ")
}

// waitAlarm waits, on the engine's changes, for an alarm that match
// selects, and returns it.
func waitAlarm(t testing.TB, e *alarmEngine, db *site.DB, what string, match func(*site.Alarm) bool) site.Alarm {
	t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		changed := e.Changed()
		as, err := db.Alarms(false, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range as {
			if match(&as[i]) {
				return as[i]
			}
		}
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("no alarm: %s; alarms: %+v", what, as)
		}
	}
}

// A door forced open at an emulated door raises an alarm at the site
// within a second of the door's event; an operator acknowledges and
// resolves it, each step in the change log. The back door stopped for
// longer than the offline threshold (the alarms' clock moved on) raises
// offline, and started again clears it with the time it was away.
func TestAlarmsEndToEnd(t *testing.T) {
	clock := &fakeClock{}
	var eng *alarmEngine
	o := serveOptions{alarmClock: clock.now, alarmsReady: func(e *alarmEngine) { eng = e }}
	o.alarms.OfflineAfter.Duration = 2 * time.Minute
	s, sv, front, back := startE2EWith(t, o)

	front.send("open")
	ev := front.event("door_forced")
	seen := time.Now()
	forced := waitAlarm(t, eng, sv.db, "door_forced at front", func(a *site.Alarm) bool {
		return a.Kind == site.AlarmDoorForced && a.Door == "front"
	})
	took := time.Since(seen)
	t.Logf("door_forced: alarm %d at the site %v after the door's event line (seq %v)", forced.ID, took.Round(time.Millisecond), ev["seq"])
	if took > time.Second {
		t.Errorf("the alarm took %v, want at most 1s", took)
	}
	if forced.Priority != site.PriorityCritical || forced.State != site.AlarmOpen || forced.Count != 1 {
		t.Fatalf("alarm %+v", forced)
	}
	front.send("close")
	front.event("door_closed")

	// A second forced opening while the alarm is open is a repeat.
	front.send("open")
	front.event("door_forced")
	waitAlarm(t, eng, sv.db, "door_forced counted twice", func(a *site.Alarm) bool { return a.ID == forced.ID && a.Count == 2 })
	front.send("close")

	id := strconv.FormatUint(forced.ID, 10)
	s.ok(t, "", "alarm", "ack", id)
	s.ok(t, "", "alarm", "assign", id, "guard1")
	s.ok(t, "", "alarm", "note", id, "walked over, nobody there")
	if code, _, errs := s.cli(t, "", "alarm", "ack", id); code != 1 || !strings.Contains(errs, "acknowledged") {
		t.Fatalf("a second ack: exit %d: %s", code, errs)
	}
	s.ok(t, "", "alarm", "resolve", id, "--note", "latch bolt replaced")
	if open := s.alarmList(t, true); len(open) != 0 {
		t.Fatalf("open alarms after resolve: %+v", open)
	}
	all := s.alarmList(t, false)
	if len(all) != 1 || all[0].State != site.AlarmResolved || all[0].AckBy == "" || all[0].Assignee != "guard1" || len(all[0].Notes) != 2 {
		t.Fatalf("alarms %+v", all)
	}
	want := "alarm raised:ok alarm ack:ok alarm assign:ok alarm note:ok alarm ack:refused alarm resolve:ok"
	if got := logOps(t, sv.db, "alarm "+id); got != want {
		t.Fatalf("change log of alarm %s: %q, want %q", id, got, want)
	}

	// Offline: the back door stops; the alarms' clock passes the threshold.
	back.quit()
	eventually(t, "back offline in the door list", func() bool { return !s.doorList(t)["back"].Online })
	clock.add(2*time.Minute + time.Second)
	off := waitAlarm(t, eng, sv.db, "offline at back", func(a *site.Alarm) bool { return a.Kind == site.AlarmOffline && a.Door == "back" })
	if off.State != site.AlarmOpen || off.Priority != site.PriorityHigh {
		t.Fatalf("offline alarm %+v", off)
	}
	back.start()
	cleared := waitAlarm(t, eng, sv.db, "offline at back cleared", func(a *site.Alarm) bool { return a.ID == off.ID && a.State == site.AlarmCleared })
	if cleared.Away <= 0 || !strings.Contains(cleared.Detail, "back after") {
		t.Fatalf("cleared offline alarm %+v: want the time away", cleared)
	}
	if v, err := sv.db.VerifyChanges(); err != nil || v.Bad != 0 {
		t.Fatalf("change log: %+v, %v", v, err)
	}
}

// raiseAlarm stores a door_forced event of door (its first) and waits
// until the service raised its alarm.
func raiseAlarm(t testing.TB, db *site.DB, door string) {
	t.Helper()
	e := store.Event{Seq: 1, Time: time.Now(), Clock: store.TimeSynced, BootID: "b1", Door: door, Type: store.TypeDoor,
		Reason: store.ReasonDoorForced, Prev: strings.Repeat("0", 64)}
	var err error
	if e.Hash, err = store.HashEvent(e); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.AddEvents(door, []store.Event{e}, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the alarm of door "+door+" raised", func() bool {
		as, err := db.Alarms(true, 0)
		return err == nil && len(as) == 1
	})
}
