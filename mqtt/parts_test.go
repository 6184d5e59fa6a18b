package mqtt

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/store"
)

// The parts of the client are tested here without a broker: each is built
// on a real store, a journal and a door that record what they are given,
// and a publisher that keeps what is sent. They run in a synctest bubble,
// where time moves only on the bubble's fake clock: advance waits (on
// that clock) for d to pass.

const partSite, partDoor = "hq", "front"

// advance lets d pass on the bubble's fake clock.
func advance(d time.Duration) { time.Sleep(d) }

// recJournal records the audit events handed to it.
type recJournal struct {
	mu  sync.Mutex
	evs []store.Event
}

func (j *recJournal) Add(e store.JournalEntry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.evs = append(j.evs, e.Events...)
}

// count returns how many events of reason were handed over.
func (j *recJournal) count(reason store.Reason) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, e := range j.evs {
		if e.Reason == reason {
			n++
		}
	}
	return n
}

// recDoor records what the parts ask of the door.
type recDoor struct {
	mu     sync.Mutex
	stale  []bool // every SetStale, in order
	synced bool
}

func (d *recDoor) Unlock(context.Context, time.Duration, string) error { return nil }
func (d *recDoor) SetLockdown(context.Context, bool, string) error     { return nil }
func (d *recDoor) SetStale(_ context.Context, stale bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stale = append(d.stale, stale)
	return nil
}

func (d *recDoor) Status() DoorStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := store.TimeUnsynced
	if d.synced {
		q = store.TimeSynced
	}
	st := DoorStatus{Clock: q}
	// As the door does: the policy shows while the door knows it is stale.
	if n := len(d.stale); n > 0 && d.stale[n-1] {
		st.StalePolicy = "card+pin"
	}
	return st
}

func (d *recDoor) staleCalls() []bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bool(nil), d.stale...)
}

// recPub is a session that keeps what is published.
type recPub struct {
	up   bool
	msgs []outMsg
}

func (p *recPub) connected() bool { return p.up }
func (p *recPub) publish(topic string, b []byte, retained bool) bool {
	if !p.up {
		return false
	}
	p.msgs = append(p.msgs, outMsg{topic: topic, payload: b, retained: retained})
	return true
}

// take returns what was published since the last take.
func (p *recPub) take() []outMsg {
	m := p.msgs
	p.msgs = nil
	return m
}

// parts is the shared core of a client's parts, with a real store.
type parts struct {
	t    *testing.T
	core *core
	st   *store.Store
	j    *recJournal
	door *recDoor
	pub  *recPub
}

func newParts(t *testing.T, edit func(*Options)) *parts {
	t.Helper()
	id, err := CreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{Broker: "tcp://127.0.0.1:1883", Site: partSite, Door: partDoor, Identity: id,
		TrustedKeys: map[string]ed25519.PublicKey{"site-1": pub}}
	if edit != nil {
		edit(o)
	}
	opts, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "door.db"), &store.Options{SkipCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := &parts{t: t, st: st, j: &recJournal{}, door: &recDoor{synced: true}, pub: &recPub{up: true}}
	p.core = newCore(&opts, p.j, p.door)
	return p
}

// syncState reads the store's sync state.
func (p *parts) syncState() store.SyncState {
	p.t.Helper()
	ss, err := p.st.SyncState()
	if err != nil {
		p.t.Fatal(err)
	}
	return ss
}

func heartbeat(seq uint64, issued time.Time) inbound {
	return inbound{topic: "heartbeat", msg: &Heartbeat{Header: Header{Site: partSite, Seq: seq, IssuedAt: issued}, Door: partDoor}}
}

