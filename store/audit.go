package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Limits on event fields; longer values are cut (at a rune boundary) so an
// event is never refused for its content.
const (
	maxEventField  = 1024
	maxEventDetail = 16 * 1024
	pruneChunk     = 10000
)

func clip(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= limit {
		return s
	}
	for limit > 0 && !utf8.RuneStart(s[limit]) {
		limit--
	}
	return s[:limit]
}

// normalizeEvent makes an event encodable: valid UTF-8, bounded fields,
// upper-case UID, a time in the encodable range (else zero, and the clock
// marked unsynced).
func normalizeEvent(e Event) Event {
	if s := e.Time.Unix(); s < minUnix || s > maxUnix {
		e.Time, e.Clock = time.Time{}, TimeUnsynced
	}
	e.Time = e.Time.UTC()
	e.Clock = TimeQuality(clip(string(e.Clock), maxEventField))
	e.BootID = clip(e.BootID, maxEventField)
	e.Door = clip(e.Door, maxEventField)
	e.Type = EventType(clip(string(e.Type), maxEventField))
	e.Reason = Reason(clip(string(e.Reason), maxEventField))
	e.UID = strings.ToUpper(clip(e.UID, maxEventField))
	e.Holder = clip(e.Holder, maxEventField)
	e.HolderName = clip(e.HolderName, maxEventField)
	e.Detail = clip(e.Detail, maxEventDetail)
	e.Seq, e.Prev, e.Hash = 0, "", ""
	return e
}

// eventCanonical is the canonical encoding of an audit entry, the bytes its
// hash covers:
//
//	version  uint8 (1)
//	seq      uint64
//	time     int64 seconds, uint32 nanoseconds (UTC instant)
//	clock, boot, door, type, reason, uid, holder, holder_name, detail: strings
//	prev     32 bytes, SHA-256 of the previous entry (zeros before the first)
//
// The stored record is this followed by the entry's own hash, 32 bytes:
// SHA-256 of the canonical encoding.
func eventCanonical(e *Event, seq uint64, prev [32]byte) []byte {
	enc := encoder{b: make([]byte, 0, 128+len(e.Detail))}
	enc.u8(eventVersion)
	enc.u64(seq)
	enc.time(e.Time)
	for _, s := range []string{string(e.Clock), e.BootID, e.Door, string(e.Type), string(e.Reason), e.UID, e.Holder, e.HolderName, e.Detail} {
		enc.str(s)
	}
	enc.raw(prev[:])
	return enc.b
}

// storedEvent is a decoded audit record with its raw hashes.
type storedEvent struct {
	Event
	prev, hash [32]byte
	hashOK     bool // the stored hash is the hash of the canonical bytes
}

func decodeEvent(rec []byte) (storedEvent, error) {
	d := decoder{b: rec}
	var se storedEvent
	if v := d.u8(); d.err == nil && v != eventVersion {
		d.fail("event record version %d, want %d", v, eventVersion)
	}
	se.Seq = d.u64()
	se.Time = d.time()
	se.Clock = TimeQuality(d.str())
	se.BootID = d.str()
	se.Door = d.str()
	se.Type = EventType(d.str())
	se.Reason = Reason(d.str())
	se.UID = d.str()
	se.Holder = d.str()
	se.HolderName = d.str()
	se.Detail = d.str()
	copy(se.prev[:], d.take(32))
	n := d.off
	copy(se.hash[:], d.take(32))
	if err := d.end(); err != nil {
		return storedEvent{}, corrupt("audit entry", err)
	}
	se.hashOK = sha256.Sum256(rec[:n]) == se.hash
	se.Prev = hex.EncodeToString(se.prev[:])
	se.Hash = hex.EncodeToString(se.hash[:])
	return se, nil
}

// scanEvent checks the structure of an audit record as decodeEvent does,
// without building the Event: Verify reads every entry and only needs the
// sequence, the links and whether the hash matches.
func scanEvent(rec []byte) (seq uint64, prev, hash [32]byte, hashOK bool, err error) {
	d := decoder{b: rec}
	if v := d.u8(); d.err == nil && v != eventVersion {
		d.fail("event record version %d, want %d", v, eventVersion)
	}
	seq = d.u64()
	d.time()
	for range 9 { // clock, boot, door, type, reason, uid, holder, holder_name, detail
		d.strBytes()
	}
	copy(prev[:], d.take(32))
	n := d.off
	copy(hash[:], d.take(32))
	if err := d.end(); err != nil {
		return 0, prev, hash, false, corrupt("audit entry", err)
	}
	return seq, prev, hash, sha256.Sum256(rec[:n]) == hash, nil
}

