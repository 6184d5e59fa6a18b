package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// maxAhead bounds the deltas kept while a gap before them is filled.
const maxAhead = 1024

// aheadDelta is a delta kept until the gap before it is filled.
type aheadDelta struct {
	d  *Delta
	in inbound
}

// aclState is the applied allowlist position as Run knows it.
type aclState struct {
	seq  uint64
	hash string
}

// handle acts on one message from the paho handler.
func (c *Client) handle(ctx context.Context, in inbound) {
	if in.msg == nil {
		// A key chain: what it applied is recorded even when a later link
		// was refused.
		c.onKeys(in)
	}
	if in.err != nil {
		c.reject(in, in.err)
		return
	}
	if in.msg == nil {
		return
	}
	// Every authentic message of this site counts for freshness, whatever
	// happens to it next, as long as it is newer than anything seen and not
	// from the future.
	c.signedTime(ctx, in)
	switch m := in.msg.(type) {
	case *Delta:
		c.onDelta(in, m)
	case *SnapshotChunk:
		c.onChunk(in, m)
	case *Heartbeat:
		c.onHeartbeat(in, m)
	case *Command:
		c.onCommand(ctx, in, m)
	case *EventsAck:
		c.onAck(in, m)
	}
}

// reject counts a refused message and writes a rate-limited audit event.
func (c *Client) reject(in inbound, err error) {
	lim := &c.rejACL
	if in.cmd {
		lim = &c.rejCmd
	}
	// Debug only: the audit event (or the summary of a flood) says it, and
	// a flood must not fill the system log either.
	c.log.Debug("mqtt: refused a message", "topic", in.topic, "kid", in.kid, "retained", in.retained, "err", err)
	if lim.allow(time.Now()) {
		c.event(lim.reason, fmt.Sprintf("%s: %v", in.topic, err))
	}
	// Counted after the event is handed to the journal, which writes it in
	// order with everything before it (allEvents in the tests waits for
	// the journal before reading).
	if in.cmd {
		c.update(func(s *Stats) { s.CommandsRejected++ })
	} else {
		c.update(func(s *Stats) { s.ACLRejected++ })
	}
}

// flushRejects writes the summary of rejections beyond the burst when a
// window ends.
func (c *Client) flushRejects(now time.Time) {
	for _, lim := range []*limiter{&c.rejACL, &c.rejCmd} {
		if n, w := lim.flush(now); n > 0 {
			c.event(lim.reason, fmt.Sprintf("%d more messages refused in %s, not logged one by one", n, w))
		}
	}
}

// onDelta applies a delta in order, keeps it for later when it is ahead,
// or ignores it when it is already applied.
func (c *Client) onDelta(in inbound, d *Delta) {
	c.siteSeq = max(c.siteSeq, d.Seq)
	switch {
	case d.Seq <= c.acl.seq:
		c.update(func(s *Stats) { s.StaleACL++ })
		return
	case d.Seq > c.acl.seq+1:
		if len(c.ahead) < maxAhead {
			c.ahead[d.Seq] = aheadDelta{d: d, in: in}
		}
		c.update(func(s *Stats) { s.SiteSeq = c.siteSeq })
		c.requestSync(false)
		return
	}
	c.applyDelta(in, d)
	c.drainAhead()
}

// applyDelta applies the delta that follows the applied seq.
func (c *Client) applyDelta(in inbound, d *Delta) {
	err := c.st.ApplyDelta(d.StoreDelta())
	switch {
	case err == nil:
		c.acl.seq = d.Seq
		// The event first, so that whoever sees the seq in Stats finds it.
		c.event(store.ReasonACLApplied, fmt.Sprintf("delta %d: %d operations (key %s)", d.Seq, len(d.Ops), in.kid))
		c.refreshACL(func(s *Stats) { s.DeltasApplied++ })
	case errors.Is(err, store.ErrSeqOld), errors.Is(err, store.ErrSeqGap):
		// The store moved without us (another writer): take its word.
		c.refreshACL()
		c.requestSync(false)
	case errors.Is(err, store.ErrInvalidOp):
		// A signed delta the store refuses will be refused again: only a
		// snapshot moves the door past it.
		c.wantSnap = true
		c.reject(in, fmt.Errorf("delta %d: %w", d.Seq, err))
		c.requestSync(true)
	default:
		c.storeErr("apply delta", err)
	}
}

