package site

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// Arrival is a collected event and its place in the order the site stored
// events: what a follower of the collected log reads.
type Arrival struct {
	Cursor uint64 // its place in arrival order, from 1; later events have higher cursors
	Door   string // the door it was collected from
	Event  store.Event
}

// arrivalPage is the most events EventsSince returns in one call.
const arrivalPage = 1024

// arrivalKey is the idx_arrival key of an event: uint64 cursor, then the
// event's key (door key, uint64 seq).
func arrivalKey(cursor uint64, ek []byte) []byte {
	return append(be64(cursor), ek...)
}

// splitArrivalKey returns the cursor and event key of an idx_arrival key.
func splitArrivalKey(k []byte) (uint64, []byte, error) {
	if len(k) < 8 {
		return 0, nil, fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, bucketIdxArrival, k)
	}
	if _, _, ok := splitEventKey(k[8:]); !ok {
		return 0, nil, fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, bucketIdxArrival, k)
	}
	return binary.BigEndian.Uint64(k), k[8:], nil
}

// putArrival records that the event at ek is the next one stored.
func putArrival(tx *bolt.Tx, ek []byte) error {
	b := tx.Bucket(bucketIdxArrival)
	cursor, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(arrivalKey(cursor, ek), nil)
}

// eventAt returns the stored event at the event key ek, which the index
// named: a missing one is damage.
func eventAt(evb *bolt.Bucket, index, ek []byte) (store.Event, error) {
	v := evb.Get(ek)
	if v == nil {
		return store.Event{}, fmt.Errorf("%w: index %s names event %X, which is missing", ErrCorrupt, index, ek)
	}
	e, err := decodeEvent(v)
	if err != nil {
		return e, fmt.Errorf("event %X: %w", ek, err)
	}
	return e, nil
}

// arrivalAt decodes the idx_arrival entry k and, if it is of door (or door
// is empty), returns its event; if not, only its cursor and door.
func arrivalAt(evb *bolt.Bucket, k []byte, door string) (Arrival, bool, error) {
	cursor, ek, err := splitArrivalKey(k)
	if err != nil {
		return Arrival{}, false, err
	}
	d, _, _ := splitEventKey(ek)
	if door != "" && d != door {
		return Arrival{Cursor: cursor, Door: d}, false, nil
	}
	e, err := eventAt(evb, bucketIdxArrival, ek)
	if err != nil {
		return Arrival{}, false, err
	}
	return Arrival{Cursor: cursor, Door: d, Event: e}, true, nil
}

