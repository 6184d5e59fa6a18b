package site

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// pageDB holds the events of TestQuery (doors front and lab, 1,500 each at
// the same times, holders alice, bob and carol in turn, every tenth a
// door_forced with no holder or UID) and 30 events of door x whose holder
// is boc, whose label key is where bob's keys end.
func pageDB(t *testing.T) *DB {
	t.Helper()
	db := open(t)
	for _, door := range []string{"front", "lab", "x"} {
		last := uint64(1500)
		if door == "x" {
			last = 30
		}
		evs := chain(t, door, 1, last, zeroHash)
		prev := zeroHash
		for i := range evs {
			e := &evs[i]
			switch {
			case door == "x":
				e.Holder, e.HolderName = "boc", "BOC"
			case e.Seq%10 == 0:
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
	return db
}

// pageAll reads f newest first, n events a page reading at most budget
// keys each, to the last page, checks what every page says of itself, and
// returns the events and the pages.
func pageAll(t *testing.T, db *DB, f Filter, n, budget int) ([]Record, []Page) {
	t.Helper()
	var out []Record
	var pages []Page
	cursor := ""
	for {
		p, err := db.QueryPage(f, cursor, n, budget)
		if err != nil {
			t.Fatalf("%+v, page %d: %v", f, len(pages)+1, err)
		}
		if len(p.Records) > n || (budget > 0 && p.Scanned > budget) || p.Scanned < len(p.Records) {
			t.Fatalf("%+v, page %d: %d records, %d keys read, n %d, budget %d", f, len(pages)+1, len(p.Records), p.Scanned, n, budget)
		}
		if !p.Reached.IsZero() {
			// Stopped on the budget: everything read is at or after the
			// time reached, and it goes on.
			if p.Next == "" || len(p.Records) == n || p.Scanned != budget {
				t.Fatalf("%+v, page %d: reached %s with next %q, %d records, %d keys read", f, len(pages)+1, p.Reached, p.Next, len(p.Records), p.Scanned)
			}
			for _, r := range p.Records {
				if r.Event.Time.Before(p.Reached) {
					t.Fatalf("%+v, page %d: %s is before the time reached, %s", f, len(pages)+1, r.Event.Time, p.Reached)
				}
			}
		}
		if len(pages) > 0 {
			if before := pages[len(pages)-1]; !before.Reached.IsZero() && len(p.Records) > 0 && p.Records[0].Event.Time.After(before.Reached) {
				t.Fatalf("%+v, page %d: %s is after the time the page before reached, %s", f, len(pages)+1, p.Records[0].Event.Time, before.Reached)
			}
		}
		pages = append(pages, p)
		out = append(out, p.Records...)
		if p.Next == "" {
			return out, pages
		}
		if len(pages) > 100_000 {
			t.Fatalf("%+v: no end after %d pages", f, len(pages))
		}
		cursor = p.Next
	}
}

// newestFirst is what Query returns for f, reversed.
func newestFirst(t *testing.T, db *DB, f Filter) []Record {
	t.Helper()
	out := collect(t, db, f)
	slices.Reverse(out)
	return out
}

// sameRecords fails unless got and want are the same events in the same
// order, and says where they part.
func sameRecords(t *testing.T, what string, got, want []Record) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	at := func(rs []Record) string {
		if i >= len(rs) {
			return "the end"
		}
		return fmt.Sprintf("%s %d at %s", rs[i].Door, rs[i].Event.Seq, rs[i].Event.Time.Format(time.TimeOnly))
	}
	t.Fatalf("%s: %d events, want %d; they part at %d: %s, want %s", what, len(got), len(want), i, at(got), at(want))
}

var pageFilters = []Filter{
	{},
	{Door: "front"},
	{Door: "x"},
	{Holder: "bob"},
	{Holder: "boc"},
	{UID: "04A1B2C1"},
	{Type: store.TypeDoor},
	{Reason: store.ReasonDoorForced},
	{From: t0.Add(100 * time.Minute), To: t0.Add(200 * time.Minute)},
	{From: t0.Add(1400 * time.Minute)},
	{To: t0.Add(20 * time.Minute)},
	{To: t0.Add(100_000 * time.Minute)},
	{Door: "lab", Holder: "bob"},
	{Door: "lab", Holder: "bob", From: t0.Add(100 * time.Minute), To: t0.Add(200 * time.Minute)},
	{Door: "front", Reason: store.ReasonDoorForced, To: t0.Add(700 * time.Minute)},
	{UID: "04A1B2C2", Door: "front", From: t0.Add(30 * time.Minute)},
	{Type: store.TypeAccess, Reason: store.ReasonGranted, From: t0.Add(1000 * time.Minute)},
	{From: t0.Add(300 * time.Minute), To: t0.Add(300 * time.Minute)},
	{Holder: "nobody"},
	{Door: "nowhere"},
}

func TestQueryPageIsQueryReversed(t *testing.T) {
	db := pageDB(t)
	for _, f := range pageFilters {
		want := newestFirst(t, db, f)
		if f.Holder != "nobody" && f.Door != "nowhere" && f.To != f.From && len(want) == 0 {
			t.Fatalf("%+v selects nothing", f)
		}
		for _, n := range []int{1, 7, 50, 1_000_000} {
			got, pages := pageAll(t, db, f, n, 0)
			sameRecords(t, fmt.Sprintf("%+v, %d a page", f, n), got, want)
			for i, p := range pages {
				if !p.Reached.IsZero() {
					t.Fatalf("%+v: page %d reached %s within the default budget", f, i+1, p.Reached)
				}
				if i < len(pages)-1 && len(p.Records) != n {
					t.Fatalf("%+v: page %d of %d has %d events, want %d", f, i+1, len(pages), len(p.Records), n)
				}
			}
			if n > len(want) && len(pages) != 1 {
				t.Errorf("%+v: %d events in %d pages of %d", f, len(want), len(pages), n)
			}
		}
		// The limit is Query's: QueryPage ignores it.
		f.Limit = 3
		if got, _ := pageAll(t, db, f, 1_000_000, 0); len(got) != len(want) {
			t.Errorf("%+v: %d events, want %d", f, len(got), len(want))
		}
	}
	// A page that ends with the last key has no next one; a full page
	// with keys after it has.
	p, err := db.QueryPage(Filter{}, "", 3030, 0)
	if err != nil || len(p.Records) != 3030 || p.Next != "" || p.Scanned != 3030 {
		t.Errorf("all in one page: %d records, %d read, next %q, %v", len(p.Records), p.Scanned, p.Next, err)
	}
	p, err = db.QueryPage(Filter{}, "", 3029, 0)
	if err != nil || len(p.Records) != 3029 || p.Next == "" {
		t.Errorf("all but one: %d records, next %q, %v", len(p.Records), p.Next, err)
	}
	if p, err = db.QueryPage(Filter{}, p.Next, 5, 0); err != nil || len(p.Records) != 1 || p.Next != "" || p.Records[0].Door != "x" || p.Records[0].Event.Seq != 1 {
		t.Errorf("the last one: %+v, %v", p, err)
	}
	// Newest first: at t0+1500 min, front and lab (lab's door key is
	// shorter, so it sorts first in Query), then 1499.
	p, err = db.QueryPage(Filter{Door: "lab", Holder: "alice"}, "", 2, 0)
	if err != nil || len(p.Records) != 2 || p.Records[0].Event.Seq != 1497 || p.Records[1].Event.Seq != 1494 {
		t.Errorf("alice at lab: %+v, %v", p.Records, err)
	}
	p, err = db.QueryPage(Filter{}, "", 3, 0)
	if err != nil || len(p.Records) != 3 || p.Records[0].Door != "front" || p.Records[1].Door != "lab" || p.Records[2].Event.Seq != 1499 {
		t.Errorf("the newest: %+v, %v", p.Records, err)
	}
}

func TestQueryPageBudget(t *testing.T) {
	db := pageDB(t)
	// One of ten of front's keys is a forced door: the newest 25 keys
	// (seq 1500 down to 1476) hold 3.
	f := Filter{Door: "front", Reason: store.ReasonDoorForced}
	p, err := db.QueryPage(f, "", 50, 25)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 3 || p.Scanned != 25 || p.Next == "" || !p.Reached.Equal(t0.Add(1476*time.Minute)) {
		t.Fatalf("first page: %d records, %d read, next %q, reached %s", len(p.Records), p.Scanned, p.Next, p.Reached)
	}
	for i, seq := range []uint64{1500, 1490, 1480} {
		if r := p.Records[i]; r.Door != "front" || r.Event.Seq != seq {
			t.Errorf("record %d: %s %d, want front %d", i, r.Door, r.Event.Seq, seq)
		}
	}
	// The next page goes on below seq 1476: 1470 is its first.
	q, err := db.QueryPage(f, p.Next, 1, 25)
	if err != nil || len(q.Records) != 1 || q.Records[0].Event.Seq != 1470 || q.Scanned != 6 || !q.Reached.IsZero() {
		t.Fatalf("second page: %+v, %v", q, err)
	}
	// A budget that ends with the keys ends the query.
	p, err = db.QueryPage(f, "", 1000, 1500)
	if err != nil || len(p.Records) != 150 || p.Scanned != 1500 || p.Next != "" || !p.Reached.IsZero() {
		t.Fatalf("budget of all keys: %d records, %d read, next %q, reached %s, %v", len(p.Records), p.Scanned, p.Next, p.Reached, err)
	}

	// Paged to the end, budgets small and large give Query's events,
	// reversed, whether pages stop on n or on the budget; budgets below
	// one in ten give empty pages that go on.
	for _, f := range pageFilters {
		want := newestFirst(t, db, f)
		for _, c := range []struct{ n, budget int }{{50, 5}, {3, 7}, {7, 3}, {1, 1}, {100, 333}} {
			got, pages := pageAll(t, db, f, c.n, c.budget)
			sameRecords(t, fmt.Sprintf("%+v, %d a page, budget %d", f, c.n, c.budget), got, want)
			empty, reached := 0, 0
			for _, p := range pages {
				if len(p.Records) == 0 {
					empty++
				}
				if !p.Reached.IsZero() {
					reached++
				}
			}
			if f.Reason == store.ReasonDoorForced && f.Door == "" && c.budget == 5 && (empty == 0 || reached == 0) {
				t.Errorf("%+v, budget 5: %d pages, %d empty, %d reached", f, len(pages), empty, reached)
			}
		}
	}
}

func TestQueryPageCursors(t *testing.T) {
	db := pageDB(t)
	next := func(f Filter) string {
		t.Helper()
		p, err := db.QueryPage(f, "", 10, 0)
		if err != nil || p.Next == "" {
			t.Fatalf("%+v: %+v, %v", f, p, err)
		}
		return p.Next
	}
	bob, front, all := next(Filter{Holder: "bob"}), next(Filter{Door: "front"}), next(Filter{})
	uid := next(Filter{UID: "04A1B2C1"})
	key, err := base64.RawURLEncoding.DecodeString(bob)
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for _, tc := range []struct {
		name, cursor string
		f            Filter
		says         string
	}{
		{"not base64", "not a cursor!", Filter{}, "not one of a page"},
		{"padding", bob + "==", Filter{Holder: "bob"}, "not one of a page"},
		{"std alphabet", strings.ReplaceAll(strings.ReplaceAll(bob, "-", "+"), "_", "/") + "+/", Filter{Holder: "bob"}, "not one of a page"},
		{"one byte", "AA", Filter{}, "unknown index tag"},
		{"unknown tag", reencode(append([]byte{'z'}, key[1:]...)), Filter{Holder: "bob"}, "unknown index tag"},
		{"cut short", reencode(key[:len(key)-3]), Filter{Holder: "bob"}, "malformed"},
		{"longer", reencode(append(slices.Clone(key), 0)), Filter{Holder: "bob"}, "malformed"},
		{"tag only", reencode(key[:1]), Filter{Holder: "bob"}, "malformed"},
		{"time index, cut short", all[:len(all)-4], Filter{}, "malformed"},
		{"door index, cut short", front[:len(front)-4], Filter{Door: "front"}, "malformed"},
		{"another holder", bob, Filter{Holder: "alice"}, "another holder"},
		{"holder in uid index", bob, Filter{UID: "04A1B2C1"}, "idx_holder index, this one reads idx_uid"},
		{"another uid", uid, Filter{UID: "04A1B2C2"}, "another UID"},
		{"another door", front, Filter{Door: "lab"}, "another door"},
		{"door in time index", front, Filter{}, "idx_door_time index, this one reads idx_time"},
		{"time in door index", all, Filter{Door: "front"}, "idx_time index, this one reads idx_door_time"},
		{"door in holder index", front, Filter{Holder: "bob", Door: "front"}, "idx_door_time index, this one reads idx_holder"},
	} {
		_, err := db.QueryPage(tc.f, tc.cursor, 10, 0)
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "site: query page: invalid: ") || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", tc.name, err, tc.says)
		}
	}
	if _, err := db.QueryPage(Filter{}, "", 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("n 0: %v", err)
	}

	// A cursor of the same index and prefix is the place to go on from,
	// whatever else the filter says.
	want := newestFirst(t, db, Filter{Holder: "bob", Door: "lab"})
	p, err := db.QueryPage(Filter{Holder: "bob", Door: "lab"}, bob, 1_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	// bob's newest 10 are 5 at lab and 5 at front.
	sameRecords(t, "bob at lab after bob's first page", p.Records, want[5:])
	// A cursor above To starts at To; one below From gives nothing.
	f := Filter{Door: "front", To: t0.Add(700 * time.Minute)}
	got, _ := pageAll(t, db, f, 1_000_000, 0)
	p, err = db.QueryPage(f, front, 1_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "cursor above To", p.Records, got)
	f = Filter{Door: "front", From: t0.Add(1495 * time.Minute)}
	if p, err = db.QueryPage(f, front, 10, 0); err != nil || len(p.Records) != 0 || p.Next != "" || p.Scanned != 0 {
		t.Errorf("cursor below From: %+v, %v", p, err)
	}
}

func TestQueryPageWhileStoring(t *testing.T) {
	db := pageDB(t)
	f := Filter{Door: "front"}
	want := newestFirst(t, db, f)
	p, err := db.QueryPage(f, "", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Records
	// Newer events of the door.
	last, err := db.Event("front", 1500)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, fs, err := db.AddEvents("front", chain(t, "front", 1501, 1600, last.Hash), t0); err != nil || len(fs) != 0 {
		t.Fatal(fs, err)
	}
	for p.Next != "" {
		if p, err = db.QueryPage(f, p.Next, 100, 0); err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Records...)
	}
	sameRecords(t, "front, paged while storing", got, want)
}

func TestQueryPageEmptyAndDamaged(t *testing.T) {
	db := open(t)
	p, err := db.QueryPage(Filter{}, "", 50, 0)
	if err != nil || len(p.Records) != 0 || p.Next != "" || p.Scanned != 0 || !p.Reached.IsZero() {
		t.Errorf("empty: %+v, %v", p, err)
	}
	if _, _, _, err := db.AddEvents("front", chain(t, "front", 1, 5, zeroHash), t0); err != nil {
		t.Fatal(err)
	}
	// An index key too short to name an event, after front's.
	err = db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdxDoorTime).Put(append(doorKey("front"), 0xff, 0xff), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.QueryPage(Filter{Door: "front"}, "", 50, 0); !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "site: query page: ") {
		t.Errorf("damaged index: %v, want ErrCorrupt", err)
	}
}

