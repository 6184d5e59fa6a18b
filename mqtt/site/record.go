package site

import (
	"context"

	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Recorder makes one change of the site, and appends the change-log
// entry of its record in the transaction that commits it (see
// sitestore.DB.Recording): a change and its entry are on disk together or
// not at all. When the change fails before its transaction commits,
// rec.Stored() is nil and the entry is the caller's to append, with the
// error.
type Recorder struct {
	s   *Site
	rec *sitestore.ChangeRecord
}

// Recording returns a Recorder of one change recorded by rec.
func (s *Site) Recording(rec *sitestore.ChangeRecord) Recorder { return Recorder{s: s, rec: rec} }

// dbFor is the database, through which a write also appends rec's entry
// when rec is not nil.
func (s *Site) dbFor(rec *sitestore.ChangeRecord) *sitestore.DB {
	if rec == nil {
		return s.db
	}
	return s.db.Recording(rec)
}

// Commit is Site.CommitBy, recorded.
func (r Recorder) Commit(by string, ops ...store.Op) (uint64, error) {
	seq, _, err := r.s.commit(by, ops, r.rec)
	return seq, err
}

// Publish is Site.PublishBy, recorded.
func (r Recorder) Publish(ctx context.Context, by string, ops ...store.Op) (uint64, error) {
	return r.s.publishOps(ctx, by, ops, r.rec)
}

// Approve is Site.Approve, recorded.
func (r Recorder) Approve(door, fp string) error { return r.s.approve(door, fp, r.rec) }

// ApproveNext is Site.ApproveNext, recorded.
func (r Recorder) ApproveNext(door, fp string) error { return r.s.approveNext(door, fp, r.rec) }

// Unapprove is Site.Unapprove, recorded.
func (r Recorder) Unapprove(door string) error { return r.s.unapprove(door, r.rec) }

// SetGroups is Site.SetGroups, recorded.
func (r Recorder) SetGroups(ctx context.Context, door string, groups []string, publish bool) (uint64, error) {
	return r.s.setGroups(ctx, door, groups, publish, r.rec)
}
