package site

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// FindingReason is the word for what the site found wrong with what a
// door sent.
type FindingReason string

// Finding reasons.
const (
	// FindingGap: a hole in the door's stored chain stayed open: later
	// events were stored, and the events of the hole did not arrive within
	// the site's grace period (doors send again what was not
	// acknowledged, so a hole that fills is no gap). See Hole.
	FindingGap FindingReason = "gap"
	// FindingChainBreak: an event does not link to the one stored before
	// it (its prev is not that one's hash), or the one after does not
	// link to it.
	FindingChainBreak FindingReason = "chain_break"
	// FindingConflict: an event arrived for a seq already stored with
	// another hash. The stored one is kept.
	FindingConflict FindingReason = "conflict"
	// FindingRewrite: an event arrived for a seq whose signed head the
	// site holds with another hash. It is refused.
	FindingRewrite FindingReason = "rewrite"
	// FindingInvalid: an event is malformed: seq 0, or a hash that is not
	// store.HashEvent of its fields. It is refused.
	FindingInvalid FindingReason = "invalid_event"
)

// Finding is a site event: something wrong in what a door sent, recorded
// and shown, never fixed.
type Finding struct {
	ID     uint64        `json:"id"`     // its place in the findings, from 1
	Time   time.Time     `json:"time"`   // the site's clock when it was found
	Door   string        `json:"door"`   // the door whose events it is about
	Seq    uint64        `json:"seq"`    // the event seq it is about
	Reason FindingReason `json:"reason"` // what was found
	Detail string        `json:"detail"` // the hashes and seqs involved
}

var zeroHash = strings.Repeat("0", 64)

// AddEvents stores a batch of door's events, as received, in one
// transaction, and returns how many were stored and how many were
// duplicates (already stored with the same hash), and the findings it
// recorded about them. An event whose hash store.HashEvent does not
// recompute, or a seq of 0, is refused (FindingInvalid); one whose seq is
// already stored with another hash (FindingConflict) or held in a signed
// head with another hash (FindingRewrite) is refused and the original
// kept. A stored event that does not link to its stored neighbours is a
// FindingChainBreak, stored as the door sent it (a hole before an event
// is no finding here: see Hole). The door's contiguous seq moves in the same
// transaction. now is the site's clock, the time of the findings.
func (d *DB) AddEvents(door string, evs []store.Event, now time.Time) (stored, dup int, findings []Finding, err error) {
	if err := checkDoorID(door); err != nil {
		return 0, 0, nil, fmt.Errorf("site: add events of door %q: %w", door, err)
	}
	err = d.update(func(tx *bolt.Tx) error {
		var err error
		stored, dup, findings, err = addEvents(tx, door, evs, nil, now)
		return err
	})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("site: add events of door %s: %w", door, err)
	}
	return stored, dup, findings, nil
}

