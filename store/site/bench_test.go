package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// benchEvents makes door's events first..last, holder and UID one of
// holders in turn, a second apart.
func benchEvents(b testing.TB, door string, first, last uint64, prev string, holders int) []store.Event {
	out := make([]store.Event, 0, last-first+1)
	for s := first; s <= last; s++ {
		h := int(s) % holders
		e := store.Event{Seq: s, Time: t0.Add(time.Duration(s) * time.Second), Clock: store.TimeSynced, BootID: "boot",
			Door: door, Type: store.TypeAccess, Reason: store.ReasonGranted,
			UID: fmt.Sprintf("04%06X", h), Holder: "holder-" + strconv.Itoa(h), HolderName: "Holder " + strconv.Itoa(h), Prev: prev}
		var err error
		if e.Hash, err = store.HashEvent(e); err != nil {
			b.Fatal(err)
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// BenchmarkAddEvents stores batches of 100 events from 100 doors in turn,
// one transaction per batch, each event checked (hash, duplicate, links)
// and indexed.
func BenchmarkAddEvents(b *testing.B) {
	db := open(b)
	const doors, batch = 100, 100
	rounds := (b.N + doors*batch - 1) / (doors * batch)
	evs := make([][]store.Event, doors)
	for d := range evs {
		evs[d] = benchEvents(b, "door-"+strconv.Itoa(d), 1, uint64(rounds*batch), zeroHash, 1000)
	}
	b.ResetTimer()
	n := 0
	for r := 0; r < rounds && n < b.N; r++ {
		for d := 0; d < doors && n < b.N; d++ {
			stored, _, fs, err := db.AddEvents("door-"+strconv.Itoa(d), evs[d][r*batch:(r+1)*batch], t0)
			if err != nil || stored != batch || len(fs) != 0 {
				b.Fatal(stored, fs, err)
			}
			n += batch
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

var queryDB struct {
	once sync.Once
	dir  string
	db   *DB
	n    int
	err  error
}

// TestMain removes the store BenchmarkQueryByHolder built.
func TestMain(m *testing.M) {
	code := m.Run()
	if queryDB.db != nil {
		queryDB.db.Close()
		os.RemoveAll(queryDB.dir)
	}
	os.Exit(code)
}

// BenchmarkQueryByHolder queries every event of one holder (of 1,000)
// among N events from 100 doors: N/1,000 events per query. N is 20,000
// with -short, else LATCH_SITE_BENCH_EVENTS or 200,000; the store is
// built once per process.
func BenchmarkQueryByHolder(b *testing.B) {
	queryDB.once.Do(func() {
		n := 200_000
		if testing.Short() {
			n = 20_000
		}
		if s := os.Getenv("LATCH_SITE_BENCH_EVENTS"); s != "" {
			n, queryDB.err = strconv.Atoi(s)
		}
		dir, err := os.MkdirTemp("", "latch-site-bench")
		if err != nil {
			queryDB.err = err
			return
		}
		queryDB.dir = dir
		db, err := Open(filepath.Join(dir, "site.db"), &Options{MmapSize: 1 << 30})
		if err != nil {
			queryDB.err = err
			return
		}
		queryDB.db, queryDB.n = db, n
		start := time.Now()
		const doors, chunk = 100, 10_000
		per := uint64(n / doors)
		for d := range doors {
			door := "door-" + strconv.Itoa(d)
			prev := zeroHash
			for s := uint64(1); s <= per; s += chunk {
				evs := benchEvents(b, door, s, min(s+chunk-1, per), prev, 1000)
				prev = evs[len(evs)-1].Hash
				if _, _, _, err := db.AddEvents(door, evs, t0); err != nil {
					queryDB.err = err
					return
				}
			}
		}
		fi, _ := os.Stat(db.Path())
		b.Logf("built %d events in %s, file %d MiB", n, time.Since(start).Round(time.Millisecond), fi.Size()>>20)
	})
	if queryDB.err != nil {
		b.Fatal(queryDB.err)
	}
	db := queryDB.db
	b.ResetTimer()
	got := 0
	for i := 0; i < b.N; i++ {
		for r, err := range db.Query(Filter{Holder: "holder-" + strconv.Itoa(i%1000)}) {
			if err != nil {
				b.Fatal(err)
			}
			_ = r
			got++
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/query")
	b.ReportMetric(float64(got)/float64(b.N), "events/query")
	b.ReportMetric(float64(queryDB.n), "events_stored")
}
