package mqtt

import (
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

// syncStore is what the syncer needs from the store.
type syncStore interface {
	// SyncState returns the applied ACL seq, the state hash at it and the
	// times of the last signed message.
	SyncState() (store.SyncState, error)
	// ApplyDelta applies a delta in one transaction when its seq is the
	// applied one + 1 (store.ErrSeqGap, store.ErrSeqOld otherwise); one
	// invalid operation rejects it whole (store.ErrInvalidOp).
	ApplyDelta(store.Delta) error
	// BeginSnapshot starts staging a snapshot, or keeps the progress of the
	// same one (store.ErrSeqOld when it is not newer than the applied seq).
	BeginSnapshot(seq uint64, hash string, chunks int) error
	// StageChunk stages the next chunk of the staged snapshot in one
	// transaction (store.ErrChunkOrder when it is not the next one,
	// store.ErrInvalidOp when an entry is invalid or repeated).
	StageChunk(seq uint64, chunk int, part store.Snapshot) error
	// Stage returns the staged snapshot's progress; false when there is
	// none.
	Stage() (store.SnapshotStage, bool, error)
	// CommitSnapshot replaces the allowlist with the staged snapshot
	// atomically when it is complete and hashes to its hash.
	CommitSnapshot(seq uint64) error
	// DropStage forgets the staged snapshot.
	DropStage() error
}

// syncer keeps the door's view of the allowlist in step with the site's:
// it applies deltas in order and keeps those that come ahead of a gap,
// stages a snapshot chunk by chunk in the store, and asks the site, with
// signed sync requests, for what it lacks, again when no answer comes.
type syncer struct {
	*core
	st    syncStore
	pub   publisher
	topic string // door/<door>/sync

	acl      aclState
	stage    stageState
	ahead    map[uint64]aheadDelta // deltas beyond applied+1, waiting for the gap to fill
	siteSeq  uint64
	wantSnap bool

	pending     bool      // a sync request is due
	soon        bool      // ask again announceResync after the last request: a heartbeat announced a newer seq
	lastSync    time.Time // monotonic: the last sync request
	lastSyncSeq uint64    // the applied seq at lastSync
}

func newSyncer(c *core, st syncStore, pub publisher, topic string) *syncer {
	return &syncer{core: c, st: st, pub: pub, topic: topic, ahead: make(map[uint64]aheadDelta)}
}

// load reads the applied state from the store; a snapshot staged before a
// restart resumes from its next chunk.
func (c *syncer) load(ss store.SyncState) {
	c.acl = aclState{seq: ss.AppliedSeq, hash: ss.SnapshotHash}
	c.update(func(s *Stats) { s.AppliedSeq, s.SnapshotHash = ss.AppliedSeq, ss.SnapshotHash })
	if c.loadStage() && c.stage.seq <= c.acl.seq {
		c.dropStage()
	}
	c.commitIfComplete(inbound{})
}

// commitIfComplete commits a staged snapshot whose chunks are all staged:
// one whose commit was cut short (a restart, a store error) is committed
// at the next chance, not asked for again.
func (c *syncer) commitIfComplete(in inbound) {
	if st := &c.stage; st.busy() && st.next == st.chunks {
		c.commitStage(in)
	}
}

// dropOvertaken drops a staged snapshot that the applied allowlist has
// overtaken (deltas applied meanwhile): its chunks would all be refused.
func (c *syncer) dropOvertaken() {
	if st := &c.stage; st.busy() && st.seq <= c.acl.seq {
		c.log.Info("mqtt: the staged snapshot is older than the applied allowlist; dropped", "staged", st.seq, "applied", c.acl.seq)
		c.dropStage()
	}
}

// resync asks the site for a snapshot.
func (c *syncer) resync() {
	c.wantSnap = true
	c.request(true)
}

// aclState is the applied allowlist position as the syncer knows it.
type aclState struct {
	seq  uint64
	hash string
}

// onDelta applies a delta in order, keeps it for later when it is ahead,
// or ignores it when it is already applied.
func (c *syncer) onDelta(in inbound, d *Delta) {
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
		c.request(false)
		return
	}
	c.applyDelta(in, d)
	c.drainAhead()
	// The site learns from the status that the door applied it (latch
	// revoke --wait, door list): not at the next tick.
	c.statusDue()
}

