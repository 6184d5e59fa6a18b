package door

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
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
// real store, the time from a card's UID arriving at the controller to the
// relay pin changing. Each iteration presents a random enrolled card, waits
// for the relay, relocks it by advancing the manual clock, and waits for the
// loop to finish its journal writes, so that only the card path is timed.
func BenchmarkCardToRelay(b *testing.B) {
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
	c, err := New(Config{Door: "front", Mode: store.ModeCardOnly}, Deps{Allowlist: st, Journal: st, State: st, Relay: relay, Clock: clock})
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
		// Status is published at the end of a step, after the writes.
		select {
		case <-c.StatusChanges():
		case <-time.After(10 * time.Second):
			b.Fatal("controller did not finish its step")
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
	var lat []time.Duration
	for b.Loop() {
		uid := benchUID(rng.IntN(benchCards))
		start := time.Now()
		if err := c.CardPresented(ctx, uid, false); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, wait("unlock").Sub(start))
		idle()
		clock.Advance(DefaultUnlock)
		wait("relock")
		idle()
		if err := c.CardRemoved(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if relayPin.level() != lockedLevel {
		b.Fatal("relay left unlocked")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
}
