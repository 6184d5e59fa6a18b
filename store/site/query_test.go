package site

import (
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func collect(t *testing.T, db *DB, f Filter) []Record {
	t.Helper()
	var out []Record
	for r, err := range db.Query(f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestQuery(t *testing.T) {
	db := open(t)
	// 1,500 events per door: holders alice, bob, carol in turn; every
	// tenth a door_forced with no holder or UID.
	for _, door := range []string{"front", "lab"} {
		evs := chain(t, door, 1, 1500, zeroHash)
		prev := zeroHash
		for i := range evs {
			e := &evs[i]
			if e.Seq%10 == 0 {
				e.Type, e.Reason, e.Holder, e.HolderName, e.UID = store.TypeDoor, store.ReasonDoorForced, "", "", ""
			}
			e.Prev = prev
			e.Hash, _ = store.HashEvent(*e)
			prev = e.Hash
		}
		if _, _, fs, err := db.AddEvents(door, evs, t0); err != nil || len(fs) != 0 {
			t.Fatal(fs, err)
		}
	}
	all := collect(t, db, Filter{})
	if len(all) != 3000 {
		t.Fatalf("%d events, want 3000", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Event.Time.Before(all[i-1].Event.Time) {
			t.Fatalf("out of time order at %d", i)
		}
	}
	// seq%3 == 1 is bob; of those, seq%10 == 0 are door events.
	bob := collect(t, db, Filter{Holder: "bob"})
	want := 0
	for s := 1; s <= 1500; s++ {
		if s%3 == 1 && s%10 != 0 {
			want++
		}
	}
	if len(bob) != 2*want {
		t.Errorf("bob: %d events, want %d", len(bob), 2*want)
	}
	for _, r := range bob {
		if r.Event.Holder != "bob" {
			t.Fatalf("bob's query returned %+v", r)
		}
	}
	from, to := t0.Add(100*time.Minute), t0.Add(200*time.Minute)
	got := collect(t, db, Filter{Holder: "bob", Door: "lab", From: from, To: to})
	for _, r := range got {
		if r.Door != "lab" || r.Event.Time.Before(from) || !r.Event.Time.Before(to) {
			t.Fatalf("out of the filter: %+v", r)
		}
	}
	if n := len(got); n < 30 || n > 34 {
		t.Errorf("bob at lab in 100 minutes: %d", n)
	}
	if got := collect(t, db, Filter{UID: "04A1B2C1", Limit: 7}); len(got) != 7 || got[0].Event.UID != "04A1B2C1" {
		t.Errorf("uid with limit: %d", len(got))
	}
	if got := collect(t, db, Filter{Door: "front", Reason: store.ReasonDoorForced}); len(got) != 150 {
		t.Errorf("forced at front: %d, want 150", len(got))
	}
	if got := collect(t, db, Filter{Type: store.TypeDoor, From: from}); len(got) != 2*141 {
		t.Errorf("door events from 100 min: %d, want %d", len(got), 2*141)
	}
	if got := collect(t, db, Filter{Holder: "nobody"}); len(got) != 0 {
		t.Errorf("nobody: %d", len(got))
	}
	// Stopping early is fine.
	n := 0
	for range db.Query(Filter{Door: "lab"}) {
		n++
		if n == 3 {
			break
		}
	}
}

func TestFilterSelects(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	e := store.Event{Time: at, Type: store.TypeAccess, Reason: store.ReasonGranted, Holder: "ada", UID: "04A1B2C3"}
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Door: "front", Holder: "ada", UID: "04A1B2C3", Type: store.TypeAccess, Reason: store.ReasonGranted, From: at, To: at.Add(time.Second)}, true},
		{Filter{Door: "back"}, false},
		{Filter{Holder: "bob"}, false},
		{Filter{UID: "04A1B2C4"}, false},
		{Filter{Type: store.TypeDoor}, false},
		{Filter{Reason: store.ReasonRevoked}, false},
		{Filter{From: at.Add(time.Nanosecond)}, false},
		{Filter{To: at}, false},
	} {
		if got := c.f.Selects("front", &e); got != c.want {
			t.Errorf("%+v selects: %v, want %v", c.f, got, c.want)
		}
	}
}