// applyDelta applies the delta that follows the applied seq.
func (c *syncer) applyDelta(in inbound, d *Delta) {
	err := c.st.ApplyDelta(d.StoreDelta())
	switch {
	case err == nil:
		c.acl.seq = d.Seq
		// The event first, so that whoever sees the seq in Stats finds it.
		ops := "operations"
		if len(d.Ops) == 1 {
			ops = "operation"
		}
		c.event(store.ReasonACLApplied, fmt.Sprintf("delta %d: %d %s (key %s)", d.Seq, len(d.Ops), ops, in.kid))
		c.refresh(func(s *Stats) { s.DeltasApplied++ })
		c.dropOvertaken()
	case errors.Is(err, store.ErrSeqOld), errors.Is(err, store.ErrSeqGap):
		// The store moved without us (another writer): take its word.
		c.refresh()
		c.request(false)
	case errors.Is(err, store.ErrInvalidOp):
		// A signed delta the store refuses will be refused again: only a
		// snapshot moves the door past it.
		c.wantSnap = true
		c.reject(in, fmt.Errorf("delta %d: %w", d.Seq, err))
		c.request(true)
	default:
		c.storeErr("apply delta", err)
	}
}

// drainAhead applies kept deltas that now follow the applied seq.
func (c *syncer) drainAhead() {
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

// refresh reads the applied seq and state hash back from the store. The
// Stats show them in one change with the count of what moved them (also),
// so that whoever sees the seq sees the count.
func (c *syncer) refresh(also ...func(*Stats)) {
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
	stalls  int                    // SnapshotTimeouts without progress
}

func (st *stageState) busy() bool { return st.seq != 0 }

// onChunk stages a snapshot chunk in the store when it is the next one,
// keeps it when it is a few ahead, and commits the snapshot when the last
// chunk is staged. Memory holds at most a window of chunks: the rest is in
// the store, where a transfer cut by a disconnect or a restart resumes.
func (c *syncer) onChunk(in inbound, m *SnapshotChunk) {
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
		c.commitIfComplete(in)
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
func (c *syncer) beginStage(seq uint64, hash string, chunks int) bool {
	err := c.st.BeginSnapshot(seq, hash, chunks)
	switch {
	case errors.Is(err, store.ErrSeqOld):
		c.refresh()
		c.update(func(s *Stats) { s.StaleACL++ })
		return false
	case err != nil:
		c.storeErr("begin snapshot", err)
		return false
	}
	return c.loadStage()
}

// loadStage reads the staged snapshot's progress from the store.
func (c *syncer) loadStage() bool {
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
	now := c.mono()
	c.stage = stageState{buf: make(map[int]*SnapshotChunk), last: now}
	if ok {
		c.stage.seq, c.stage.hash, c.stage.chunks = ss.Seq, ss.Hash, ss.Chunks
		c.stage.next, c.stage.asked = ss.Next, ss.Next
	}
	c.update(func(s *Stats) { s.Staging = ok })
	return ok
}

// dropStage forgets the staged snapshot.
func (c *syncer) dropStage() {
	if err := c.st.DropStage(); err != nil {
		c.storeErr("drop snapshot stage", err)
	}
	c.stage = stageState{}
	c.update(func(s *Stats) { s.Staging = false })
}

// stageChunk writes the next chunk to the store.
func (c *syncer) stageChunk(in inbound, m *SnapshotChunk) bool {
	st := &c.stage
	err := c.st.StageChunk(m.Seq, m.Chunk, m.StorePart())
	switch {
	case err == nil:
		st.next = m.Chunk + 1
		st.last = c.mono()
		st.stalls = 0
		c.update(func(s *Stats) { s.ChunksStaged++ })
		return true
	case errors.Is(err, store.ErrChunkOrder):
		c.loadStage()
		c.askChunks(true)
	case errors.Is(err, store.ErrSeqOld):
		// The applied allowlist overtook the snapshot (the store has
		// dropped the stage).
		c.stage = stageState{}
		c.refresh(func(s *Stats) { s.StaleACL++; s.Staging = false })
	case errors.Is(err, store.ErrInvalidOp):
		// Signed, yet the store refuses it: ask for the snapshot again
		// from the start rather than resume into the same refusal.
		c.reject(in, fmt.Errorf("snapshot %d chunk %d: %w", m.Seq, m.Chunk, err))
		c.dropStage()
		c.wantSnap = true
		c.request(true)
	default:
		c.storeErr("stage snapshot chunk", err)
	}
	return false
}

// commitStage replaces the allowlist with the staged snapshot.
func (c *syncer) commitStage(in inbound) {
	st := c.stage
	err := c.st.CommitSnapshot(st.seq)
	switch {
	case err == nil:
		c.stage = stageState{}
		c.wantSnap = false
		c.event(store.ReasonSnapshotApplied, fmt.Sprintf("snapshot %d: %d chunks (key %s)", st.seq, st.chunks, in.kid))
		c.refresh(func(s *Stats) { s.SnapshotsApplied++; s.Staging = false })
		c.drainAhead()
		c.statusDue()
		if c.siteSeq > c.acl.seq {
			c.request(true)
		}
	case errors.Is(err, store.ErrSeqOld):
		c.stage = stageState{}
		c.refresh(func(s *Stats) { s.StaleACL++; s.Staging = false })
	case errors.Is(err, store.ErrInvalidOp):
		c.stage = stageState{}
		c.update(func(s *Stats) { s.Staging = false })
		c.reject(in, err)
		c.wantSnap = true
		c.request(true)
	default:
		c.storeErr("commit snapshot", err)
	}
}

// askChunks asks for the chunks of the staged snapshot that fit in the
// window after the next one to stage and have not been asked for; resend
// asks again from the next one (a request or its answer was lost).
func (c *syncer) askChunks(resend bool) {
	st := &c.stage
	if !c.pub.connected() {
		c.pending = true
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
		st.lastAsk = c.mono()
	}
}

// onHeartbeat learns the site's seq; a door behind asks for what it lacks.
func (c *syncer) onHeartbeat(in inbound, h *Heartbeat) {
	if h.Door != c.o.Door {
		c.reject(in, fmt.Errorf("%w: heartbeat for door %q", ErrWrongDoor, h.Door))
		return
	}
	announced := h.Seq > c.siteSeq
	if announced {
		c.siteSeq = h.Seq
		c.update(func(s *Stats) { s.SiteSeq = c.siteSeq })
	}
	if h.Seq > c.acl.seq && !c.stage.busy() {
		// A seq the door had not heard of: the site moved on since the
		// door last asked, and may never have seen that request (one sent
		// while the site was away from the broker is lost). Ask again
		// soon rather than after SyncRetry.
		c.soon = c.soon || announced
		c.request(false)
	}
}

// announceResync is how soon after its last sync request the door asks
// again when a heartbeat announces a seq it had not heard of.
const announceResync = time.Second

// syncRequest returns a signed-to-be sync request with the applied state.
func (c *syncer) syncRequest() SyncRequest {
	return SyncRequest{
		V: Version, Type: KindSync, Site: c.o.Site, Door: c.o.Door,
		AppliedSeq: c.acl.seq, SnapshotHash: c.acl.hash, Window: c.o.ChunkWindow, At: c.clock.Now().UTC(),
	}
}

// sendSync signs and publishes a sync request.
func (c *syncer) sendSync(req SyncRequest) bool {
	req.Sign(c.o.Identity)
	b, err := marshal("sync request", req)
	if err != nil {
		c.log.Error("mqtt: sync request", "err", err)
		return false
	}
	if !c.pub.publish(c.topic, b, false) {
		return false
	}
	c.update(func(s *Stats) { s.SyncRequests++ })
	return true
}

// request announces the applied seq on the sync topic, at most once per
// SyncRetry unless now is set (a new session). While a snapshot is being
// staged, it asks for its chunks instead, from the next one.
func (c *syncer) request(now bool) {
	if !c.pub.connected() {
		c.pending = true
		return
	}
	if !now && !c.lastSync.IsZero() && c.mono().Sub(c.lastSync) < c.o.SyncRetry {
		c.pending = true
		return
	}
	if c.stage.busy() && !c.wantSnap {
		c.pending, c.soon = false, false
		c.lastSync = c.mono()
		// A new session asks again from the next chunk; otherwise only
		// what the window lacks.
		c.askChunks(now)
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
		c.pending, c.soon = false, false
		c.lastSync = c.mono()
		c.lastSyncSeq = c.acl.seq
	}
}

// tick asks again for chunks or deltas that went unanswered. A
// snapshot whose chunks stop coming for SnapshotTimeout is asked for anew:
// the site answers with its current snapshot, and the store keeps what was
// staged if that is the same one.
func (c *syncer) tick(now time.Time) {
	c.commitIfComplete(inbound{})
	if st := &c.stage; st.busy() {
		switch {
		case now.Sub(st.last) >= c.o.SnapshotTimeout && st.stalls > 0:
			// Twice without progress: the site has no longer this
			// snapshot (or never had it: a site restored from an older
			// backup). Drop it and take whatever the site sends.
			c.log.Warn("mqtt: snapshot stalled twice, dropping it", "seq", st.seq, "next", st.next, "chunks", st.chunks)
			c.dropStage()
			c.wantSnap = true
			c.request(true)
		case now.Sub(st.last) >= c.o.SnapshotTimeout:
			c.log.Warn("mqtt: snapshot stalled, asking for it again", "seq", st.seq, "next", st.next, "chunks", st.chunks)
			st.last = now
			st.stalls++
			c.wantSnap = true
			c.request(true)
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
	if !behind {
		c.soon = false
	}
	switch {
	case c.soon && (c.lastSync.IsZero() || now.Sub(c.lastSync) >= announceResync):
		c.soon = false
		c.request(true)
	case (c.pending || behind) && (c.lastSync.IsZero() || now.Sub(c.lastSync) >= c.o.SyncRetry):
		c.request(false)
	}
}
