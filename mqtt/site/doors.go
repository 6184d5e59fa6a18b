package site

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Approve approves the identity door announced, pending, whose
// fingerprint is fp: from then on the door's events and sync requests
// signed with it are accepted and its view is sealed to it. A door
// approved for the first time gets its view of the allowlist as it is,
// and its heartbeat (while Run runs) so that it asks for it.
func (s *Site) Approve(door, fp string) error { return s.approve(door, fp, nil) }

func (s *Site) approve(door, fp string, rec *sitestore.ChangeRecord) error {
	s.acl.Lock()
	var replaced bool
	err := s.changeDoor(door, func(b *doorBook) (err error) {
		_, replaced, err = b.approve(door, fp)
		return err
	}, nil, rec)
	if err != nil {
		s.acl.Unlock()
		return err
	}
	var verr error
	if s.views[door] == nil {
		now := s.o.Now()
		s.doorsMu.Lock()
		groups := slices.Clone(s.groups[door])
		s.doorsMu.Unlock()
		var v *view
		s.hist.read(func(_ uint64, st *aclState) { v = newView(door, groups, st, now) })
		v.maxSteps = s.o.DeltaLimit
		s.views[door] = v
		verr = s.saveViews([]doorSeq{{door, v.seq}}, s.hist.seqNow())
	}
	hb, herr := s.sealHeartbeat(door)
	s.acl.Unlock()
	s.log.Info("site: door approved", "door", door, "fingerprint", fp, "replaces", replaced)
	s.doorsMu.Lock()
	pending, next := s.book.pendingFingerprints(), s.book.nextFingerprints()
	s.doorsMu.Unlock()
	s.update(func(st *Stats) { st.Pending, st.PendingNext = pending, next })
	if err := errors.Join(verr, herr); err != nil {
		return err
	}
	// Not waiting: the next heartbeat or the door's own request does as
	// well.
	s.send(s.topics.Heartbeat(door), hb, true)
	return nil
}

// Unapprove withdraws the approval of door's identity (and of its former
// and next ones): from then on its events, statuses' heads and sync
// requests are refused, nothing is sealed to it, and its view is dropped.
// The door keeps the allowlist it has until it goes stale; put it in
// lockdown first to stop it opening. An identity it announces again waits
// for approval like a new door's.
func (s *Site) Unapprove(door string) error { return s.unapprove(door, nil) }

func (s *Site) unapprove(door string, rec *sitestore.ChangeRecord) error {
	s.acl.Lock()
	defer s.acl.Unlock()
	err := s.changeDoor(door, func(b *doorBook) error {
		if _, ok := b.approved[door]; !ok {
			return fmt.Errorf("site: unapprove door %s: %w: not approved", door, sitestore.ErrNotFound)
		}
		delete(b.approved, door)
		delete(b.previous, door)
		delete(b.next, door)
		return nil
	}, func(d *sitestore.Door) { d.ViewSeq, d.ViewOf = 0, 0 }, rec)
	if err != nil {
		return err
	}
	delete(s.views, door)
	s.log.Warn("site: door's approval withdrawn", "door", door)
	return nil
}

// changeDoor runs fn on the door book and records door's identities as
// the book then has them (and what edit changes) in the database, in one
// transaction (with rec's change-log entry, if any); when either fails,
// the book is as it was.
func (s *Site) changeDoor(door string, fn func(b *doorBook) error, edit func(*sitestore.Door), rec *sitestore.ChangeRecord) error {
	return s.changeDoorIf(door, fn, edit, false, rec)
}

// changeDoorIf is changeDoor; with onlyChanged, the door's record is
// written only if fn changed its entries in the book.
func (s *Site) changeDoorIf(door string, fn func(b *doorBook) error, edit func(*sitestore.Door), onlyChanged bool, rec *sitestore.ChangeRecord) error {
	s.doorsMu.Lock()
	defer s.doorsMu.Unlock()
	saved := s.book.save(door)
	if err := fn(&s.book); err != nil {
		return err
	}
	if onlyChanged && s.book.save(door).same(saved) {
		return nil
	}
	err := s.dbFor(rec).UpdateDoor(door, func(d *sitestore.Door) error {
		s.book.record(door, d)
		if edit != nil {
			edit(d)
		}
		return nil
	})
	if err != nil {
		s.book.restore(door, saved)
		return fmt.Errorf("site: door %s: %w", door, err)
	}
	return nil
}

