package mqtt_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"

	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/mqtt/sitetest"
	"github.com/latchdoor/latch/store"
)

// A revocation published by the site is enforced by the door's next
// decision.
func TestRevocationEnforced(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	for n := range uint32(5) {
		if _, err := e.site.Publish(ctx, card(n, "front")); err != nil {
			t.Fatal(err)
		}
	}
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	e.waitSynced(r)
	if d := decide(t, r.st, "front", 3); d.Outcome != store.Granted {
		t.Fatalf("before revocation: %+v", d)
	}
	if _, err := e.site.Publish(ctx, revoke(3)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	if d := decide(t, r.st, "front", 3); d.Outcome != store.Denied || d.Reason != store.ReasonRevoked {
		t.Fatalf("after revocation: %+v", d)
	}
	if d := decide(t, r.st, "front", 2); d.Outcome != store.Granted {
		t.Fatalf("other card after revocation: %+v", d)
	}
}

// A door offline while the site publishes 10,000 revocations converges on
// reconnect to exactly the site's state, although the broker keeps only
// 100 of the messages queued for it.
func TestCatchUp10kRevocations(t *testing.T) {
	e := newEnv(t, envConfig{broker: brokertest.Config{MaxQueued: 100}})
	ctx := context.Background()
	var ops []store.Op
	for n := range uint32(200) {
		ops = append(ops, card(n, "front"))
	}
	if _, err := e.site.Publish(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	e.waitSynced(r)
	r.close() // the broker keeps the session and queues for it

	for i := range uint32(10000) {
		if _, err := e.site.Publish(ctx, revoke(i)); err != nil {
			t.Fatal(err)
		}
	}
	r2 := e.newRig("front", r.path, nil)
	start := time.Now()
	r2.start()
	e.waitSynced(r2)
	t.Logf("converged on 10,000 revocations in %s", time.Since(start))

	seq, hash := e.site.Head("front")
	ss, err := r2.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if ss.AppliedSeq != seq || ss.SnapshotHash != hash {
		t.Fatalf("door at %d %s, site at %d %s", ss.AppliedSeq, ss.SnapshotHash, seq, hash)
	}
	for _, n := range []uint32{0, 77, 199} {
		if d := decide(t, r2.st, "front", n); d.Outcome != store.Denied || d.Reason != store.ReasonRevoked {
			t.Fatalf("card %d: %+v", n, d)
		}
	}
	// The door's own count: it shows the snapshot in the same change as the
	// seq it moved to, while the site counts the snapshot it sent only once
	// the broker has acknowledged its last chunk, which may be after the
	// door applied it.
	if st := r2.client.Stats(); st.SnapshotsApplied == 0 {
		t.Fatalf("caught up without a snapshot: %+v", st)
	}
}

// clock is an adjustable door clock: Now is set by the test, while the
// client's intervals and timers run on the system clock, as a wall clock
// stepped by NTP leaves the monotonic clock alone.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

var systemClock = mqtt.SystemClock()

func (c *clock) Elapsed() time.Duration                { return systemClock.Elapsed() }
func (c *clock) NewTimer(d time.Duration) mqtt.Timer   { return systemClock.NewTimer(d) }
func (c *clock) NewTicker(d time.Duration) mqtt.Ticker { return systemClock.NewTicker(d) }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set steps the clock to t, forward or back.
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// The allowlist goes stale without fresh signed messages: acl_stale is
// raised once per stale period and the policy is reported to the door; a
// replayed old heartbeat does not make it fresh, a new one does.
func TestStale(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	// Signed acks of the door's events count as fresh site messages too;
	// hold them so that only the heartbeats below matter.
	e.site.HoldAcks(true)
	clk := &clock{now: time.Now()}
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.Clock = clk
		o.StaleAfter = time.Hour
	})
	r.door.policy = "override-only"
	r.start()
	r.waitConnected()
	// Never heard from the site: stale from the start.
	waitFor(t, "stale at start", func() bool { return r.client.Stats().ACLStale }, r.client.Updated)
	r.door.mu.Lock()
	stale, policy := r.door.stale, r.door.policy
	r.door.mu.Unlock()
	if !stale || policy != "override-only" {
		t.Fatalf("door told stale=%v, policy %q", stale, policy)
	}
	// The status says so, with the policy the door reports.
	waitFor(t, "a stale status with the door's policy", func() bool {
		st := e.site.Stats().LastStatus["front"]
		return st != nil && st.ACLStale && st.StalePolicy == "override-only"
	}, e.site.Updated)

	old, err := e.signer.Seal(&mqtt.Heartbeat{Header: mqtt.Header{Site: site, Seq: 0, IssuedAt: clk.Now()}, Door: "front"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).Heartbeat("front"), old, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fresh after a heartbeat", func() bool { return !r.client.Stats().ACLStale }, r.client.Updated)

	clk.Advance(2 * time.Hour)
	waitFor(t, "stale again", func() bool { return r.client.Stats().ACLStale }, r.client.Updated)
	// The same heartbeat again is a replay: still stale.
	if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).Heartbeat("front"), old, false); err != nil {
		t.Fatal(err)
	}
	// A refused message on the same topic marks that the replay was handled.
	if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).Heartbeat("front"), []byte("marker"), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker refused", func() bool { return r.client.Stats().ACLRejected >= 1 }, r.client.Updated)
	if !r.client.Stats().ACLStale {
		t.Fatal("a replayed heartbeat made the allowlist fresh")
	}
	if err := e.site.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fresh after a new heartbeat", func() bool { return !r.client.Stats().ACLStale }, r.client.Updated)
	r.door.mu.Lock()
	calls := r.door.staleN
	r.door.mu.Unlock()
	if calls != 4 {
		t.Fatalf("door told about staleness %d times, want 4 (stale, fresh, stale, fresh)", calls)
	}
	if n, _ := countReason(t, r.st, store.ReasonACLStale); n != 2 {
		t.Fatalf("%d acl_stale events, want 2", n)
	}
	clk.Advance(30 * time.Minute)
	if err := e.site.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	ss, err := r.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if ss.LastSignedAt.IsZero() {
		t.Fatal("freshness never written to the store")
	}
}

