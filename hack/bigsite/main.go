// Command bigsite fills a site database with collected events for the
// audit figures: doors of unequal traffic (two main entrances, the rest
// quieter), holders of unequal activity, each with a card, and the mix of
// a working site (grants, refusals, unknown cards, door closes, exit
// requests, held and forced doors, allowlist updates), each door's events
// a valid hash chain, stored by store/site's Collect in batches of many
// doors as the site's collector does.
//
//	go run ./hack/bigsite -db /tmp/latch-big/site.db -events 10000000
//	go run ./hack/bigsite -db /tmp/latch-big/site.db -events 0 -cards 100000
//
// With -cards N it also puts N holders in the allowlist (h00000 on, the
// names and card UIDs the events use), each with a card opening the group
// "all", one in a hundred revoked; with -events 0 it does only that, on a
// site that may hold events.
//
// The database may be new or made by `latch init` (so that `latch serve`
// can run on it); it must hold no events yet. The same flags give the
// same events.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bigsite:", err)
		os.Exit(1)
	}
}

// weighted picks an index with probability proportional to its weight.
type weighted []float64 // cumulative weights

func newWeighted(ws []float64) weighted {
	out := make(weighted, len(ws))
	sum := 0.0
	for i, w := range ws {
		sum += w
		out[i] = sum
	}
	return out
}

func (w weighted) pick(r *rand.Rand) int {
	i, _ := slices.BinarySearch(w, r.Float64()*w[len(w)-1])
	return min(i, len(w)-1)
}

// kind is an event of the mix, with how often it happens.
type kind struct {
	share  float64
	typ    store.EventType
	reason store.Reason
	holder bool // it names a holder and their card
	card   bool // it names a card nobody holds
}

var mix = []kind{
	{0.80, store.TypeAccess, store.ReasonGranted, true, false},
	{0.02, store.TypeAccess, store.ReasonWrongDoor, true, false},
	{0.015, store.TypeAccess, store.ReasonOutsideSchedule, true, false},
	{0.01, store.TypeAccess, store.ReasonBadPIN, true, false},
	{0.005, store.TypeAccess, store.ReasonRevoked, true, false},
	{0.003, store.TypeAccess, store.ReasonExpired, true, false},
	{0.02, store.TypeAccess, store.ReasonUnknownCard, false, true},
	{0.07, store.TypeDoor, store.ReasonDoorClosed, false, false},
	{0.045, store.TypeDoor, store.ReasonExitRequest, false, false},
	{0.006, store.TypeDoor, store.ReasonDoorHeld, false, false},
	{0.001, store.TypeDoor, store.ReasonDoorForced, false, false},
	{0.005, store.TypeSync, store.ReasonACLApplied, false, false},
}

