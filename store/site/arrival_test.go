package site

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// since reads every event after cursor after with EventsSince, n a call,
// until the cursor stops moving, and returns them and the last cursor.
func since(t *testing.T, db *DB, after uint64, n int, door string) ([]Arrival, uint64) {
	t.Helper()
	var out []Arrival
	for {
		as, next, err := db.EventsSince(after, n, door)
		if err != nil {
			t.Fatal(err)
		}
		if next < after || (next == after && len(as) > 0) {
			t.Fatalf("cursor moved from %d to %d with %d events", after, next, len(as))
		}
		out = append(out, as...)
		if next == after {
			return out, next
		}
		after = next
	}
}

// names lists arrivals as door/seq.
func names(as []Arrival) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s/%d", a.Door, a.Event.Seq))
	}
	return out
}

func sameNames(t *testing.T, what string, got []Arrival, want ...string) {
	t.Helper()
	if g := names(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("%s: %v, want %v", what, g, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Cursor <= got[i-1].Cursor {
			t.Errorf("%s: cursor %d after %d", what, got[i].Cursor, got[i-1].Cursor)
		}
	}
}

// Events come back in the order they were stored, not in seq or time
// order; duplicates and refused events take no place.
func TestEventsSinceArrivalOrder(t *testing.T) {
	db := open(t)
	front := chain(t, "front", 1, 6, zeroHash)
	lab := chain(t, "lab", 1, 3, zeroHash)
	add := func(door string, evs ...store.Event) {
		t.Helper()
		if _, _, _, err := db.AddEvents(door, evs, t0); err != nil {
			t.Fatal(err)
		}
	}
	add("front", front[3], front[4]) // 4 and 5 first: a gap
	add("lab", lab[0])
	add("front", front[0], front[1], front[2]) // the gap filled
	add("front", front[3])                     // a duplicate
	bad := front[5]
	bad.Detail = "altered"
	add("front", bad) // refused: its hash is not its content's
	add("lab", lab[2], lab[1])
	if _, err := db.Collect([]Signed{{Door: "front", Event: front[5]}, {Door: "lab", Event: lab[0]}}, t0); err != nil {
		t.Fatal(err)
	}

	all, end := since(t, db, 0, 0, "")
	sameNames(t, "all", all, "front/4", "front/5", "lab/1", "front/1", "front/2", "front/3", "lab/3", "lab/2", "front/6")
	if all[0].Cursor != 1 || end != all[len(all)-1].Cursor {
		t.Errorf("cursors %d..%d, end %d", all[0].Cursor, all[len(all)-1].Cursor, end)
	}
	if e := all[6].Event; e != lab[2] {
		t.Errorf("lab/3 read back as %+v, want %+v", e, lab[2])
	}
	if got, err := db.ArrivalEnd(); err != nil || got != end {
		t.Errorf("ArrivalEnd %d, %v; want %d", got, err, end)
	}
	// Two a call, from a cursor in the middle, and of one door.
	two, _ := since(t, db, all[2].Cursor, 2, "")
	sameNames(t, "after lab/1", two, "front/1", "front/2", "front/3", "lab/3", "lab/2", "front/6")
	labs, next := since(t, db, 0, 1, "lab")
	sameNames(t, "lab", labs, "lab/1", "lab/3", "lab/2")
	if next != end {
		t.Errorf("a door's read ends at %d, want the end %d", next, end)
	}
	if as, next, err := db.EventsSince(end, 10, ""); err != nil || len(as) != 0 || next != end {
		t.Errorf("at the end: %v, %d, %v", names(as), next, err)
	}

	tail := func(n int, door string) []Arrival {
		t.Helper()
		after, tend, err := db.TailFrom(n, door)
		if err != nil || tend != end {
			t.Fatalf("tail from: end %d, %v; want end %d", tend, err, end)
		}
		got, _ := since(t, db, after, 0, door)
		return got
	}
	sameNames(t, "last 3", tail(3, ""), "lab/3", "lab/2", "front/6")
	sameNames(t, "last 2 of front", tail(2, "front"), "front/3", "front/6")
	sameNames(t, "last 100 of front", tail(100, "front"), "front/4", "front/5", "front/1", "front/2", "front/3", "front/6")
	if got := tail(1, "back"); len(got) != 0 {
		t.Errorf("last of a door with no events: %v", names(got))
	}
	if got := tail(0, "lab"); len(got) != 0 {
		t.Errorf("last 0: %v", names(got))
	}
	if _, _, err := db.TailFrom(-1, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("tail from -1: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// A rare door among many events takes more than one read transaction,
// forwards and backwards.
func TestArrivalScansInChunks(t *testing.T) {
	db := open(t)
	rare := chain(t, "rare", 1, 3, zeroHash)
	if _, _, _, err := db.AddEvents("rare", rare[:2], t0); err != nil {
		t.Fatal(err)
	}
	busy := queryScan*2 + 100
	prev := zeroHash
	for s := uint64(1); s <= uint64(busy); s += 5000 {
		evs := chain(t, "busy", s, min(s+4999, uint64(busy)), prev)
		prev = evs[len(evs)-1].Hash
		if _, _, _, err := db.AddEvents("busy", evs, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := db.AddEvents("rare", rare[2:], t0); err != nil {
		t.Fatal(err)
	}
	// The first call stops after queryScan entries with nothing of the
	// door, and says how far it read.
	as, next, err := db.EventsSince(2, 10, "rare")
	if err != nil || len(as) != 0 || next != 2+queryScan {
		t.Fatalf("first call: %v, next %d, %v; want none, next %d", names(as), next, err, 2+queryScan)
	}
	got, _ := since(t, db, 0, 0, "rare")
	sameNames(t, "rare", got, "rare/1", "rare/2", "rare/3")
	after, end, err := db.TailFrom(2, "rare")
	if err != nil || after != 1 || end != uint64(busy+3) {
		t.Fatalf("tail from: after %d, end %d, %v; want 1, %d", after, end, err, busy+3)
	}
	if after, _, err = db.TailFrom(queryScan+10, "busy"); err != nil || after != uint64(busy+2-queryScan-10) {
		t.Fatalf("tail from of busy: after %d, %v; want %d", after, err, busy+2-queryScan-10)
	}
}

// A follower reading while events are stored sees each once, in cursor
// order, and none is left out.
func TestEventsSinceWhileWriting(t *testing.T) {
	db := open(t)
	const doors, per, batch = 4, 300, 7
	var wg sync.WaitGroup
	for d := range doors {
		door := fmt.Sprintf("door-%d", d)
		evs := chain(t, door, 1, per, zeroHash)
		wg.Go(func() {
			for i := 0; i < per; i += batch {
				if _, _, _, err := db.AddEvents(door, evs[i:min(i+batch, per)], t0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	var after uint64
	for len(seen) < doors*per && !t.Failed() {
		as, next, err := db.EventsSince(after, 50, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			k := fmt.Sprintf("%s/%d", a.Door, a.Event.Seq)
			if seen[k] || a.Cursor <= after {
				t.Fatalf("%s at cursor %d after %d: seen twice or out of order", k, a.Cursor, after)
			}
			seen[k] = true
			after = a.Cursor
		}
		after = next
	}
	wg.Wait()
	if as, _, err := db.EventsSince(after, 0, ""); err != nil || len(as) != 0 {
		t.Errorf("after every event: %v, %v", names(as), err)
	}
}

// A file from before idx_arrival gets it at Open, its events numbered in
// time order, and goes on from there.
func TestArrivalIndexAddedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	front := chain(t, "front", 1, 4, zeroHash)
	// lab's clock is off: its event 1 is after front's 3, its event 2
	// before it.
	lab := chain(t, "lab", 1, 2, zeroHash)
	prev := zeroHash
	for i, at := range []time.Duration{210 * time.Second, 150 * time.Second} {
		lab[i].Time, lab[i].Prev = t0.Add(at), prev
		lab[i].Hash, _ = store.HashEvent(lab[i])
		prev = lab[i].Hash
	}
	for _, b := range []struct {
		door string
		evs  []store.Event
	}{{"lab", lab[:1]}, {"front", front[:3]}, {"lab", lab[1:]}} {
		if _, _, _, err := db.AddEvents(b.door, b.evs, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketIdxArrival) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.AddEvents("front", front[3:], t0); err != nil {
		t.Fatal(err)
	}
	all, end := since(t, db, 0, 0, "")
	sameNames(t, "after open", all, "front/1", "front/2", "lab/2", "front/3", "lab/1", "front/4")
	if end != 6 {
		t.Errorf("end %d, want 6", end)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// Check names an arrival index that does not match the events.
func TestCheckArrivalIndex(t *testing.T) {
	entry := func(cursor, seq uint64) []byte { return arrivalKey(cursor, eventKey("front", seq)) }
	// Each case deletes an entry, puts one, or both.
	for _, tc := range []struct {
		name     string
		del, put []byte
		want     string
	}{
		{"an event without an entry", entry(2, 2), nil, "an event has none, or more than one"},
		{"an event with two entries and one with none", entry(2, 2), entry(2, 1), "an event has none, or more than one"},
		{"an entry naming no event", entry(3, 3), entry(3, 9), "names event"},
		{"a cursor used twice", entry(2, 2), entry(1, 2), "has cursor 1 after 1"},
		{"a cursor beyond the sequence", entry(3, 3), entry(7, 3), "beyond its sequence 3"},
		{"a malformed key", nil, []byte{0, 0, 0, 0, 0, 0, 0, 9, 1}, "is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t)
			if _, _, _, err := db.AddEvents("front", chain(t, "front", 1, 3, zeroHash), t0); err != nil {
				t.Fatal(err)
			}
			if err := db.Check(); err != nil {
				t.Fatal(err)
			}
			if err := db.update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketIdxArrival)
				if tc.del != nil {
					if err := b.Delete(tc.del); err != nil {
						return err
					}
				}
				if tc.put != nil {
					return b.Put(tc.put, nil)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			err := db.Check()
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("Check: %v, want ErrCorrupt with %q", err, tc.want)
			}
		})
	}
}
