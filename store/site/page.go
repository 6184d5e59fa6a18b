package site

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Page is one page of a newest-first query.
type Page struct {
	Records []Record
	Next    string    // cursor of the next (older) page; "" when there is none
	Scanned int       // index keys read
	Reached time.Time // when the scan stopped on its budget before filling the page: the time it reached (the page says "searched back to ..."); zero otherwise
}

// pageBudget is the most index keys QueryPage reads by default.
const pageBudget = 200_000

// QueryPage returns at most n events f selects (f.Limit is ignored),
// newest first by the door's clock (then door, then seq, descending: the
// order of Query, reversed), starting before cursor (from a Page.Next; ""
// starts at f.To or the newest), reading at most budget index keys
// (budget <= 0: a default of 200,000). It reads the index Query would,
// backwards, and filters as Query does, in one read transaction.
//
// Next is set when the page filled or the budget ran out and keys of the
// query are left; it is "" when the query's keys are all read. When the
// budget ran out first, Reached is the time of the last key read: the
// query has been answered back to it, and the next page goes on from
// there. Events stored after the first page at times above the cursor do
// not show on later pages; none are shown twice.
//
// The cursor is opaque. One that is malformed, or of another index or
// holder, UID or door, is refused with ErrInvalid; n below 1 too.
func (d *DB) QueryPage(f Filter, cursor string, n, budget int) (Page, error) {
	if n < 1 {
		return Page{}, fmt.Errorf("site: query page: %w: n is %d, want 1 or more", ErrInvalid, n)
	}
	if budget <= 0 {
		budget = pageBudget
	}
	s := newIndexScan(f)
	lo, hi := s.start(), s.end()
	if cursor != "" {
		k, err := s.decodeCursor(cursor)
		if err != nil {
			return Page{}, fmt.Errorf("site: query page: %w", err)
		}
		if hi == nil || bytes.Compare(k, hi) < 0 {
			hi = k
		}
	}
	var p Page
	err := d.view(func(tx *bolt.Tx) error {
		evb := tx.Bucket(bucketEvents)
		c := tx.Bucket(s.bucket).Cursor()
		var last []byte // the last key read
		for k := s.seekBefore(c, hi); k != nil && bytes.HasPrefix(k, s.prefix) && bytes.Compare(k, lo) >= 0; k, _ = c.Prev() {
			if len(p.Records) == n || p.Scanned == budget {
				p.Next = s.encodeCursor(last)
				if len(p.Records) < n {
					p.Reached = s.keyTime(last)
				}
				return nil
			}
			p.Scanned++
			last = k
			r, ok, err := s.record(evb, k)
			if err != nil {
				return err
			}
			if ok {
				p.Records = append(p.Records, r)
			}
		}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("site: query page: %w", err)
	}
	return p, nil
}

// seekBefore moves c to the greatest key below hi, or, when hi is nil, to
// the greatest key with the scan's prefix (or after it, if none has it),
// and returns that key; nil when there is none.
func (s *indexScan) seekBefore(c *bolt.Cursor, hi []byte) []byte {
	if hi == nil {
		hi = prefixEnd(s.prefix)
	}
	var k []byte
	switch {
	case hi == nil:
		k, _ = c.Last()
	default:
		// Seek lands at hi or the first key after it, or at nil when
		// every key is below hi.
		if k, _ = c.Seek(hi); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	return k
}

// prefixEnd returns the least key above every key with prefix p; nil when
// there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// keyTime returns the time key of k, a key of the scan's index that split
// accepts.
func (s *indexScan) keyTime(k []byte) time.Time {
	rest := k[len(s.prefix):]
	sec := binary.BigEndian.Uint64(rest) ^ (1 << 63)
	return time.Unix(int64(sec), int64(binary.BigEndian.Uint32(rest[8:]))).UTC()
}

// Cursor tags: the first byte of a cursor, the index whose key follows.
var cursorTags = []struct {
	tag    byte
	bucket []byte
}{
	{'t', bucketIdxTime},
	{'d', bucketIdxDoorTime},
	{'h', bucketIdxHolder},
	{'u', bucketIdxUID},
}

func (s *indexScan) cursorTag() byte {
	for _, t := range cursorTags {
		if bytes.Equal(t.bucket, s.bucket) {
			return t.tag
		}
	}
	panic("site: no cursor tag for index " + string(s.bucket))
}

// encodeCursor returns the cursor of the page that starts before the
// index key k: the index's tag and k, in unpadded URL-safe base64.
func (s *indexScan) encodeCursor(k []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{s.cursorTag()}, k...))
}

// decodeCursor returns the index key of cursor, checking that it is a key
// of the scan's index and prefix. Its errors wrap ErrInvalid.
func (s *indexScan) decodeCursor(cursor string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: the cursor is not one of a page: it is not URL-safe unpadded base64 of a key", ErrInvalid)
	}
	if tag := b[0]; tag != s.cursorTag() {
		for _, t := range cursorTags {
			if t.tag == tag {
				return nil, fmt.Errorf("%w: the cursor is of a query of the %s index, this one reads %s", ErrInvalid, t.bucket, s.bucket)
			}
		}
		return nil, fmt.Errorf("%w: the cursor is not one of a page: unknown index tag %#x", ErrInvalid, tag)
	}
	k := b[1:]
	if len(k) < len(s.prefix)+12+8 {
		return nil, fmt.Errorf("%w: the cursor is not one of a page: its %s key is malformed", ErrInvalid, s.bucket)
	}
	if !bytes.HasPrefix(k, s.prefix) {
		what := "holder"
		switch {
		case bytes.Equal(s.bucket, bucketIdxUID):
			what = "UID"
		case bytes.Equal(s.bucket, bucketIdxDoorTime):
			what = "door"
		}
		return nil, fmt.Errorf("%w: the cursor is of a query of another %s", ErrInvalid, what)
	}
	if _, _, err := s.split(k); err != nil {
		return nil, fmt.Errorf("%w: the cursor is not one of a page: its %s key is malformed", ErrInvalid, s.bucket)
	}
	return k, nil
}
