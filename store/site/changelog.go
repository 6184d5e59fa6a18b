package site

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// The site's change log: every change made to access through the API (and
// so through the CLI and the console), one entry each, in a hash chain of
// its own. An entry is written in the transaction of the change it
// records (Recording), so that no change is committed without it; a
// refused or failed change gets one too. Entries are only ever appended.

// ChangeEntry is one entry of the change log. Before and After are the
// affected record as the API shows it (JSON; null when it did not exist
// or no longer exists); they never hold a PIN, a password or a hash of
// either.
type ChangeEntry struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`             // the site's clock
	Who    string          `json:"who"`              // the account or OS user; "(unverified)" when the kernel could not say
	Role   string          `json:"role,omitempty"`   // a console account's role then
	From   string          `json:"from"`             // "socket", or "console ADDRESS"
	Op     string          `json:"op"`               // e.g. "card add", "pin set", "door unlock", "note"
	Target string          `json:"target,omitempty"` // e.g. "card 04A1B2C3", "holder alice", "door front"
	Detail string          `json:"detail,omitempty"` // a reason, a duration, a note's text
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Result string          `json:"result"`        // "ok", or why it was refused or failed
	Ref    uint64          `json:"ref,omitempty"` // the entry this one completes or comments
	Prev   string          `json:"prev"`          // the hash of the entry before, hex; 64 zeros for the first
	Hash   string          `json:"hash"`          // ChangeHash of this entry, hex
}

// Change-log limits: each string of an entry, and each of Before and
// After.
const (
	maxChangeText  = 4096
	maxChangeValue = 64 << 10
)

// changeDomain starts the bytes every change-log hash covers.
const changeDomain = "latch change log v1\n"

// ChangeHash is the hash of e: SHA-256 of the domain string
// "latch change log v1\n", the 32 bytes of the previous entry's hash, then
// e's fields in this order: seq (uint64), time (int64 Unix seconds and
// uint32 nanoseconds), who, role, from, op, target, detail, before, after,
// result (each uint32 length and bytes), ref (uint64); integers
// big-endian. before and after are the JSON bytes as stored. prev is
// e.Prev decoded; Hash is not covered. docs/audit.md says the same for
// auditors.
func ChangeHash(e *ChangeEntry) ([32]byte, error) {
	prev, err := hex.DecodeString(e.Prev)
	if err != nil || len(prev) != 32 {
		return [32]byte{}, fmt.Errorf("%w: prev %q is not a 32-byte hex hash", ErrInvalid, e.Prev)
	}
	h := sha256.New()
	b := make([]byte, 0, 512)
	b = append(b, changeDomain...)
	b = append(b, prev...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Time.Nanosecond()))
	for _, s := range [][]byte{[]byte(e.Who), []byte(e.Role), []byte(e.From), []byte(e.Op), []byte(e.Target),
		[]byte(e.Detail), e.Before, e.After, []byte(e.Result)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, e.Ref)
	h.Write(b)
	return [32]byte(h.Sum(nil)), nil
}

var zeroChangeHash = strings.Repeat("0", 64)

// normalize bounds and canonicalises what a caller gives, before the entry
// is hashed: strings cut at maxChangeText, times in UTC, values compact
// JSON ("null" when empty).
func (e *ChangeEntry) normalize() error {
	for _, s := range []*string{&e.Who, &e.Role, &e.From, &e.Op, &e.Target, &e.Detail, &e.Result} {
		if len(*s) > maxChangeText {
			*s = strings.ToValidUTF8((*s)[:maxChangeText], "") + "…"
		}
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	if e.Op == "" || e.Who == "" || e.Result == "" {
		return fmt.Errorf("%w: a change-log entry needs op, who and result", ErrInvalid)
	}
	e.Time = e.Time.UTC().Round(0)
	for _, v := range []*json.RawMessage{&e.Before, &e.After} {
		if len(*v) == 0 {
			*v = json.RawMessage("null")
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, *v); err != nil {
			return fmt.Errorf("%w: change-log value: %w", ErrInvalid, err)
		}
		if buf.Len() > maxChangeValue {
			return fmt.Errorf("%w: change-log value of %d bytes, limit %d", ErrInvalid, buf.Len(), maxChangeValue)
		}
		*v = buf.Bytes()
	}
	return nil
}

// appendChange stores e after the last entry in tx, filling in its seq,
// prev and hash.
func appendChange(tx *bolt.Tx, e *ChangeEntry) error {
	if err := e.normalize(); err != nil {
		return err
	}
	b := tx.Bucket(bucketChanges)
	b.FillPercent = 1.0 // keys only grow
	e.Seq, e.Prev = 1, zeroChangeHash
	if k, v := b.Cursor().Last(); k != nil {
		var last ChangeEntry
		if err := decodeJSON(v, &last); err != nil || len(k) != 8 {
			return fmt.Errorf("%w: the last change-log entry cannot be read; nothing appended: %v", ErrCorrupt, err)
		}
		e.Seq, e.Prev = binary.BigEndian.Uint64(k)+1, last.Hash
	}
	if e.Ref >= e.Seq {
		return fmt.Errorf("%w: entry %d cannot refer to entry %d", ErrInvalid, e.Seq, e.Ref)
	}
	h, err := ChangeHash(e)
	if err != nil {
		return fmt.Errorf("%w: the last change-log entry's hash: %w", ErrCorrupt, err)
	}
	e.Hash = hex.EncodeToString(h[:])
	rec, err := encodeJSON(e)
	if err != nil {
		return err
	}
	return b.Put(be64(e.Seq), rec)
}

// AppendChange appends e to the change log in a transaction of its own
// and returns it as stored (seq, prev, hash filled in). It is for what is
// not a change of the database (a command sent to a door, a note) and for
// a change refused before it reached the database.
func (d *DB) AppendChange(e ChangeEntry) (ChangeEntry, error) {
	err := d.update(func(tx *bolt.Tx) error { return appendChange(tx, &e) })
	if err != nil {
		return ChangeEntry{}, fmt.Errorf("site: append change: %w", err)
	}
	return e, nil
}

// ChangeRecord is a change-log entry that a change's own transaction appends:
// see Recording.
type ChangeRecord struct {
	// Entry is the entry to append; its Before and After are set by
	// Before and After.
	Entry ChangeEntry
	// Before, if set, reads the affected record in the transaction before
	// the change, for Entry.Before.
	Before func(r *Reader) (json.RawMessage, error)
	// After, if set, reads it as the transaction left it, for
	// Entry.After.
	After func(r *Reader) (json.RawMessage, error)

	stored *ChangeEntry
	also   func(tx *bolt.Tx) error // more of the change, after it (UpdatingReview)
}

// Stored returns the entry as appended, or nil when no transaction
// committed it (the change was refused before reaching the database, or
// its transaction failed): the caller then appends the entry with the
// result.
func (r *ChangeRecord) Stored() *ChangeEntry { return r.stored }

// Recording returns a handle on d whose first committed write transaction
// also appends rec's entry, so that the change and its entry are on disk
// together or not at all. Later writes through the handle append nothing
// more. Use it for one change, from one goroutine.
func (d *DB) Recording(rec *ChangeRecord) *DB {
	return &DB{path: d.path, db: d.db, rec: rec}
}

// recordChange runs fn, the change, in tx and, if d has a record still to
// append, appends it with the record before and after fn.
func (d *DB) recordChange(tx *bolt.Tx, fn func(tx *bolt.Tx) error) (*ChangeEntry, error) {
	if d.rec == nil || d.rec.stored != nil {
		return nil, fn(tx)
	}
	e := d.rec.Entry
	if d.rec.Before != nil {
		v, err := d.rec.Before(&Reader{tx: tx})
		if err != nil {
			return nil, fmt.Errorf("change log: the record before the change: %w", err)
		}
		e.Before = v
	}
	if err := fn(tx); err != nil {
		return nil, err
	}
	if d.rec.also != nil {
		if err := d.rec.also(tx); err != nil {
			return nil, err
		}
	}
	if d.rec.After != nil {
		v, err := d.rec.After(&Reader{tx: tx})
		if err != nil {
			return nil, fmt.Errorf("change log: the record after the change: %w", err)
		}
		e.After = v
	}
	if err := appendChange(tx, &e); err != nil {
		return nil, fmt.Errorf("change log: %w", err)
	}
	return &e, nil
}

// Reader reads records inside a write transaction (ChangeRecord.After).
type Reader struct{ tx *bolt.Tx }

func (r *Reader) get(bucket, k []byte, v any) error {
	rec := r.tx.Bucket(bucket).Get(k)
	if rec == nil {
		return ErrNotFound
	}
	return decodeJSON(rec, v)
}

// Card returns the card uid, or ErrNotFound.
func (r *Reader) Card(uid []byte) (store.Card, error) {
	var c store.Card
	return c, r.get(bucketCards, uid, &c)
}

// Holder returns the holder id, or ErrNotFound.
func (r *Reader) Holder(id string) (store.Holder, error) {
	var h store.Holder
	return h, r.get(bucketHolders, []byte(id), &h)
}

// Revoked returns the card uid's revocation, or ErrNotFound.
func (r *Reader) Revoked(uid []byte) (store.Revocation, error) {
	var x store.Revocation
	return x, r.get(bucketRevCards, uid, &x)
}

// HolderRevoked returns the holder id's revocation, or ErrNotFound.
func (r *Reader) HolderRevoked(id string) (store.Revocation, error) {
	var x store.Revocation
	return x, r.get(bucketRevHolders, []byte(id), &x)
}

// Door returns the door id, or ErrNotFound.
func (r *Reader) Door(id string) (Door, error) {
	var x Door
	return x, r.get(bucketDoors, []byte(id), &x)
}

// User returns the console account name, or ErrNotFound.
func (r *Reader) User(name string) (User, error) {
	var u User
	return u, r.get(bucketUsers, []byte(name), &u)
}

// ChangeFilter selects change-log entries; the zero value selects all.
type ChangeFilter struct {
	Who    string    // entries whose who starts with it (a console entry's who is the account)
	Target string    // entries whose target contains it
	From   time.Time // at or after
	To     time.Time // before
	After  uint64    // seq above
	Before uint64    // seq below (0: no bound)
	Limit  int       // at most this many (0: all)
	Newest bool      // the newest first (else the oldest first)
}

func (f *ChangeFilter) keep(e *ChangeEntry) bool {
	return strings.HasPrefix(e.Who, f.Who) && strings.Contains(e.Target, f.Target) &&
		(f.From.IsZero() || !e.Time.Before(f.From)) && (f.To.IsZero() || e.Time.Before(f.To))
}

// Changes returns the entries f selects, in seq order (newest first with
// f.Newest), and the seq of the last entry read (to go on with After, or
// Before).
func (d *DB) Changes(f ChangeFilter) ([]ChangeEntry, uint64, error) {
	var out []ChangeEntry
	var last uint64
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		k, v := c.Seek(be64(f.After + 1))
		step := c.Next
		if f.Newest {
			step = c.Prev
			if f.Before == 0 {
				k, v = c.Last()
			} else {
				c.Seek(be64(f.Before))
				k, v = c.Prev()
			}
		}
		for ; k != nil && (f.Limit <= 0 || len(out) < f.Limit); k, v = step() {
			if len(k) != 8 || binary.BigEndian.Uint64(k) <= f.After || (f.Before != 0 && binary.BigEndian.Uint64(k) >= f.Before) {
				break
			}
			var e ChangeEntry
			if err := decodeJSON(v, &e); err != nil {
				return fmt.Errorf("change-log entry %X: %w", k, err)
			}
			last = e.Seq
			if f.keep(&e) {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("site: changes: %w", err)
	}
	return out, last, nil
}

// ChangeVerdict is what VerifyChanges found.
type ChangeVerdict struct {
	Entries uint64 // entries read
	Head    string // the last good entry's hash: keep it to notice a cut tail later
	Bad     uint64 // the first bad entry's seq (0: none)
	Problem string // what is wrong with it
}

// VerifyChanges walks the change log from its first entry and names the
// first bad one: an entry stored under another seq than it says or out of
// order (moved or reordered), a seq missing (deleted), an entry whose hash
// is not that of its content (edited), one that does not link to the one
// before (removed, inserted or reordered and re-hashed). It reads in
// chunks, so writers go on meanwhile.
func (d *DB) VerifyChanges() (ChangeVerdict, error) {
	v := ChangeVerdict{Head: zeroChangeHash}
	next := uint64(1)
	for done := false; !done && v.Bad == 0; {
		err := d.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketChanges).Cursor()
			n := 0
			for k, rec := c.Seek(be64(next)); ; k, rec = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				if n == verifyChunk {
					return nil
				}
				n++
				e, p := checkChange(k, rec, next, v.Head)
				if p != "" {
					v.Bad, v.Problem = next, p
					return nil
				}
				v.Entries, v.Head, next = v.Entries+1, e.Hash, next+1
			}
		})
		if err != nil {
			return v, fmt.Errorf("site: verify changes: %w", err)
		}
	}
	return v, nil
}

// checkChange decodes and checks the entry stored under k, which should
// be the entry next, linking to prev; it says what is wrong ("" if
// nothing).
func checkChange(k, rec []byte, next uint64, prev string) (ChangeEntry, string) {
	var e ChangeEntry
	if len(k) != 8 {
		return e, fmt.Sprintf("a key of %d bytes (%X) is not a seq", len(k), k)
	}
	at := binary.BigEndian.Uint64(k)
	if at != next {
		return e, fmt.Sprintf("entries %d..%d are missing (deleted); the log resumes at %d", next, at-1, at)
	}
	if err := decodeJSON(rec, &e); err != nil {
		return e, "the entry cannot be decoded (damaged or edited): " + err.Error()
	}
	switch {
	case e.Seq != at:
		return e, fmt.Sprintf("the entry stored under %d says it is %d (moved or reordered)", at, e.Seq)
	case e.Prev != prev:
		return e, "the entry does not link to the entry before it (one was removed, inserted or reordered)"
	}
	h, err := ChangeHash(&e)
	if err != nil || hex.EncodeToString(h[:]) != e.Hash {
		return e, "the entry was altered: its hash does not match its content"
	}
	return e, ""
}

// ParseChangeSeq reads a change-log seq as a user types it.
func ParseChangeSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: %q is not a change-log entry number", ErrInvalid, s)
	}
	return n, nil
}

// checkChanges decodes every change-log entry (Check); VerifyChanges
// judges the chain.
func checkChanges(tx *bolt.Tx) error {
	return tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
		var e ChangeEntry
		if err := decodeJSON(v, &e); err != nil {
			return fmt.Errorf("change-log entry %X: %w", k, err)
		}
		return nil
	})
}
