package site

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// doorEvents makes door's events of the given reasons, seq from first,
// linked from prev.
func doorEvents(t *testing.T, door string, first uint64, prev string, reasons ...store.Reason) []store.Event {
	t.Helper()
	var out []store.Event
	for i, r := range reasons {
		e := store.Event{Seq: first + uint64(i), Time: t0.Add(time.Duration(i) * time.Second), Clock: store.TimeSynced, BootID: "b1",
			Door: door, Type: store.TypeDoor, Reason: r, Prev: prev}
		var err error
		if e.Hash, err = store.HashEvent(e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		prev = e.Hash
	}
	return out
}

func defaultPrio(_ string, k AlarmKind) Priority { return DefaultPriority(k) }

func whats(cs []AlarmChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.What+" "+string(c.Alarm.Kind))
	}
	return out
}

// Events raise alarms once per door and kind while open; a repeat is
// counted; door_closed clears a held door but not a forced one; raises and
// clears are change-log entries; the cursor never reads an event twice.
func TestAlarmsFromEvents(t *testing.T) {
	db := open(t)
	if _, err := db.AlarmCursor(); err != nil { // starts at the (empty) end
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	evs := doorEvents(t, "front", 1, zeroHash, store.ReasonDoorForced, store.ReasonDoorHeld, store.ReasonDoorForced,
		store.ReasonGranted, store.ReasonDoorClosed)
	if _, _, _, err := db.AddEvents("front", evs, now); err != nil {
		t.Fatal(err)
	}
	cs, _, _, err := db.AlarmsFromEvents(100, defaultPrio, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"raised door_forced", "raised door_held", "repeated door_forced", "cleared door_held"}
	if got := whats(cs); len(got) != len(want) {
		t.Fatalf("changes %q, want %q", got, want)
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("changes %q, want %q", got, want)
			}
		}
	}
	open, err := db.Alarms(true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].Kind != AlarmDoorForced || open[0].Count != 2 || open[0].Seq != 1 || open[0].LastSeq != 3 ||
		open[0].Priority != PriorityCritical {
		t.Fatalf("open alarms %+v, want door_forced counted twice", open)
	}
	if cs, _, _, err := db.AlarmsFromEvents(100, defaultPrio, now); err != nil || len(cs) != 0 {
		t.Fatalf("again: %v, %v; want nothing", cs, err)
	}
	es, _, err := db.Changes(ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Op != "alarm raised" || es[2].Op != "alarm cleared" || es[2].Who != siteActor {
		t.Fatalf("change log %+v, want three alarm entries", es)
	}
	if v, err := db.VerifyChanges(); err != nil || v.Bad != 0 {
		t.Fatalf("verify changes: %+v, %v", v, err)
	}

	// Resolved, the next forced opening is a new alarm.
	if _, err := db.UpdateAlarm(open[0].ID, func(a *Alarm) error { a.State = AlarmResolved; return nil }); err != nil {
		t.Fatal(err)
	}
	more := doorEvents(t, "front", 6, evs[4].Hash, store.ReasonDoorForced)
	if _, _, _, err := db.AddEvents("front", more, now); err != nil {
		t.Fatal(err)
	}
	cs, _, _, err = db.AlarmsFromEvents(100, defaultPrio, now)
	if err != nil || len(cs) != 1 || cs[0].What != AlarmRaised || cs[0].Alarm.ID == open[0].ID {
		t.Fatalf("after resolve: %+v, %v; want a new alarm", cs, err)
	}
	if _, err := db.UpdateAlarm(99, func(*Alarm) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of no alarm: %v", err)
	}
}

// An approved door is offline after OfflineAfter from its offline status,
// or SilentAfter from an online one; back, its alarm clears with the time
// away; resolved while away, it is not raised again until the door was
// back.
func TestCheckOffline(t *testing.T) {
	db := open(t)
	rule := OfflineRule{OfflineAfter: 2 * time.Minute, SilentAfter: 15 * time.Minute}
	seen := t0
	if err := db.PutDoor(Door{ID: "front", Approved: &Identity{Fingerprint: "F"}}); err != nil {
		t.Fatal(err)
	}
	status := func(online bool, at time.Time) {
		b, _ := json.Marshal(map[string]bool{"online": online})
		if err := db.SetStatus("front", b, 0, at); err != nil {
			t.Fatal(err)
		}
	}
	check := func(now time.Time, want ...string) []AlarmChange {
		t.Helper()
		cs, err := db.CheckOffline(rule, defaultPrio, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := whats(cs); len(got) != len(want) || (len(got) > 0 && got[0] != want[0]) {
			t.Fatalf("at +%v: %q, want %q", now.Sub(seen), got, want)
		}
		return cs
	}
	status(true, seen)
	check(seen.Add(14 * time.Minute))
	status(false, seen)
	check(seen.Add(time.Minute))
	cs := check(seen.Add(2*time.Minute), "raised offline")
	if !cs[0].Alarm.Since.Equal(seen) {
		t.Fatalf("since %v, want %v", cs[0].Alarm.Since, seen)
	}
	check(seen.Add(3 * time.Minute)) // still open: nothing new
	status(true, seen.Add(5*time.Minute))
	cs = check(seen.Add(5*time.Minute), "cleared offline")
	if cs[0].Alarm.Away != 5*time.Minute {
		t.Fatalf("away %v, want 5m", cs[0].Alarm.Away)
	}

	// Silent, then resolved while away: not raised again.
	cs = check(seen.Add(25*time.Minute), "raised offline")
	if _, err := db.UpdateAlarm(cs[0].Alarm.ID, func(a *Alarm) error { a.State = AlarmResolved; return nil }); err != nil {
		t.Fatal(err)
	}
	check(seen.Add(30 * time.Minute))
}

// The open alarms, read through the index, are those a scan of every
// alarm finds open, newest first, however many closed ones there are.
func TestOpenAlarms(t *testing.T) {
	db := open(t)
	kinds := []AlarmKind{AlarmDoorForced, AlarmTamper, AlarmDoorHeld}
	if err := db.update(func(tx *bolt.Tx) error {
		for i := range 300 {
			a := Alarm{Kind: kinds[i%3], Door: []string{"front", "back", "dock", "lab"}[i%4], Priority: PriorityHigh,
				State: AlarmResolved, Opened: t0, Last: t0, Count: 1}
			if i >= 290 && i%2 == 0 {
				a.State = AlarmOpen // the latest of its door and kind
			}
			if i == 295 {
				a.State = AlarmAcknowledged
			}
			if err := putAlarm(tx, &a); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all, err := db.Alarms(false, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for _, a := range all {
		if a.IsOpen() {
			want = append(want, a.ID)
		}
	}
	for _, n := range []int{0, 3} {
		got, err := db.Alarms(true, n)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, a := range got {
			ids = append(ids, a.ID)
		}
		w := want
		if n > 0 {
			w = want[:n]
		}
		if !slices.Equal(ids, w) {
			t.Fatalf("open alarms (n %d): %v, want %v", n, ids, w)
		}
	}
	if len(want) != 6 {
		t.Fatalf("%d open alarms in the scan, want 6", len(want))
	}
}
