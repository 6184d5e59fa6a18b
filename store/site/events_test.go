package site

import (
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

func reasons(fs []Finding) []FindingReason {
	var out []FindingReason
	for _, f := range fs {
		out = append(out, f.Reason)
	}
	return out
}

func TestAddEventsIdempotent(t *testing.T) {
	db := open(t)
	evs := chain(t, "front", 1, 50, zeroHash)
	stored, dup, fs, err := db.AddEvents("front", evs, t0)
	if err != nil || stored != 50 || dup != 0 || len(fs) != 0 {
		t.Fatalf("first: stored %d dup %d findings %v err %v", stored, dup, fs, err)
	}
	// The next events, their prev hashes written in upper case.
	more := chain(t, "front", 51, 52, evs[49].Hash)
	for i := range more {
		more[i].Prev = strings.ToUpper(more[i].Prev)
	}
	if stored, _, fs, err := db.AddEvents("front", more, t0); err != nil || stored != 2 || len(fs) != 0 {
		t.Fatalf("upper-case prev: stored %d findings %v err %v", stored, fs, err)
	}
	stored, dup, fs, err = db.AddEvents("front", evs[10:30], t0)
	if err != nil || stored != 0 || dup != 20 || len(fs) != 0 {
		t.Fatalf("again: stored %d dup %d findings %v err %v", stored, dup, fs, err)
	}
	if n, _ := db.Contiguous("front"); n != 52 {
		t.Errorf("contiguous %d, want 52", n)
	}
	if p, err := db.Verify("front"); err != nil || p != nil {
		t.Errorf("verify: %v, %v", p, err)
	}
	e, err := db.Event("front", 7)
	if err != nil || e != evs[6] {
		t.Errorf("event 7: %+v, %v; want %+v", e, err, evs[6])
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestAddEventsFindings(t *testing.T) {
	db := open(t)
	evs := chain(t, "front", 1, 20, zeroHash)
	// 1..5, then 8..10: a gap of 6..7.
	// A hole is no finding when events arrive: the door sends again what
	// was not acknowledged. Hole shows it; the site decides when it has
	// stayed open too long.
	if _, _, fs, err := db.AddEvents("front", append(evs[0:5:5], evs[7:10]...), t0); err != nil || len(fs) != 0 {
		t.Fatalf("gap: %+v, %v", fs, err)
	}
	if from, to, ok, err := db.Hole("front"); err != nil || !ok || from != 6 || to != 7 {
		t.Errorf("hole %d..%d %v %v, want 6..7", from, to, ok, err)
	}
	if n, _ := db.Contiguous("front"); n != 5 {
		t.Errorf("contiguous %d, want 5", n)
	}
	// The hole is filled: the cursor moves past it.
	if _, _, fs, err := db.AddEvents("front", evs[5:7], t0); err != nil || len(fs) != 0 {
		t.Fatalf("fill: %+v, %v", fs, err)
	}
	if n, _ := db.Contiguous("front"); n != 10 {
		t.Errorf("contiguous %d, want 10", n)
	}

	// A conflict: seq 4 again with another content.
	other := evs[3]
	other.Detail = "rewritten"
	other.Hash, _ = store.HashEvent(other)
	stored, _, fs, err := db.AddEvents("front", []store.Event{other}, t0)
	if err != nil || stored != 0 || len(fs) != 1 || fs[0].Reason != FindingConflict {
		t.Fatalf("conflict: stored %d %+v, %v", stored, fs, err)
	}
	if e, _ := db.Event("front", 4); e.Hash != evs[3].Hash {
		t.Errorf("the conflicting event replaced the original")
	}

	// A chain break: event 11 of another chain (a valid hash, another prev).
	fork := chain(t, "front", 11, 12, strings.Repeat("ab", 32))
	stored, _, fs, err = db.AddEvents("front", fork, t0)
	if err != nil || stored != 2 || len(fs) != 1 || fs[0].Reason != FindingChainBreak || fs[0].Seq != 11 {
		t.Fatalf("chain break: stored %d %+v, %v", stored, fs, err)
	}
	if p, _ := db.Verify("front"); p == nil || p.Seq != 11 {
		t.Errorf("verify after a chain break: %v", p)
	}

	// Invalid: a hash that is not the content's, and seq 0.
	bad := evs[15]
	bad.Reason = store.ReasonDoorForced
	zero := evs[0]
	zero.Seq = 0
	stored, _, fs, err = db.AddEvents("front", []store.Event{bad, zero}, t0)
	if err != nil || stored != 0 || len(fs) != 2 || fs[0].Reason != FindingInvalid || fs[1].Reason != FindingInvalid {
		t.Fatalf("invalid: stored %d %v, %v", stored, reasons(fs), err)
	}

	// A rewrite: the site holds a signed head at 18 with another hash.
	if err := db.PutHead("front", SignedHead{Seq: 18, Hash: strings.Repeat("cd", 32), Sig: "sig", From: HeadFromStatus}); err != nil {
		t.Fatal(err)
	}
	stored, _, fs, err = db.AddEvents("front", evs[17:18], t0)
	if err != nil || stored != 0 || len(fs) != 1 || fs[0].Reason != FindingRewrite {
		t.Fatalf("rewrite: stored %d %v, %v", stored, reasons(fs), err)
	}

	// A link checked from the other side: 14 arrives, then 13 that 14
	// does not link to.
	if _, _, fs, err := db.AddEvents("front", evs[13:14], t0); err != nil || len(fs) != 0 {
		t.Fatalf("14 before 13: %+v, %v", fs, err)
	}
	odd := chain(t, "front", 13, 13, fork[1].Hash)
	odd[0].Detail = "x"
	odd[0].Hash, _ = store.HashEvent(odd[0])
	_, _, fs, err = db.AddEvents("front", odd, t0)
	if err != nil || len(fs) != 1 || fs[0].Reason != FindingChainBreak || fs[0].Seq != 14 {
		t.Fatalf("break after: %+v, %v", fs, err)
	}

	if f, err := db.AddFinding(Finding{Time: t0, Door: "front", Seq: 19, Reason: FindingGap, Detail: "events 19..19 missing"}); err != nil || f.ID != 7 {
		t.Fatalf("add finding: %+v %v", f, err)
	}
	all, err := db.Findings(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []FindingReason{FindingConflict, FindingChainBreak, FindingInvalid, FindingInvalid, FindingRewrite, FindingChainBreak, FindingGap}
	if got := reasons(all); len(got) != len(want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
	for i, f := range all {
		if f.Reason != want[i] || f.ID != uint64(i+1) || f.Door != "front" || !f.Time.Equal(t0) {
			t.Errorf("finding %d: %+v, want %s", i, f, want[i])
		}
	}
	if later, _ := db.Findings(5, 1); len(later) != 1 || later[0].ID != 6 {
		t.Errorf("findings after 5: %+v", later)
	}
	if _, _, _, err := db.AddEvents("", evs, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("no door: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// plant writes raw event records of door, as someone with the file would.
func plant(t *testing.T, db *DB, fn func(b *bolt.Bucket) error) {
	t.Helper()
	if err := db.update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketEvents)) }); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, b *bolt.Bucket)
		seq    uint64
		what   string
	}{
		{"edited", func(t *testing.T, b *bolt.Bucket) {
			e, err := decodeEvent(b.Get(eventKey("front", 40)))
			if err != nil {
				t.Fatal(err)
			}
			e.Reason = store.ReasonGranted
			e.Holder = "mallory"
			rec, _ := encodeEvent(&e)
			if err := b.Put(eventKey("front", 40), rec); err != nil {
				t.Fatal(err)
			}
		}, 40, "altered"},
		{"deleted", func(t *testing.T, b *bolt.Bucket) {
			if err := b.Delete(eventKey("front", 55)); err != nil {
				t.Fatal(err)
			}
		}, 55, "missing"},
		{"reordered", func(t *testing.T, b *bolt.Bucket) {
			a, c := b.Get(eventKey("front", 70)), b.Get(eventKey("front", 71))
			a, c = append([]byte(nil), a...), append([]byte(nil), c...)
			if err := b.Put(eventKey("front", 70), c); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(eventKey("front", 71), a); err != nil {
				t.Fatal(err)
			}
		}, 70, "reordered"},
		{"edited and rehashed", func(t *testing.T, b *bolt.Bucket) {
			e, _ := decodeEvent(b.Get(eventKey("front", 30)))
			e.Holder = "mallory"
			e.Hash, _ = store.HashEvent(e)
			rec, _ := encodeEvent(&e)
			if err := b.Put(eventKey("front", 30), rec); err != nil {
				t.Fatal(err)
			}
		}, 31, "does not link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t)
			if _, _, _, err := db.AddEvents("front", chain(t, "front", 1, 100, zeroHash), t0); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := db.AddEvents("back", chain(t, "back", 1, 100, zeroHash), t0); err != nil {
				t.Fatal(err)
			}
			plant(t, db, func(b *bolt.Bucket) error { tc.tamper(t, b); return nil })
			p, err := db.Verify("front")
			if err != nil {
				t.Fatal(err)
			}
			if p == nil || p.Seq != tc.seq || p.Door != "front" || !strings.Contains(p.What, tc.what) {
				t.Fatalf("verify: %v; want entry %d, %q", p, tc.seq, tc.what)
			}
			t.Log(p)
			if p, err := db.Verify("back"); err != nil || p != nil {
				t.Errorf("the other door: %v, %v", p, err)
			}
		})
	}
}

func TestVerifyAcrossChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 25,000 events")
	}
	db := open(t)
	evs := chain(t, "front", 1, 25000, zeroHash)
	for i := 0; i < len(evs); i += 5000 {
		if _, _, _, err := db.AddEvents("front", evs[i:i+5000], t0); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := db.Verify("front"); err != nil || p != nil {
		t.Fatalf("verify: %v, %v", p, err)
	}
	plant(t, db, func(b *bolt.Bucket) error { return b.Delete(eventKey("front", 22222)) })
	if p, err := db.Verify("front"); err != nil || p == nil || p.Seq != 22222 {
		t.Fatalf("verify: %v, %v", p, err)
	}
}

