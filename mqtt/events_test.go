package mqtt_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store"
)

// waitDelivered waits until the site has stored every event of the door
// and the door has seen the acknowledgement.
func (e *env) waitDelivered(r *rig) {
	e.t.Helper()
	head, _, err := r.st.AuditHead()
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, fmt.Sprintf("%s's %d events delivered and acknowledged", r.name, head), func() bool {
		return e.site.Contiguous(r.name) >= head && r.client.Stats().Acked >= head
	}, e.site.Updated, r.client.Updated)
}

// 5,000 events written while the broker is down are delivered exactly
// once and in order, although the broker is killed (SIGKILL) in the middle
// of the drain and restarted, with and without persistence.
func TestEventsSurviveBrokerKill(t *testing.T) {
	for _, persist := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistence=%v", persist), func(t *testing.T) {
			e := newEnv(t, envConfig{broker: brokertest.Config{Persistence: persist}})
			r := e.newRig("front", "", nil)
			e.broker.Stop()
			appendEvents(t, r.st, "front", 5000)
			r.start()
			e.broker.Restart()

			waitFor(t, "drain under way", func() bool { return e.site.Contiguous("front") >= 1000 }, e.site.Updated)
			e.site.HoldAcks(true)
			e.broker.Kill()
			atKill := e.site.Contiguous("front")
			if atKill >= 5000 {
				t.Fatalf("the drain finished before the kill (%d stored)", atKill)
			}
			e.broker.Restart()
			e.site.HoldAcks(false)

			e.waitDelivered(r)
			checkCollected(t, e.site, "front", allEvents(t, r.st))
			st := r.client.Stats()
			t.Logf("killed at %d stored; door published %d messages for %d events, %d resends, %d sessions",
				atKill, st.EventsPublished, len(allEvents(t, r.st)), st.Resends, st.Connects)
		})
	}
}

// Live events go out while a backlog drains, and everything arrives once.
func TestLiveEventsDuringBacklog(t *testing.T) {
	e := newEnv(t, envConfig{})
	r := e.newRig("front", "", nil)
	appendEvents(t, r.st, "front", 3000)
	e.site.HoldAcks(true) // the backlog stays stuck at the window
	r.start()
	r.waitConnected()
	live := appendEvents(t, r.st, "front", 1)[0]
	r.client.Notify(live)
	waitFor(t, "live event stored ahead of the backlog", func() bool {
		evs, err := e.site.Events("front")
		if err != nil {
			t.Fatal(err)
		}
		// The client's own events (acl_stale at its start) go through the
		// journal too and may be written after the live one: look for it,
		// not at the end.
		return slices.ContainsFunc(evs, func(e store.Event) bool { return e.Seq == live.Seq })
	}, e.site.Updated)
	e.site.HoldAcks(false)
	e.waitDelivered(r)
	checkCollected(t, e.site, "front", allEvents(t, r.st))
}

// The environment variables of a door run in a child process.
const (
	childEnv = "LATCH_MQTT_TEST_CHILD_DOOR"
)

// TestMain runs a door client as a child process when asked to, so that a
// test can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childDoor())
	}
	if os.Getenv(catchUpEnv) != "" {
		os.Exit(catchUpChild())
	}
	os.Exit(m.Run())
}

