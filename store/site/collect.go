package site

import (
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
	Doors       []string // the doors the batch held events of, in the order they first appear
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
		}
		return nil
	})
	if err != nil {
		return Collected{}, fmt.Errorf("site: collect %d events: %w", len(batch), err)
	}
	return out, nil
}
