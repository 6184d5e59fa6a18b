package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func ev(i int) Event {
	return Event{Time: testEpoch.Add(time.Duration(i) * time.Minute), Clock: TimeSynced, BootID: "boot-1", Door: "front",
		Type: TypeAccess, Reason: ReasonGranted, UID: "04527a91336e80", Holder: "ada", HolderName: "Ada", Detail: fmt.Sprintf("event %d", i)}
}

func TestAppendChain(t *testing.T) {
	s := openTest(t, nil)
	var got []Event
	for i := range 5 {
		e, err := s.Append(ev(i))
		mustDo(t, err)
		got = append(got, e)
	}
	if got[0].Seq != 1 || got[0].Prev != strings.Repeat("0", 64) {
		t.Errorf("first entry: seq %d prev %s", got[0].Seq, got[0].Prev)
	}
	for i, e := range got {
		if e.UID != "04527A91336E80" {
			t.Errorf("uid %q not upper-cased", e.UID)
		}
		if i > 0 && (e.Seq != got[i-1].Seq+1 || e.Prev != got[i-1].Hash) {
			t.Errorf("entry %d does not follow %d", e.Seq, got[i-1].Seq)
		}
		if h, err := HashEvent(e); err != nil || h != e.Hash {
			t.Errorf("HashEvent(%d) = %s, %v; stored %s", e.Seq, h, err, e.Hash)
		}
	}
	// What a collector receives (JSON) verifies on its own.
	b, err := json.Marshal(got)
	mustDo(t, err)
	var received []Event
	mustDo(t, json.Unmarshal(b, &received))
	if err := VerifyEvents(strings.Repeat("0", 64), received); err != nil {
		t.Errorf("VerifyEvents on received events: %v", err)
	}
	received[2].Detail = "nothing happened"
	if err := VerifyEvents("", received); err == nil || !strings.Contains(err.Error(), "entry 3 was altered") {
		t.Errorf("VerifyEvents after an edit: %v", err)
	}
	if err := VerifyEvents("", append(append([]Event{}, got[:2]...), got[3:]...)); err == nil {
		t.Error("VerifyEvents accepted a gap")
	}
	stored, err := s.EventsAfter(0, 10)
	mustDo(t, err)
	for i := range stored {
		if !stored[i].Time.Equal(got[i].Time) || stored[i].Hash != got[i].Hash || stored[i].Detail != got[i].Detail {
			t.Errorf("stored entry %d differs from the returned one", i+1)
		}
	}
}

func TestAppendConcurrentAndDurable(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	const workers, each = 16, 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]string{}
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := ev(i)
				e.Detail = fmt.Sprintf("w%d-%d", w, i)
				if i%10 == 0 {
					out, err := s.AppendMany([]Event{e, e})
					if err != nil || out[1].Seq != out[0].Seq+1 {
						t.Errorf("AppendMany: %v", err)
						return
					}
					e = out[0]
				} else {
					var err error
					if e, err = s.Append(e); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				if _, dup := seen[e.Seq]; dup {
					t.Errorf("sequence %d given twice", e.Seq)
				}
				seen[e.Seq] = e.Detail
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := workers * (each + each/10)
	s = reopen(t, s, opts)
	r, err := s.Verify()
	mustDo(t, err)
	if !r.OK || r.Entries != uint64(total) || r.First != 1 || r.Last != uint64(total) {
		t.Fatalf("after reopen: %+v, want %d entries", r, total)
	}
	for seq, detail := range seen {
		got, err := s.EventsAfter(seq-1, 1)
		if err != nil || len(got) != 1 || got[0].Detail != detail {
			t.Fatalf("entry %d: %+v, %v; want %q", seq, got, err, detail)
		}
	}
}

// tamperCase damages a closed 10-entry chain and says where Verify must
// find the first break.
type tamperCase struct {
	name    string
	edit    func(b *bolt.Bucket, meta *bolt.Bucket) error
	breakAt uint64
	problem string
}