func TestHeads(t *testing.T) {
	db := open(t)
	evs := chain(t, "front", 1, 5, zeroHash)
	if _, _, _, err := db.AddEvents("front", evs, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LatestHead("front"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no head yet: %v", err)
	}
	for _, e := range evs {
		if err := db.PutHead("front", SignedHead{Seq: e.Seq, Hash: e.Hash, Sig: "s", From: HeadFromEvent}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutHead("front", SignedHead{Seq: 3, Hash: strings.Repeat("0f", 32), Sig: "s", From: HeadFromStatus}); !errors.Is(err, ErrConflict) {
		t.Errorf("head against a stored event: %v", err)
	}
	if err := db.PutHead("front", SignedHead{Seq: 9, Hash: strings.Repeat("0f", 32), Sig: "t", From: HeadFromStatus}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutHead("front", SignedHead{Seq: 9, Hash: strings.Repeat("f0", 32), Sig: "t", From: HeadFromStatus}); !errors.Is(err, ErrConflict) {
		t.Errorf("head against a held head: %v", err)
	}
	if err := db.PutHead("back", SignedHead{Seq: 100, Hash: strings.Repeat("aa", 32), Sig: "u", From: HeadFromStatus}); err != nil {
		t.Fatal(err)
	}
	h, err := db.LatestHead("front")
	if err != nil || h.Seq != 9 || h.Sig != "t" || h.From != HeadFromStatus {
		t.Errorf("latest: %+v, %v", h, err)
	}
	if h, err := db.LatestHead("back"); err != nil || h.Seq != 100 {
		t.Errorf("latest of back: %+v, %v", h, err)
	}
	if h, err := db.Head("front", 2); err != nil || h.Hash != evs[1].Hash || h.Seq != 2 {
		t.Errorf("head 2: %+v, %v", h, err)
	}
	if _, err := db.LatestHead("fro"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a prefix door: %v", err)
	}
	if err := db.PutHead("front", SignedHead{Seq: 1, Hash: "XYZ"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad hash: %v", err)
	}
}
