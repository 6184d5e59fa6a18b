package site

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recertification campaigns (access reviews): an admin starts the review
// of a door group for an owner, a console account; the owner keeps or
// removes each holder who could open a door of the group when it started,
// with a comment; completing it freezes it. The holders are read when the
// review starts (by mqtt/site, from the access reports' code); this file
// keeps the record and its rules.
//
//	bucket   key                      value
//	reviews  uint64 review id, from 1 v1 JSON Review
//
// The bucket is made by the first review.
var bucketReviews = []byte("reviews")

// Decision is a reviewer's word on a holder.
type Decision string

// The decisions.
const (
	DecisionKeep   Decision = "keep"
	DecisionRemove Decision = "remove"
)

// ErrReviewClosed is a decision on, or a completion of, a completed review.
var ErrReviewClosed = fmt.Errorf("%w: the review is completed", ErrConflict)

// Review is one recertification campaign.
type Review struct {
	ID          uint64         `json:"id"`
	Group       string         `json:"group"`
	Owner       string         `json:"owner"` // the console account that decides
	Doors       []string       `json:"doors"` // the group's doors when it started
	Due         time.Time      `json:"due,omitzero"`
	Started     time.Time      `json:"started"`
	StartedBy   string         `json:"started_by"`
	Seq         uint64         `json:"seq"` // the ACL seq the holders were read at
	Completed   time.Time      `json:"completed,omitzero"`
	CompletedBy string         `json:"completed_by,omitempty"`
	Holders     []ReviewHolder `json:"holders"`
}

// ReviewHolder is one holder under review: the cards that reached a door
// of the group when the review started, and the decision.
type ReviewHolder struct {
	Holder    string       `json:"holder"`
	Name      string       `json:"name,omitempty"`
	Cards     []ReviewCard `json:"cards"`
	Decision  Decision     `json:"decision,omitempty"` // empty: not decided yet
	Comment   string       `json:"comment,omitempty"`
	DecidedBy string       `json:"decided_by,omitempty"`
	DecidedAt time.Time    `json:"decided_at,omitzero"`
	Change    uint64       `json:"change,omitempty"` // the ACL seq of a removal's change; 0: nothing to change
}

// ReviewCard is a card and the doors of the group it reached.
type ReviewCard struct {
	UID    string         `json:"uid"` // upper-case hex
	Access []ReviewAccess `json:"access"`
}

// ReviewAccess is what the access report said of a card at a door.
type ReviewAccess struct {
	Door     string `json:"door"`
	Via      string `json:"via"`      // "door", a group or "*"
	Decision string `json:"decision"` // "opens", "opens with PIN", "denied"
	Reason   string `json:"reason"`
}

// Review limits.
const (
	maxReviewText    = 2048
	maxReviewHolders = 100000
)

// Done reports whether the review is completed.
func (r *Review) Done() bool { return !r.Completed.IsZero() }

// Undecided returns how many holders have no decision yet.
func (r *Review) Undecided() int {
	n := 0
	for _, h := range r.Holders {
		if h.Decision == "" {
			n++
		}
	}
	return n
}

// Holder returns the holder id's entry, or nil.
func (r *Review) Holder(id string) *ReviewHolder {
	for i := range r.Holders {
		if r.Holders[i].Holder == id {
			return &r.Holders[i]
		}
	}
	return nil
}

// CheckDecision checks that holder may be decided on in r: r is open, the
// holder is under review, and not already removed (a removal is
// committed; undoing it is a change of the card).
func (r *Review) CheckDecision(holder string) (*ReviewHolder, error) {
	if r.Done() {
		return nil, fmt.Errorf("review %d: %w", r.ID, ErrReviewClosed)
	}
	h := r.Holder(holder)
	if h == nil {
		return nil, fmt.Errorf("review %d: holder %q is not under review: %w", r.ID, holder, ErrNotFound)
	}
	if h.Decision == DecisionRemove {
		return nil, fmt.Errorf("review %d: holder %q was removed already (change %d): %w", r.ID, holder, h.Change, ErrConflict)
	}
	return h, nil
}

// Decide records a decision on holder, after CheckDecision.
func (r *Review) Decide(holder string, d Decision, comment, by string, at time.Time, change uint64) error {
	h, err := r.CheckDecision(holder)
	if err != nil {
		return err
	}
	switch {
	case d != DecisionKeep && d != DecisionRemove:
		return fmt.Errorf("%w: decision %q: want keep or remove", ErrInvalid, d)
	case len(comment) > maxReviewText:
		return fmt.Errorf("%w: comment of %d bytes, limit %d", ErrInvalid, len(comment), maxReviewText)
	case by == "":
		return fmt.Errorf("%w: a decision needs who made it", ErrInvalid)
	}
	h.Decision, h.Comment, h.DecidedBy, h.DecidedAt, h.Change = d, comment, by, at.UTC(), change
	return nil
}

