package site

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

var brokerUsers = map[string]string{"site": "site-secret", "front": "front-secret"}

func testLogger() *slog.Logger {
	if os.Getenv("LATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor waits until cond holds, woken by the site's updates.
func waitFor(t testing.TB, what string, s *Site, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := s.Updated()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; stats %+v", what, s.Stats())
		}
	}
}

// wireDoor is a testDoor on the broker, a plain paho client.
type wireDoor struct {
	*testDoor
	pc paho.Client
	in chan paho.Message
}

func connectDoor(t *testing.T, b *brokertest.Broker, d *testDoor) *wireDoor {
	t.Helper()
	w := &wireDoor{testDoor: d, in: make(chan paho.Message, 1024)}
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("latch-hq-" + d.name).
		SetUsername(d.name).SetPassword(brokerUsers[d.name]).SetCleanSession(true).SetProtocolVersion(4)
	w.pc = paho.NewClient(o)
	if tok := w.pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("door connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.pc.Disconnect(100) })
	filters := map[string]byte{
		d.top.DoorACL(d.name): 1, d.top.Heartbeat(d.name): 1, d.top.EventsAck(d.name): 1, d.top.Keys(): 1,
	}
	tok := w.pc.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { w.in <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("door subscribe: %v", tok.Error())
	}
	return w
}

func (w *wireDoor) send(topic string, payload []byte, retained bool) {
	w.t.Helper()
	if tok := w.pc.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		w.t.Fatalf("door publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message the door receives on topic, skipping
// others.
func (w *wireDoor) next(topic string) []byte {
	w.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-w.in:
			if m.Topic() == topic {
				return m.Payload()
			}
		case <-deadline:
			w.t.Fatalf("door %s: nothing on %s", w.name, topic)
		}
	}
}

// A door's whole life with the site over a real broker: its status
// makes it pending, its requests are refused until it is approved, then
// it gets its view, its revocations, acks for its signed events, and
// follows a key rotation.
func TestSiteOverBroker(t *testing.T) {
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Skip(err)
	}
	b := brokertest.Start(t, brokertest.Config{Users: brokerUsers, ACL: brokertest.ACL(site), NoDelay: true})
	sg := newSigner(t, "site-1")
	s, err := New(Options{Broker: b.URL(), Username: "site", Password: brokerUsers["site"], Site: site, Signer: sg,
		DB: openDB(t, filepath.Join(t.TempDir(), "site.db")), Logger: testLogger(), ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "site connected", s, func() bool { return s.Stats().Connected })
	if _, err := s.Commit(ucard(1, "h1", "front"), ucard(2, "h2", "back")); err != nil {
		t.Fatal(err)
	}

	id, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	v, err := mqtt.NewDoorVerifier(site, "front", map[string]ed25519.PublicKey{sg.KeyID(): sg.Public()}, id)
	if err != nil {
		t.Fatal(err)
	}
	d := connectDoor(t, b, &testDoor{t: t, name: "front", id: id, st: openStore(t), v: v, top: mqtt.TopicsFor(site)})
	fp := id.Public().Fingerprint()

	// Not approved: pending, refused.
	d.send(d.top.Status("front"), d.status(nil, 0, ""), true)
	waitFor(t, "front pending", s, func() bool { return s.Stats().Pending["front"] == fp })
	d.send(d.top.Sync("front"), d.request("", 0), false)
	waitFor(t, "sync refused", s, func() bool { return s.Stats().SyncRefused == 1 })

	// Approved: the heartbeat says where its view is; it asks and gets it.
	if err := s.Approve("front", fp); err != nil {
		t.Fatal(err)
	}
	m, _, err := d.v.Open(d.next(d.top.Heartbeat("front")))
	if err != nil || m.Head().Seq != 1 {
		t.Fatalf("heartbeat %+v %v", m, err)
	}
	d.send(d.top.Sync("front"), d.request("", 0), false)
	d.apply([][]byte{d.next(d.top.DoorACL("front"))})
	if seq, hash := d.state(); seq != 1 || hash != store.HashSnapshot(s.View("front")) {
		t.Fatalf("door at %d %s", seq, hash)
	}
	if got := s.View("front"); len(got.Cards) != 1 {
		t.Fatalf("front's view: %+v", got)
	}

	// A revocation.
	if _, err := s.Publish(ctx, urevoke(1)); err != nil {
		t.Fatal(err)
	}
	d.apply([][]byte{d.next(d.top.DoorACL("front"))})
	dec, err := d.st.Decide(store.Request{UID: ucard(1, "h1").Card.UID, Door: "front", Mode: store.ModeCardOnly, Now: t0, ClockTrusted: true})
	if err != nil || dec.Reason != store.ReasonRevoked {
		t.Fatalf("decision %+v %v", dec, err)
	}

	// Signed events, acknowledged; the status's signed head is held.
	evs := d.events(3)
	for _, e := range evs {
		d.send(d.top.Events("front"), d.eventMsg(e, d.id), false)
	}
	waitFor(t, "events stored", s, func() bool { return s.Contiguous("front") == 3 })
	for {
		m, _, err := d.v.Open(d.next(d.top.EventsAck("front")))
		if err != nil {
			t.Fatal(err)
		}
		if m.Head().Seq == 3 {
			break
		}
	}
	d.send(d.top.Status("front"), d.status(nil, 3, evs[2].Hash), true)
	waitFor(t, "status seen", s, func() bool { st := s.Stats().LastStatus["front"]; return st != nil && st.HeadSeq == 3 })
	if h, ok := s.Heads("front"); !ok || h.Seq != 3 || h.Hash != evs[2].Hash || VerifyHead(h, site, "front", id.Public().SignKey) != nil {
		t.Fatalf("head %+v", h)
	}

	// A key rotation: the door follows the retained chain, and the next
	// delta is signed by the new key.
	next := newSigner(t, "site-2")
	if err := s.RotateKey(ctx, next, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	kc, err := mqtt.DecodeKeyChain(d.next(d.top.Keys()), site)
	if err != nil {
		t.Fatal(err)
	}
	rm, kid, err := d.v.Open(kc.Rotations[0], mqtt.KindKeyRotation)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.v.Rotate(rm.(*mqtt.KeyRotation), kid); !ok || err != nil {
		t.Fatalf("rotate: %v %v", ok, err)
	}
	if _, err := s.Publish(ctx, ucard(3, "h3", "front")); err != nil {
		t.Fatal(err)
	}
	if _, kid, err := d.v.Open(d.next(d.top.DoorACL("front"))); err != nil || kid != "site-2" {
		t.Fatalf("delta after the rotation: %s %v", kid, err)
	}
	if st := s.Stats(); st.Malformed != 0 || st.Unattributed != 0 || st.Rewrites != 0 || st.SyncDeltas != 1 {
		t.Fatalf("%+v", st)
	}
}

// A change made while the broker is away is committed and answered at
// once, not held up until the broker returns; when the site connects
// again, every door's heartbeat says its view's new seq, so that the door
// asks for what it missed.
func TestChangeWhileBrokerDown(t *testing.T) {
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Skip(err)
	}
	b := brokertest.Start(t, brokertest.Config{Users: brokerUsers, ACL: brokertest.ACL(site), NoDelay: true, Persistence: true})
	id, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(t.TempDir(), "site.db"))
	pub := id.Public()
	if err := Provision(db, "front", &pub, nil); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Broker: b.URL(), Username: "site", Password: brokerUsers["site"], Site: site, Signer: newSigner(t, "site-1"),
		DB: db, Logger: testLogger(), ReconnectMax: 200 * time.Millisecond, HeartbeatEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "site connected", s, func() bool { return s.Stats().Connected })

	b.Stop()
	waitFor(t, "site disconnected", s, func() bool { return !s.Stats().Connected })
	seq, err := s.Publish(ctx, ucard(1, "h1", "front"))
	if seq == 0 || !errors.Is(err, errNotConnected) {
		t.Fatalf("a change while the broker is away: seq %d, %v", seq, err)
	}
	view, _ := s.Head("front")

	b.Restart()
	waitFor(t, "site connected again", s, func() bool { st := s.Stats(); return st.Connected && st.Connects == 2 })
	v, err := mqtt.NewDoorVerifier(site, "front", map[string]ed25519.PublicKey{"site-1": s.Signer().Public()}, id)
	if err != nil {
		t.Fatal(err)
	}
	// The retained heartbeat the door finds is the one sent at the
	// connection (a door connecting sooner may see the old one first).
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := connectDoor(t, b, &testDoor{t: t, name: "front", id: id, st: openStore(t), v: v, top: mqtt.TopicsFor(site)})
		m, _, err := d.v.Open(d.next(d.top.Heartbeat("front")))
		if err != nil {
			t.Fatal(err)
		}
		if m.Head().Seq == view {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat at seq %d, the view is at %d", m.Head().Seq, view)
		}
		d.pc.Disconnect(0)
	}
}