// BenchmarkQueryPage times a console's first page of 50 events, newest
// first, among N events from 100 doors (N as in BenchmarkQueryByHolder:
// 200,000, 20,000 with -short, or LATCH_SITE_BENCH_EVENTS): of all events,
// of one door (1 event in 100), of a rare reason (door_forced: 1 in 1,000,
// of every door in turn), and of a reason no event has, which reads the
// whole budget (all N keys when N is 200,000). With LATCH_BIG_DB set it
// times the pages on that database, built by hack/bigsite, instead.
func BenchmarkQueryPage(b *testing.B) {
	var db *DB
	stored := 0
	if path := os.Getenv("LATCH_BIG_DB"); path != "" {
		var err error
		if db, err = Open(path, nil); err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		end, err := db.ArrivalEnd()
		if err != nil {
			b.Fatal(err)
		}
		stored = int(end)
	} else {
		db, stored = pageBenchDB(b)
	}
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"all", Filter{}},
		{"door", Filter{Door: "door-007"}},
		{"rare-reason", Filter{Reason: store.ReasonDoorForced}},
		{"absent-reason", Filter{Reason: store.ReasonTamper}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			scanned, got := 0, 0
			for b.Loop() {
				p, err := db.QueryPage(tc.f, "", 50, 0)
				if err != nil {
					b.Fatal(err)
				}
				scanned += p.Scanned
				got += len(p.Records)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N), "µs/page")
			b.ReportMetric(float64(got)/float64(b.N), "events/page")
			b.ReportMetric(float64(scanned)/float64(b.N), "keys/page")
			b.ReportMetric(float64(stored), "events_stored")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// pageBenchDB builds BenchmarkQueryPage's store in a directory the