// ApproveNext approves the identity an approved door rotates to, which it
// announced in its status vouched for by its approved key, whose
// fingerprint is fp. From then on the door's view is sealed to the new
// identity, and its events are attributed by the new key (and by the old
// one until the door announces the new one as its own). The view is
// rebased, so that the door's next sync gets a snapshot sealed to the new
// identity, whose first chunk makes the door take it; the heartbeat tells
// it to ask.
func (s *Site) ApproveNext(door, fp string) error { return s.approveNext(door, fp, nil) }

func (s *Site) approveNext(door, fp string, rec *sitestore.ChangeRecord) error {
	s.acl.Lock()
	err := s.changeDoor(door, func(b *doorBook) error {
		_, err := b.approveNext(door, fp)
		return err
	}, nil, rec)
	if err != nil {
		s.acl.Unlock()
		return err
	}
	var hb []byte
	var herr error
	if v := s.views[door]; v != nil {
		v.rebase(v.seq + 1)
		herr = s.saveViews([]doorSeq{{door, v.seq}}, s.hist.seqNow())
		if herr == nil {
			hb, herr = s.sealHeartbeat(door)
		}
	}
	s.acl.Unlock()
	s.log.Info("site: door's next identity approved", "door", door, "fingerprint", fp)
	s.doorsMu.Lock()
	next := s.book.nextFingerprints()
	s.doorsMu.Unlock()
	s.update(func(st *Stats) { st.PendingNext = next; st.Rebases++ })
	if herr != nil {
		return herr
	}
	if hb != nil {
		s.send(s.topics.Heartbeat(door), hb, true)
	}
	return nil
}

// Approved returns door's approved identity.
func (s *Site) Approved(door string) (mqtt.PublicIdentity, bool) {
	s.doorsMu.Lock()
	defer s.doorsMu.Unlock()
	id, ok := s.book.identity(door)
	if !ok {
		return mqtt.PublicIdentity{}, false
	}
	return cloneIdentity(id), true
}

// doorSeq is a door's view seq.
type doorSeq struct {
	door string
	seq  uint64
}

// commit commits ops to the database as the next global seq, applies
// them to the history and moves every view along; it returns the global
// seq and the doors whose view changed, with their new seq. by names who
// made the change; rec, if not nil, is its change-log entry, appended in
// the commit's transaction. The views' seqs are recorded in the database after
// the change: a site that stops between the two finds, at its next
// start, views that a door at the old seq does not have the hash of, and
// sends it a snapshot.
func (s *Site) commit(by string, ops []store.Op, rec *sitestore.ChangeRecord) (uint64, []doorSeq, error) {
	s.acl.Lock()
	defer s.acl.Unlock()
	now := s.o.Now()
	seq, err := s.dbFor(rec).Commit(ops, by, now)
	if err != nil {
		return 0, nil, err
	}
	hseq, t, err := s.hist.commit(ops)
	if err == nil && hseq != seq {
		err = fmt.Errorf("the database committed seq %d, the allowlist in memory is at %d", seq, hseq)
	}
	if err != nil {
		// The database took what the allowlist in memory refused: read it
		// again, and move every view to a seq no door has, so that each
		// door is sent a snapshot of what the database holds.
		s.log.Error("site: the allowlist in memory and the database disagree; reloaded", "seq", seq, "err", err)
		changed, rerr := s.reloadLocked(now)
		if rerr != nil {
			return seq, nil, fmt.Errorf("site: commit %d: reload: %w", seq, rerr)
		}
		return seq, changed, s.saveViews(changed, seq)
	}
	var changed []doorSeq
	s.hist.read(func(_ uint64, st *aclState) {
		for _, d := range slices.Sorted(maps.Keys(s.views)) {
			if v := s.views[d]; v.update(st, t, now) {
				changed = append(changed, doorSeq{d, v.seq})
			}
		}
	})
	return seq, changed, s.saveViews(changed, seq)
}

// reloadLocked reads the allowlist from the database again and rebuilds
// every view above its seq. The caller holds s.acl.
func (s *Site) reloadLocked(now time.Time) ([]doorSeq, error) {
	h, err := loadHistory(s.db)
	if err != nil {
		return nil, err
	}
	s.hist = h
	var changed []doorSeq
	s.doorsMu.Lock()
	groups := maps.Clone(s.groups)
	s.doorsMu.Unlock()
	h.read(func(_ uint64, st *aclState) {
		for _, d := range slices.Sorted(maps.Keys(s.views)) {
			old := s.views[d].seq
			v := newView(d, groups[d], st, now)
			v.maxSteps = s.o.DeltaLimit
			v.rebase(old + 1)
			s.views[d] = v
			changed = append(changed, doorSeq{d, v.seq})
		}
	})
	return changed, nil
}