// The allowlist goes stale StaleAfter after the last fresh signed message:
// acl_stale is raised once, and the door told once, however many ticks see
// it; a newer message makes it fresh again, a replayed older one does not.
func TestFreshnessStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParts(t, func(o *Options) { o.StaleAfter = time.Hour })
		f := newFreshness(p.core, p.st, store.SyncState{})
		ctx := context.Background()

		f.check(ctx)
		if !f.stale || p.j.count(store.ReasonACLStale) != 1 {
			t.Fatalf("never heard from the site: stale=%v, %d acl_stale", f.stale, p.j.count(store.ReasonACLStale))
		}
		p.j.mu.Lock()
		detail := p.j.evs[len(p.j.evs)-1].Detail
		p.j.mu.Unlock()
		if !strings.HasSuffix(detail, "; policy card+pin") {
			t.Fatalf("acl_stale detail %q does not name the policy the door applies", detail)
		}
		first := time.Now()
		f.signed(ctx, heartbeat(1, first))
		if f.stale {
			t.Fatal("still stale after a fresh heartbeat")
		}
		ss, err := p.st.SyncState()
		if err != nil {
			t.Fatal(err)
		}
		if !ss.LastIssuedAt.Equal(first) {
			t.Fatalf("stored issued_at %s, want %s: fresh again is written before the door hears it", ss.LastIssuedAt, first)
		}

		advance(time.Hour)
		f.check(ctx)
		if f.stale {
			t.Fatal("stale at StaleAfter, not after it")
		}
		for range 5 {
			advance(time.Second)
			f.check(ctx)
		}
		if !f.stale || p.j.count(store.ReasonACLStale) != 2 {
			t.Fatalf("after StaleAfter: stale=%v, %d acl_stale, want 2", f.stale, p.j.count(store.ReasonACLStale))
		}

		f.signed(ctx, heartbeat(1, first)) // a replay
		f.check(ctx)
		if !f.stale {
			t.Fatal("a replayed heartbeat made the allowlist fresh")
		}
		f.signed(ctx, heartbeat(2, time.Now()))
		if f.stale {
			t.Fatal("a new heartbeat did not make the allowlist fresh")
		}
		if got, want := fmt.Sprint(p.door.staleCalls()), "[true false true false]"; got != want {
			t.Fatalf("door told %s, want %s", got, want)
		}
		if st := p.core.stats; st.ACLStale {
			t.Fatal("Stats still say stale")
		}
	})
}

// The door's clock is injected apart from the timers: set back behind the
// clock floor, a replayed message issued before the floor is not fresh,
// and the floor stays.
func TestFreshnessClockSetBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		door := &stepClock{Clock: SystemClock(), offset: 0}
		p := newParts(t, func(o *Options) { o.StaleAfter = time.Hour; o.Clock = door })
		f := newFreshness(p.core, p.st, store.SyncState{})
		ctx := context.Background()
		floor := time.Now()
		f.signed(ctx, heartbeat(1, floor))
		door.offset = -3 * time.Hour
		f.signed(ctx, heartbeat(2, floor.Add(-time.Minute)))
		if !f.lastIssued.Equal(floor) || !f.floorNow().Equal(floor) || !f.behind {
			t.Fatalf("floor %s, best time %s, behind=%v; want the floor %s kept", f.lastIssued, f.floorNow(), f.behind, floor)
		}
		// Timers run on the monotonic clock: persisting is due after
		// MarkSignedInterval although the door's clock went back.
		advance(p.core.o.MarkSignedInterval)
		f.persist(false)
		if f.dirty {
			t.Fatal("freshness not written after MarkSignedInterval with the door's clock set back")
		}
	})
}

// stepClock is a Clock whose door time is offset from the system's.
type stepClock struct {
	Clock
	offset time.Duration
}

func (c *stepClock) Now() time.Time { return c.Clock.Now().Add(c.offset) }

// Events that go unacknowledged for AckTimeout are sent again from the
// store's cursor; acknowledged ones are not.
func TestOutboxResend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParts(t, func(o *Options) { o.AckTimeout = 10 * time.Second })
		evs := make([]store.Event, 5)
		for i := range evs {
			evs[i] = store.Event{Time: time.Now(), Clock: store.TimeSynced, Door: partDoor, Type: store.TypeAccess, Reason: store.ReasonGranted}
		}
		if _, err := p.st.AppendMany(evs); err != nil {
			t.Fatal(err)
		}
		ob := newOutbox(p.core, p.st, p.pub, "events")
		ob.reset()
		if got := seqsOf(t, p.pub.take()); fmt.Sprint(got) != "[1 2 3 4 5]" {
			t.Fatalf("sent %v, want 1..5", got)
		}
		advance(5 * time.Second)
		ob.onAck(inbound{}, &EventsAck{Header: Header{Site: partSite, Seq: 3, IssuedAt: time.Now()}, Door: partDoor})
		if acked, _ := p.st.Acked(); acked != 3 {
			t.Fatalf("cursor %d after the ack of 3", acked)
		}
		advance(9 * time.Second)
		ob.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("sent again %v before AckTimeout since the last ack", seqsOf(t, got))
		}
		advance(time.Second)
		ob.tick(p.core.mono())
		if got := seqsOf(t, p.pub.take()); fmt.Sprint(got) != "[4 5]" {
			t.Fatalf("sent again %v, want 4 5 (from the cursor)", got)
		}
		if n := p.core.stats.Resends; n != 1 {
			t.Fatalf("%d resends", n)
		}
		ob.onAck(inbound{}, &EventsAck{Header: Header{Site: partSite, Seq: 5, IssuedAt: time.Now()}, Door: partDoor})
		advance(time.Minute)
		ob.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("sent %v with everything acknowledged", seqsOf(t, got))
		}
	})
}

