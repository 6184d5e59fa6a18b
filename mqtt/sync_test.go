package mqtt_test

import (
	"context"
	"testing"

	"github.com/latchdoor/latch/mqtt/brokertest"
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

var _ = brokertest.Config{}
