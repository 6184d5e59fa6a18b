package mqtt_test

import (
	"context"
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// The site's key rotates while one door is offline. The door that stayed
// online follows at once; the one offline walks the retained key chain
// when it comes back, with only the old key in its configuration, and
// catches up with what the new key signed. The old key is then refused at
// both, and stays refused after a restart.
func TestKeyRotationOffline(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	if _, err := e.site.Publish(ctx, card(1, "front", "back"), card(2, "front", "back")); err != nil {
		t.Fatal(err)
	}
	front := e.newRig("front", "", nil).start()
	back := e.newRig("back", "", nil).start()
	e.waitSynced(front)
	e.waitSynced(back)
	backPath := back.path
	back.close()

	old, next := e.signer, newSigner(t, "site-2027")
	retire := time.Now().Add(500 * time.Millisecond)
	if err := e.site.RotateKey(ctx, next, retire); err != nil {
		t.Fatal(err)
	}
	if _, err := e.site.Publish(ctx, revoke(1)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(front)

	back = e.newRig("back", backPath, nil).start()
	e.waitSynced(back)
	for _, r := range []*rig{front, back} {
		if d := decide(t, r.st, r.name, 1); d.Reason != store.ReasonRevoked {
			t.Fatalf("%s: card 1 after a revocation signed by the new key: %+v", r.name, d)
		}
		waitFor(t, r.name+" trusts only the new key", func() bool {
			return slices.Equal(r.client.Stats().SiteKeys, []string{"site-2027"})
		}, r.client.Updated)
		if n, _ := countReason(t, r.st, store.ReasonKeyRotated); n == 0 {
			t.Fatalf("%s: no key_rotated event", r.name)
		}
		// A delta signed by the retired key, in sequence: refused.
		seq, _ := e.site.Head(r.name)
		b, err := old.SealFor(e.ids[r.name].Public(), mqtt.NewDelta(site, r.name, seq+1, time.Now(), []store.Op{revoke(2)}))
		if err != nil {
			t.Fatal(err)
		}
		rejected := r.client.Stats().ACLRejected
		if err := e.site.PublishRaw(ctx, mqtt.TopicsFor(site).DoorACL(r.name), b, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, r.name+" refuses the retired key", func() bool { return r.client.Stats().ACLRejected > rejected }, r.client.Updated)
		if d := decide(t, r.st, r.name, 2); d.Outcome != store.Granted {
			t.Fatalf("%s: card 2 after a delta signed by the retired key: %+v", r.name, d)
		}
	}

	// After a restart, with the old key still in the configuration.
	backPath = back.path
	back.close()
	back = e.newRig("back", backPath, nil).start()
	waitFor(t, "back restarted", func() bool {
		return slices.Equal(back.client.Stats().SiteKeys, []string{"site-2027"})
	}, back.client.Updated)
}

// A door rotates its own identity: it announces the next one in its
// status, vouched for by the approved key; nothing changes until an admin
// approves it at the site; then the site seals the door's view to the new
// identity, the door takes it (the next file replaces the old), and its
// events are attributed by the new key.
func TestDoorIdentityRotation(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	if _, err := e.site.Publish(ctx, card(1, "front")); err != nil {
		t.Fatal(err)
	}
	dir := e.idDirs["front"]
	old := e.ids["front"]
	next, err := mqtt.CreateNextIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	nextFP := next.Public().Fingerprint()
	promoted := make(chan struct{})
	r := e.newRig("front", "", func(o *mqtt.Options) {
		o.NextIdentity = next
		o.PromoteIdentity = func(n *mqtt.Identity) error {
			defer close(promoted)
			return mqtt.PromoteIdentity(dir)
		}
	}).start()
	e.waitSynced(r)
	waitFor(t, "the next identity awaiting approval", func() bool { return e.site.Stats().PendingNext["front"] == nextFP }, e.site.Updated)
	select {
	case <-promoted:
		t.Fatal("the door took its next identity before the site approved it")
	default:
	}
	if id, _ := e.site.Approved("front"); id.Fingerprint() != old.Public().Fingerprint() {
		t.Fatal("the site trusts the next identity before an admin approved it")
	}

	if err := e.site.ApproveNext("front", nextFP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-promoted:
	case <-time.After(hang):
		t.Fatal("the door never took its next identity")
	}
	e.waitSynced(r)
	waitFor(t, "the status announces the new identity", func() bool {
		st := e.site.Stats().LastStatus["front"]
		return st != nil && st.Fingerprint == nextFP && st.NextFingerprint == ""
	}, e.site.Updated)
	if id, err := mqtt.LoadIdentity(dir); err != nil || id.Public().Fingerprint() != nextFP {
		t.Fatalf("identity file after the rotation: %v", err)
	}
	if n, _ := countReason(t, r.st, store.ReasonKeyRotated); n == 0 {
		t.Fatal("no key_rotated event for the door's rotation")
	}
	// Events signed with the new key are collected.
	appendEvents(t, r.st, "front", 3)
	e.waitDelivered(r)
	checkCollected(t, e.site, "front", allEvents(t, r.st))
	if d := decide(t, r.st, "front", 1); d.Outcome != store.Granted {
		t.Fatalf("card 1 after the rotation: %+v", d)
	}
}

// A door installed after a rotation, configured with the site's current
// key only, follows the rotations after it: the links of the key chain
// signed by keys it never trusted are skipped, not fatal.
func TestKeyRotationNewDoorMidChain(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := context.Background()
	if _, err := e.site.Publish(ctx, card(1, "back")); err != nil {
		t.Fatal(err)
	}
	second := newSigner(t, "site-2027")
	if err := e.site.RotateKey(ctx, second, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	back := e.newRig("back", "", func(o *mqtt.Options) {
		o.TrustedKeys = map[string]ed25519.PublicKey{second.KeyID(): second.Public()}
	}).start()
	e.waitSynced(back)
	third := newSigner(t, "site-2028")
	if err := e.site.RotateKey(ctx, third, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.site.Publish(ctx, revoke(1)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(back)
	if d := decide(t, back.st, "back", 1); d.Reason != store.ReasonRevoked {
		t.Fatalf("card 1 after a revocation signed by the third key: %+v", d)
	}
	if ids := back.client.Stats().SiteKeys; !slices.Contains(ids, "site-2028") || slices.Contains(ids, "site-2026") {
		t.Fatalf("trusted keys %v", ids)
	}
}