// addEvents is AddEvents in the write transaction tx. sigs, when not nil,
// holds each event's signature (the door's signed head at its seq), kept
// as a head from an event with each event stored.
func addEvents(tx *bolt.Tx, door string, evs []store.Event, sigs []string, now time.Time) (stored, dup int, findings []Finding, err error) {
	err = func() error {
		a := addTx{tx: tx, door: door, dk: doorKey(door), evb: tx.Bucket(bucketEvents), heads: tx.Bucket(bucketHeads)}
		contig, err := readCursor(tx, door)
		if err != nil {
			return err
		}
		find := func(seq uint64, r FindingReason, format string, args ...any) {
			findings = append(findings, Finding{Time: now.UTC(), Door: door, Seq: seq, Reason: r, Detail: fmt.Sprintf(format, args...)})
		}
		for i := range evs {
			ev := evs[i]
			ev.Prev = strings.ToLower(ev.Prev) // hex either way; stored as bytes, shown lower-case
			e := &ev
			if e.Seq == 0 {
				find(0, FindingInvalid, "an event has seq 0")
				continue
			}
			if h, err := store.HashEvent(*e); err != nil || h != e.Hash {
				why := "its hash does not match its content"
				if err != nil {
					why = err.Error()
				}
				find(e.Seq, FindingInvalid, "event %d refused: %s", e.Seq, why)
				continue
			}
			if old, ok, err := a.get(e.Seq); err != nil {
				return err
			} else if ok {
				if old.Hash == e.Hash {
					dup++
				} else {
					find(e.Seq, FindingConflict, "event %d sent with hash %s, stored with %s; the stored one is kept", e.Seq, e.Hash, old.Hash)
				}
				continue
			}
			if v := a.heads.Get(eventKey(door, e.Seq)); v != nil {
				var h SignedHead
				if err := decodeJSON(v, &h); err != nil {
					return fmt.Errorf("head %d: %w", e.Seq, err)
				}
				if h.Hash != e.Hash {
					find(e.Seq, FindingRewrite, "event %d sent with hash %s, the door signed %s (head from a %s); refused", e.Seq, e.Hash, h.Hash, h.From)
					continue
				}
			}
			// Links to the neighbours already stored.
			if e.Seq == 1 {
				if e.Prev != zeroHash {
					find(1, FindingChainBreak, "event 1 links to %s, not to the zero hash", e.Prev)
				}
			} else if before, ok, err := a.get(e.Seq - 1); err != nil {
				return err
			} else if ok && before.Hash != e.Prev {
				find(e.Seq, FindingChainBreak, "event %d links to %s, event %d has hash %s", e.Seq, e.Prev, e.Seq-1, before.Hash)
			}
			if after, ok, err := a.get(e.Seq + 1); err != nil {
				return err
			} else if ok && after.Prev != e.Hash {
				find(e.Seq+1, FindingChainBreak, "event %d links to %s, event %d has hash %s", e.Seq+1, after.Prev, e.Seq, e.Hash)
			}
			if err := a.put(e); err != nil {
				return fmt.Errorf("event %d: %w", e.Seq, err)
			}
			if sigs != nil && sigs[i] != "" {
				h := SignedHead{Seq: e.Seq, Hash: e.Hash, Sig: sigs[i], From: HeadFromEvent}
				if err := a.putHead(&h); err != nil {
					return fmt.Errorf("head %d: %w", e.Seq, err)
				}
			}
			stored++
		}
		for a.evb.Get(eventKey(door, contig+1)) != nil {
			contig++
		}
		if err := tx.Bucket(bucketCursors).Put([]byte(door), encodeU64(contig)); err != nil {
			return err
		}
		return putFindings(tx, findings)
	}()
	return stored, dup, findings, err
}

// putHead holds h unless a head is held at its seq already.
func (a *addTx) putHead(h *SignedHead) error {
	k := eventKey(a.door, h.Seq)
	if a.heads.Get(k) != nil {
		return nil
	}
	v, err := encodeJSON(h)
	if err != nil {
		return err
	}
	return a.heads.Put(k, v)
}

// addTx stores one door's events in a write transaction.
type addTx struct {
	tx         *bolt.Tx
	door       string
	dk         []byte
	evb, heads *bolt.Bucket
}

func (a *addTx) get(seq uint64) (store.Event, bool, error) {
	v := a.evb.Get(eventKey(a.door, seq))
	if v == nil {
		return store.Event{}, false, nil
	}
	e, err := decodeEvent(v)
	if err != nil {
		return e, false, fmt.Errorf("stored event %d: %w", seq, err)
	}
	return e, true, nil
}

