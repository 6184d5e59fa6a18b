package site

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// A snoozed alarm counts its repeats, on Count and on SnoozeRepeats; its
// snooze ends when the clock reaches SnoozedUntil, not before, with the
// repeats in the change and a change-log entry; an alarm whose snooze an
// ack ended, or that was resolved, has nothing left to end.
func TestEndSnoozes(t *testing.T) {
	db := open(t)
	if _, err := db.AlarmCursor(); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	evs := doorEvents(t, "front", 1, zeroHash, store.ReasonDoorForced, store.ReasonTamper)
	if _, _, _, err := db.AddEvents("front", evs, now); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.AlarmsFromEvents(100, defaultPrio, now); err != nil {
		t.Fatal(err)
	}
	as, err := db.Alarms(true, 0)
	if err != nil || len(as) != 2 {
		t.Fatalf("open alarms %+v, %v", as, err)
	}
	forced, tamper := as[1], as[0]
	until := now.Add(15 * time.Minute)
	for _, id := range []uint64{forced.ID, tamper.ID} {
		if _, err := db.UpdateAlarm(id, func(a *Alarm) error { a.SnoozedUntil, a.SnoozedBy = until, "otto"; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// Two repeats of the forced door while snoozed.
	more := doorEvents(t, "front", 3, evs[1].Hash, store.ReasonDoorForced, store.ReasonDoorForced)
	if _, _, _, err := db.AddEvents("front", more, now); err != nil {
		t.Fatal(err)
	}
	cs, _, _, err := db.AlarmsFromEvents(100, defaultPrio, now.Add(time.Minute))
	if err != nil || !slices.Equal(whats(cs), []string{"repeated door_forced", "repeated door_forced"}) {
		t.Fatalf("repeats while snoozed: %q, %v", whats(cs), err)
	}
	if a := cs[1].Alarm; a.Count != 3 || a.SnoozeRepeats != 2 || !a.Snoozed(now.Add(time.Minute)) || a.Snoozed(until) {
		t.Fatalf("the snoozed alarm after two repeats: %+v", a)
	}
	// The tamper alarm is acknowledged, which ends its snooze.
	if _, err := db.UpdateAlarm(tamper.ID, func(a *Alarm) error { a.State = AlarmAcknowledged; a.Unsnooze(); return nil }); err != nil {
		t.Fatal(err)
	}
	if cs, err := db.EndSnoozes(until.Add(-time.Nanosecond)); err != nil || len(cs) != 0 {
		t.Fatalf("before the snooze's end: %+v, %v", cs, err)
	}
	cs, err = db.EndSnoozes(until)
	if err != nil || len(cs) != 1 || cs[0].What != AlarmSnoozeEnded || cs[0].Alarm.ID != forced.ID || cs[0].Repeats != 2 {
		t.Fatalf("at the snooze's end: %+v, %v", cs, err)
	}
	a, err := db.Alarm(forced.ID)
	if err != nil || !a.SnoozedUntil.IsZero() || a.SnoozeRepeats != 0 || a.SnoozedBy != "" || a.State != AlarmOpen || a.Count != 3 {
		t.Fatalf("the alarm after its snooze: %+v, %v", a, err)
	}
	if cs, err := db.EndSnoozes(until.Add(time.Hour)); err != nil || len(cs) != 0 {
		t.Fatalf("ended twice: %+v, %v", cs, err)
	}
	// A repeat now is an ordinary one.
	last := doorEvents(t, "front", 5, more[1].Hash, store.ReasonDoorForced)
	if _, _, _, err := db.AddEvents("front", last, now); err != nil {
		t.Fatal(err)
	}
	if cs, _, _, err := db.AlarmsFromEvents(100, defaultPrio, until.Add(time.Minute)); err != nil || len(cs) != 1 || cs[0].Alarm.SnoozeRepeats != 0 {
		t.Fatalf("a repeat after the snooze: %+v, %v", cs, err)
	}
	es, _, err := db.Changes(ChangeFilter{Target: "alarm " + strconv.FormatUint(forced.ID, 10)})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		ops = append(ops, e.Op+": "+e.Detail)
	}
	if want := "alarm raised: door_forced at door front|alarm snooze ended: door_forced at door front, 2 repeats while snoozed"; strings.Join(ops, "|") != want {
		t.Fatalf("change log %q, want %q", ops, want)
	}
	if v, err := db.VerifyChanges(); err != nil || v.Bad != 0 {
		t.Fatalf("change log: %+v, %v", v, err)
	}
}
