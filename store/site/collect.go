package site

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// Signed is an event as a door sent it: the event and the door's
// signature of its chain head at the event's seq (base64), which the
// caller has verified with the door's key.
type Signed struct {
	Door  string
	Event store.Event
	Sig   string
}

// Collected is what Collect did with a batch.
type Collected struct {
	Stored, Dup int
	Findings    []Finding
	Doors       []string          // the doors the batch held events of, in the order they first appear
	Contiguous  map[string]uint64 // each of those doors' contiguous seq after the batch
}

// Collect stores a batch of events of any doors in one transaction, as
// AddEvents does for each door's events in the order given, and holds
// each stored event's signature as the door's signed head at its seq.
// One transaction for the batch is what lets the collector keep up with
// many doors at once: a commit costs one sync of the file whatever the
// number of doors in it.
func (d *DB) Collect(batch []Signed, now time.Time) (Collected, error) {
	var out Collected
	byDoor := make(map[string][]int)
	for i := range batch {
		door := batch[i].Door
		if err := checkDoorID(door); err != nil {
			return Collected{}, fmt.Errorf("site: collect events of door %q: %w", door, err)
		}
		if _, ok := byDoor[door]; !ok {
			out.Doors = append(out.Doors, door)
		}
		byDoor[door] = append(byDoor[door], i)
	}
	err := d.update(func(tx *bolt.Tx) error {
		out.Stored, out.Dup, out.Findings = 0, 0, nil
		out.Contiguous = make(map[string]uint64, len(out.Doors))
		for _, door := range out.Doors {
			idx := byDoor[door]
			evs := make([]store.Event, len(idx))
			sigs := make([]string, len(idx))
			for j, i := range idx {
				evs[j], sigs[j] = batch[i].Event, batch[i].Sig
			}
			stored, dup, fs, err := addEvents(tx, door, evs, sigs, now)
			if err != nil {
				return fmt.Errorf("door %s: %w", door, err)
			}
			out.Stored += stored
			out.Dup += dup
			out.Findings = append(out.Findings, fs...)
			if out.Contiguous[door], err = readCursor(tx, door); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Collected{}, fmt.Errorf("site: collect %d events: %w", len(batch), err)
	}
	return out, nil
}

// EventsOf returns door's stored events after seq, in seq order, at most n
// of them (0: all).
func (d *DB) EventsOf(door string, after uint64, n int) ([]store.Event, error) {
	var out []store.Event
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		pfx := doorKey(door)
		for k, v := c.Seek(eventKey(door, after+1)); k != nil && (n <= 0 || len(out) < n); k, v = c.Next() {
			if !bytes.HasPrefix(k, pfx) || len(k) != len(pfx)+8 {
				break
			}
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("event %X: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: events of door %s: %w", door, err)
	}
	return out, nil
}