// seqsOf returns the event seqs of published event messages.
func seqsOf(t *testing.T, msgs []outMsg) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range msgs {
		e, err := DecodeEvent(m.payload, partSite, partDoor)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Event.Seq)
	}
	return out
}

// syncRequests decodes the published sync requests.
func syncRequests(t *testing.T, msgs []outMsg) []*SyncRequest {
	t.Helper()
	var out []*SyncRequest
	for _, m := range msgs {
		r, err := DecodeSyncRequest(m.payload, partSite, partDoor)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// A sync request that goes unanswered is asked again after SyncRetry, and
// not before; but a heartbeat announcing a seq the door had not heard of
// (the site moved on, maybe never saw the request) makes it ask again a
// second after its last request.
func TestSyncRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParts(t, func(o *Options) { o.SyncRetry = 5 * time.Second })
		s := newSyncer(p.core, p.st, p.pub, "sync")
		s.load(p.syncState())
		s.request(true)
		if got := syncRequests(t, p.pub.take()); len(got) != 1 || got[0].AppliedSeq != 0 {
			t.Fatalf("first request: %+v", got)
		}
		// The site's head is announced ahead: asked again a second after
		// the last request, not at once.
		s.onHeartbeat(heartbeat(4, time.Now()), &Heartbeat{Header: Header{Site: partSite, Seq: 4}, Door: partDoor})
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("asked again at once: %d requests", len(got))
		}
		advance(announceResync)
		s.tick(p.core.mono())
		if got := syncRequests(t, p.pub.take()); len(got) != 1 || got[0].AppliedSeq != 0 || got[0].Chunks != nil {
			t.Fatalf("after a newer seq was announced: %+v, want one request", got)
		}
		// The same seq announced again is no news: SyncRetry holds.
		s.onHeartbeat(heartbeat(4, time.Now()), &Heartbeat{Header: Header{Site: partSite, Seq: 4}, Door: partDoor})
		advance(4 * time.Second)
		s.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("asked again within SyncRetry: %d requests", len(got))
		}
		advance(time.Second)
		s.tick(p.core.mono())
		if got := syncRequests(t, p.pub.take()); len(got) != 1 || got[0].AppliedSeq != 0 || got[0].Chunks != nil {
			t.Fatalf("after SyncRetry: %+v, want one request", got)
		}
		advance(5 * time.Second)
		s.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 1 {
			t.Fatalf("still behind after another SyncRetry: %d requests, want 1", len(got))
		}
		// A newer seq announced after SyncRetry is asked for at once,
		// and once.
		advance(5 * time.Second)
		s.onHeartbeat(heartbeat(5, time.Now()), &Heartbeat{Header: Header{Site: partSite, Seq: 5}, Door: partDoor})
		if got := p.pub.take(); len(got) != 1 {
			t.Fatalf("a newer seq after SyncRetry: %d requests, want 1", len(got))
		}
		advance(announceResync)
		s.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("asked twice for one announcement: %d more requests", len(got))
		}
	})
}

