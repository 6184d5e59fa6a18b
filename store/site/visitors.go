package site

import (
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// A visitor is a holder whose access a host asked for, for a window: the
// holder's card carries the window as ValidFrom and ValidUntil, so every
// door enforces it by itself, online or not. The site keeps, beside the
// holder, who the host is, how many granted uses the credential has
// (Uses), how many it has seen (Used) and when the visitor first badged
// in. The uses are counted from the events the site collected: a door
// that is offline may let a visitor in more often than Uses until its
// events reach the site.

// bucketVisitors holds the visitor records by holder id.
var bucketVisitors = []byte("visitors")

// keyVisitCursor, in the visitors bucket, is the arrival cursor up to
// which TallyVisits has counted; it sorts apart from holder ids by its
// leading NUL, which no id has.
var keyVisitCursor = []byte("\x00cursor")

// Visitor is a visitor's record.
type Visitor struct {
	Holder    string    `json:"holder"`               // the visitor's holder id
	Name      string    `json:"name"`                 // the visitor's name
	Host      string    `json:"host"`                 // who the visitor visits: an account or a holder id
	From      time.Time `json:"from"`                 // the window's start (the card's ValidFrom)
	Until     time.Time `json:"until"`                // its end (the card's ValidUntil)
	Doors     []string  `json:"doors"`                // the doors or groups the credential opens
	Uses      int       `json:"uses,omitempty"`       // granted uses allowed; 0: any within the window
	Code      bool      `json:"code,omitempty"`       // the credential is a keypad code (store.CodeKey), not a card
	Used      int       `json:"used,omitempty"`       // granted uses the site collected
	FirstSeen time.Time `json:"first_seen,omitzero"`  // the first granted use, by the door's clock
	FirstDoor string    `json:"first_door,omitempty"` // the door of that use
	Ended     time.Time `json:"ended,omitzero"`       // when the site ended the visit early (end, or uses spent)
	EndReason string    `json:"end_reason,omitempty"` // why
	Added     time.Time `json:"added"`                // when the visitor was added
	AddedBy   string    `json:"added_by"`             // who added it
}

// VisitNews is what TallyVisits found for one visitor.
type VisitNews struct {
	Visitor Visitor // the record after the tally
	First   bool    // the visitor badged in for the first time
	Spent   bool    // the granted uses reached Uses: the credential must be revoked
}

// checkVisitor checks a visitor record's form.
func checkVisitor(v *Visitor) error {
	switch {
	case v.Holder == "" || v.Host == "":
		return fmt.Errorf("%w: a visitor needs a holder id and a host", ErrInvalid)
	case v.From.IsZero() || v.Until.IsZero() || !v.From.Before(v.Until):
		return fmt.Errorf("%w: a visitor's window needs a start before its end", ErrInvalid)
	case len(v.Doors) == 0:
		return fmt.Errorf("%w: a visitor needs at least one door", ErrInvalid)
	case v.Uses < 0:
		return fmt.Errorf("%w: uses %d is negative", ErrInvalid, v.Uses)
	}
	return nil
}

// PutVisitor stores a visitor record, new or changed.
func (d *DB) PutVisitor(v Visitor) error {
	if err := checkVisitor(&v); err != nil {
		return fmt.Errorf("site: put visitor %q: %w", v.Holder, err)
	}
	rec, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("site: put visitor %q: %w", v.Holder, err)
	}
	if err := d.update(func(tx *bolt.Tx) error { return putVisitor(tx, v.Holder, rec) }); err != nil {
		return fmt.Errorf("site: put visitor %q: %w", v.Holder, err)
	}
	return nil
}

// putVisitor stores a visitor's encoded record in tx; the first visitor
// starts the tally's cursor.
func putVisitor(tx *bolt.Tx, holder string, rec []byte) error {
	vb := tx.Bucket(bucketVisitors)
	if vb.Get(keyVisitCursor) == nil {
		// The first visitor: the tally starts after the events
		// collected so far, which name no visitor.
		var last uint64
		if k, _ := tx.Bucket(bucketIdxArrival).Cursor().Last(); k != nil {
			c, _, err := splitArrivalKey(k)
			if err != nil {
				return err
			}
			last = c
		}
		if err := vb.Put(keyVisitCursor, encodeU64(last)); err != nil {
			return err
		}
	}
	return vb.Put([]byte(holder), rec)
}

// PuttingVisitor makes the change that r records also store visitor
// record v, in the change's own transaction, after the change (the
// holder and card it adds): the visitor, its credential and the entry
// are on disk together or not at all.
func (r *ChangeRecord) PuttingVisitor(v Visitor) error {
	if err := checkVisitor(&v); err != nil {
		return fmt.Errorf("site: put visitor %q: %w", v.Holder, err)
	}
	rec, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("site: put visitor %q: %w", v.Holder, err)
	}
	r.also = func(tx *bolt.Tx) error { return putVisitor(tx, v.Holder, rec) }
	return nil
}

// EndingVisitor makes the change that r records (the revocation of the
// visitor's credential) also end holder's visit at now for reason, in
// its own transaction. The change fails, and nothing is stored, when
// the visit is not there (ErrNotFound) or already ended
// (ErrVisitorEnded).
func (r *ChangeRecord) EndingVisitor(holder, reason string, now time.Time) {
	r.also = func(tx *bolt.Tx) error {
		_, err := endVisitor(tx, holder, reason, now)
		return err
	}
}

// Visitor reads holder's visitor record in the transaction.
func (r *Reader) Visitor(holder string) (Visitor, error) {
	var v Visitor
	if holder == "" {
		return v, ErrNotFound
	}
	return v, r.get(bucketVisitors, []byte(holder), &v)
}