// drainAhead applies kept deltas that now follow the applied seq.
func (c *Client) drainAhead() {
	for seq := range c.ahead {
		if seq <= c.acl.seq {
			delete(c.ahead, seq)
		}
	}
	for c.fatal == nil {
		a, ok := c.ahead[c.acl.seq+1]
		if !ok {
			return
		}
		delete(c.ahead, a.d.Seq)
		before := c.acl.seq
		c.applyDelta(a.in, a.d)
		if c.acl.seq == before {
			return
		}
	}
}

// refreshACL reads the applied seq and state hash back from the store. The
// Stats show them in one change with the count of what moved them (also),
// so that whoever sees the seq sees the count.
func (c *Client) refreshACL(also ...func(*Stats)) {
	ss, err := c.st.SyncState()
	if err != nil {
		c.storeErr("sync state", err)
		if len(also) > 0 {
			c.update(func(s *Stats) {
				for _, fn := range also {
					fn(s)
				}
			})
		}
		return
	}
	c.acl = aclState{seq: ss.AppliedSeq, hash: ss.SnapshotHash}
	c.update(func(s *Stats) {
		s.AppliedSeq, s.SnapshotHash = c.acl.seq, c.acl.hash
		s.SiteSeq = max(c.siteSeq, c.acl.seq)
		for _, fn := range also {
			fn(s)
		}
	})
}

// stageState is the snapshot being staged in the store, chunk by chunk.
type stageState struct {
	seq     uint64
	hash    string
	chunks  int
	next    int                    // the next chunk to stage
	asked   int                    // chunks before this one have been asked for
	buf     map[int]*SnapshotChunk // chunks that came before their turn
	last    time.Time              // monotonic: the last chunk staged (or the start)
	lastAsk time.Time              // monotonic: the last request for chunks
}

func (st *stageState) busy() bool { return st.seq != 0 }

// onChunk stages a snapshot chunk in the store when it is the next one,
// keeps it when it is a few ahead, and commits the snapshot when the last
// chunk is staged. Memory holds at most a window of chunks: the rest is in
// the store, where a transfer cut by a disconnect or a restart resumes.
func (c *Client) onChunk(in inbound, m *SnapshotChunk) {
	c.siteSeq = max(c.siteSeq, m.Seq)
	st := &c.stage
	if m.Seq <= c.acl.seq || m.Seq < st.seq {
		c.update(func(s *Stats) { s.StaleACL++ })
		return
	}
	if st.seq != m.Seq || st.hash != m.Hash || st.chunks != m.Chunks {
		if !c.beginStage(m.Seq, m.Hash, m.Chunks) {
			return
		}
	}
	switch {
	case m.Chunk < st.next:
		c.update(func(s *Stats) { s.StaleACL++ })
		return
	case m.Chunk > st.next:
		if m.Chunk < st.next+MaxChunkWindow && len(st.buf) < MaxChunkWindow {
			st.buf[m.Chunk] = m
		}
		return
	}
	if !c.stageChunk(in, m) {
		return
	}
	for c.fatal == nil && st.busy() {
		b, ok := st.buf[st.next]
		if !ok {
			break
		}
		delete(st.buf, st.next)
		if !c.stageChunk(in, b) {
			return
		}
	}
	if !st.busy() {
		return
	}
	if st.next == st.chunks {
		c.commitStage(in)
		return
	}
	c.askChunks(false)
}

// beginStage starts staging the snapshot seq (or resumes it, when the
// store holds part of it already).
func (c *Client) beginStage(seq uint64, hash string, chunks int) bool {
	err := c.st.BeginSnapshot(seq, hash, chunks)
	switch {
	case errors.Is(err, store.ErrSeqOld):
		c.refreshACL()
		c.update(func(s *Stats) { s.StaleACL++ })
		return false
	case err != nil:
		c.storeErr("begin snapshot", err)
		return false
	}
	return c.loadStage()
}

// loadStage reads the staged snapshot's progress from the store.
func (c *Client) loadStage() bool {
	ss, ok, err := c.st.Stage()
	if errors.Is(err, store.ErrCorrupt) {
		// A damaged stage is not a damaged allowlist: drop it and fetch
		// the snapshot again.
		c.log.Error("mqtt: the staged snapshot is damaged; dropping it", "err", err)
		c.dropStage()
		return false
	}
	if err != nil {
		c.storeErr("snapshot stage", err)
		return false
	}
	now := time.Now()
	c.stage = stageState{buf: make(map[int]*SnapshotChunk), last: now}
	if ok {
		c.stage.seq, c.stage.hash, c.stage.chunks = ss.Seq, ss.Hash, ss.Chunks
		c.stage.next, c.stage.asked = ss.Next, ss.Next
	}
	c.update(func(s *Stats) { s.Staging = ok })
	return ok
}