// A staged snapshot whose chunks stop coming is asked for again from the
// next chunk after SyncRetry, and anew, whole, after SnapshotTimeout.
func TestSnapshotStalled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParts(t, func(o *Options) {
			o.SyncRetry = 5 * time.Second
			o.SnapshotTimeout = time.Minute
			o.ChunkWindow = 2
		})
		s := newSyncer(p.core, p.st, p.pub, "sync")
		s.load(p.syncState())
		plan := testPlan(t, 9, 80)
		if plan.Chunks() < 5 {
			t.Fatalf("%d chunks, the test wants at least 5", plan.Chunks())
		}
		for i := range 3 {
			s.onChunk(inbound{}, plan.Chunk(i, partSite, partDoor, time.Now()))
		}
		if s.stage.next != 3 || !p.core.stats.Staging {
			t.Fatalf("staged up to %d, staging=%v", s.stage.next, p.core.stats.Staging)
		}
		p.pub.take()

		advance(4 * time.Second)
		s.tick(p.core.mono())
		if got := p.pub.take(); len(got) != 0 {
			t.Fatalf("asked again within SyncRetry: %d requests", len(got))
		}
		advance(time.Second)
		s.tick(p.core.mono())
		got := syncRequests(t, p.pub.take())
		if len(got) != 1 || got[0].Chunks == nil || got[0].Chunks.From != 3 || got[0].Chunks.Count != 2 || got[0].Chunks.Seq != 9 {
			t.Fatalf("after SyncRetry: %+v, want chunks 3..4 of snapshot 9", got)
		}

		// One more chunk comes, then nothing: the timeout counts from it.
		advance(10 * time.Second)
		s.onChunk(inbound{}, plan.Chunk(3, partSite, partDoor, time.Now()))
		p.pub.take()
		for range 11 {
			advance(5 * time.Second)
			s.tick(p.core.mono())
			for _, r := range syncRequests(t, p.pub.take()) {
				if r.Want == WantSnapshot {
					t.Fatalf("asked anew %s after the last chunk, before SnapshotTimeout", p.core.mono().Sub(s.stage.last))
				}
			}
		}
		advance(5 * time.Second)
		s.tick(p.core.mono())
		got = syncRequests(t, p.pub.take())
		if len(got) != 1 || got[0].Want != WantSnapshot || got[0].Chunks != nil {
			t.Fatalf("after SnapshotTimeout: %+v, want one request for a snapshot", got)
		}
		// What is staged stays, should the site send the same snapshot.
		if ss, ok, err := p.st.Stage(); err != nil || !ok || ss.Next != 4 {
			t.Fatalf("stage %+v, %v, %v; want 4 chunks kept", ss, ok, err)
		}
		// The rest of the same snapshot completes it.
		for i := 4; i < plan.Chunks(); i++ {
			s.onChunk(inbound{}, plan.Chunk(i, partSite, partDoor, time.Now()))
		}
		if s.acl.seq != 9 || s.acl.hash != plan.Hash() || p.j.count(store.ReasonSnapshotApplied) != 1 {
			t.Fatalf("applied %d %s, %d snapshot_applied; want snapshot 9", s.acl.seq, s.acl.hash, p.j.count(store.ReasonSnapshotApplied))
		}
	})
}

// testPlan plans a snapshot at seq with n cards in the smallest chunks.
func testPlan(t *testing.T, seq uint64, n int) *SnapshotPlan {
	t.Helper()
	snap := store.Snapshot{Seq: seq}
	for i := range n {
		snap.Cards = append(snap.Cards, store.Card{
			UID: binary.BigEndian.AppendUint32(nil, uint32(i)|0x10000000), HolderID: fmt.Sprintf("h%d", i),
			HolderName: fmt.Sprintf("Holder %d", i), Doors: []string{partDoor}, Flags: store.Flags{CardOnly: true},
		})
	}
	plan, err := PlanSnapshot(snap, 2*chunkOverhead)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// Run's connection attempts back off: from ReconnectMin, doubling after
// each failure up to ReconnectMax, with ±50% jitter under the cap.
func TestReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParts(t, func(o *Options) {
			o.ReconnectMin = time.Second
			o.ReconnectMax = 8 * time.Second
		})
		c, err := New(p.st, p.j, p.door, p.core.o)
		if err != nil {
			t.Fatal(err)
		}
		const attempts = 7
		var at []time.Time
		done := make(chan struct{})
		c.dial = func(_ context.Context, gen uint64) {
			at = append(at, time.Now())
			if len(at) == attempts {
				close(done)
			}
			c.conn <- connEvent{gen: gen, kind: connFailed, err: errors.New("refused")}
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error)
		go func() { ran <- c.Run(ctx) }()
		<-done
		cancel()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
		want := time.Second
		for i := 1; i < attempts; i++ {
			gap := at[i].Sub(at[i-1])
			lo, hi := want*5/10, min(want*15/10, 8*time.Second)
			if gap < lo || gap > hi {
				t.Errorf("attempt %d came %s after the one before, want %s..%s", i+1, gap, lo, hi)
			}
			want = min(2*want, 8*time.Second)
		}
		if st := c.Stats(); st.LastError != "refused" || st.Connected {
			t.Fatalf("stats %+v", st)
		}
	})
}

