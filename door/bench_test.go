package door

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// benchCards is the size of the allowlist in the benchmark.
const benchCards = 100_000

// benchUID returns the i-th fixture card's 7-byte UID.
func benchUID(i int) []byte {
	uid := make([]byte, 7)
	uid[0] = 0x04
	binary.BigEndian.PutUint32(uid[3:], uint32(i))
	return uid
}

// buildFixture writes benchCards cards for door "front" in one snapshot.
func buildFixture(b *testing.B, st *store.Store) {
	b.Helper()
	sn := store.Snapshot{Seq: 1}
	for i := range benchCards {
		sn.Cards = append(sn.Cards, store.Card{
			UID:        benchUID(i),
			HolderID:   fmt.Sprintf("h%06d", i),
			HolderName: fmt.Sprintf("Holder %d", i),
			Doors:      []string{"front"},
		})
	}
	if err := st.ApplySnapshot(sn); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCardToRelay measures, in card-only mode with 100,000 cards in a
// real store and its journal, the time from a card's UID arriving at the
// controller to the relay pin changing: the grant's record is durable
// before the relay moves. Each iteration presents a random enrolled card,
// waits for the relay, relocks it by advancing the manual clock, and waits
// for the journal to be idle again.
//
// idle: the card arrives at an idle door. busy: a tamper change is handed
// to the controller just before the card, so the card arrives while the
// previous step's write is still under way (the loop itself never waits
// for it). commits-on-path counts the store's commits (each made durable
// by bbolt's fdatasyncs) that completed between the card and the relay,
// the previous step's included: the grant's record and its unlock record
// are one.
func BenchmarkCardToRelay(b *testing.B) {
	for _, busy := range []bool{false, true} {
		name := "idle"
		if busy {
			name = "busy"
		}
		b.Run(name, func(b *testing.B) { benchCardToRelay(b, busy) })
	}
}

func benchCardToRelay(b *testing.B, busy bool) {
	st, err := store.Open(filepath.Join(b.TempDir(), "latch.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	buildFixture(b, st)

	changed := make(chan time.Time, 1)
	relayPin := newOutPin("GPIO17")
	relay, err := NewRelay(relayPin, &RelayOpts{ActiveLow: true, OnChange: func(bool) { changed <- time.Now() }})
	if err != nil {
		b.Fatal(err)
	}
	clock := NewManualClock(t0)
	var grantCommits atomic.Int64
	asked := make(chan time.Time, 1) // when a grant's record was handed to the journal
	j, err := store.OpenJournal(st, &store.JournalOptions{Door: "front", Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	counted := countingJournal{j: j, grants: &grantCommits, asked: asked}
	c, err := New(Config{Door: "front", Mode: store.ModeCardOnly}, Deps{Allowlist: st, Journal: counted, State: st, Relay: relay, Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	idle := func() {
		// Everything handed to the journal so far is written when an
		// entry added now is.
		ok := make(chan struct{})
		j.Add(store.JournalEntry{Done: func([]store.Event, error) { close(ok) }})
		select {
		case <-ok:
		case <-time.After(10 * time.Second):
			b.Fatal("journal did not finish")
		}
	}
	wait := func(what string) time.Time {
		select {
		case at := <-changed:
			return at
		case <-time.After(10 * time.Second):
			b.Fatalf("relay did not %s: pin %v, clock +%v, status %+v", what, relayPin.level(), clock.Now().Sub(t0), c.Status())
		}
		return time.Time{}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	var lat, loop []time.Duration
	var onPath uint64
	tamper := false
	idle()
	for b.Loop() {
		uid := benchUID(rng.IntN(benchCards))
		if busy {
			tamper = !tamper
			if err := c.Tamper(ctx, tamper); err != nil {
				b.Fatal(err)
			}
		}
		before := st.Commits()
		start := time.Now()
		if err := c.CardPresented(ctx, uid, false); err != nil {
			b.Fatal(err)
		}
		at := wait("unlock")
		lat = append(lat, at.Sub(start))
		loop = append(loop, (<-asked).Sub(start))
		onPath += st.Commits() - before
		clock.Advance(DefaultUnlock)
		wait("relock")
		if err := c.CardRemoved(ctx); err != nil {
			b.Fatal(err)
		}
		idle()
	}
	if relayPin.level() != lockedLevel {
		b.Fatal("relay left unlocked")
	}
	slices.Sort(lat)
	slices.Sort(loop)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[int(p*float64(len(d)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(lat, 0.5), "p50-µs")
	b.ReportMetric(pct(lat, 0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
	// The door's own part: card to the grant's record handed to the
	// journal (the allowlist question included); the rest is the commit.
	b.ReportMetric(pct(loop, 0.99), "p99-to-record-µs")
	b.ReportMetric(float64(onPath)/float64(len(lat)), "commits-on-path")
	if n := grantCommits.Load(); n != int64(len(lat)) {
		b.Fatalf("%d grants recorded, %d opened", n, len(lat))
	}
}

// countingJournal counts the entries whose caller waits (a grant's record)
// that were written, and says when each was handed to the journal.
type countingJournal struct {
	j      *store.Journal
	grants *atomic.Int64
	asked  chan<- time.Time
}

func (c countingJournal) Add(e store.JournalEntry) {
	if done := e.Done; done != nil {
		c.asked <- time.Now()
		e.Done = func(evs []store.Event, err error) {
			if err == nil {
				c.grants.Add(1)
			}
			done(evs, err)
		}
	}
	c.j.Add(e)
}