// door is one door's chain so far.
type door struct {
	id   string
	seq  uint64
	prev string
	boot string
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bigsite", flag.ContinueOnError)
	path := fs.String("db", "", "the site database to fill (made if missing)")
	n := fs.Int("events", 10_000_000, "how many events")
	nDoors := fs.Int("doors", 100, "how many doors")
	nHolders := fs.Int("holders", 5000, "how many holders, each with a card")
	batch := fs.Int("batch", 20_000, "events per Collect transaction")
	seed := fs.Uint64("seed", 1, "the random seed")
	days := fs.Int("days", 365, "the span of time the events cover, ending now")
	cards := fs.Int("cards", 0, "also put this many holders with a card each in the allowlist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *n < 0 || *nDoors < 1 || *nHolders < 1 || *batch < 1 || *days < 1 || *cards < 0 || (*n == 0 && *cards == 0) {
		return errors.New("-db is required; -doors, -holders, -batch and -days are positive; -events or -cards is")
	}
	if err := os.MkdirAll(filepath.Dir(*path), 0o700); err != nil {
		return err
	}
	db, err := site.Open(*path, &site.Options{MmapSize: 1 << 30})
	if err != nil {
		return err
	}
	defer db.Close()
	if *cards > 0 {
		if err := addCards(db, *cards); err != nil {
			return err
		}
	}
	if *n == 0 {
		return nil
	}
	if end, err := db.ArrivalEnd(); err != nil {
		return err
	} else if end != 0 {
		return fmt.Errorf("%s holds %d events already; bigsite fills an empty site", *path, end)
	}

	r := rand.New(rand.NewPCG(*seed, 0))
	doors := make([]*door, *nDoors)
	dw := make([]float64, *nDoors)
	for i := range doors {
		doors[i] = &door{id: fmt.Sprintf("door-%03d", i), prev: strings.Repeat("0", 64), boot: fmt.Sprintf("boot-%03d-1", i)}
		dw[i] = 1 + 4*r.Float64()
		if i < 2 {
			dw[i] = 40 // the main entrances
		}
		if err := db.PutDoor(site.Door{ID: doors[i].id, Groups: []string{"all"}}); err != nil {
			return err
		}
	}
	hw := make([]float64, *nHolders)
	for i := range hw {
		hw[i] = 0.2 + 2.8*r.Float64()*r.Float64()
	}
	kw := make([]float64, len(mix))
	for i, k := range mix {
		kw[i] = k.share
	}
	pickDoor, pickHolder, pickKind := newWeighted(dw), newWeighted(hw), newWeighted(kw)

	start := time.Now()
	at := start.Add(-time.Duration(*days) * 24 * time.Hour).UTC().Truncate(time.Second)
	gap := time.Duration(*days) * 24 * time.Hour / time.Duration(*n)
	buf := make([]site.Signed, 0, *batch)
	for i := range *n {
		at = at.Add(time.Duration(r.ExpFloat64() * float64(gap)))
		d := doors[pickDoor.pick(r)]
		k := mix[pickKind.pick(r)]
		d.seq++
		e := store.Event{Seq: d.seq, Time: at, Clock: store.TimeSynced, BootID: d.boot, Door: d.id,
			Type: k.typ, Reason: k.reason, Prev: d.prev}
		switch {
		case k.holder:
			h := pickHolder.pick(r)
			e.Holder, e.HolderName, e.UID = fmt.Sprintf("h%05d", h), fmt.Sprintf("Holder %d", h), cardUID(uint64(h))
		case k.card:
			e.UID = cardUID(1<<40 + r.Uint64N(1<<20))
		case k.reason == store.ReasonACLApplied:
			e.Detail = fmt.Sprintf("delta %d: 2 operations (key hq-1)", d.seq)
		case k.reason == store.ReasonDoorHeld:
			e.Detail = "held open 45s"
		}
		if e.Hash, err = store.HashEvent(e); err != nil {
			return err
		}
		d.prev = e.Hash
		buf = append(buf, site.Signed{Door: d.id, Event: e})
		if len(buf) == cap(buf) || i == *n-1 {
			c, err := db.Collect(buf, at)
			if err != nil {
				return err
			}
			if c.Stored != len(buf) || len(c.Findings) != 0 {
				return fmt.Errorf("batch ending at event %d: %d of %d stored, findings %v", i+1, c.Stored, len(buf), c.Findings)
			}
			buf = buf[:0]
			if (i+1)%500_000 < *batch || i == *n-1 {
				fmt.Fprintf(os.Stderr, "bigsite: %d events in %s (%.0f/s)\n", i+1, time.Since(start).Round(time.Second), float64(i+1)/time.Since(start).Seconds())
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("stopped after %d events: %w", i+1, err)
			}
		}
	}
	fi, err := os.Stat(*path)
	if err != nil {
		return err
	}
	fmt.Printf("bigsite: %s: %d events, %d doors, %d holders, %.1f GiB, built in %s\n",
		*path, *n, *nDoors, *nHolders, float64(fi.Size())/(1<<30), time.Since(start).Round(time.Second))
	return nil
}

// addCards commits n holders, each with a card, in changes of 1,000
// operations.
func addCards(db *site.DB, n int) error {
	start := time.Now()
	var ops []store.Op
	for h := range n {
		uid, err := hex.DecodeString(cardUID(uint64(h)))
		if err != nil {
			return err
		}
		id := fmt.Sprintf("h%05d", h)
		ops = append(ops,
			store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: id, Name: fmt.Sprintf("Holder %d", h)}},
			store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: id, Doors: []string{"all"}}})
		if h%100 == 99 {
			ops = append(ops, store.Op{Kind: store.OpRevokeCard, UID: uid, Reason: "lost"})
		}
		if len(ops) >= 1000 || h == n-1 {
			if _, err := db.Commit(ops, "bigsite", time.Now()); err != nil {
				return fmt.Errorf("holders to h%05d: %w", h, err)
			}
			ops = ops[:0]
		}
	}
	fmt.Fprintf(os.Stderr, "bigsite: %d holders with a card in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// cardUID is a 7-byte UID in upper-case hex, as a door writes it.
func cardUID(i uint64) string {
	return fmt.Sprintf("04%012X", (i*0x9E3779B97F4A7C15)>>16)
}