// The typed door status is written on the wire in the words of contract
// v2's door_state, reader and journal.
func TestDoorStatusWords(t *testing.T) {
	for _, c := range []struct {
		ds                     DoorStatus
		state, reader, journal string
	}{
		{DoorStatus{}, "unknown", "fault", "fault"},
		{DoorStatus{Contact: ContactClosed, Reader: Health{OK: true}, Journal: Health{OK: true, Detail: "ok"}}, "closed", "ok", "ok"},
		{DoorStatus{Contact: ContactOpen, Unlocked: true, Alarms: []store.Reason{store.ReasonDoorHeld}, Reader: Health{Detail: "fault: spi"},
			Journal: Health{OK: true, Detail: "reserve in use: the disk was full"}},
			"open,unlocked,door_held", "fault: spi", "reserve in use: the disk was full"},
	} {
		if got := c.ds.State(); got != c.state {
			t.Errorf("%+v: state %q, want %q", c.ds, got, c.state)
		}
		if got := c.ds.Reader.String(); got != c.reader {
			t.Errorf("%+v: reader %q, want %q", c.ds, got, c.reader)
		}
		if got := c.ds.Journal.String(); got != c.journal {
			t.Errorf("%+v: journal %q, want %q", c.ds, got, c.journal)
		}
	}
}

// A snapshot whose chunks are all staged but whose commit was cut short
// (a restart during the commit) is committed when the syncer loads, not
// asked for again; a staged snapshot that deltas overtake is dropped.
func TestStagedSnapshotEnds(t *testing.T) {
	t.Run("complete at load", func(t *testing.T) {
		p := newParts(t, nil)
		plan := testPlan(t, 9, 40)
		if err := p.st.BeginSnapshot(plan.Seq(), plan.Hash(), plan.Chunks()); err != nil {
			t.Fatal(err)
		}
		for i := range plan.Chunks() {
			if err := p.st.StageChunk(plan.Seq(), i, plan.Chunk(i, partSite, partDoor, time.Now()).StorePart()); err != nil {
				t.Fatal(err)
			}
		}
		s := newSyncer(p.core, p.st, p.pub, "sync")
		s.load(p.syncState())
		if s.acl.seq != 9 || s.acl.hash != plan.Hash() || s.stage.busy() || p.j.count(store.ReasonSnapshotApplied) != 1 {
			t.Fatalf("after load: applied %d, staging %v", s.acl.seq, s.stage.busy())
		}
	})
	t.Run("overtaken by deltas", func(t *testing.T) {
		p := newParts(t, nil)
		s := newSyncer(p.core, p.st, p.pub, "sync")
		s.load(p.syncState())
		plan := testPlan(t, 2, 40)
		s.onChunk(inbound{}, plan.Chunk(0, partSite, partDoor, time.Now()))
		if !s.stage.busy() {
			t.Fatal("not staging")
		}
		for seq := uint64(1); seq <= 2; seq++ {
			s.onDelta(inbound{}, NewDelta(partSite, partDoor, seq, time.Now(), []store.Op{{Kind: store.OpRevokeCard, UID: []byte{1, 2, 3, byte(seq)}}}))
		}
		if s.acl.seq != 2 || s.stage.busy() {
			t.Fatalf("applied %d, staging %v: the overtaken stage was kept", s.acl.seq, s.stage.busy())
		}
		if _, ok, err := p.st.Stage(); ok || err != nil {
			t.Fatalf("the store kept the stage: %v", err)
		}
	})
}

// A delta applied makes the status due at once, so that the site learns
// the new applied seq without waiting for the next tick; a refused one
// does not.
func TestStatusDueOnApply(t *testing.T) {
	p := newParts(t, nil)
	due := 0
	p.core.status = func(bool) { due++ }
	s := newSyncer(p.core, p.st, p.pub, "sync")
	s.load(p.syncState())
	s.onDelta(inbound{}, NewDelta(partSite, partDoor, 1, time.Now(), []store.Op{{Kind: store.OpRevokeCard, UID: []byte{1, 2, 3, 4}}}))
	if s.acl.seq != 1 || due != 1 {
		t.Fatalf("applied %d, status due %d times, want 1 and 1", s.acl.seq, due)
	}
	s.onDelta(inbound{}, NewDelta(partSite, partDoor, 3, time.Now(), []store.Op{{Kind: store.OpRevokeCard, UID: []byte{1, 2, 3, 5}}}))
	if s.acl.seq != 1 || due != 1 {
		t.Fatalf("a delta beyond a gap: applied %d, status due %d times", s.acl.seq, due)
	}
}