// Forged, mis-addressed and invalid allowlist messages change nothing and
// are audited; a signed delta with one invalid operation is refused whole
// and the door asks for a snapshot.
func TestACLRejections(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	tp := mqtt.TopicsFor(site)
	if _, err := e.site.Publish(ctx, card(1, "front"), card(2, "front")); err != nil {
		t.Fatal(err)
	}
	r := e.newRig("front", "", func(o *mqtt.Options) { o.RejectBurst = 100 }).start()
	r.waitConnected()
	e.waitSynced(r)
	seq, hash := e.site.Head("front")
	now := time.Now()
	me, other := e.ids["front"].Public(), e.ids["back"].Public()

	intruder := newSigner(t, e.signer.KeyID())
	sealed := func(s *mqtt.Signer, siteID, door string, to mqtt.PublicIdentity, ops ...store.Op) []byte {
		b, err := s.SealFor(to, mqtt.NewDelta(siteID, door, seq+1, now, ops))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	delta := func(s *mqtt.Signer, siteID string, ops ...store.Op) []byte {
		return sealed(s, siteID, "front", me, ops...)
	}
	badOp := store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4, 5}, HolderID: "x"}}
	snapChunks, err := intruder.SealSnapshot(site, "front", me, store.Snapshot{Seq: seq + 5}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A one-chunk snapshot whose entries do not give the hash it claims.
	plan, err := mqtt.PlanSnapshot(store.Snapshot{Seq: seq + 5, Cards: []store.Card{{UID: uid(77), HolderID: "h77"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	lie := plan.Chunk(0, site, "front", now)
	lie.Hash = strings.Repeat("0", 64)
	wrongHash, err := e.signer.SealFor(me, lie)
	if err != nil {
		t.Fatal(err)
	}
	ackOther, err := e.signer.Seal(&mqtt.EventsAck{Header: mqtt.Header{Site: site, Seq: 1, IssuedAt: now}, Door: "back"})
	if err != nil {
		t.Fatal(err)
	}
	ackAhead, err := e.signer.Seal(&mqtt.EventsAck{Header: mqtt.Header{Site: site, Seq: 1 << 40, IssuedAt: now}, Door: "front"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		topic string
		b     []byte
	}{
		{tp.DoorACL("front"), delta(intruder, site, revoke(1))},
		{tp.DoorACL("front"), delta(e.signer, "elsewhere", revoke(1))},
		{tp.DoorACL("front"), []byte(`{"v":2,"type":"acl.delta"}`)},
		{tp.DoorACL("front"), sealed(e.signer, site, "front", other, revoke(1))}, // sealed to back's identity
		{tp.DoorACL("front"), sealed(e.signer, site, "back", me, revoke(1))},     // back's delta, front's key
		{tp.DoorACL("front"), snapChunks[0]},
		{tp.DoorACL("front"), wrongHash},
		{tp.Heartbeat("front"), delta(e.signer, site, revoke(1))}, // a delta on the heartbeat topic
		{tp.Heartbeat("front"), mustSeal(t, e.signer, &mqtt.Heartbeat{Header: mqtt.Header{Site: site, Seq: seq, IssuedAt: now}, Door: "back"})},
		{tp.EventsAck("front"), ackOther},
		{tp.EventsAck("front"), ackAhead},
	}
	for _, c := range cases {
		if err := e.site.PublishRaw(ctx, c.topic, c.b, false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every bad message refused", func() bool { return r.client.Stats().ACLRejected >= uint64(len(cases)) }, r.client.Updated)

	// Signed and in sequence, but the second operation is invalid: nothing
	// of it is applied.
	if err := e.site.PublishRaw(ctx, tp.DoorACL("front"), delta(e.signer, site, revoke(1), badOp), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the invalid delta refused", func() bool { return r.client.Stats().ACLRejected >= uint64(len(cases)+1) }, r.client.Updated)
	waitFor(t, "a snapshot asked for", func() bool {
		s := e.site.Stats().LastSync["front"]
		return s != nil && s.Want == mqtt.WantSnapshot
	}, e.site.Updated)
	st := r.client.Stats()
	if st.AppliedSeq != seq || st.SnapshotHash != hash {
		t.Fatalf("state moved to %d %s", st.AppliedSeq, st.SnapshotHash)
	}
	if d := decide(t, r.st, "front", 1); d.Outcome != store.Granted {
		t.Fatalf("card 1 after refused deltas: %+v", d)
	}
	if n, _ := countReason(t, r.st, store.ReasonACLRejected); n < len(cases)+1 {
		t.Fatalf("%d acl_rejected events for %d refusals", n, len(cases)+1)
	}

	// The site's next real delta (the same seq) goes through.
	if _, err := e.site.Publish(ctx, revoke(2)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	if d := decide(t, r.st, "front", 2); d.Reason != store.ReasonRevoked {
		t.Fatalf("card 2: %+v", d)
	}
	if d := decide(t, r.st, "front", 1); d.Outcome != store.Granted {
		t.Fatalf("card 1: %+v", d)
	}
}

// A door joining a site of 100,000 cards behind a broker that queues at
// most 100 messages for it gets them as a snapshot it pulls a window of
// chunks at a time, staged chunk by chunk in its store. The link is cut at
// a random chunk: the door resumes from the chunk after the last one it
// staged, not from the start, and ends with the site's state hash.
func TestSnapshot100kCardsResumes(t *testing.T) {
	// More than DeltaLimit commits: the door is answered with a snapshot.
	e := newEnv(t, envConfig{broker: brokertest.Config{MaxQueued: 100}, site: func(o *sitetest.Options) { o.DeltaLimit = 3 }})
	// Under the race detector 20,000 cards (10 chunks) tell the same story
	// in a tenth of the time; hack/test.sh runs this test at full size
	// without it.
	cards := uint32(100000)
	if raceEnabled {
		cards = 20000
	}
	for batch := range cards / 2000 {
		ops := make([]store.Op, 0, 2000)
		for n := batch * 2000; n < (batch+1)*2000; n++ {
			ops = append(ops, cardWithPIN(n, "front", "lab"))
		}
		if _, err := e.site.Commit(ops...); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := mqtt.PlanSnapshot(e.site.View("front"), 0)
	if err != nil {
		t.Fatal(err)
	}
	chunks := plan.Chunks()
	// Cut early enough that chunks remain to be asked for after it.
	const window = 4 // the client's default
	cut := 2 + mrand.IntN(max(1, chunks-window-3))
	r := e.newRig("front", "", nil)
	start := time.Now()
	r.start()
	waitFor(t, fmt.Sprintf("chunk %d of %d staged", cut, chunks), func() bool { return r.client.Stats().ChunksStaged >= uint64(cut) }, r.client.Updated)
	staged := r.client.Stats().ChunksStaged
	if n := e.proxy.Cut(); n == 0 {
		t.Fatal("no connection to cut")
	}
	waitFor(t, "the cut noticed", func() bool { return r.client.Stats().Disconnects > 0 }, r.client.Updated)
	e.waitSynced(r)
	st := r.client.Stats()
	t.Logf("%d cards in %d chunks: applied %s after start; link cut after chunk %d (%d staged)",
		cards, chunks, time.Since(start).Round(time.Millisecond), cut, staged)
	if st.SnapshotsApplied != 1 || st.DeltasApplied != 0 || st.Disconnects == 0 {
		t.Fatalf("%+v", st)
	}
	// Resumed: every chunk staged once, but for the few in flight when the
	// link went down.
	if st.ChunksStaged != uint64(chunks) {
		t.Fatalf("%d chunks staged for a snapshot of %d: the transfer started over", st.ChunksStaged, chunks)
	}
	// The site may send chunks again when the door asks again (a request
	// unanswered within SyncRetry), so what it sent is only logged.
	t.Logf("the site sent %d chunks", e.site.Stats().ChunksSent)
	for _, n := range []uint32{0, cards / 2, cards - 1} {
		if d := decide(t, r.st, "front", n); d.Outcome != store.Granted {
			t.Fatalf("card %d: %+v", n, d)
		}
	}
}

// Deltas are applied only in order: one that arrives after a gap is kept,
// the gap makes the door ask the site, and it converges.
func TestDeltaGap(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	if _, err := e.site.Publish(ctx, card(9, "front")); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	before := e.site.Stats().SyncRequests

	// Three deltas the door never receives live, then a fourth that it does.
	for n := range uint32(3) {
		if _, err := e.site.Commit(card(n, "front")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.site.Publish(ctx, revoke(1)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	if e.site.Stats().SyncRequests <= before {
		t.Fatal("the gap did not make the door ask")
	}
	if d := decide(t, r.st, "front", 1); d.Reason != store.ReasonRevoked {
		t.Fatalf("card 1: %+v", d)
	}
	if d := decide(t, r.st, "front", 2); d.Outcome != store.Granted {
		t.Fatalf("card 2: %+v", d)
	}
	st := r.client.Stats()
	if st.DeltasApplied != 5 || st.SnapshotsApplied != 0 {
		t.Fatalf("%+v", st)
	}
}

// publishHeartbeat publishes a heartbeat signed by the site's key with the
// given issued_at, then a message the door refuses on the same topic, and
// waits for that refusal: the heartbeat has been handled by then.
func (e *env) publishHeartbeat(r *rig, issued time.Time) {
	e.t.Helper()
	ctx := context.Background()
	b, err := e.signer.Seal(&mqtt.Heartbeat{Header: mqtt.Header{Site: site, Seq: 0, IssuedAt: issued}, Door: r.name})
	if err != nil {
		e.t.Fatal(err)
	}
	topic := mqtt.TopicsFor(site).Heartbeat("front")
	if err := e.site.PublishRaw(ctx, topic, b, false); err != nil {
		e.t.Fatal(err)
	}
	want := r.client.Stats().ACLRejected + 1
	if err := e.site.PublishRaw(ctx, topic, []byte("marker"), false); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, "the marker refused", func() bool { return r.client.Stats().ACLRejected >= want }, r.client.Updated)
}

// A signed message issued beyond the clock skew ahead of the door's synced
// clock does not count as fresh and does not move the clock floor, so the
// site's next message, issued at the right time, still does.
func TestFutureIssuedNotFresh(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.site.HoldAcks(true) // only the heartbeats below are signed site time
	clk := &clock{now: time.Now()}
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.Clock = clk
		o.StaleAfter = time.Hour
	}).start()
	r.waitConnected()
	waitFor(t, "stale at start", func() bool { return r.client.Stats().ACLStale }, r.client.Updated)

	future := clk.Now().Add(2 * time.Hour)
	e.publishHeartbeat(r, future)
	if st := r.client.Stats(); !st.ACLStale || st.FutureIssued != 1 {
		t.Fatalf("after a heartbeat issued 2 h ahead: stale=%v, %d counted from the future", st.ACLStale, st.FutureIssued)
	}
	// Within the skew is not the future.
	now := clk.Now().Add(r.opts.ClockSkew / 2)
	e.publishHeartbeat(r, now)
	if st := r.client.Stats(); st.ACLStale || st.FutureIssued != 1 {
		t.Fatalf("after a heartbeat issued now: stale=%v, %d counted from the future", st.ACLStale, st.FutureIssued)
	}
	r.stop() // writes the freshness to the store
	ss, err := r.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if !ss.LastIssuedAt.Equal(now) {
		t.Fatalf("clock floor %s, want %s (the heartbeat from the future must not move it)", ss.LastIssuedAt, now)
	}
}

// While the door's clock is not synced, signed site time is the best time
// the door has and counts even when far ahead. Once the clock is synced,
// the site time it has seen stays the clock floor although the clock is
// behind it: it is never brought back on the clock's word, and a message
// issued before it is not fresh, until the clock catches up.
func TestFreshnessAfterClockSync(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.site.HoldAcks(true)
	clk := &clock{now: time.Now()}
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.Clock = clk
		o.StaleAfter = time.Hour
	})
	r.door.SetUnsynced(true)
	r.start()
	r.waitConnected()
	waitFor(t, "stale at start", func() bool { return r.client.Stats().ACLStale }, r.client.Updated)

	siteTime := clk.Now().Add(5 * time.Hour)
	e.publishHeartbeat(r, siteTime)
	if st := r.client.Stats(); st.ACLStale || st.FutureIssued != 0 {
		t.Fatalf("unsynced clock, heartbeat 5 h ahead: stale=%v, %d counted from the future", st.ACLStale, st.FutureIssued)
	}
	r.door.SetUnsynced(false)
	clk.Advance(2 * time.Hour)
	waitFor(t, "stale again", func() bool { return r.client.Stats().ACLStale }, r.client.Updated)
	e.publishHeartbeat(r, clk.Now())
	if st := r.client.Stats(); !st.ACLStale {
		t.Fatal("a heartbeat issued before the site time already seen counted as fresh")
	}
	// The store's site time, the floor of every time rule, stays.
	ss, err := r.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if !ss.LastIssuedAt.Equal(siteTime) {
		t.Fatalf("stored site time %s, want %s", ss.LastIssuedAt, siteTime)
	}
	// Once the clock has passed it, the site's messages count again.
	clk.Set(siteTime.Add(time.Minute))
	e.publishHeartbeat(r, clk.Now())
	if st := r.client.Stats(); st.ACLStale {
		t.Fatal("a heartbeat issued after the site time did not count as fresh")
	}
}

// logBuffer collects a client's log for a test to read while it runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain s.
func (l *logBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// A door's clock found behind the clock floor by more than the clock skew
// is logged once as a clock step, however many messages and ticks see it,
// and once more when it has caught up. A normal lag is not a step.
func TestClockStepLoggedOnce(t *testing.T) {
	const step, caughtUp = "clock step", "caught up"
	e := newEnv(t, envConfig{})
	e.site.HoldAcks(true) // only the heartbeats below are signed site time
	start := time.Now().Truncate(time.Second)
	clk := &clock{now: start}
	logs := &logBuffer{}
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.Clock = clk
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}).start()
	r.waitConnected()
	e.publishHeartbeat(r, start)

	// A few seconds behind the site is the normal difference of two clocks.
	clk.Set(start.Add(-5 * time.Second))
	floor := start.Add(time.Second)
	e.publishHeartbeat(r, floor)
	if got := logs.lines(step); len(got) != 0 {
		t.Fatalf("a lag of 6 s logged as a clock step: %q", got)
	}

	// Set back three hours: the site's next messages are in the door's
	// future and do not move the floor.
	back := start.Add(-3 * time.Hour)
	clk.Set(back)
	for i := range 3 {
		e.publishHeartbeat(r, floor.Add(time.Duration(i+1)*time.Second))
	}
	got := logs.lines(step)
	if len(got) != 1 {
		t.Fatalf("%d clock step lines, want 1:\n%s", len(got), strings.Join(got, ""))
	}
	for _, want := range []string{"level=WARN", "door_time=" + back.UTC().Format(time.RFC3339),
		"site_time=" + floor.UTC().Format(time.RFC3339), "behind=3h0m1s", "clock=synced"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("clock step line %q lacks %q", got[0], want)
		}
	}
	if got := logs.lines(caughtUp); len(got) != 0 {
		t.Fatalf("caught up while behind: %q", got)
	}

	// Caught up: one more line, and no more.
	clk.Set(start.Add(10 * time.Second))
	for i := range 2 {
		e.publishHeartbeat(r, clk.Now().Add(time.Duration(i)*time.Second))
	}
	if got := logs.lines(caughtUp); len(got) != 1 || !strings.Contains(got[0], "level=INFO") {
		t.Fatalf("caught-up lines: %q, want one", got)
	}
	if got := logs.lines(step); len(got) != 1 {
		t.Fatalf("%d clock step lines after catching up, want 1", len(got))
	}
}

// The messages waiting for a busy client are bounded in bytes, not only in
// number: beyond MaxInboundBytes they are dropped and counted, and the door
// catches up by sequence once it is free.
func TestInboundBytesBounded(t *testing.T) {
	// Every delta that comes while the door is still busy may be dropped;
	// the site's heartbeats then tell it the head it lacks, as they tell a
	// door in service.
	e := newEnv(t, envConfig{site: func(o *sitetest.Options) { o.HeartbeatEvery = 250 * time.Millisecond }})
	ctx := context.Background()
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.MaxInboundBytes = 256 << 10
		o.WriteTimeout = 200 * time.Millisecond
	}).start()
	r.waitConnected()

	g := r.door.blockLockdown()
	if _, err := e.site.Command(ctx, "front", mqtt.Command{Action: mqtt.ActionLockdown, On: new(true)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.entered:
	case <-time.After(hang):
		t.Fatal("the lockdown never reached the door")
	}
	// Eight deltas of about 100 KiB each: 800 KiB in far fewer than the
	// 1,024 messages the queue holds.
	const deltas, perDelta = 8, 600
	var size int
	for i := range uint32(deltas) {
		ops := make([]store.Op, 0, perDelta)
		for n := i * perDelta; n < (i+1)*perDelta; n++ {
			ops = append(ops, card(n, "front"))
		}
		if i == 0 {
			b, err := e.signer.SealFor(e.ids["front"].Public(), mqtt.NewDelta(site, "front", 1, time.Now(), ops))
			if err != nil {
				t.Fatal(err)
			}
			size = len(b)
		}
		if _, err := e.site.Publish(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deltas of %d KiB", size>>10)
	if size*deltas < 2*r.opts.MaxInboundBytes {
		t.Fatalf("deltas of %d bytes do not overflow %d bytes", size, r.opts.MaxInboundBytes)
	}
	waitFor(t, "a message dropped", func() bool { return r.client.Stats().Dropped > 0 }, r.client.Updated)
	close(g.open)
	e.waitSynced(r)
	if d := decide(t, r.st, "front", deltas*perDelta-1); d.Outcome != store.Granted {
		t.Fatalf("last card: %+v", d)
	}
	t.Logf("%d messages dropped, of %d deltas and the heartbeats", r.client.Stats().Dropped, deltas)
}

// mustSeal signs m with s.
func mustSeal(t testing.TB, s *mqtt.Signer, m mqtt.Signed) []byte {
	t.Helper()
	b, err := s.Seal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A door that cannot reach its broker says so at the default level once
// per reason, not at every retry (the retries are at debug level), and
// says so again when the reason changes or it connects.
func TestConnectFailureLoggedOnce(t *testing.T) {
	e := newEnv(t, envConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String() // a port nobody listens on once closed
	ln.Close()
	logs := &logBuffer{}
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.Broker = "tcp://" + closed
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}).start()
	waitFor(t, "four failed attempts", func() bool { return len(logs.lines("mqtt: connect failed")) >= 3 }, r.client.Updated)
	warns := logs.lines("cannot connect to the broker")
	if len(warns) != 1 || !strings.Contains(warns[0], "level=WARN") || !strings.Contains(warns[0], closed) {
		t.Fatalf("warnings about the broker: %q, want one at WARN naming it", warns)
	}
	if got := logs.lines("connecting"); len(got) != 1 || !strings.Contains(got[0], "level=INFO") {
		t.Errorf("connecting lines: %q, want one at INFO", got)
	}
	if got := logs.lines("mqtt: connect failed"); len(got) < 3 {
		t.Errorf("%d retries at debug level, want 3 or more", len(got))
	}
	if st := r.client.Stats(); st.Connected || st.LastError == "" {
		t.Errorf("stats %+v: want disconnected with the last error", st)
	}
}
