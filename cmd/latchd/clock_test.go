package main

import (
	"testing"
	"time"
)

func TestClockTrustFloor(t *testing.T) {
	floor := clockFloor()
	at := func(ts time.Time) func() time.Time { return func() time.Time { return ts } }
	if (clockTrust{floor: floor, now: at(floor.Add(-time.Second))}).trusted() {
		t.Error("a clock before the floor is trusted")
	}
	if !(clockTrust{floor: floor, now: at(floor.Add(time.Hour))}).trusted() {
		t.Error("a clock past the floor is not trusted")
	}
}

// The door never drops an event the site has not acknowledged.
func TestAuditRetentionKeepsUndelivered(t *testing.T) {
	r := auditRetention()
	if r.MaxUndelivered != 0 {
		t.Errorf("MaxUndelivered %d: undelivered events could be pruned", r.MaxUndelivered)
	}
	if r.MaxEntries < 100_000 {
		t.Errorf("MaxEntries %d: too few delivered events kept", r.MaxEntries)
	}
}
