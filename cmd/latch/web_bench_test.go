package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// BenchmarkConsolePages measures the console's pages on a big site: time
// to first byte and to the last byte of each page, over HTTP on loopback
// from a real latch serve, and the browser's full load (DOMContentLoaded
// and load, with the script and style sheet) in chromium.
//
// LATCH_CONSOLE_BENCH_DIR names a directory with site.db and site.key
// made by latch init and filled by hack/bigsite (10,000,000 events and
// 100,000 cards for the figures in docs/console.md):
//
//	go run ./hack/bigsite -db DIR/site.db -events 10000000
//	go run ./hack/bigsite -db DIR/site.db -events 0 -cards 100000
//	LATCH_CONSOLE_BENCH_DIR=DIR go test -run X -bench ConsolePages -benchtime 20x ./cmd/latch
//
// Without it the benchmark makes a small site of its own (20,000 events,
// 2,000 cards), which checks that it runs.
func BenchmarkConsolePages(b *testing.B) {
	dir := os.Getenv("LATCH_CONSOLE_BENCH_DIR")
	var s *testSite
	if dir != "" {
		s = &testSite{dir: dir, db: filepath.Join(dir, "site.db"), key: filepath.Join(dir, "site.key"), sock: filepath.Join(b.TempDir(), "latch.sock")}
	} else {
		s = initSite(b)
		fillBenchSite(b, s.db, 20000, 2000)
	}
	var base string
	o := serveOptions{web: webConfig{Listen: "127.0.0.1:0"}}
	o.webReady = func(addr string) { base = "http://" + addr }
	sv := s.start(b, o)
	b.Cleanup(func() { sv.stop(b) })
	name := fmt.Sprintf("bench%d", time.Now().UnixNano())
	s.ok(b, adminPW+"\n", "user", "add", name, "--role", "auditor")
	br := (&consoleSite{testSite: s, base: base}).browser(b)
	br.mustLogin(name, adminPW)

	// An older page's link, from the first page.
	first := br.get("/activity")
	older := regexp.MustCompile(`href="(/activity\?cursor=[^"]+)" rel="next"`).FindStringSubmatch(first.body)
	if older == nil {
		b.Fatalf("no older page on /activity")
	}
	pages := []struct{ name, path string }{
		{"activity", "/activity"},
		{"activity_older", older[1]},
		{"activity_door", "/activity?door=door-007"},
		{"activity_holder", "/activity?holder=h00042"},
		{"activity_forced", "/activity?reason=door_forced"},
		{"activity_none", "/activity?reason=tamper"},
		{"people", "/people"},
		{"people_search", "/people?q=Holder+1999"},
		{"people_uid", "/people?q=" + cardUID(42)},
		{"holder", "/people/h00042"},
		{"doors", "/doors"},
	}
	for _, pg := range pages {
		b.Run(pg.name, func(b *testing.B) {
			var ttfb, total []time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := br.c.Get(base + pg.path)
				if err != nil {
					b.Fatal(err)
				}
				first := time.Since(start)
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || n == 0 {
					b.Fatalf("%s: %d", pg.path, res.StatusCode)
				}
				ttfb, total = append(ttfb, first), append(total, time.Since(start))
			}
			b.ReportMetric(ms(median(ttfb)), "ttfb_ms")
			b.ReportMetric(ms(median(total)), "total_ms")
		})
	}

	// The full load in a browser, when there is one.
	if _, err := exec.LookPath("chromium"); err != nil {
		return
	}
	c := startChrome(b)
	c.login(base, name, adminPW)
	for _, pg := range []struct{ name, path string }{{"browser_activity", "/activity"}, {"browser_people", "/people"}} {
		b.Run(pg.name, func(b *testing.B) {
			var dcl, load []time.Duration
			for b.Loop() {
				c.run("load "+pg.path, chromedp.Navigate(base+pg.path))
				c.waitJS("loaded", `performance.getEntriesByType("navigation")[0].loadEventEnd > 0`)
				t := eval[[]float64](c, "timing", `(() => { const n = performance.getEntriesByType("navigation")[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd]; })()`)
				dcl = append(dcl, time.Duration(t[0]*float64(time.Millisecond)))
				load = append(load, time.Duration(t[1]*float64(time.Millisecond)))
			}
			b.ReportMetric(ms(median(dcl)), "dom_ms")
			b.ReportMetric(ms(median(load)), "load_ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// cardUID is hack/bigsite's card UID of holder i.
func cardUID(i uint64) string {
	return fmt.Sprintf("04%012X", (i*0x9E3779B97F4A7C15)>>16)
}

// fillBenchSite fills a site database the way hack/bigsite does, smaller:
// doors door-000…, holders h00000… each with a card, and events naming
// them.
func fillBenchSite(b *testing.B, path string, events, holders int) {
	b.Helper()
	db, err := site.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var ops []store.Op
	for h := range holders {
		uid, _ := parseUID(cardUID(uint64(h)))
		id := fmt.Sprintf("h%05d", h)
		ops = append(ops, store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: id, Name: fmt.Sprintf("Holder %d", h)}},
			store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: id, Doors: []string{"all"}}})
	}
	if _, err := db.Commit(ops, "bench", time.Now()); err != nil {
		b.Fatal(err)
	}
	const nDoors = 10
	prev := make([]string, nDoors)
	seq := make([]uint64, nDoors)
	at := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	var batch []site.Signed
	for i := range events {
		d := i % nDoors
		door := fmt.Sprintf("door-%03d", d)
		if seq[d] == 0 {
			prev[d] = fmt.Sprintf("%064d", 0)
			if err := db.PutDoor(site.Door{ID: door}); err != nil {
				b.Fatal(err)
			}
		}
		seq[d]++
		at = at.Add(time.Second)
		e := store.Event{Seq: seq[d], Time: at, Clock: store.TimeSynced, BootID: "boot", Door: door, Type: store.TypeAccess, Reason: store.ReasonGranted, Prev: prev[d]}
		if i%1000 == 7 {
			e.Type, e.Reason = store.TypeDoor, store.ReasonDoorForced
		} else {
			h := i % holders
			e.Holder, e.HolderName, e.UID = fmt.Sprintf("h%05d", h), fmt.Sprintf("Holder %d", h), cardUID(uint64(h))
		}
		if e.Hash, err = store.HashEvent(e); err != nil {
			b.Fatal(err)
		}
		prev[d] = e.Hash
		batch = append(batch, site.Signed{Door: door, Event: e})
		if len(batch) == 5000 || i == events-1 {
			if _, err := db.Collect(batch, at); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
