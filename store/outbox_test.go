package store

import (
	"errors"
	"testing"
)

func TestOutboxCursor(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	for i := range 10 {
		_, err := s.Append(ev(i))
		mustDo(t, err)
	}
	p, err := s.Pending(4)
	mustDo(t, err)
	if len(p) != 4 || p[0].Seq != 1 || p[3].Seq != 4 {
		t.Fatalf("pending: %d entries from %d", len(p), p[0].Seq)
	}
	mustDo(t, s.Ack(4))
	mustDo(t, s.Ack(2)) // late duplicate: no effect
	if err := s.Ack(11); !errors.Is(err, ErrAckAhead) {
		t.Errorf("ack past the head: %v, want ErrAckAhead", err)
	}
	s = reopen(t, s, opts)
	p, err = s.Pending(100)
	mustDo(t, err)
	if len(p) != 6 || p[0].Seq != 5 {
		t.Fatalf("pending after ack 4 and restart: %d from %d", len(p), p[0].Seq)
	}
	if n, err := s.OutboxDepth(); err != nil || n != 6 {
		t.Errorf("depth %d, %v; want 6", n, err)
	}
	if acked, _ := s.Acked(); acked != 4 {
		t.Errorf("acked %d", acked)
	}
	e, err := s.EventsAfter(8, 100)
	mustDo(t, err)
	if len(e) != 2 || e[0].Seq != 9 {
		t.Errorf("events after 8: %d", len(e))
	}
	for _, max := range []int{0, -1, maxPage + 1} {
		if _, err := s.Pending(max); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Pending(%d): %v", max, err)
		}
	}
	mustDo(t, s.Ack(10))
	if n, _ := s.OutboxDepth(); n != 0 {
		t.Errorf("depth after acking all: %d", n)
	}
	if p, _ := s.Pending(10); len(p) != 0 {
		t.Errorf("pending after acking all: %d", len(p))
	}
}

// TestOutboxHolds100kUndelivered keeps 100,000 entries the site has not
// acknowledged, across a restart and a prune, and hands out every one in
// order.
func TestOutboxHolds100kUndelivered(t *testing.T) {
	opts := &Options{PINParams: fastPIN, Retention: Retention{MaxEntries: 1000, MaxAge: 1}}
	s := openTest(t, opts)
	const total = 100_000
	batch := make([]Event, 10_000)
	for i := 0; i < total; i += len(batch) {
		for j := range batch {
			batch[j] = ev(i + j)
		}
		_, err := s.AppendMany(batch)
		mustDo(t, err)
	}
	s = reopen(t, s, opts)
	if res, err := s.Prune(testEpoch.AddDate(1, 0, 0)); err != nil || res.Dropped != 0 {
		t.Fatalf("prune dropped %d undelivered entries (%v)", res.Dropped, err)
	}
	if n, err := s.OutboxDepth(); err != nil || n != total {
		t.Fatalf("depth %d, %v", n, err)
	}
	next := uint64(1)
	for {
		p, err := s.Pending(maxPage)
		mustDo(t, err)
		if len(p) == 0 {
			break
		}
		for _, e := range p {
			if e.Seq != next {
				t.Fatalf("pending gave %d, want %d", e.Seq, next)
			}
			next++
		}
		mustDo(t, s.Ack(p[len(p)-1].Seq))
	}
	if next != total+1 {
		t.Fatalf("delivered up to %d, want %d", next-1, total)
	}
	res, err := s.Prune(testEpoch.AddDate(1, 0, 0))
	mustDo(t, err)
	if res.Dropped != total {
		t.Errorf("once delivered and old, %d of %d pruned", res.Dropped, total)
	}
}