// The statuses received between two flushes are written once, the latest
// of each door; a head behind the one held in the batch is not kept.
func TestStatusBatch(t *testing.T) {
	var b statusBatch
	h := func(seq uint64) *sitestore.SignedHead {
		return &sitestore.SignedHead{Seq: seq, Hash: strings.Repeat("ab", 32), Sig: "s", From: sitestore.HeadFromStatus}
	}
	if why := b.add("front", sitestore.StatusUpdate{AppliedSeq: 1, Head: h(5)}); why != "" {
		t.Fatal(why)
	}
	if why := b.add("front", sitestore.StatusUpdate{AppliedSeq: 2}); why != "" {
		t.Fatal(why)
	}
	if why := b.add("front", sitestore.StatusUpdate{AppliedSeq: 3, Head: h(4)}); why == "" {
		t.Fatal("a head behind the batch's was kept")
	}
	b.add("lab", sitestore.StatusUpdate{AppliedSeq: 9})
	ups := b.take()
	if len(ups) != 2 || ups["front"].AppliedSeq != 3 || ups["front"].Head.Seq != 5 || ups["lab"].AppliedSeq != 9 {
		t.Fatalf("batch %+v", ups)
	}
	if len(b.take()) != 0 {
		t.Fatal("take did not empty the batch")
	}
	// Statuses put back after a failed write give way to newer ones.
	b.add("lab", sitestore.StatusUpdate{AppliedSeq: 10})
	b.putBack(ups)
	if got := b.take(); got["lab"].AppliedSeq != 10 || got["front"].AppliedSeq != 3 {
		t.Fatalf("after put back: %+v", got)
	}
}