// saveViews records the views' seqs in the database.
func (s *Site) saveViews(changed []doorSeq, global uint64) error {
	if len(changed) == 0 {
		return nil
	}
	m := make(map[string]uint64, len(changed))
	for _, c := range changed {
		m[c.door] = c.seq
	}
	if err := s.db.SetViews(m, global); err != nil {
		return fmt.Errorf("site: record views: %w", err)
	}
	return nil
}

// Commit applies ops to the allowlist as the next global seq and moves
// each approved door's view along (a door whose view changes gets its
// next view seq and delta), without publishing anything. It returns the
// global seq; a door's is Head's.
func (s *Site) Commit(ops ...store.Op) (uint64, error) {
	return s.CommitBy("", ops...)
}

// CommitBy is Commit recording by as who made the change.
func (s *Site) CommitBy(by string, ops ...store.Op) (uint64, error) {
	seq, _, err := s.commit(by, ops, nil)
	return seq, err
}

// Publish commits ops (see Commit) and publishes each changed door's
// sealed delta on the door's acl topic. A delta that cannot be sealed (too
// large for one message) is not sent: the door's heartbeat is, and the
// door then asks for a snapshot. It returns the global seq.
func (s *Site) Publish(ctx context.Context, ops ...store.Op) (uint64, error) {
	return s.PublishBy(ctx, "", ops...)
}

// PublishBy is Publish recording by as who made the change. A change that
// was committed but not (all) published returns its seq with the error:
// the doors catch up through their sync requests.
func (s *Site) PublishBy(ctx context.Context, by string, ops ...store.Op) (uint64, error) {
	return s.publishOps(ctx, by, ops, nil)
}

func (s *Site) publishOps(ctx context.Context, by string, ops []store.Op, rec *sitestore.ChangeRecord) (uint64, error) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	seq, changed, err := s.commit(by, ops, rec)
	if seq == 0 {
		return 0, err
	}
	if err != nil {
		s.log.Error("site: after commit", "seq", seq, "err", err)
	}
	return seq, errors.Join(err, s.sendChanged(ctx, changed))
}

// sendChanged publishes the delta of each door whose view changed, or its
// heartbeat when the delta cannot be sent (the door then asks).
func (s *Site) sendChanged(ctx context.Context, changed []doorSeq) error {
	var msgs []outMsg
	var errs []error
	s.acl.Lock()
	sealed, serrs := s.sealDeltas(changed)
	for i, c := range changed {
		b, err := sealed[i], serrs[i]
		if err == nil {
			msgs = append(msgs, outMsg{s.topics.DoorACL(c.door), b, false})
			continue
		}
		s.log.Warn("site: delta not sent; heartbeat instead", "door", c.door, "seq", c.seq, "err", err)
		if hb, herr := s.sealHeartbeat(c.door); herr == nil {
			msgs = append(msgs, outMsg{s.topics.Heartbeat(c.door), hb, true})
		} else {
			errs = append(errs, herr)
		}
	}
	s.acl.Unlock()
	return errors.Join(append(errs, s.publishAll(ctx, msgs))...)
}

// sealDeltas seals each door's delta (sealDelta) on as many goroutines as
// there are CPUs: sealing (an HPKE encapsulation and a signature) is most
// of what a change costs the site per door, and the doors are
// independent. The caller holds s.acl.
func (s *Site) sealDeltas(changed []doorSeq) ([][]byte, []error) {
	sealed, errs := make([][]byte, len(changed)), make([]error, len(changed))
	const perWorker = 16 // fewer doors are not worth a goroutine
	workers := min(runtime.GOMAXPROCS(0), (len(changed)+perWorker-1)/perWorker)
	if workers <= 1 {
		for i, c := range changed {
			sealed[i], errs[i] = s.sealDelta(c.door, c.seq)
		}
		return sealed, errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(changed); i = int(next.Add(1) - 1) {
				sealed[i], errs[i] = s.sealDelta(changed[i].door, changed[i].seq)
			}
		})
	}
	wg.Wait()
	return sealed, errs
}

// SetGroups sets the door groups door belongs to, in the database, and
// moves its view along: a door whose view changes gets the delta when
// publish is true (else it asks at its next heartbeat). It returns the
// door's view seq.
func (s *Site) SetGroups(ctx context.Context, door string, groups []string, publish bool) (uint64, error) {
	return s.setGroups(ctx, door, groups, publish, nil)
}

