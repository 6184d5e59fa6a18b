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
		s := newIndexScan(f)
		bucket, prefix := s.bucket, s.prefix
		start, end := s.start(), s.end()
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
					r, ok, err := s.record(evb, k)
					if err != nil {
						return err
					}
					if ok {
						recs = append(recs, r)
					}
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

// indexScan is how a query reads: the index its filter chooses, the
// prefix of the keys it reads there, and the filter of what they name.
type indexScan struct {
	f      Filter
	bucket []byte // idx_holder, idx_uid, idx_door_time or idx_time
	prefix []byte // the label or door key; none in idx_time
}

// newIndexScan chooses f's index: a holder's, a UID's, a door's, else the
// time index.
func newIndexScan(f Filter) indexScan {
	s := indexScan{f: f, bucket: bucketIdxTime}
	switch {
	case f.Holder != "":
		s.bucket, s.prefix = bucketIdxHolder, labelKey(f.Holder)
	case f.UID != "":
		s.bucket, s.prefix = bucketIdxUID, labelKey(f.UID)
	case f.Door != "":
		s.bucket, s.prefix = bucketIdxDoorTime, doorKey(f.Door)
	}
	return s
}

// start returns the least key the scan reads: the prefix, and From's time
// key if From is set.
func (s *indexScan) start() []byte {
	start := bytes.Clone(s.prefix)
	if !s.f.From.IsZero() {
		start = append(start, timeKey(s.f.From)...)
	}
	return start
}

// end returns the key the scan ends before, To's; nil when To is zero.
func (s *indexScan) end() []byte {
	if s.f.To.IsZero() {
		return nil
	}
	return append(bytes.Clone(s.prefix), timeKey(s.f.To)...)
}

// split returns the door and the event key named by k, a key of the
// scan's index that has its prefix; a malformed key is an error (wrapping
// ErrCorrupt).
func (s *indexScan) split(k []byte) (door string, ek []byte, err error) {
	rest := k[len(s.prefix):]
	if len(rest) < 12+8 {
		return "", nil, fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, s.bucket, k)
	}
	ek = rest[12:]
	if bytes.Equal(s.bucket, bucketIdxDoorTime) {
		ek = append(bytes.Clone(s.prefix), rest[12:]...)
	}
	door, _, ok := splitEventKey(ek)
	if !ok {
		return "", nil, fmt.Errorf("%w: index %s key %X is malformed", ErrCorrupt, s.bucket, k)
	}
	return door, ek, nil
}

// record returns the event the index key k (which has the scan's prefix)
// names and whether the filter selects it. It reads the event only if the
// key's door passes.
func (s *indexScan) record(evb *bolt.Bucket, k []byte) (Record, bool, error) {
	f := &s.f
	door, ek, err := s.split(k)
	if err != nil {
		return Record{}, false, err
	}
	if f.Door != "" && door != f.Door {
		return Record{}, false, nil
	}
	e, err := eventAt(evb, s.bucket, ek)
	if err != nil {
		return Record{}, false, err
	}
	return Record{Door: door, Event: e}, f.Selects(door, &e), nil
}

// Selects reports whether the filter selects event e collected from door:
// what a query does for each event it reads (the time range included,
// which a query's index range already applies), for a caller that has the
// event from elsewhere, such as a live stream.
func (f *Filter) Selects(door string, e *store.Event) bool {
	switch {
	case f.Door != "" && door != f.Door,
		f.Holder != "" && e.Holder != f.Holder,
		f.UID != "" && e.UID != f.UID,
		f.Type != "" && e.Type != f.Type,
		f.Reason != "" && e.Reason != f.Reason,
		!f.From.IsZero() && e.Time.Before(f.From),
		!f.To.IsZero() && !e.Time.Before(f.To):
		return false
	}
	return true
}