func rehash(rec []byte) []byte {
	n := len(rec) - 32
	h := sha256.Sum256(rec[:n])
	return append(bytes.Clone(rec[:n]), h[:]...)
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []tamperCase{
		{"edited entry", func(b, _ *bolt.Bucket) error {
			rec := bytes.Clone(b.Get(be64(4)))
			i := bytes.Index(rec, []byte("event 3"))
			rec[i+6] = '9'
			return b.Put(be64(4), rec)
		}, 4, "altered"},
		{"edited entry with its own hash recomputed", func(b, _ *bolt.Bucket) error {
			rec := bytes.Clone(b.Get(be64(4)))
			i := bytes.Index(rec, []byte("event 3"))
			rec[i+6] = '9'
			return b.Put(be64(4), rehash(rec))
		}, 5, "does not link"},
		{"deleted entry", func(b, _ *bolt.Bucket) error { return b.Delete(be64(6)) }, 6, "missing"},
		{"deleted last entries", func(b, _ *bolt.Bucket) error {
			return errors.Join(b.Delete(be64(10)), b.Delete(be64(9)))
		}, 9, "missing at the end"},
		{"reordered entries", func(b, _ *bolt.Bucket) error {
			r3, r7 := bytes.Clone(b.Get(be64(3))), bytes.Clone(b.Get(be64(7)))
			return errors.Join(b.Put(be64(3), r7), b.Put(be64(7), r3))
		}, 3, "moved or reordered"},
		{"inserted entry", func(b, meta *bolt.Bucket) error {
			// Shift 5..10 up by one, renumbering them, and put a forged
			// entry linked to entry 4 at 5.
			for seq := uint64(10); seq >= 5; seq-- {
				se, err := decodeEvent(b.Get(be64(seq)))
				if err != nil {
					return err
				}
				rec := eventCanonical(&se.Event, seq+1, se.prev)
				h := sha256.Sum256(rec)
				if err := b.Put(be64(seq+1), append(rec, h[:]...)); err != nil {
					return err
				}
			}
			four, err := decodeEvent(b.Get(be64(4)))
			if err != nil {
				return err
			}
			forged := ev(99)
			rec := eventCanonical(&forged, 5, four.hash)
			h := sha256.Sum256(rec)
			if err := b.Put(be64(5), append(rec, h[:]...)); err != nil {
				return err
			}
			head, _ := decodePoint(meta.Get(keyHead))
			head.Seq = 11
			return meta.Put(keyHead, encodePoint(head))
		}, 6, "does not link"},
		{"last entry edited and rehashed", func(b, _ *bolt.Bucket) error {
			rec := bytes.Clone(b.Get(be64(10)))
			i := bytes.Index(rec, []byte("event 9"))
			rec[i+6] = '8'
			return b.Put(be64(10), rehash(rec))
		}, 10, "head"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir() + "/latch.db"
			s, err := Open(path, testOptions())
			mustDo(t, err)
			for i := range 10 {
				_, err := s.Append(ev(i))
				mustDo(t, err)
			}
			mustDo(t, s.Close())
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tc.edit(tx.Bucket(bucketAudit), tx.Bucket(bucketAuditMeta))
			})
			if _, err := Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "audit chain broken") {
				t.Errorf("Open of a tampered chain with the full check: %v, want ErrCorrupt", err)
			}
			// Opened as a door opens it, the damage is found at Open (at
			// the end of the chain) or by the background check.
			if err := findsDamage(t, path, testOptions()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "audit chain broken") {
				t.Errorf("Open of a tampered chain: %v, want ErrCorrupt", err)
			}
			s, err = Open(path, &Options{PINParams: fastPIN, SkipCheck: true})
			mustDo(t, err)
			defer s.Close()
			r, err := s.Verify()
			mustDo(t, err)
			if r.OK || r.BreakAt != tc.breakAt || !strings.Contains(r.Problem, tc.problem) {
				t.Errorf("Verify: %+v; want a break at %d mentioning %q", r, tc.breakAt, tc.problem)
			}
		})
	}
}

func TestPruneByCountAndAge(t *testing.T) {
	s := openTest(t, &Options{PINParams: fastPIN, Retention: Retention{MaxEntries: 5, MaxAge: time.Hour}})
	var last Event
	for i := range 20 {
		var err error
		last, err = s.Append(ev(i)) // one per minute from testEpoch
		mustDo(t, err)
	}
	// Nothing is acknowledged yet: nothing goes.
	res, err := s.Prune(testEpoch.Add(48 * time.Hour))
	mustDo(t, err)
	if res.Dropped != 0 {
		t.Fatalf("pruned %d undelivered entries", res.Dropped)
	}
	mustDo(t, s.Ack(12))
	res, err = s.Prune(testEpoch.Add(30 * time.Minute))
	mustDo(t, err)
	// Count: 20 entries, keep 5, but only 1..12 are delivered.
	if res.Dropped != 12 || res.Checkpoint != 12 {
		t.Fatalf("prune: %+v, want 12 dropped", res)
	}
	r, err := s.Verify()
	mustDo(t, err)
	if !r.OK || r.First != 13 || r.Checkpoint != 12 || r.Entries != 8 {
		t.Errorf("after prune: %+v", r)
	}
	mustDo(t, s.Ack(20))
	res, err = s.Prune(testEpoch.Add(30 * time.Minute))
	mustDo(t, err)
	if res.Dropped != 3 {
		t.Errorf("second prune by count: %+v, want 3", res)
	}
	// By age: everything is older than an hour three days later.
	res, err = s.Prune(testEpoch.Add(72 * time.Hour))
	mustDo(t, err)
	if res.Dropped != 5 || res.Checkpoint != 20 {
		t.Errorf("prune by age: %+v", res)
	}
	// The chain goes on from the checkpoint.
	e, err := s.Append(ev(20))
	mustDo(t, err)
	if e.Seq != 21 || e.Prev != last.Hash {
		t.Errorf("append after pruning all: seq %d prev %s, want 21 linking to %s", e.Seq, e.Prev, last.Hash)
	}
	r, err = s.Verify()
	mustDo(t, err)
	if !r.OK || r.First != 21 || r.Entries != 1 {
		t.Errorf("verify after pruning all and appending: %+v", r)
	}
}