func (s *Site) setGroups(ctx context.Context, door string, groups []string, publish bool, rec *sitestore.ChangeRecord) (uint64, error) {
	for _, g := range groups {
		if g == "" || g == "*" {
			return 0, fmt.Errorf("site: groups of door %s: group %q", door, g)
		}
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.acl.Lock()
	groups = slices.Clone(groups)
	err := s.changeDoor(door, func(*doorBook) error { return nil }, func(d *sitestore.Door) { d.Groups, d.GroupsSince = groups, s.o.Now() }, rec)
	if err != nil {
		s.acl.Unlock()
		return 0, err
	}
	s.doorsMu.Lock()
	s.groups[door] = groups
	s.doorsMu.Unlock()
	v := s.views[door]
	if v == nil {
		s.acl.Unlock()
		return 0, nil
	}
	v.groups = groups
	var changed []doorSeq
	s.hist.read(func(_ uint64, st *aclState) {
		if v.update(st, st.all(), s.o.Now()) {
			changed = append(changed, doorSeq{door, v.seq})
		}
	})
	seq := v.seq
	err = s.saveViews(changed, s.hist.seqNow())
	s.acl.Unlock()
	if err != nil || !publish {
		return seq, err
	}
	return seq, s.sendChanged(ctx, changed)
}

// errNoDelta means a view seq has no delta to send (the view was built or
// rebased at it, or its delta is too large for one message).
var errNoDelta = errors.New("no delta for this seq")

// sealDelta returns door's delta to seq, signed by the current key and
// sealed to the door's approved identity; the sealed form is kept while
// both stay the same. The caller holds s.acl.
func (s *Site) sealDelta(door string, seq uint64) ([]byte, error) {
	v := s.views[door]
	id, ok := s.Approved(door)
	if v == nil || !ok {
		return nil, fmt.Errorf("site: delta %d of door %s: door not approved", seq, door)
	}
	d := v.deltas[seq]
	if d == nil {
		return nil, fmt.Errorf("site: delta %d of door %s: %w", seq, door, errNoDelta)
	}
	sg, fp := s.Signer(), id.Fingerprint()
	if d.msg != nil && d.kid == sg.KeyID() && d.fp == fp {
		return d.msg, nil
	}
	if len(d.ops) > mqtt.MaxDeltaOps {
		return nil, fmt.Errorf("site: delta %d of door %s: %d operations, limit %d: %w", seq, door, len(d.ops), mqtt.MaxDeltaOps, errNoDelta)
	}
	b, err := sg.SealFor(id, mqtt.NewDelta(s.o.Site, door, seq, d.issuedAt, d.ops))
	if err != nil {
		return nil, fmt.Errorf("site: delta %d of door %s: %w", seq, door, err)
	}
	d.msg, d.kid, d.fp = b, sg.KeyID(), fp
	return b, nil
}

// sealHeartbeat returns door's heartbeat with its view seq. The caller
// holds s.acl.
func (s *Site) sealHeartbeat(door string) ([]byte, error) {
	v := s.views[door]
	if v == nil {
		return nil, fmt.Errorf("site: heartbeat of door %s: door not approved", door)
	}
	b, err := s.Signer().Seal(&mqtt.Heartbeat{Header: mqtt.Header{Site: s.o.Site, Seq: v.seq, IssuedAt: s.o.Now()}, Door: door})
	if err != nil {
		return nil, fmt.Errorf("site: heartbeat of door %s: %w", door, err)
	}
	return b, nil
}

// Heartbeat publishes each approved door's retained signed heartbeat with
// its view seq.
func (s *Site) Heartbeat(ctx context.Context) error {
	var hbs []outMsg
	var errs []error
	s.acl.Lock()
	for _, d := range slices.Sorted(maps.Keys(s.views)) {
		b, err := s.sealHeartbeat(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hbs = append(hbs, outMsg{s.topics.Heartbeat(d), b, true})
	}
	s.acl.Unlock()
	return errors.Join(append(errs, s.publishAll(ctx, hbs))...)
}

// Head returns door's view seq and state hash: what a door that applied
// its view reports in its sync state (seq 0 and the empty state's hash
// when the door is not approved).
func (s *Site) Head(door string) (seq uint64, hash string) {
	s.acl.Lock()
	defer s.acl.Unlock()
	v := s.views[door]
	if v == nil {
		return 0, store.HashSnapshot(store.Snapshot{})
	}
	return v.seq, v.hash()
}

// ViewSeq returns door's view seq (0 when the door is not approved):
// Head without the state hash, which costs a pass over the view the first
// time it is asked for at a seq.
func (s *Site) ViewSeq(door string) uint64 {
	s.acl.Lock()
	defer s.acl.Unlock()
	if v := s.views[door]; v != nil {
		return v.seq
	}
	return 0
}

// View returns door's view of the allowlist at its seq (empty at seq 0
// when the door is not approved).
func (s *Site) View(door string) store.Snapshot {
	s.acl.Lock()
	defer s.acl.Unlock()
	v := s.views[door]
	if v == nil {
		return store.Snapshot{}
	}
	return v.snapshot()
}

// Deltas returns door's sealed deltas after seq up to its view's seq, in
// order: for tests that replay or reorder them. A seq without a delta
// (see Publish) is an error.
func (s *Site) Deltas(door string, after uint64) ([][]byte, error) {
	s.acl.Lock()
	defer s.acl.Unlock()
	v := s.views[door]
	if v == nil {
		return nil, fmt.Errorf("site: deltas of door %s: door not approved", door)
	}
	var out [][]byte
	for seq := after + 1; seq <= v.seq; seq++ {
		b, err := s.sealDelta(door, seq)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// answered counts what one answer sent.
type answered struct {
	deltas, chunks    int
	snapshot          bool
	rebased, mismatch bool
	viewSeq, applied  uint64
}

// answer sends a door the deltas it lacks, or chunks of a snapshot.
func (s *Site) answer(ctx context.Context, r *mqtt.SyncRequest) error {
	msgs, n, err := s.prepare(r)
	if err != nil {
		return err
	}
	if n.rebased {
		s.log.Warn("site: door ahead of its view, or at its seq with another state; view rebased",
			"door", r.Door, "door_seq", n.applied, "view_seq", n.viewSeq)
	}
	topic := s.topics.DoorACL(r.Door)
	out := make([]outMsg, len(msgs))
	for i, m := range msgs {
		out[i] = outMsg{topic, m, false}
	}
	if err := s.publishAll(ctx, out); err != nil {
		return err
	}
	s.update(func(st *Stats) {
		st.SyncDeltas += n.deltas
		st.ChunksSent += n.chunks
		if n.snapshot {
			st.SyncSnapshots++
		}
		if n.rebased {
			st.Rebases++
		}
		if n.mismatch {
			st.HashMismatches++
		}
	})
	return nil
}

// prepare decides the answer to a verified sync request and seals it.
func (s *Site) prepare(r *mqtt.SyncRequest) ([][]byte, answered, error) {
	s.acl.Lock()
	defer s.acl.Unlock()
	v := s.views[r.Door]
	id, ok := s.Approved(r.Door)
	if v == nil || !ok {
		return nil, answered{}, fmt.Errorf("site: sync of door %s: door not approved", r.Door)
	}
	window := r.Window
	if window == 0 {
		window = s.o.ChunkWindow
	}
	a, err := v.answer(r, s.o.DeltaLimit, s.o.ChunkBytes, window)
	if err != nil {
		return nil, answered{}, fmt.Errorf("site: sync of door %s: %w", r.Door, err)
	}
	n := answered{rebased: a.rebased, mismatch: a.mismatch, viewSeq: v.seq, applied: r.AppliedSeq}
	if a.rebased {
		if err := s.saveViews([]doorSeq{{r.Door, v.seq}}, s.hist.seqNow()); err != nil {
			return nil, answered{}, err
		}
	}
	var msgs [][]byte
	for _, seq := range a.deltas {
		b, err := s.sealDelta(r.Door, seq)
		if err != nil {
			// Too large for one message: a snapshot instead.
			s.log.Info("site: a snapshot instead of deltas", "door", r.Door, "err", err)
			msgs = nil
			if a, err = v.snapshotAnswer(s.o.ChunkBytes, window); err != nil {
				return nil, answered{}, fmt.Errorf("site: sync of door %s: %w", r.Door, err)
			}
			break
		}
		msgs = append(msgs, b)
	}
	if a.plan == nil {
		n.deltas = len(msgs)
		return msgs, n, nil
	}
	sg, now := s.Signer(), s.o.Now()
	for _, i := range a.chunks {
		b, err := sg.SealChunk(a.plan, i, s.o.Site, r.Door, id, now)
		if err != nil {
			return nil, answered{}, fmt.Errorf("site: sync of door %s: %w", r.Door, err)
		}
		msgs = append(msgs, b)
	}
	n.chunks, n.snapshot = len(msgs), a.newSnap
	return msgs, n, nil
}