// benchmark removes: benchEvents of doors door-000 to door-099, a second
// apart, every thousandth of each door a door_forced with no holder or
// UID, the doors' forced doors 10 s apart.
func pageBenchDB(b *testing.B) (*DB, int) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	if s := os.Getenv("LATCH_SITE_BENCH_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	db, err := Open(filepath.Join(b.TempDir(), "site.db"), &Options{MmapSize: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	start := time.Now()
	const doors, chunk = 100, 10_000
	per := uint64(n / doors)
	for d := range doors {
		door := fmt.Sprintf("door-%03d", d)
		prev := zeroHash
		for s := uint64(1); s <= per; s += chunk {
			evs := benchEvents(b, door, s, min(s+chunk-1, per), prev, 1000)
			for i := range evs {
				e := &evs[i]
				if (e.Seq+uint64(d)*10)%1000 == 0 {
					e.Type, e.Reason, e.Holder, e.HolderName, e.UID = store.TypeDoor, store.ReasonDoorForced, "", "", ""
				}
				e.Prev = prev
				if e.Hash, err = store.HashEvent(*e); err != nil {
					b.Fatal(err)
				}
				prev = e.Hash
			}
			if _, _, fs, err := db.AddEvents(door, evs, t0); err != nil || len(fs) != 0 {
				b.Fatal(fs, err)
			}
		}
	}
	fi, err := os.Stat(db.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d events in %s, file %d MiB", n, time.Since(start).Round(time.Millisecond), fi.Size()>>20)
	return db, n
}