// Visitor returns the visitor record of holder, or ErrNotFound.
func (d *DB) Visitor(holder string) (Visitor, error) {
	var v Visitor
	err := d.view(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketVisitors).Get([]byte(holder))
		if rec == nil || holder == "" {
			return ErrNotFound
		}
		return decodeJSON(rec, &v)
	})
	if err != nil {
		return Visitor{}, fmt.Errorf("site: visitor %q: %w", holder, err)
	}
	return v, nil
}

// Visitors returns every visitor record, by holder id.
func (d *DB) Visitors() ([]Visitor, error) {
	var out []Visitor
	err := d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVisitors).ForEach(func(k, rec []byte) error {
			if slices.Equal(k, keyVisitCursor) {
				return nil
			}
			var v Visitor
			if err := decodeJSON(rec, &v); err != nil {
				return fmt.Errorf("visitor %q: %w", k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("site: visitors: %w", err)
	}
	return out, nil
}

// TallyVisits counts the granted access events collected since its last
// call against the visitors they name, in arrival order, and moves its
// cursor past them in the same transaction, so each event counts once
// whatever happens after. It returns, per visitor that changed, its
// record and whether it badged in for the first time or spent its uses.
// Events of a visitor's holder outside the visitor's record (a holder id
// with no visitor record) are not counted.
func (d *DB) TallyVisits() ([]VisitNews, error) {
	var news []VisitNews
	err := d.update(func(tx *bolt.Tx) error {
		news = nil
		vb := tx.Bucket(bucketVisitors)
		var after uint64
		if rec := vb.Get(keyVisitCursor); rec != nil {
			var err error
			if after, err = decodeU64(rec); err != nil {
				return fmt.Errorf("cursor: %w", err)
			}
		}
		changed := map[string]int{} // holder → index in news
		evb := tx.Bucket(bucketEvents)
		c := tx.Bucket(bucketIdxArrival).Cursor()
		for k, _ := c.Seek(be64(after + 1)); k != nil; k, _ = c.Next() {
			a, _, err := arrivalAt(evb, k, "")
			if err != nil {
				return err
			}
			after = a.Cursor
			e := a.Event
			if e.Type != store.TypeAccess || (e.Reason != store.ReasonGranted && e.Reason != store.ReasonGrantedDuress) || e.Holder == "" {
				continue
			}
			i, seen := changed[e.Holder]
			if !seen {
				rec := vb.Get([]byte(e.Holder))
				if rec == nil {
					continue
				}
				var v Visitor
				if err := decodeJSON(rec, &v); err != nil {
					return fmt.Errorf("visitor %q: %w", e.Holder, err)
				}
				i = len(news)
				changed[e.Holder] = i
				news = append(news, VisitNews{Visitor: v})
			}
			n := &news[i]
			n.Visitor.Used++
			if n.Visitor.FirstSeen.IsZero() {
				n.Visitor.FirstSeen, n.Visitor.FirstDoor, n.First = e.Time, a.Door, true
			}
			if n.Visitor.Uses > 0 && n.Visitor.Used >= n.Visitor.Uses && n.Visitor.Ended.IsZero() {
				n.Spent = true
			}
		}
		for _, n := range news {
			rec, err := encodeJSON(n.Visitor)
			if err != nil {
				return err
			}
			if err := vb.Put([]byte(n.Visitor.Holder), rec); err != nil {
				return err
			}
		}
		return vb.Put(keyVisitCursor, encodeU64(after))
	})
	if err != nil {
		return nil, fmt.Errorf("site: tally visits: %w", err)
	}
	return news, nil
}

// ErrVisitorEnded is returned by EndVisitor for a visit already ended.
var ErrVisitorEnded = errors.New("visit already ended")

// EndVisitor marks holder's visit ended at now for reason. The caller
// revokes the credential (an allowlist change of its own).
func (d *DB) EndVisitor(holder, reason string, now time.Time) (Visitor, error) {
	var v Visitor
	err := d.update(func(tx *bolt.Tx) error {
		var err error
		v, err = endVisitor(tx, holder, reason, now)
		return err
	})
	if err != nil {
		return Visitor{}, fmt.Errorf("site: end visitor %q: %w", holder, err)
	}
	return v, nil
}

// checkVisitors decodes every visitor record and the tally's cursor.
func checkVisitors(tx *bolt.Tx) error {
	return tx.Bucket(bucketVisitors).ForEach(func(k, rec []byte) error {
		if slices.Equal(k, keyVisitCursor) {
			if _, err := decodeU64(rec); err != nil {
				return fmt.Errorf("visitors: cursor: %w", err)
			}
			return nil
		}
		var v Visitor
		if err := decodeJSON(rec, &v); err != nil {
			return fmt.Errorf("visitors: %q: %w", k, err)
		}
		if v.Holder != string(k) {
			return fmt.Errorf("%w: visitors: record of %q under %q", ErrCorrupt, v.Holder, k)
		}
		return nil
	})
}

// endVisitor marks holder's visit ended at now for reason, in tx.
func endVisitor(tx *bolt.Tx, holder, reason string, now time.Time) (Visitor, error) {
	var v Visitor
	vb := tx.Bucket(bucketVisitors)
	rec := vb.Get([]byte(holder))
	if rec == nil || holder == "" {
		return v, ErrNotFound
	}
	if err := decodeJSON(rec, &v); err != nil {
		return v, err
	}
	if !v.Ended.IsZero() {
		return v, ErrVisitorEnded
	}
	v.Ended, v.EndReason = now, reason
	out, err := encodeJSON(v)
	if err != nil {
		return v, err
	}
	return v, vb.Put([]byte(holder), out)
}