// EventsSince returns the events stored after the arrival cursor after,
// in the order the site stored them, and the cursor to pass next. Only
// door's events are returned unless door is empty. It returns at most n
// events (n below 1 or above 1,024: 1,024) and reads at most a few
// thousand index entries, in one read transaction, so a rare door's
// events may take several calls: call again with the cursor it returned
// until that cursor is the one passed, which means nothing else was
// stored after it. A cursor never moves back and an event stored later
// always has a higher cursor than one read before, so a follower that
// passes each returned cursor sees every event once.
func (d *DB) EventsSince(after uint64, n int, door string) ([]Arrival, uint64, error) {
	if n < 1 || n > arrivalPage {
		n = arrivalPage
	}
	var out []Arrival
	next := after
	err := d.view(func(tx *bolt.Tx) error {
		evb := tx.Bucket(bucketEvents)
		c := tx.Bucket(bucketIdxArrival).Cursor()
		k, _ := c.Seek(be64(after + 1))
		for scanned := 0; k != nil && scanned < queryScan && len(out) < n; k, _ = c.Next() {
			scanned++
			a, ok, err := arrivalAt(evb, k, door)
			if err != nil {
				return err
			}
			next = a.Cursor
			if ok {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, after, fmt.Errorf("site: events since %d: %w", after, err)
	}
	return out, next, nil
}

// TailFrom returns the arrival cursor to pass to EventsSince to read the
// last n events stored (of door, unless door is empty), and the cursor of
// the last event stored of any door when it began: what to stop at to
// read only those n, or to follow from to read what is stored next. A
// door with fewer than n events gives 0; n = 0 gives the end. It reads
// index keys backwards, no events, in read transactions of a few thousand
// keys, so a door with few events among many costs a long scan but never
// holds up writers.
func (d *DB) TailFrom(n int, door string) (after, end uint64, err error) {
	if n < 0 {
		return 0, 0, fmt.Errorf("site: tail from: %w: n %d, want 0 or more", ErrInvalid, n)
	}
	dk := doorKey(door)
	found := 0
	for first := true; ; first = false {
		done := false
		err := d.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketIdxArrival)
			c := b.Cursor()
			var k []byte
			if first {
				end, after = b.Sequence(), b.Sequence()
				if n == 0 {
					done = true
					return nil
				}
				k, _ = c.Last()
			} else {
				c.Seek(be64(after + 1))
				k, _ = c.Prev()
			}
			for scanned := 0; scanned < queryScan; k, _ = c.Prev() {
				if k == nil {
					after, done = 0, true
					return nil
				}
				scanned++
				cursor, ek, err := splitArrivalKey(k)
				if err != nil {
					return err
				}
				after = cursor - 1
				if door == "" || bytes.HasPrefix(ek, dk) && len(ek) == len(dk)+8 {
					if found++; found == n {
						done = true
						return nil
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("site: tail from: %w", err)
		}
		if done {
			return after, end, nil
		}
	}
}

// ArrivalEnd returns the arrival cursor of the last event stored (0 if
// none): a follower that starts from it sees only what is stored next.
func (d *DB) ArrivalEnd() (uint64, error) {
	var end uint64
	err := d.view(func(tx *bolt.Tx) error {
		end = tx.Bucket(bucketIdxArrival).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("site: arrival end: %w", err)
	}
	return end, nil
}

// addArrivalIndex makes idx_arrival in a file from before it, and gives
// the events stored there their cursors in time order (the order of
// idx_time), which is the best guess of the order they came in.
func addArrivalIndex(tx *bolt.Tx) error {
	if _, err := tx.CreateBucket(bucketIdxArrival); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketIdxArrival, err)
	}
	c := tx.Bucket(bucketIdxTime).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 12+10 {
			return fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, bucketIdxTime, k)
		}
		if err := putArrival(tx, bytes.Clone(k[12:])); err != nil {
			return fmt.Errorf("index %s: %w", bucketIdxArrival, err)
		}
	}
	return nil
}

// eventSet sums a hash of event keys: two sets of keys with the same
// count and sum are the same set, but for a chance of 2^-64. The seed is
// random per process, so no stored data can be made to collide.
type eventSet struct {
	seed maphash.Seed
	n    int
	sum  uint64
}

func newEventSet(seed maphash.Seed) eventSet { return eventSet{seed: seed} }

func (s *eventSet) add(ek []byte) {
	s.n++
	s.sum += maphash.Bytes(s.seed, ek)
}

// checkArrivals checks idx_arrival against the events: every entry well
// formed, its cursor unique and at most the bucket's sequence, naming a
// stored event, and every event named by exactly one entry (events is
// the set of the events' keys).
func checkArrivals(tx *bolt.Tx, events eventSet) error {
	b := tx.Bucket(bucketIdxArrival)
	evb := tx.Bucket(bucketEvents)
	seq := b.Sequence()
	named := newEventSet(events.seed)
	var last uint64
	err := b.ForEach(func(k, _ []byte) error {
		cursor, ek, err := splitArrivalKey(k)
		if err != nil {
			return err
		}
		switch {
		case cursor == 0 || cursor <= last:
			return fmt.Errorf("%w: index %s has cursor %d after %d", ErrCorrupt, bucketIdxArrival, cursor, last)
		case cursor > seq:
			return fmt.Errorf("%w: index %s has cursor %d beyond its sequence %d", ErrCorrupt, bucketIdxArrival, cursor, seq)
		case evb.Get(ek) == nil:
			return fmt.Errorf("%w: index %s entry %d names event %X, which is missing", ErrCorrupt, bucketIdxArrival, cursor, ek)
		}
		last = cursor
		named.add(ek)
		return nil
	})
	if err != nil {
		return err
	}
	if named.n != events.n || named.sum != events.sum {
		return fmt.Errorf("%w: index %s has %d entries for %d events: an event has none, or more than one", ErrCorrupt, bucketIdxArrival, named.n, events.n)
	}
	return nil
}