// put stores an event and its index entries, the event next in arrival
// order.
func (a *addTx) put(e *store.Event) error {
	rec, err := encodeEvent(e)
	if err != nil {
		return err
	}
	ek := eventKey(a.door, e.Seq)
	tk := timeKey(e.Time)
	if err := a.evb.Put(ek, rec); err != nil {
		return err
	}
	puts := []struct {
		b []byte
		k [][]byte
	}{
		{bucketIdxTime, [][]byte{tk, ek}},
		{bucketIdxDoorTime, [][]byte{a.dk, tk, be64(e.Seq)}},
	}
	if e.Holder != "" {
		puts = append(puts, struct {
			b []byte
			k [][]byte
		}{bucketIdxHolder, [][]byte{labelKey(e.Holder), tk, ek}})
	}
	if e.UID != "" {
		puts = append(puts, struct {
			b []byte
			k [][]byte
		}{bucketIdxUID, [][]byte{labelKey(e.UID), tk, ek}})
	}
	for _, p := range puts {
		if err := a.tx.Bucket(p.b).Put(bytes.Join(p.k, nil), nil); err != nil {
			return err
		}
	}
	return putArrival(a.tx, ek)
}

func readCursor(tx *bolt.Tx, door string) (uint64, error) {
	v := tx.Bucket(bucketCursors).Get([]byte(door))
	if v == nil {
		return 0, nil
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("cursor of door %s: %w", door, err)
	}
	return n, nil
}

func putFindings(tx *bolt.Tx, fs []Finding) error {
	b := tx.Bucket(bucketFindings)
	for i := range fs {
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		fs[i].ID = id
		v, err := encodeJSON(&fs[i])
		if err != nil {
			return err
		}
		if err := b.Put(be64(id), v); err != nil {
			return err
		}
	}
	return nil
}

// Hole returns the first hole in door's stored chain: the seqs from..to
// are missing while to+1 is stored. ok is false when the stored chain has
// no hole.
func (d *DB) Hole(door string) (from, to uint64, ok bool, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		contig, err := readCursor(tx, door)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketEvents).Cursor()
		k, _ := c.Seek(eventKey(door, contig+1))
		dn, seq, isEvent := splitEventKey(k)
		if k == nil || !isEvent || dn != door {
			return nil
		}
		from, to, ok = contig+1, seq-1, true
		return nil
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("site: hole of door %s: %w", door, err)
	}
	return from, to, ok, nil
}

// AddFinding records a finding the caller made (a gap it watched stay
// open) and returns it with its id.
func (d *DB) AddFinding(f Finding) (Finding, error) {
	if err := checkDoorID(f.Door); err != nil {
		return f, fmt.Errorf("site: add finding: %w", err)
	}
	f.Time = f.Time.UTC()
	err := d.update(func(tx *bolt.Tx) error {
		fs := []Finding{f}
		if err := putFindings(tx, fs); err != nil {
			return err
		}
		f = fs[0]
		return nil
	})
	if err != nil {
		return f, fmt.Errorf("site: add finding: %w", err)
	}
	return f, nil
}

// Contiguous returns the highest seq of door stored with every seq before
// it: what the site acknowledges.
func (d *DB) Contiguous(door string) (uint64, error) {
	var n uint64
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		n, err = readCursor(tx, door)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("site: contiguous seq of door %s: %w", door, err)
	}
	return n, nil
}

// Event returns door's stored event at seq, or ErrNotFound.
func (d *DB) Event(door string, seq uint64) (store.Event, error) {
	var e store.Event
	err := d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEvents).Get(eventKey(door, seq))
		if v == nil {
			return ErrNotFound
		}
		var err error
		e, err = decodeEvent(v)
		return err
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("site: event %d of door %s: %w", seq, door, err)
	}
	return e, nil
}

// Findings returns up to n findings (0: all) after the finding after, in
// the order they were recorded.
func (d *DB) Findings(after uint64, n int) ([]Finding, error) {
	out, err := page[Finding](d, bucketFindings, be64(after), n)
	if err != nil {
		return nil, fmt.Errorf("site: findings: %w", err)
	}
	return out, nil
}

// Problem is the first bad entry Verify found in a door's stored chain.
type Problem struct {
	Door string // the door
	Seq  uint64 // the entry
	What string // what is wrong with it
}

