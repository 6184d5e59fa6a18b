package mqtt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store"
)

// countReason counts a door's audit events with reason.
func countReason(t testing.TB, st *store.Store, reason store.Reason) (n int, details []string) {
	for _, e := range allEvents(t, st) {
		if e.Reason == reason {
			n++
			details = append(details, e.Detail)
		}
	}
	return n, details
}

// 10,000 forged, replayed, expired, retained, wrong-door and otherwise bad
// commands open nothing; the one valid signed unlock opens exactly once.
// Rejections are audited at a bounded rate with a summary.
func TestCommandFlood(t *testing.T) {
	e := newEnv(t, envConfig{broker: brokertest.Config{MaxQueued: -1}})
	ctx := context.Background()
	topic := mqtt.TopicsFor(site).Cmd("front")
	intruder := newSigner(t, e.signer.KeyID()) // same kid, other key
	stranger := newSigner(t, "someone-else")

	// A valid command left retained before the door ever subscribed: the
	// door receives it flagged retained and refuses it.
	_, retained, err := e.site.SealCommand("front", mqtt.Command{Action: mqtt.ActionUnlock, DurationMS: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.site.PublishRaw(ctx, topic, retained, true); err != nil {
		t.Fatal(err)
	}
	const burst, window = 10, 500 * time.Millisecond
	start := time.Now() // nothing is refused before: the rate bound below counts from here
	r := e.newRig("front", "", func(o *mqtt.Options) { o.RejectBurst, o.RejectWindow = burst, window }).start()
	r.waitConnected()
	waitFor(t, "the retained command refused", func() bool { return r.client.Stats().CommandsRejected >= 1 }, r.client.Updated)
	// Clearing it reaches the door as an empty message: refused too.
	if err := e.site.PublishRaw(ctx, topic, nil, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the empty message refused", func() bool { return r.client.Stats().CommandsRejected >= 2 }, r.client.Updated)

	valid, validBytes, err := e.site.SealCommand("front", mqtt.Command{Action: mqtt.ActionUnlock, DurationMS: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.site.PublishRaw(ctx, topic, validBytes, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the valid unlock", func() bool { return r.door.Unlocks() == 1 }, r.door.Changed)

	now := time.Now()
	unsigned, _ := json.Marshal(valid)
	seal := func(s *mqtt.Signer, c mqtt.Command) []byte {
		b, err := s.Seal(&c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fresh := func(door string) mqtt.Command {
		var id [8]byte
		rand.Read(id[:])
		return mqtt.Command{Header: mqtt.Header{Site: site, Seq: 1000, IssuedAt: now}, Door: door,
			ID: fmt.Sprintf("x%x", id), ExpiresAt: now.Add(30 * time.Second), Action: mqtt.ActionUnlock, DurationMS: 1000}
	}
	heartbeat, err := e.signer.Seal(&mqtt.Heartbeat{Header: mqtt.Header{Site: site, Seq: 1, IssuedAt: now}, Door: "front"})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		make func() []byte
	}{
		{"unsigned", func() []byte { return unsigned }},
		{"untrusted key under a trusted kid", func() []byte { return seal(intruder, fresh("front")) }},
		{"unknown kid", func() []byte { return seal(stranger, fresh("front")) }},
		{"tampered", func() []byte {
			return bytes.Replace(validBytes, []byte(`"duration_ms":2000`), []byte(`"duration_ms":9000`), 1)
		}},
		{"replayed", func() []byte { return validBytes }},
		{"expired", func() []byte {
			c := fresh("front")
			c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Minute), now.Add(-90*time.Second)
			return seal(e.signer, c)
		}},
		{"not yet valid", func() []byte {
			c := fresh("front")
			c.IssuedAt, c.ExpiresAt = now.Add(10*time.Minute), now.Add(10*time.Minute+30*time.Second)
			return seal(e.signer, c)
		}},
		{"wrong door", func() []byte { return seal(e.signer, fresh("back")) }},
		{"wrong site", func() []byte {
			c := fresh("front")
			c.Site = "elsewhere"
			return seal(e.signer, c)
		}},
		{"unlock too long", func() []byte {
			c := fresh("front")
			c.DurationMS = 45000
			return seal(e.signer, c)
		}},
		{"wrong kind on the topic", func() []byte { return heartbeat }},
		{"garbage", func() []byte { return []byte("\x00\x01 not json") }},
		{"oversized", func() []byte { return bytes.Repeat([]byte("{"), 8<<10) }},
	}
	const flood = 10000
	for i := range flood {
		b := bad[i%len(bad)]
		if err := e.site.PublishRaw(ctx, topic, b.make(), false); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
	}
	waitFor(t, "every bad command refused", func() bool { return r.client.Stats().CommandsRejected >= flood+2 }, r.client.Updated)
	st := r.client.Stats()
	if st.CommandsRejected != flood+2 || st.Dropped != 0 {
		t.Fatalf("%d rejected, %d dropped; want %d, 0", st.CommandsRejected, st.Dropped, flood+2)
	}
	if got := r.door.Unlocks(); got != 1 || st.Unlocks != 1 || st.CommandsApplied != 1 {
		t.Fatalf("%d unlocks after the flood (stats %+v)", got, st)
	}

	// The audit log got a bounded number of rejections and a summary: at
	// most burst refusals and one summary per window. Windows start at
	// least a window apart, so however long a loaded machine took over the
	// flood, no more of them can have begun than the time since start
	// allows.
	waitFor(t, "a summary of the suppressed rejections", func() bool {
		_, details := countReason(t, r.st, store.ReasonCommandRejected)
		return strings.Contains(strings.Join(details, "\n"), "not logged one by one")
	}, r.client.Updated, r.door.Changed)
	n, _ := countReason(t, r.st, store.ReasonCommandRejected)
	elapsed := time.Since(start)
	windows := int(elapsed/window) + 1
	if limit := windows * (burst + 1); n > limit {
		t.Fatalf("%d command_rejected events for %d rejections in %s, more than %d for %d windows",
			n, flood+2, elapsed.Round(time.Millisecond), limit, windows)
	}
	t.Logf("%d rejections, %d audit events in %s", flood+2, n, elapsed.Round(time.Millisecond))

	if _, err := e.site.Command(ctx, "front", mqtt.Command{Action: mqtt.ActionLockdown, On: new(true)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lockdown on", func() bool {
		return r.door.Status().Lockdown && r.client.Stats().CommandsApplied == 2
	}, r.door.Changed, r.client.Updated)
	if got := r.door.Unlocks(); got != 1 {
		t.Fatalf("%d unlocks", got)
	}
	if applied, _ := countReason(t, r.st, store.ReasonCommandApplied); applied != 2 {
		t.Fatalf("%d command_applied events, want 2", applied)
	}
}

// A resync command makes the door ask for a snapshot at once.
func TestResyncCommand(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	if _, err := e.site.Publish(ctx, card(1, "front")); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	before := r.client.Stats().SyncRequests
	if _, err := e.site.Command(ctx, "front", mqtt.Command{Action: mqtt.ActionResync}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sync request asking for a snapshot", func() bool {
		s := e.site.Stats().LastSync["front"]
		return r.client.Stats().SyncRequests > before && s != nil && s.Want == mqtt.WantSnapshot
	}, e.site.Updated, r.client.Updated)
}

// sendMarker publishes a message the door refuses on its command topic and
// waits until the door has handled (applied or refused) want commands in
// all, counting the marker: every command published before it has been
// handled by then.
func (e *env) sendMarker(r *rig, want uint64) {
	e.t.Helper()
	if err := e.site.PublishRaw(context.Background(), mqtt.TopicsFor(site).Cmd(r.name), []byte("marker"), false); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, "the marker refused", func() bool {
		st := r.client.Stats()
		return st.CommandsApplied+st.CommandsRejected >= want
	}, r.client.Updated)
}

// A door whose clock is behind the site's honours a signed lockdown on, a
// safety action, although it was issued in the door's future; an unlock or
// a lockdown off issued in its future is refused. An old lockdown on that
// the door's clock still finds valid is refused once the door has seen a
// later signed site time.
func TestLockdownWithClockBehind(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	clk := &clock{now: time.Now().Add(-10 * time.Minute)}
	r := e.newRig("front", "", func(o *mqtt.Options) { o.Clock = clk }).start()
	r.waitConnected()

	for _, c := range []mqtt.Command{
		{Action: mqtt.ActionUnlock, DurationMS: 1000},
		{Action: mqtt.ActionLockdown, On: new(false)},
		{Action: mqtt.ActionLockdown, On: new(true)},
	} {
		if _, err := e.site.Command(ctx, "front", c); err != nil {
			t.Fatal(err)
		}
	}
	e.sendMarker(r, 4)
	st := r.client.Stats()
	if !r.door.Status().Lockdown || st.CommandsApplied != 1 || st.CommandsRejected != 3 || r.door.Unlocks() != 0 {
		t.Fatalf("lockdown=%v, %d unlocks, stats %+v; want lockdown on, the unlock and the lockdown off refused",
			r.door.Status().Lockdown, r.door.Unlocks(), st)
	}
	_, details := countReason(t, r.st, store.ReasonCommandRejected)
	if n := strings.Count(strings.Join(details, "\n"), "issued at"); n != 2 {
		t.Fatalf("%d refusals as not yet valid, want 2:\n%s", n, strings.Join(details, "\n"))
	}

	// With the clock not synced, the site's time counts as a floor.
	r.door.SetUnsynced(true)
	e.publishHeartbeat(r, time.Now())
	now := time.Now()
	old, err := e.signer.Seal(&mqtt.Command{Header: mqtt.Header{Site: site, Seq: 1, IssuedAt: now.Add(-2 * time.Minute)},
		Door: "front", ID: "old-lockdown-on", ExpiresAt: now.Add(-90 * time.Second), Action: mqtt.ActionLockdown, On: new(true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).Cmd("front"), old, false); err != nil {
		t.Fatal(err)
	}
	e.sendMarker(r, 6)
	if st := r.client.Stats(); st.CommandsApplied != 1 || st.CommandsRejected != 5 {
		t.Fatalf("an expired lockdown on, valid by the door's clock only: %+v", st)
	}
	_, details = countReason(t, r.st, store.ReasonCommandRejected)
	// The last refusal is the marker's.
	if got := details[len(details)-2]; !strings.Contains(got, "old-lockdown-on") || !strings.Contains(got, "before the site time") {
		t.Fatalf("refusal of the old lockdown on: %q", got)
	}
}

// A lockdown off older (by seq) than a command the door has already
// recorded is refused as superseded, also after a restart: it must not undo
// a later lockdown on that overtook it. A lockdown on is never refused for
// its order, and a later lockdown off is honoured.
func TestLockdownOffSuperseded(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	topic := mqtt.TopicsFor(site).Cmd("front")
	send := func(seq uint64, id string, on bool) {
		t.Helper()
		now := time.Now()
		b, err := e.signer.Seal(&mqtt.Command{Header: mqtt.Header{Site: site, Seq: seq, IssuedAt: now},
			Door: "front", ID: id, ExpiresAt: now.Add(30 * time.Second), Action: mqtt.ActionLockdown, On: &on})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.site.PublishRaw(ctx, topic, b, false); err != nil {
			t.Fatal(err)
		}
	}
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	send(20, "lockdown-on-20", true)
	send(19, "lockdown-off-19", false) // issued before the on, delivered after it
	send(17, "lockdown-on-17", true)
	e.sendMarker(r, 4)
	st := r.client.Stats()
	if !r.door.Status().Lockdown || st.CommandsApplied != 2 || st.CommandsRejected != 2 {
		t.Fatalf("lockdown=%v, stats %+v; want both lockdown on applied, the older off refused", r.door.Status().Lockdown, st)
	}
	_, details := countReason(t, r.st, store.ReasonCommandRejected)
	if got := details[0]; !strings.Contains(got, "lockdown-off-19") || !strings.Contains(got, "superseded") {
		t.Fatalf("refusal of the older off: %q", got)
	}

	// The highest seq survives a restart.
	path := r.path
	r.close()
	r2 := e.newRig("front", path, nil).start()
	r2.waitConnected()
	send(18, "lockdown-off-18", false)
	send(21, "lockdown-off-21", false)
	e.sendMarker(r2, 3)
	if st := r2.client.Stats(); st.CommandsApplied != 1 || st.CommandsRejected != 2 {
		t.Fatalf("after a restart: %+v; want the off at seq 18 refused, the one at 21 applied", st)
	}
	_, details = countReason(t, r2.st, store.ReasonCommandApplied)
	if got := details[len(details)-1]; !strings.Contains(got, "lockdown off") || !strings.Contains(got, "lockdown-off-21") {
		t.Fatalf("last command applied: %q", got)
	}
}

// A door whose synced clock is set back (a forged NTP answer, a bad
// real-time clock) judges a command's expiry at the clock floor, the
// latest signed site time it has seen: an old unlock, withheld and
// delivered now, is refused although the door's clock finds it valid, and
// the old message does not bring the floor back. A lockdown on issued now
// is honoured.
func TestCommandExpiredByFloorWithClockSetBack(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.site.HoldAcks(true) // only the heartbeat below is signed site time
	ctx := context.Background()
	topic := mqtt.TopicsFor(site).Cmd("front")
	start := time.Now().Truncate(time.Second)
	clk := &clock{now: start}
	r := e.newRig("front", "", func(o *mqtt.Options) { o.Clock = clk }).start()
	r.waitConnected()
	e.publishHeartbeat(r, start) // the clock floor

	back := start.Add(-time.Hour)
	clk.Set(back) // still synced, by the door's account
	old, err := e.signer.Seal(&mqtt.Command{Header: mqtt.Header{Site: site, Seq: 7, IssuedAt: back.Add(-10 * time.Second)},
		Door: "front", ID: "old-unlock", ExpiresAt: back.Add(20 * time.Second), Action: mqtt.ActionUnlock, DurationMS: 1000})
	if err != nil {
		t.Fatal(err)
	}
	lockdown, err := e.signer.Seal(&mqtt.Command{Header: mqtt.Header{Site: site, Seq: 8, IssuedAt: start},
		Door: "front", ID: "lockdown-now", ExpiresAt: start.Add(30 * time.Second), Action: mqtt.ActionLockdown, On: new(true)})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{old, lockdown} {
		if err := e.site.PublishRaw(ctx, topic, b, false); err != nil {
			t.Fatal(err)
		}
	}
	e.sendMarker(r, 3)
	st := r.client.Stats()
	if r.door.Unlocks() != 0 || !r.door.Status().Lockdown || st.CommandsApplied != 1 || st.CommandsRejected != 2 {
		t.Fatalf("%d unlocks, lockdown=%v, stats %+v; want the old unlock refused, the lockdown applied",
			r.door.Unlocks(), r.door.Status().Lockdown, st)
	}
	_, details := countReason(t, r.st, store.ReasonCommandRejected)
	if got := details[0]; !strings.Contains(got, "old-unlock") || !strings.Contains(got, "before the site time") {
		t.Fatalf("refusal of the old unlock: %q", got)
	}
	r.stop() // writes the freshness to the store
	ss, err := r.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if !ss.LastIssuedAt.Equal(start) {
		t.Fatalf("clock floor %s after the clock was set back, want %s", ss.LastIssuedAt, start)
	}
}