// childDoor runs a door client from the options in the environment until
// it is killed. It prints "connected" once its session is up.
func childDoor() int {
	get := func(k string) string { return os.Getenv("LATCH_CHILD_" + k) }
	pub, err := base64.StdEncoding.DecodeString(get("KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := store.Open(get("DB"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	j, err := openJournal(st, get("DOOR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	id, err := mqtt.LoadIdentity(get("IDENTITY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := mqtt.New(st, j, newTestDoor(), &mqtt.Options{
		Broker: get("BROKER"), Site: site, Door: get("DOOR"), Username: get("DOOR"), Password: get("PASSWORD"),
		TrustedKeys: map[string]ed25519.PublicKey{get("KID"): pub}, Identity: id,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, CheckInterval: 50 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	notifyTo(st, c)
	go func() {
		for {
			ch := c.Updated()
			if c.Stats().Connected {
				fmt.Println("connected")
				return
			}
			<-ch
		}
	}()
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A door process killed with SIGKILL while events are still owed to the
// site delivers them after it restarts, each once.
func TestEventsAfterDoorKilled(t *testing.T) {
	e := newEnv(t, envConfig{})
	r := e.newRig("front", "", nil)
	appendEvents(t, r.st, "front", 3000)
	path := r.path
	r.close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"LATCH_CHILD_DB="+path, "LATCH_CHILD_BROKER=tcp://"+e.proxy.Addr(), "LATCH_CHILD_DOOR=front",
		"LATCH_CHILD_PASSWORD="+users["front"], "LATCH_CHILD_KID="+e.signer.KeyID(), "LATCH_CHILD_IDENTITY="+e.idDirs["front"],
		"LATCH_CHILD_KEY="+base64.StdEncoding.EncodeToString(e.signer.Public()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})

	waitFor(t, "the child's drain under way", func() bool { return e.site.Contiguous("front") >= 500 }, e.site.Updated)
	e.site.HoldAcks(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child exit: %v\n%s", err, stderr.String())
	}

	r2 := e.newRig("front", path, nil)
	depth, err := r2.st.OutboxDepth()
	if err != nil {
		t.Fatal(err)
	}
	if depth == 0 {
		t.Fatal("nothing pending after the kill: the test exercised nothing")
	}
	t.Logf("%d events pending after SIGKILL", depth)
	e.site.HoldAcks(false)
	r2.start()
	e.waitDelivered(r2)
	checkCollected(t, e.site, "front", allEvents(t, r2.st))
}

// The summary of refusals held back by the rate limit is written when the
// client stops, before its window is over.
func TestRefusalSummaryWrittenAtStop(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", func(o *mqtt.Options) { o.RejectBurst = 1; o.RejectWindow = time.Hour }).start()
	r.waitConnected()
	cmdTopic := mqtt.TopicsFor(site).Cmd("front")
	for range 5 {
		if err := e.site.PublishRaw(ctx, cmdTopic, []byte("garbage"), false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the commands refused", func() bool { return r.client.Stats().CommandsRejected >= 5 }, r.client.Updated)
	if n, _ := countReason(t, r.st, store.ReasonCommandRejected); n != 1 {
		t.Fatalf("%d refusals written within the window, want 1", n)
	}
	r.stop()
	n, details := countReason(t, r.st, store.ReasonCommandRejected)
	if n != 2 || !strings.HasPrefix(details[1], "4 more messages refused") {
		t.Fatalf("after the stop: %d refusals %q, want the summary of 4", n, details)
	}
}

// Every event a door sends is signed with its identity, and the site
// stores only events it can attribute to an approved door: a forged event
// (signed by another key), an event replayed from another door (on its
// own door field, or relabelled), and undelivered events rewritten in the
// door's file with the chain recomputed and signed again (as by someone
// holding the door's disk, key and all) are refused or flagged, because
// the site holds the door's earlier signed head.
func TestSignedEvents(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", nil)
	appendEvents(t, r.st, "front", 5)
	r.start()
	r.waitConnected()
	e.waitDelivered(r)
	checkCollected(t, e.site, "front", allEvents(t, r.st))
	back := e.newRig("back", "", nil)
	appendEvents(t, back.st, "back", 2)
	back.start()
	back.waitConnected()
	e.waitDelivered(back)
	r.stop()
	stored := e.site.Stats().EventsStored

	topic := mqtt.TopicsFor(site).Events("front")
	send := func(m mqtt.EventMsg) {
		t.Helper()
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.site.PublishRaw(ctx, topic, b, false); err != nil {
			t.Fatal(err)
		}
	}
	signed := func(id *mqtt.Identity, door string, ev store.Event) mqtt.EventMsg {
		t.Helper()
		sig, err := id.SignHead(site, door, ev.Seq, ev.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return mqtt.EventMsg{V: mqtt.Version, Type: mqtt.KindEvent, Site: site, Door: door, Event: ev, Sig: sig}
	}
	chain := func(prev store.Event, n int, detail string) []store.Event {
		t.Helper()
		out := make([]store.Event, n)
		for i := range out {
			ev := store.Event{Seq: prev.Seq + 1, Time: prev.Time, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess,
				Reason: store.ReasonGranted, UID: "04A1B2C3", Detail: detail, Prev: prev.Hash}
			var err error
			if ev.Hash, err = store.HashEvent(ev); err != nil {
				t.Fatal(err)
			}
			out[i], prev = ev, ev
		}
		return out
	}
	evs := allEvents(t, r.st)
	last := evs[len(evs)-1]
	next := chain(last, 1, "forged")[0]

	// Forged: unsigned, and signed by another door's key.
	unsigned := mqtt.EventMsg{V: mqtt.Version, Type: mqtt.KindEvent, Site: site, Door: "front", Event: next}
	send(unsigned)
	send(signed(e.ids["back"], "front", next))
	waitFor(t, "two forged events refused", func() bool { return e.site.Stats().Unattributed >= 2 }, e.site.Updated)

	// Replayed from back: as it was (back's door on front's topic), and
	// relabelled as front's (its signature covers the door).
	backEv := allEvents(t, back.st)[0]
	refused := func() int { st := e.site.Stats(); return st.WrongDoor + st.Unattributed + st.Malformed }
	before := refused()
	replay := signed(e.ids["back"], "back", backEv)
	send(replay)
	replay.Door = "front"
	send(replay)
	replay.Event.Door = "front" // its hash no longer matches
	send(replay)
	waitFor(t, "replays refused", func() bool { return refused() >= before+3 }, e.site.Updated)
	if st := e.site.Stats(); st.EventsStored != stored {
		t.Fatalf("%d events stored after forgeries and replays, want %d", st.EventsStored, stored)
	}

	// Rewritten: three events the site has not received yet, whose head
	// the door's status has signed. Someone with the door's disk rewrites
	// them and signs the new chain with the door's key.
	real := chain(last, 3, "the real ones")
	head := real[len(real)-1]
	sig, err := e.ids["front"].SignHead(site, "front", head.Seq, head.Hash)
	if err != nil {
		t.Fatal(err)
	}
	pub := e.ids["front"].Public()
	status := mqtt.Status{V: mqtt.Version, Type: mqtt.KindStatus, Site: site, Door: "front", Online: true,
		Fingerprint: pub.Fingerprint(), SignKey: base64.StdEncoding.EncodeToString(pub.SignKey),
		SealKey: base64.StdEncoding.EncodeToString(pub.SealKey), HeadSeq: head.Seq, HeadHash: head.Hash, HeadSig: sig}
	b, err := json.Marshal(status)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).Status("front"), b, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the site holds the signed head", func() bool {
		h, ok := e.site.Heads("front")
		return ok && h.Seq == head.Seq
	}, e.site.Updated)
	rewrites := e.site.Stats().Rewrites
	for _, ev := range chain(last, 3, "rewritten") {
		send(signed(e.ids["front"], "front", ev))
	}
	waitFor(t, "the rewrite flagged", func() bool { return e.site.Stats().Rewrites > rewrites }, e.site.Updated)
	got, err := e.site.Events("front")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got); n > 0 && got[n-1].Seq == head.Seq && got[n-1].Hash != head.Hash {
		t.Fatalf("the site stored a rewritten event at the signed head: %+v", got[n-1])
	}
}