// HashEvent computes the hash an audit entry must carry, from its fields
// and e.Prev, so that a collector or auditor can check events it received
// (see VerifyEvents). It fails if e.Prev is not 64 hex digits or a field
// is not in the form the store writes.
func HashEvent(e Event) (string, error) {
	prev, err := parseHash(e.Prev)
	if err != nil {
		return "", fmt.Errorf("store: hash event %d: prev: %w", e.Seq, err)
	}
	n := normalizeEvent(e)
	n.Seq, n.Prev, n.Hash = e.Seq, e.Prev, e.Hash
	if n != e && !(n.Time.Equal(e.Time) && sameButTime(n, e)) {
		return "", fmt.Errorf("store: hash event %d: %w: a field is not as the store writes it (UTF-8, length, upper-case uid)", e.Seq, ErrInvalidArgument)
	}
	h := sha256.Sum256(eventCanonical(&n, e.Seq, prev))
	return hex.EncodeToString(h[:]), nil
}

func sameButTime(a, b Event) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

func parseHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, fmt.Errorf("%w: %d hex digits, want 64", ErrInvalidArgument, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return h, nil
}

// VerifyEvents checks a run of events as received from a door: each one's
// hash, that each links to the one before, and that sequences follow each
// other. prev is the hash the first event must link to (its Prev), or ""
// to take the first event's Prev as given.
func VerifyEvents(prev string, events []Event) error {
	for i, e := range events {
		if i > 0 && e.Seq != events[i-1].Seq+1 {
			return fmt.Errorf("store: verify events: entry %d follows %d: entries are missing or out of order", e.Seq, events[i-1].Seq)
		}
		if (i > 0 || prev != "") && e.Prev != prev {
			return fmt.Errorf("store: verify events: entry %d does not link to the entry before it", e.Seq)
		}
		h, err := HashEvent(e)
		if err != nil {
			return err
		}
		if h != e.Hash {
			return fmt.Errorf("store: verify events: entry %d was altered (hash mismatch)", e.Seq)
		}
		prev = e.Hash
	}
	return nil
}

func readHead(tx *bolt.Tx) (chainPoint, error) {
	v := tx.Bucket(bucketAuditMeta).Get(keyHead)
	if v == nil {
		return chainPoint{}, fmt.Errorf("%w: audit head is missing", ErrCorrupt)
	}
	p, err := decodePoint(v)
	if err != nil {
		return p, fmt.Errorf("audit head: %w", err)
	}
	return p, nil
}

func readCheckpoint(tx *bolt.Tx) (chainPoint, error) {
	v := tx.Bucket(bucketAuditMeta).Get(keyCheckpoint)
	if v == nil {
		return chainPoint{}, nil
	}
	p, err := decodePoint(v)
	if err != nil {
		return p, fmt.Errorf("audit checkpoint: %w", err)
	}
	return p, nil
}

func readAcked(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketAuditMeta).Get(keyAcked)
	if v == nil {
		return 0, fmt.Errorf("%w: outbox cursor is missing", ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("outbox cursor: %w", err)
	}
	return n, nil
}

type appendCall struct {
	events []Event
	res    chan error
}

// Append adds an event to the audit chain and returns it with Seq, Prev
// and Hash set. When Append returns without error the entry is on disk
// (fsync'ed). Concurrent calls are committed together in one transaction
// (group commit), which is what makes thousands of durable events per
// second possible. Fields are made encodable rather than refused: invalid
// UTF-8 is replaced, over-long fields are cut, the UID is upper-cased.
func (s *Store) Append(e Event) (Event, error) {
	out, err := s.AppendMany([]Event{e})
	if err != nil {
		return Event{}, err
	}
	return out[0], nil
}

// AppendMany appends events in order, atomically (all or none), with
// consecutive sequences, durably as Append.
func (s *Store) AppendMany(events []Event) ([]Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	call := appendCall{events: make([]Event, len(events)), res: make(chan error, 1)}
	for i, e := range events {
		call.events[i] = normalizeEvent(e)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("store: append: %w", ErrClosed)
	}
	s.appendCh <- call
	s.mu.RUnlock()
	if err := <-call.res; err != nil {
		return nil, fmt.Errorf("store: append: %w", err)
	}
	return call.events, nil
}

