package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store"
)

// A link that stops carrying packets without closing is noticed by the
// keepalive (a ping goes unanswered; TCP alone would take many minutes),
// and the door recovers and catches up once the link is back.
func TestBlackHoleNoticed(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.KeepAlive, o.PingTimeout = time.Second, 500*time.Millisecond
	}).start()
	r.waitConnected()
	if _, err := e.site.Publish(ctx, card(1, "front")); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)

	e.proxy.BlackHole()
	start := time.Now()
	waitFor(t, "the dead link noticed", func() bool { return !r.client.Stats().Connected }, r.client.Updated)
	t.Logf("black hole noticed after %s (keepalive bound %s)", time.Since(start).Round(time.Millisecond),
		r.opts.KeepAlive+2*r.opts.PingTimeout)
	// Nothing closed the link: only the unanswered ping can have ended the
	// session.
	if st := r.client.Stats(); !strings.Contains(st.LastError, "pingresp not received") || st.Disconnects != 1 {
		t.Fatalf("session ended by %q after %d disconnects, want the keepalive", st.LastError, st.Disconnects)
	}

	// While the link is dead the site revokes the card.
	if _, err := e.site.Publish(ctx, revoke(1)); err != nil {
		t.Fatal(err)
	}
	e.proxy.Heal()
	waitFor(t, "reconnected", func() bool { return r.client.Stats().Connected }, r.client.Updated)
	e.waitSynced(r)
	if d := decide(t, r.st, "front", 1); d.Reason != store.ReasonRevoked {
		t.Fatalf("after the black hole: %+v", d)
	}
}

// 1,000 connection losses and reconnections never move the relay: the only
// unlock is the one signed command, even though the broker may deliver it
// again on a later session.
func TestFlapsNeverUnlock(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.ReconnectMin, o.ReconnectMax = time.Millisecond, 5*time.Millisecond
	}).start()
	r.waitConnected()
	if _, err := e.site.Command(ctx, "front", mqtt.Command{Action: mqtt.ActionUnlock, DurationMS: 3000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the signed unlock", func() bool { return r.door.Unlocks() == 1 }, r.door.Changed)

	const flaps = 1000
	for i := range flaps {
		want := r.client.Stats().Connects + 1
		if e.proxy.Cut() == 0 {
			t.Fatalf("flap %d: no connection to cut", i)
		}
		waitFor(t, "reconnect", func() bool {
			s := r.client.Stats()
			return s.Connects >= want && s.Connected
		}, r.client.Updated)
	}
	st := r.client.Stats()
	if got := r.door.Unlocks(); got != 1 || st.Unlocks != 1 {
		t.Fatalf("%d unlocks (client counted %d) after %d flaps", got, st.Unlocks, flaps)
	}
	if st.Disconnects < flaps {
		t.Fatalf("only %d disconnects", st.Disconnects)
	}
	t.Logf("%d sessions, %d disconnects, %d unlock", st.Connects, st.Disconnects, r.door.Unlocks())
}

// The whole path works over TLS with a client certificate, and a door
// without a certificate is refused.
func TestTLS(t *testing.T) {
	e := newEnv(t, envConfig{broker: brokertest.Config{TLS: true}})
	ctx := context.Background()
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	if _, err := e.site.Publish(ctx, card(1, "front"), revoke(1)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(r)
	if d := decide(t, r.st, "front", 1); d.Reason != store.ReasonRevoked {
		t.Fatalf("%+v", d)
	}
	e.waitDelivered(r)

	noCert := e.newRig("back", "", func(o *mqtt.Options) { o.TLS = e.broker.PKI.ClientTLS("") }).start()
	waitFor(t, "a refused attempt", func() bool { return noCert.client.Stats().LastError != "" }, noCert.client.Updated)
	if s := noCert.client.Stats(); s.Connects != 0 {
		t.Fatalf("connected without a client certificate: %+v", s)
	}
	wrongCA := e.newRig("back", "", func(o *mqtt.Options) { o.TLS = brokertest.NewPKI(t).ClientTLS("back") }).start()
	waitFor(t, "a refused attempt", func() bool { return wrongCA.client.Stats().LastError != "" }, wrongCA.client.Updated)
	if s := wrongCA.client.Stats(); s.Connects != 0 || !strings.Contains(s.LastError, "certificate") {
		t.Fatalf("broker with an unknown CA: %+v", s)
	}
}

// The status is retained and current; the last will marks a door that
// vanished offline, and a clean stop does the same.
func TestStatusAndWill(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	if _, err := e.site.Publish(ctx, card(1, "front")); err != nil {
		t.Fatal(err)
	}
	id := e.ids["front"]
	pub := id.Public()
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	e.waitSynced(r)
	seq, hash := e.site.Head("front")
	waitFor(t, "an online status at the head", func() bool {
		s := e.site.Stats().LastStatus["front"]
		return s != nil && s.Online && s.ACLSeq == seq && s.SnapshotHash == hash && s.Outbox == 0
	}, e.site.Updated)
	s := e.site.Stats().LastStatus["front"]
	if s.Version != "test" || s.DoorState != "closed" || s.Reader != "ok" || s.Clock != store.TimeSynced || s.Journal != "ok" {
		t.Fatalf("status %+v", s)
	}
	// The door announces its identity, for the site to show for approval.
	if got, err := s.Identity(); err != nil || got.Fingerprint() != pub.Fingerprint() {
		t.Fatalf("announced identity %v %v", got, err)
	}
	// It signs its audit chain's head: the site can hold the door to it.
	waitFor(t, "a signed head", func() bool {
		s := e.site.Stats().LastStatus["front"]
		return s != nil && s.HeadSeq > 0
	}, e.site.Updated)
	s = e.site.Stats().LastStatus["front"]
	if err := s.VerifyHead(pub.SignKey); err != nil {
		t.Fatal(err)
	}
	if seq, hash, err := r.st.AuditHead(); err != nil || s.HeadSeq > seq || (s.HeadSeq == seq && s.HeadHash != hash) {
		t.Fatalf("signed head %d %s, door's head %d %s %v", s.HeadSeq, s.HeadHash, seq, hash, err)
	}
	other, _ := mqtt.NewIdentity()
	if err := s.VerifyHead(other.Public().SignKey); err == nil {
		t.Fatal("a head verified under another door's key")
	}

	// The link dies without a DISCONNECT: the broker publishes the will.
	e.proxy.BlackHole()
	e.proxy.Cut()
	waitFor(t, "the last will", func() bool {
		s := e.site.Stats().LastStatus["front"]
		return s != nil && !s.Online
	}, e.site.Updated)
	e.proxy.Heal()
	waitFor(t, "online again", func() bool {
		s := e.site.Stats().LastStatus["front"]
		return s != nil && s.Online
	}, e.site.Updated)

	r.stop()
	waitFor(t, "offline after a clean stop", func() bool {
		s := e.site.Stats().LastStatus["front"]
		return s != nil && !s.Online
	}, e.site.Updated)
}