// dropStage forgets the staged snapshot.
func (c *Client) dropStage() {
	if err := c.st.DropStage(); err != nil {
		c.storeErr("drop snapshot stage", err)
	}
	c.stage = stageState{}
	c.update(func(s *Stats) { s.Staging = false })
}

// stageChunk writes the next chunk to the store.
func (c *Client) stageChunk(in inbound, m *SnapshotChunk) bool {
	st := &c.stage
	err := c.st.StageChunk(m.Seq, m.Chunk, m.StorePart())
	switch {
	case err == nil:
		st.next = m.Chunk + 1
		st.last = time.Now()
		c.update(func(s *Stats) { s.ChunksStaged++ })
		return true
	case errors.Is(err, store.ErrChunkOrder):
		c.loadStage()
		c.askChunks(true)
	case errors.Is(err, store.ErrInvalidOp):
		// Signed, yet the store refuses it: ask for the snapshot again
		// from the start rather than resume into the same refusal.
		c.reject(in, fmt.Errorf("snapshot %d chunk %d: %w", m.Seq, m.Chunk, err))
		c.dropStage()
		c.wantSnap = true
		c.requestSync(true)
	default:
		c.storeErr("stage snapshot chunk", err)
	}
	return false
}

// commitStage replaces the allowlist with the staged snapshot.
func (c *Client) commitStage(in inbound) {
	st := c.stage
	err := c.st.CommitSnapshot(st.seq)
	switch {
	case err == nil:
		c.stage = stageState{}
		c.wantSnap = false
		c.event(store.ReasonSnapshotApplied, fmt.Sprintf("snapshot %d: %d chunks (key %s)", st.seq, st.chunks, in.kid))
		c.refreshACL(func(s *Stats) { s.SnapshotsApplied++; s.Staging = false })
		c.drainAhead()
		if c.siteSeq > c.acl.seq {
			c.requestSync(true)
		}
	case errors.Is(err, store.ErrSeqOld):
		c.stage = stageState{}
		c.refreshACL(func(s *Stats) { s.StaleACL++; s.Staging = false })
	case errors.Is(err, store.ErrInvalidOp):
		c.stage = stageState{}
		c.update(func(s *Stats) { s.Staging = false })
		c.reject(in, err)
		c.wantSnap = true
		c.requestSync(true)
	default:
		c.storeErr("commit snapshot", err)
	}
}

// askChunks asks for the chunks of the staged snapshot that fit in the
// window after the next one to stage and have not been asked for; resend
// asks again from the next one (a request or its answer was lost).
func (c *Client) askChunks(resend bool) {
	st := &c.stage
	if !c.connected() {
		c.syncPending = true
		return
	}
	if resend {
		st.asked = st.next
	}
	end := min(st.next+c.o.ChunkWindow, st.chunks)
	if st.asked >= end {
		return
	}
	req := c.syncRequest()
	req.Chunks = &ChunkWindow{Seq: st.seq, Hash: st.hash, From: st.asked, Count: end - st.asked}
	if c.sendSync(req) {
		st.asked = end
		st.lastAsk = time.Now()
	}
}

// onHeartbeat learns the site's seq; a door behind asks for what it lacks.
func (c *Client) onHeartbeat(in inbound, h *Heartbeat) {
	if h.Door != c.o.Door {
		c.reject(in, fmt.Errorf("%w: heartbeat for door %q", ErrWrongDoor, h.Door))
		return
	}
	if h.Seq > c.siteSeq {
		c.siteSeq = h.Seq
		c.update(func(s *Stats) { s.SiteSeq = c.siteSeq })
	}
	if h.Seq > c.acl.seq && !c.stage.busy() {
		c.requestSync(false)
	}
}

// syncRequest returns a signed-to-be sync request with the applied state.
func (c *Client) syncRequest() SyncRequest {
	return SyncRequest{
		V: Version, Type: KindSync, Site: c.o.Site, Door: c.o.Door,
		AppliedSeq: c.acl.seq, SnapshotHash: c.acl.hash, Window: c.o.ChunkWindow, At: c.o.Now().UTC(),
	}
}