// committer is the group-commit loop: it takes every append waiting when
// it is ready, up to MaxBatch events, and commits them in one transaction.
// While one transaction syncs, the next batch gathers.
func (s *Store) committer() {
	defer close(s.done)
	for first := range s.appendCh {
		calls := []appendCall{first}
		n := len(first.events)
	gather:
		for n < s.opts.MaxBatch {
			select {
			case c, ok := <-s.appendCh:
				if !ok {
					break gather
				}
				calls = append(calls, c)
				n += len(c.events)
			default:
				break gather
			}
		}
		err := s.commitEvents(calls)
		for _, c := range calls {
			c.res <- err
		}
	}
}

// commitEvents writes the events of calls in order in one transaction. It
// runs once per batch (db.Update, not db.Batch), so setting the fields of
// the events in place is safe: callers read them only after it returns.
func (s *Store) commitEvents(calls []appendCall) error {
	return s.update(func(tx *bolt.Tx) error {
		for _, c := range calls {
			if err := appendChain(tx, c.events); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendChain appends events to the audit chain in tx, setting their Seq,
// Prev and Hash in place.
func appendChain(tx *bolt.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	head, err := readHead(tx)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketAudit)
	b.FillPercent = 1.0 // keys only ever grow: pack pages full
	for i := range events {
		e := &events[i]
		seq := head.Seq + 1
		rec := eventCanonical(e, seq, head.Hash)
		hash := sha256.Sum256(rec)
		rec = append(rec, hash[:]...)
		if err := b.Put(be64(seq), rec); err != nil {
			return err
		}
		e.Seq, e.Prev, e.Hash = seq, hex.EncodeToString(head.Hash[:]), hex.EncodeToString(hash[:])
		head = chainPoint{Seq: seq, Hash: hash}
	}
	return tx.Bucket(bucketAuditMeta).Put(keyHead, encodePoint(head))
}

// Report is the result of Verify.
type Report struct {
	OK         bool   // the chain is whole
	Entries    uint64 // entries checked
	First      uint64 // first sequence present (0 if none)
	Last       uint64 // last sequence present (0 if none)
	Head       uint64 // last sequence ever written
	Checkpoint uint64 // last pruned sequence (0 if none pruned)
	BreakAt    uint64 // where the first problem is (when not OK)
	Problem    string // what the first problem is (when not OK)
}

// Verify walks the audit chain from the retention checkpoint (or from the
// start) to the head and reports the first break: an entry edited (hash
// mismatch), deleted (sequence gap, or entries missing at the end),
// reordered or inserted (sequence out of place, or not linking to the
// hash before it). A break is a Report with OK false, not an error; the
// error is for failing to read the file. It reads in chunks, so appends
// continue while it runs.
func (s *Store) Verify() (Report, error) {
	if err := s.waitPages(); err != nil {
		return Report{}, fmt.Errorf("store: verify: %w", err)
	}
	r, err := s.verify()
	if err != nil {
		return Report{}, fmt.Errorf("store: verify: %w", err)
	}
	return r, nil
}

func (s *Store) verify() (Report, error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	var r Report
	var next uint64 // sequence expected next
	var prev [32]byte
	started, finished := false, false
	var head chainPoint
	for !finished && r.Problem == "" {
		err := s.view(func(tx *bolt.Tx) error {
			if !started {
				cp, err := readCheckpoint(tx)
				if err != nil {
					return err
				}
				r.Checkpoint, next, prev = cp.Seq, cp.Seq+1, cp.Hash
				started = true
			}
			c := tx.Bucket(bucketAudit).Cursor()
			n := 0
			for k, v := c.Seek(be64(next)); k != nil; k, v = c.Next() {
				if n == s.verifyChunk {
					return nil
				}
				n++
				if !r.check(k, v, &next, &prev) {
					return nil
				}
			}
			finished = true
			var err error
			head, err = readHead(tx)
			return err
		})
		if err != nil {
			return Report{}, err
		}
		if !finished && s.verifyHook != nil {
			s.verifyHook()
		}
	}
	r.Head = head.Seq
	if r.Problem == "" {
		switch {
		case next-1 != head.Seq:
			r.BreakAt = next
			r.Problem = fmt.Sprintf("entries %d..%d are missing at the end of the chain (the head says %d)", next, head.Seq, head.Seq)
		case prev != head.Hash:
			r.BreakAt = head.Seq
			r.Problem = "the last entry's hash is not the one recorded at the head"
		}
	}
	r.OK = r.Problem == ""
	return r, nil
}

// check verifies one entry against what the chain expects; false stops.
func (r *Report) check(k, v []byte, next *uint64, prev *[32]byte) bool {
	fail := func(at uint64, format string, args ...any) bool {
		r.BreakAt, r.Problem = at, fmt.Sprintf(format, args...)
		return false
	}
	if len(k) != 8 {
		return fail(*next, "an entry has a malformed key %s", keyText(k))
	}
	seq := binary.BigEndian.Uint64(k)
	if seq != *next {
		return fail(*next, "entries %d..%d are missing (deleted); the chain resumes at %d", *next, seq-1, seq)
	}
	recSeq, recPrev, recHash, hashOK, err := scanEvent(v)
	switch {
	case err != nil:
		return fail(seq, "entry %d cannot be decoded: %v", seq, err)
	case recSeq != seq:
		return fail(seq, "entry stored under %d says it is %d (moved or reordered)", seq, recSeq)
	case !hashOK:
		return fail(seq, "entry %d was altered: its hash does not match its content", seq)
	case recPrev != *prev:
		return fail(seq, "entry %d does not link to the entry before it (one was altered, removed or inserted)", seq)
	}
	if r.Entries == 0 {
		r.First = seq
	}
	r.Entries++
	r.Last = seq
	*next, *prev = seq+1, recHash
	return true
}

// PruneResult says what Prune dropped.
type PruneResult struct {
	Dropped    int    // entries removed
	Checkpoint uint64 // the last removed sequence (0 if none ever)
}

// Prune drops the oldest audit entries as Options.Retention allows. Only a
// prefix of the chain is removed, and the checkpoint keeps the hash the
// first remaining entry links to, so Verify still checks what remains.
// Entries the site has not acknowledged are kept unless MaxUndelivered is
// exceeded, and alarms are kept until acknowledged.
func (s *Store) Prune(now time.Time) (PruneResult, error) {
	if err := s.waitPages(); err != nil {
		return PruneResult{}, fmt.Errorf("store: prune: %w", err)
	}
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	var res PruneResult
	pol := s.opts.Retention
	for {
		dropped := 0
		err := s.update(func(tx *bolt.Tx) error {
			head, err := readHead(tx)
			if err != nil {
				return err
			}
			acked, err := readAcked(tx)
			if err != nil {
				return err
			}
			cp, err := readCheckpoint(tx)
			if err != nil {
				return err
			}
			res.Checkpoint = cp.Seq
			b := tx.Bucket(bucketAudit)
			c := b.Cursor()
			k, _ := c.First()
			if k == nil {
				return nil
			}
			first := binary.BigEndian.Uint64(k)
			count := head.Seq - first + 1
			undelivered := head.Seq - max(acked, first-1)
			var drop [][]byte
			for k, v := c.First(); k != nil && len(drop) < pruneChunk; k, v = c.Next() {
				se, err := decodeEvent(v)
				if err != nil {
					return fmt.Errorf("entry %s: %w", keyText(k), err)
				}
				// Too many undelivered entries: drop from the oldest, delivered
				// or not, but stop at an undelivered alarm.
				pressure := pol.MaxUndelivered > 0 && undelivered > uint64(pol.MaxUndelivered)
				var ok bool
				if se.Seq <= acked {
					ok = pressure || (pol.MaxEntries > 0 && count > uint64(pol.MaxEntries)) ||
						(pol.MaxAge > 0 && se.Time.Before(now.Add(-pol.MaxAge)))
				} else {
					ok = pressure && !se.Reason.Alarm()
					if ok {
						undelivered--
					}
				}
				if !ok {
					break
				}
				count--
				drop = append(drop, bytes.Clone(k))
				cp = chainPoint{Seq: se.Seq, Hash: se.hash}
			}
			for _, k := range drop {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			dropped = len(drop)
			if dropped == 0 {
				return nil
			}
			res.Checkpoint = cp.Seq
			return tx.Bucket(bucketAuditMeta).Put(keyCheckpoint, encodePoint(cp))
		})
		if err != nil {
			return res, fmt.Errorf("store: prune: %w", err)
		}
		res.Dropped += dropped
		if dropped < pruneChunk {
			return res, nil
		}
	}
}

// AuditHead returns the last sequence written to the audit chain and its
// hash (hex; all zeros before the first entry).
func (s *Store) AuditHead() (uint64, string, error) {
	var head chainPoint
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		head, err = readHead(tx)
		return err
	})
	if err != nil {
		return 0, "", fmt.Errorf("store: audit head: %w", err)
	}
	return head.Seq, hex.EncodeToString(head.Hash[:]), nil
}