func TestPruneKeepsUndeliveredAlarms(t *testing.T) {
	s := openTest(t, &Options{PINParams: fastPIN, Retention: Retention{MaxUndelivered: 3}})
	for i := range 10 {
		e := ev(i)
		if i == 3 {
			e.Type, e.Reason = TypeDoor, ReasonDoorForced
		}
		_, err := s.Append(e)
		mustDo(t, err)
	}
	res, err := s.Prune(testEpoch)
	mustDo(t, err)
	if res.Dropped != 3 {
		t.Fatalf("pruned %d, want 3 (stopping at the undelivered alarm, entry 4)", res.Dropped)
	}
	p, err := s.Pending(100)
	mustDo(t, err)
	if len(p) != 7 || p[0].Seq != 4 || p[0].Reason != ReasonDoorForced {
		t.Fatalf("pending after prune starts at %d (%s), %d entries", p[0].Seq, p[0].Reason, len(p))
	}
	// Once the alarm is delivered, the cap applies again.
	mustDo(t, s.Ack(4))
	res, err = s.Prune(testEpoch)
	mustDo(t, err)
	if res.Dropped != 4 || res.Checkpoint != 7 {
		t.Errorf("after the alarm was acked: %+v, want entries up to 7 dropped", res)
	}
	if n, _ := s.OutboxDepth(); n != 3 {
		t.Errorf("outbox depth %d, want 3", n)
	}
}

func TestHashEventRejectsNonCanonical(t *testing.T) {
	s := openTest(t, nil)
	e, err := s.Append(ev(1))
	mustDo(t, err)
	bad := e
	bad.UID = strings.ToLower(bad.UID)
	if _, err := HashEvent(bad); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("lower-case uid: %v", err)
	}
	bad = e
	bad.Prev = "xyz"
	if _, err := HashEvent(bad); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad prev: %v", err)
	}
	local := e
	local.Time = e.Time.In(time.FixedZone("X", 3600))
	if h, err := HashEvent(local); err != nil || h != e.Hash {
		t.Errorf("the same instant in another zone: %s, %v", h, err)
	}
}

// TestVerifyHoldsOffPrune checks that Prune cannot run between the
// chunks of a Verify (it would remove entries Verify has yet to read and
// make it report a break), while appends can.
func TestVerifyHoldsOffPrune(t *testing.T) {
	s := openTest(t, &Options{PINParams: fastPIN, Retention: Retention{MaxEntries: 10}})
	batch := make([]Event, 1000)
	for i := range batch {
		batch[i] = ev(i)
	}
	out, err := s.AppendMany(batch)
	mustDo(t, err)
	mustDo(t, s.Ack(out[len(out)-1].Seq))
	s.verifyChunk = 100
	chunks := 0
	s.verifyHook = func() {
		chunks++
		if s.pruneMu.TryLock() {
			s.pruneMu.Unlock()
			t.Error("Prune could run in the middle of Verify")
		}
		if _, err := s.Append(ev(chunks)); err != nil {
			t.Errorf("append between Verify chunks: %v", err)
		}
	}
	r, err := s.Verify()
	if err != nil || !r.OK || chunks < 9 || r.Entries < 1000 {
		t.Errorf("Verify: %+v, %v after %d chunks", r, err, chunks)
	}
	s.verifyHook = nil
	res, err := s.Prune(testEpoch)
	if err != nil || res.Dropped != 1000 { // the 1000 acknowledged entries; the appended ones are owed
		t.Errorf("Prune after Verify: %+v, %v", res, err)
	}
}