// Complete freezes r: every holder must have a decision.
func (r *Review) Complete(by string, at time.Time) error {
	if r.Done() {
		return fmt.Errorf("review %d: %w", r.ID, ErrReviewClosed)
	}
	if n := r.Undecided(); n > 0 {
		return fmt.Errorf("review %d: %d of %d holders have no decision yet: %w", r.ID, n, len(r.Holders), ErrConflict)
	}
	r.Completed, r.CompletedBy = at.UTC(), by
	return nil
}

func checkReview(r *Review) error {
	switch {
	case r.ID == 0:
		return fmt.Errorf("%w: review id 0", ErrInvalid)
	case r.Group == "" || len(r.Group) > 64:
		return fmt.Errorf("%w: review %d: group %q", ErrInvalid, r.ID, r.Group)
	case CheckUserName(r.Owner) != nil:
		return fmt.Errorf("review %d: owner: %w", r.ID, CheckUserName(r.Owner))
	case r.StartedBy == "" || r.Started.IsZero():
		return fmt.Errorf("%w: review %d: who started it and when", ErrInvalid, r.ID)
	case len(r.Holders) > maxReviewHolders:
		return fmt.Errorf("%w: review %d: %d holders, limit %d", ErrInvalid, r.ID, len(r.Holders), maxReviewHolders)
	}
	return nil
}

// NextReviewID returns the id the next review started gets.
func (d *DB) NextReviewID() (uint64, error) {
	var id uint64 = 1
	err := d.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketReviews); b != nil {
			if k, _ := b.Cursor().Last(); len(k) == 8 {
				id = binary.BigEndian.Uint64(k) + 1
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("site: next review id: %w", err)
	}
	return id, nil
}

// AddReview stores a new review under its id, which must be
// NextReviewID's.
func (d *DB) AddReview(r Review) error {
	if err := checkReview(&r); err != nil {
		return fmt.Errorf("site: add review: %w", err)
	}
	rec, err := encodeJSON(&r)
	if err != nil {
		return fmt.Errorf("site: add review %d: %w", r.ID, err)
	}
	err = d.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketReviews)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketReviews, err)
		}
		next := uint64(1)
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			next = binary.BigEndian.Uint64(k) + 1
		}
		if r.ID != next {
			return fmt.Errorf("%w: review id %d, the next is %d", ErrConflict, r.ID, next)
		}
		return b.Put(be64(r.ID), rec)
	})
	if err != nil {
		return fmt.Errorf("site: add review %d: %w", r.ID, err)
	}
	return nil
}

func getReview(tx *bolt.Tx, id uint64) (Review, error) {
	var r Review
	b := tx.Bucket(bucketReviews)
	if b == nil {
		return r, fmt.Errorf("review %d: %w", id, ErrNotFound)
	}
	v := b.Get(be64(id))
	if v == nil {
		return r, fmt.Errorf("review %d: %w", id, ErrNotFound)
	}
	return r, decodeJSON(v, &r)
}

// Review returns review id, or ErrNotFound.
func (d *DB) Review(id uint64) (Review, error) {
	var r Review
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		r, err = getReview(tx, id)
		return err
	})
	if err != nil {
		return Review{}, fmt.Errorf("site: %w", err)
	}
	return r, nil
}

// Review returns review id as the transaction sees it, or ErrNotFound.
func (r *Reader) Review(id uint64) (Review, error) { return getReview(r.tx, id) }

// ListReviews returns every review, by id.
func (d *DB) ListReviews() ([]Review, error) {
	out := []Review{}
	err := d.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketReviews) == nil {
			return nil
		}
		return forEachJSON(tx, bucketReviews, func(r Review) { out = append(out, r) })
	})
	if err != nil {
		return nil, fmt.Errorf("site: list reviews: %w", err)
	}
	return out, nil
}

// updateReview applies fn to review id in tx; aclSeq is the ACL seq the
// transaction leaves.
func updateReview(tx *bolt.Tx, id uint64, fn func(r *Review, aclSeq uint64) error) error {
	r, err := getReview(tx, id)
	if err != nil {
		return err
	}
	seq, err := readACLSeq(tx)
	if err != nil {
		return err
	}
	if err := fn(&r, seq); err != nil {
		return err
	}
	if r.ID != id {
		return fmt.Errorf("%w: review %d cannot become %d", ErrInvalid, id, r.ID)
	}
	if err := checkReview(&r); err != nil {
		return err
	}
	rec, err := encodeJSON(&r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketReviews).Put(be64(id), rec)
}

// UpdateReview applies fn to review id in one transaction. fn may refuse
// (its error is returned, nothing stored); it must have no side effects.
func (d *DB) UpdateReview(id uint64, fn func(r *Review, aclSeq uint64) error) error {
	if err := d.update(func(tx *bolt.Tx) error { return updateReview(tx, id, fn) }); err != nil {
		return fmt.Errorf("site: update review %d: %w", id, err)
	}
	return nil
}

// UpdatingReview makes the change that r records also apply fn to review
// id, in the change's own transaction, after the change: fn's aclSeq is
// then the change's seq. The change fails, and nothing is stored, when fn
// refuses.
func (r *ChangeRecord) UpdatingReview(id uint64, fn func(rv *Review, aclSeq uint64) error) {
	r.also = func(tx *bolt.Tx) error { return updateReview(tx, id, fn) }
}