// sendSync signs and publishes a sync request.
func (c *Client) sendSync(req SyncRequest) bool {
	req.Sign(c.o.Identity)
	b, err := marshal("sync request", req)
	if err != nil {
		c.log.Error("mqtt: sync request", "err", err)
		return false
	}
	if !c.publish(c.topics.Sync(c.o.Door), b, false) {
		return false
	}
	c.update(func(s *Stats) { s.SyncRequests++ })
	return true
}

// requestSync announces the applied seq on the sync topic, at most once per
// SyncRetry unless now is set (a new session). While a snapshot is being
// staged, it asks for its chunks instead, from the next one.
func (c *Client) requestSync(now bool) {
	if !c.connected() {
		c.syncPending = true
		return
	}
	if !now && !c.lastSync.IsZero() && time.Since(c.lastSync) < c.o.SyncRetry {
		c.syncPending = true
		return
	}
	if c.stage.busy() && !c.wantSnap {
		c.syncPending = false
		c.lastSync = time.Now()
		c.askChunks(true)
		return
	}
	req := c.syncRequest()
	if c.wantSnap {
		req.Want = WantSnapshot
	}
	if c.sendSync(req) {
		// Asked once; if the snapshot does not come, a later failure asks
		// again.
		c.wantSnap = false
		c.syncPending = false
		c.lastSync = time.Now()
		c.lastSyncSeq = c.acl.seq
	}
}

// syncTimers asks again for chunks or deltas that went unanswered. A
// snapshot whose chunks stop coming for SnapshotTimeout is asked for anew:
// the site answers with its current snapshot, and the store keeps what was
// staged if that is the same one.
func (c *Client) syncTimers(now time.Time) {
	if st := &c.stage; st.busy() {
		switch {
		case now.Sub(st.last) >= c.o.SnapshotTimeout:
			c.log.Warn("mqtt: snapshot stalled, asking for it again", "seq", st.seq, "next", st.next, "chunks", st.chunks)
			st.last = now
			c.wantSnap = true
			c.requestSync(true)
		case now.Sub(st.last) >= c.o.SyncRetry && now.Sub(st.lastAsk) >= c.o.SyncRetry:
			c.askChunks(true)
		}
		return
	}
	// Progress since the last request (deltas applied) means the answer
	// is coming: wait for it rather than ask again.
	if c.acl.seq != c.lastSyncSeq {
		c.lastSyncSeq, c.lastSync = c.acl.seq, now
	}
	behind := c.siteSeq > c.acl.seq
	if (c.syncPending || behind) && (c.lastSync.IsZero() || now.Sub(c.lastSync) >= c.o.SyncRetry) {
		c.requestSync(false)
	}
}

// signedTime counts the issued_at of an authentic message for freshness
// and for the clock floor (the latest signed site time, a lower bound on
// the real time: store.Decide judges no card's time rule before it, and
// onCommand no command's expiry).
//
// While the door's clock is synced, a message issued more than ClockSkew
// ahead of it counts for neither: the site's clock may be wrong, and
// taking its word would hold freshness (no later message would be newer)
// and the floor (cards and schedules would be judged at a time that has
// not come) until real time caught up. The message is otherwise handled as
// usual: an allowlist change is authentic and ordered by seq, and a
// revocation must not wait for the site to fix its clock.
//
// While the door's clock is not synced there is nothing to judge issued_at
// against, and the signed site time is the best time the door has: it
// counts as it comes.
//
// The floor never goes back, whatever the door's clock says, synced or
// not: a clock set back (a forged NTP answer, a bad real-time clock) may
// claim to be synced, and an old message replayed to it would look like
// proof that the floor lies in the future. A door whose clock is behind
// the floor judges its time rules at the floor, counts as fresh only
// messages issued after it, and logs the clock step (checkClock) until
// its clock catches up.
func (c *Client) signedTime(ctx context.Context, in inbound) {
	defer c.checkClock()
	issued := in.msg.Head().IssuedAt
	if c.clock() != store.TimeSynced {
		c.fresh.seen(c, ctx, issued)
		return
	}
	now := c.o.Now()
	if limit := now.Add(c.o.ClockSkew); issued.After(limit) {
		c.log.Warn("mqtt: signed message issued in the future; not counted as fresh",
			"topic", in.topic, "kid", in.kid, "issued_at", issued.UTC().Format(time.RFC3339),
			"door_time", now.UTC().Format(time.RFC3339), "skew", c.o.ClockSkew)
		c.update(func(s *Stats) { s.FutureIssued++ })
		return
	}
	c.fresh.seen(c, ctx, issued)
}

