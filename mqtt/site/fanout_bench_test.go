package site

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// BenchmarkPublishFanout measures what one change costs the site for each
// door whose view it changes: the commit, then each door's delta made,
// sealed to the door (HPKE) and signed, and handed to the broker (here a
// sink that counts it). Each iteration revokes a card that all 1,000
// doors hold, then lifts the revocation: two changes. µs/door is the
// site's CPU per door per change, the figure docs/scale.md multiplies.
func BenchmarkPublishFanout(b *testing.B) {
	const doors = 1000
	db := openDB(b, filepath.Join(b.TempDir(), "site.db"))
	for i := range doors {
		id, err := mqtt.NewIdentity()
		if err != nil {
			b.Fatal(err)
		}
		pub := id.Public()
		if err := Provision(db, fmt.Sprintf("d%04d", i), &pub, []string{"all"}); err != nil {
			b.Fatal(err)
		}
	}
	s, err := New(Options{Site: site, Signer: newSigner(b, "site-1"), DB: db})
	if err != nil {
		b.Fatal(err)
	}
	sent := 0
	s.sink = func(string, []byte, bool) error { sent++; return nil }
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "all")); err != nil {
		b.Fatal(err)
	}
	uid := binary.BigEndian.AppendUint32(nil, 1|0x10000000)
	sent = 0
	b.ResetTimer()
	for range b.N {
		if _, err := s.Publish(ctx, urevoke(1)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Publish(ctx, store.Op{Kind: store.OpReinstateCard, UID: uid}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sent != 2*doors*b.N {
		b.Fatalf("%d messages sent, want %d", sent, 2*doors*b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(2*doors*b.N), "µs/door")
	b.ReportMetric(0, "ns/op")
}

// A change that moves many views is sealed on several goroutines; each
// door still gets exactly its own delta, sealed to it, on its own topic.
func TestPublishSealsInParallel(t *testing.T) {
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("d%02d", i))
	}
	s, rec, ds := newSiteWithDoors(t, nil, names...)
	ctx := context.Background()
	for _, op := range []store.Op{ucard(1, "h1", "*"), urevoke(1)} {
		if _, err := s.Publish(ctx, op); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			msgs := rec.take(d.top.DoorACL(d.name))
			if len(msgs) != 1 {
				t.Fatalf("door %s: %d messages", d.name, len(msgs))
			}
			d.apply(msgs)
			if seq, hash := d.state(); seq != s.views[d.name].seq || hash != store.HashSnapshot(s.View(d.name)) {
				t.Fatalf("door %s at %d %s after %s", d.name, seq, hash, op.Kind)
			}
		}
	}
}
