package site

import (
	"bytes"
	"fmt"
	"iter"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// Filter selects collected events. Zero fields select everything.
type Filter struct {
	Door   string          // the door that sent it
	Holder string          // the holder id it names
	UID    string          // the card UID it names (upper-case hex)
	Type   store.EventType // its type
	Reason store.Reason    // its reason
	From   time.Time       // at or after this time (the door's clock)
	To     time.Time       // before this time
	Limit  int             // at most this many (0: no limit)
}

// Record is a collected event and the door it was collected from.
type Record struct {
	Door  string
	Event store.Event
}

// Query sizes: results read per read transaction, and index keys scanned
// per read transaction at most (when filters skip most of them).
const (
	queryPage = 512
	queryScan = 8192
)

// Query returns the events f selects, in the time order of the door's
// clocks (then door, then seq). A query with a holder, a UID or a door
// is a range scan of that index between From and To; Type and Reason (and
// a door alongside a holder or UID) filter what the scan finds, and a
// query with none of holder, UID and door scans the time index. It reads
// in pages, one read transaction each, never holding one while the caller
// runs; an error ends the sequence.
func (d *DB) Query(f Filter) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		var bucket, prefix []byte
		switch {
		case f.Holder != "":
			bucket, prefix = bucketIdxHolder, labelKey(f.Holder)
		case f.UID != "":
			bucket, prefix = bucketIdxUID, labelKey(f.UID)
		case f.Door != "":
			bucket, prefix = bucketIdxDoorTime, doorKey(f.Door)
		default:
			bucket = bucketIdxTime
		}
		start := bytes.Clone(prefix)
		if !f.From.IsZero() {
			start = append(start, timeKey(f.From)...)
		}
		var end []byte
		if !f.To.IsZero() {
			end = append(bytes.Clone(prefix), timeKey(f.To)...)
		}
		var resume []byte
		n := 0
		for {
			var recs []Record
			done := false
			err := d.view(func(tx *bolt.Tx) error {
				evb := tx.Bucket(bucketEvents)
				c := tx.Bucket(bucket).Cursor()
				var k []byte
				if resume == nil {
					k, _ = c.Seek(start)
				} else if k, _ = c.Seek(resume); bytes.Equal(k, resume) {
					k, _ = c.Next()
				}
				for scanned := 0; ; k, _ = c.Next() {
					if k == nil || !bytes.HasPrefix(k, prefix) || (end != nil && bytes.Compare(k, end) >= 0) {
						done = true
						return nil
					}
					if scanned == queryScan || len(recs) == queryPage {
						return nil
					}
					scanned++
					resume = bytes.Clone(k)
					rest := k[len(prefix):]
					if len(rest) < 12+8 {
						return fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, bucket, k)
					}
					ek := rest[12:]
					if bytes.Equal(bucket, bucketIdxDoorTime) {
						ek = append(bytes.Clone(prefix), rest[12:]...)
					}
					door, _, ok := splitEventKey(ek)
					if !ok {
						return fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, bucket, k)
					}
					if f.Door != "" && door != f.Door {
						continue
					}
					e, err := eventAt(evb, bucket, ek)
					if err != nil {
						return err
					}
					if (f.Type != "" && e.Type != f.Type) || (f.Reason != "" && e.Reason != f.Reason) ||
						(f.Holder != "" && e.Holder != f.Holder) || (f.UID != "" && e.UID != f.UID) {
						continue
					}
					recs = append(recs, Record{Door: door, Event: e})
				}
			})
			if err != nil {
				yield(Record{}, fmt.Errorf("site: query: %w", err))
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
				n++
				if f.Limit > 0 && n >= f.Limit {
					return
				}
			}
			if done {
				return
			}
		}
	}
}