// checkClock logs a clock step: the door's clock found behind the clock
// floor by more than ClockSkew, once, and once more when the clock has
// caught up. A normal lag (the two clocks differ by a few seconds) is not
// one. It runs whenever the floor may have moved and at every tick, and
// logs only on a change.
func (c *Client) checkClock() {
	now, floor := c.o.Now(), c.fresh.lastIssued
	lag := floor.Sub(now)
	behind := !floor.IsZero() && lag > c.o.ClockSkew
	if behind == c.fresh.behind {
		return
	}
	c.fresh.behind = behind
	if behind {
		c.log.Warn("mqtt: clock step: the door's clock is behind the last signed site time; time rules are judged at the site time",
			"door_time", now.UTC().Format(time.RFC3339), "site_time", floor.UTC().Format(time.RFC3339),
			"behind", lag.Round(time.Second).String(), "clock", c.clock())
		return
	}
	c.log.Info("mqtt: the door's clock has caught up with the last signed site time",
		"door_time", now.UTC().Format(time.RFC3339), "site_time", floor.UTC().Format(time.RFC3339), "clock", c.clock())
}

// floorNow is the time the door judges a command's expiry at: its clock,
// or the clock floor when that is later.
func (c *Client) floorNow() time.Time {
	if now := c.o.Now(); !c.fresh.lastIssued.After(now) {
		return now
	}
	return c.fresh.lastIssued
}

// freshness tracks the last fresh signed message. A message is fresh when
// it was issued after every signed message seen before, so a replayed old
// message never makes a stale allowlist look fresh. Its issued_at is the
// clock floor, which only moves forward.
type freshness struct {
	lastLocal  time.Time // door time it arrived
	lastIssued time.Time // site time it was issued: the clock floor
	dirty      bool      // not written to the store yet
	persisted  time.Time // monotonic time of the last write
	stale      bool
	behind     bool // the door's clock is behind the floor beyond ClockSkew (logged)
}

// seen records an authentic message issued at issued.
func (f *freshness) seen(c *Client, ctx context.Context, issued time.Time) {
	if !issued.After(f.lastIssued) {
		return
	}
	f.lastIssued = issued
	f.lastLocal = c.o.Now()
	f.dirty = true
	if f.stale {
		// Written before the door hears that it is fresh again.
		f.persist(c, true)
		c.checkStale(ctx)
	}
}

// persist writes the freshness to the store when due (or when forced).
func (f *freshness) persist(c *Client, force bool) {
	if !f.dirty || (!force && time.Since(f.persisted) < c.o.MarkSignedInterval) {
		return
	}
	if err := c.st.MarkSigned(f.lastLocal, f.lastIssued); err != nil {
		c.storeErr("mark signed", err)
		return
	}
	f.dirty = false
	f.persisted = time.Now()
}

// checkStale raises acl_stale once when the allowlist goes stale and tells
// the door whenever staleness changes. It runs at every tick, and checks
// the door's clock against the clock floor too (checkClock).
func (c *Client) checkStale(ctx context.Context) {
	c.checkClock()
	now := c.o.Now()
	last := c.fresh.lastLocal
	stale := last.IsZero() || now.Sub(last) > c.o.StaleAfter
	if stale == c.fresh.stale {
		return
	}
	c.fresh.stale = stale
	if stale {
		since := "never"
		if !last.IsZero() {
			since = last.UTC().Format(time.RFC3339)
		}
		policy := c.door.Status().StalePolicy
		c.log.Warn("mqtt: allowlist stale", "last_signed", since, "policy", policy)
		c.event(store.ReasonACLStale, fmt.Sprintf("no fresh signed message from the site since %s (stale after %s); policy %s",
			since, c.o.StaleAfter, policy))
	} else {
		c.log.Info("mqtt: allowlist fresh again")
	}
	if err := c.door.SetStale(ctx, stale); err != nil {
		c.log.Error("mqtt: the door was not told of the allowlist's freshness", "stale", stale, "err", err)
	}
	// Shown in Stats last, so that whoever watches ACLStale finds the
	// acl_stale event handed to the journal and the door already told.
	c.update(func(s *Stats) { s.ACLStale = stale })
	c.maybeStatus(false)
}