func (p *Problem) String() string {
	return fmt.Sprintf("door %s, entry %d: %s", p.Door, p.Seq, p.What)
}

// verifyChunk is how many events Verify reads per read transaction.
const verifyChunk = 10000

// Verify walks door's stored events from seq 1 and returns the first bad
// entry: one missing (a gap: deleted, or not received yet), one stored
// under another seq than it says (moved or reordered), one whose hash is
// not the hash of its content (edited), one that does not link to the
// entry before it. nil means the stored chain is whole up to its last
// entry. It reads in chunks, so writers go on meanwhile.
func (d *DB) Verify(door string) (*Problem, error) {
	var next uint64 = 1
	prev := zeroHash
	for {
		var p *Problem
		done := false
		err := d.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			n := 0
			pfx := doorKey(door)
			for k, v := c.Seek(eventKey(door, next)); ; k, v = c.Next() {
				if k == nil || !bytes.HasPrefix(k, pfx) || len(k) != len(pfx)+8 {
					done = true
					return nil
				}
				if n == verifyChunk {
					return nil
				}
				n++
				_, seq, _ := splitEventKey(k)
				fail := func(at uint64, format string, args ...any) error {
					p = &Problem{Door: door, Seq: at, What: fmt.Sprintf(format, args...)}
					return errStop
				}
				if seq != next {
					return fail(next, "entries %d..%d are missing (deleted, or never received); the chain resumes at %d", next, seq-1, seq)
				}
				e, err := decodeEvent(v)
				if err != nil {
					return fail(seq, "entry cannot be decoded: %v", err)
				}
				if e.Seq != seq {
					return fail(seq, "the entry stored under %d says it is %d (moved or reordered)", seq, e.Seq)
				}
				if h, err := store.HashEvent(e); err != nil || h != e.Hash {
					return fail(seq, "the entry was altered: its hash does not match its content")
				}
				if e.Prev != prev {
					return fail(seq, "the entry does not link to the entry before it (one was altered, removed or inserted)")
				}
				next, prev = seq+1, e.Hash
			}
		})
		if p != nil {
			return p, nil
		}
		if err != nil {
			return nil, fmt.Errorf("site: verify door %s: %w", door, err)
		}
		if done {
			return nil, nil
		}
	}
}

// checkEvents decodes every event, cursor, finding and head, checks the
// sizes of the event indexes against the events, and idx_arrival entry by
// entry (checkArrivals).
func checkEvents(tx *bolt.Tx) error {
	var n, holders, uids int
	keys := newEventSet(maphash.MakeSeed())
	if err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		if _, _, ok := splitEventKey(k); !ok {
			return fmt.Errorf("%w: event key %X is malformed", ErrCorrupt, k)
		}
		e, err := decodeEvent(v)
		if err != nil {
			return fmt.Errorf("event %X: %w", k, err)
		}
		n++
		keys.add(k)
		if e.Holder != "" {
			holders++
		}
		if e.UID != "" {
			uids++
		}
		return nil
	}); err != nil {
		return err
	}
	for _, ix := range []struct {
		b    []byte
		want int
	}{{bucketIdxTime, n}, {bucketIdxDoorTime, n}, {bucketIdxHolder, holders}, {bucketIdxUID, uids}} {
		if k := tx.Bucket(ix.b).Stats().KeyN; k != ix.want {
			return fmt.Errorf("%w: index %s has %d entries, want %d", ErrCorrupt, ix.b, k, ix.want)
		}
	}
	if err := checkArrivals(tx, keys); err != nil {
		return err
	}
	if err := tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
		_, err := decodeU64(v)
		return err
	}); err != nil {
		return fmt.Errorf("cursors: %w", err)
	}
	if err := forEachJSON(tx, bucketFindings, func(Finding) {}); err != nil {
		return err
	}
	return forEachJSON(tx, bucketHeads, func(SignedHead) {})
}

// hexHash reports whether s is 64 lower-case hex digits.
func hexHash(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
