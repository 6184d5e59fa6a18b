package site

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/latchdoor/latch/store"
)

func newReview(id uint64) Review {
	return Review{ID: id, Group: "staff", Owner: "ada", Doors: []string{"front"}, Started: t0, StartedBy: "root", Seq: 1,
		Holders: []ReviewHolder{{Holder: "alice", Cards: []ReviewCard{{UID: "04A1B2C3"}}}, {Holder: "bob"}}}
}

// A review's rules: decisions only while open, a removal is final, and
// completion needs every holder decided; the record survives a reopen.
func TestReviewLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := db.NextReviewID(); err != nil || id != 1 {
		t.Fatalf("next id %d, %v; want 1", id, err)
	}
	if err := db.AddReview(newReview(2)); !errors.Is(err, ErrConflict) {
		t.Fatalf("review 2 before 1: %v, want ErrConflict", err)
	}
	if err := db.AddReview(newReview(1)); err != nil {
		t.Fatal(err)
	}
	decide := func(holder string, d Decision) error {
		return db.UpdateReview(1, func(r *Review, seq uint64) error { return r.Decide(holder, d, "why", "ada", t0, seq) })
	}
	if err := decide("carol", DecisionKeep); !errors.Is(err, ErrNotFound) {
		t.Errorf("decide on a holder not under review: %v", err)
	}
	if err := decide("alice", "maybe"); !errors.Is(err, ErrInvalid) {
		t.Errorf("decision maybe: %v", err)
	}
	if err := decide("alice", DecisionRemove); err != nil {
		t.Fatal(err)
	}
	if err := decide("alice", DecisionKeep); !errors.Is(err, ErrConflict) {
		t.Errorf("keep after remove: %v", err)
	}
	complete := func() error {
		return db.UpdateReview(1, func(r *Review, _ uint64) error { return r.Complete("ada", t0) })
	}
	if err := complete(); !errors.Is(err, ErrConflict) || errors.Is(err, ErrReviewClosed) {
		t.Errorf("complete with bob undecided: %v", err)
	}
	if err := decide("bob", DecisionKeep); err != nil {
		t.Fatal(err)
	}
	if err := complete(); err != nil {
		t.Fatal(err)
	}
	if err := decide("bob", DecisionRemove); !errors.Is(err, ErrReviewClosed) {
		t.Errorf("decide after completion: %v, want ErrReviewClosed", err)
	}
	if err := complete(); !errors.Is(err, ErrReviewClosed) {
		t.Errorf("complete twice: %v", err)
	}
	db.Close()
	if db, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	r, err := db.Review(1)
	if err != nil || !r.Done() || r.Holder("alice").Decision != DecisionRemove || r.Holder("bob").Comment != "why" {
		t.Fatalf("review after reopen: %+v, %v", r, err)
	}
	if rs, err := db.ListReviews(); err != nil || len(rs) != 1 {
		t.Fatalf("list: %v, %v", rs, err)
	}
	if _, err := db.Review(9); !errors.Is(err, ErrNotFound) {
		t.Errorf("review 9: %v", err)
	}
}

// A change recorded with UpdatingReview stores the change, its change-log
// entry and the review's update in one transaction, or none of them.
func TestChangeUpdatingReview(t *testing.T) {
	db := open(t)
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice"}}}, "root", t0); err != nil {
		t.Fatal(err)
	}
	if err := db.AddReview(newReview(1)); err != nil {
		t.Fatal(err)
	}
	rec := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "ada", From: "socket", Op: "review decide", Target: "review 1", Result: "ok"}}
	rec.After = func(r *Reader) (json.RawMessage, error) {
		rv, err := r.Review(1)
		if err != nil {
			return nil, err
		}
		return json.Marshal(rv.Holder("alice"))
	}
	rec.UpdatingReview(1, func(r *Review, seq uint64) error { return r.Decide("alice", DecisionRemove, "left", "ada", t0, seq) })
	uid := []byte{4, 1, 2, 3}
	seq, err := db.Recording(rec).Commit([]store.Op{{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "alice"}}}, "ada", t0)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := db.Review(1)
	if h := r.Holder("alice"); h.Decision != DecisionRemove || h.Change != seq {
		t.Fatalf("alice: %+v, want removed by change %d", h, seq)
	}
	if st := rec.Stored(); st == nil || !json.Valid(st.After) || string(st.After) == "null" {
		t.Fatalf("entry: %+v", st)
	}

	// A refusal of the review's update undoes the change and its entry.
	rec2 := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "ada", From: "socket", Op: "review decide", Target: "review 1", Result: "ok"}}
	rec2.UpdatingReview(1, func(r *Review, seq uint64) error { return r.Decide("alice", DecisionRemove, "", "ada", t0, seq) })
	if _, err := db.Recording(rec2).Commit([]store.Op{{Kind: store.OpDeleteCard, UID: uid}}, "ada", t0); !errors.Is(err, ErrConflict) {
		t.Fatalf("second removal: %v, want ErrConflict", err)
	}
	if _, err := db.Card(uid); err != nil {
		t.Errorf("the refused change was committed: %v", err)
	}
	if es, _, _ := db.Changes(ChangeFilter{}); len(es) != 1 || rec2.Stored() != nil {
		t.Errorf("%d entries, want the first alone", len(es))
	}
}
