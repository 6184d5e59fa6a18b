package mqtt

import (
	"context"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// freshStore is what freshness needs from the store.
type freshStore interface {
	// MarkSigned records the arrival (local time) of a fresh signed message
	// issued at issuedAt (site time).
	MarkSigned(localNow, issuedAt time.Time) error
}

// freshness tracks the last fresh signed message and tells the door when
// its allowlist goes stale and fresh again. A message is fresh when it was
// issued after every signed message seen before, so a replayed old message
// never makes a stale allowlist look fresh. Its issued_at is the clock
// floor, which only moves forward.
type freshness struct {
	*core
	st freshStore

	lastLocal  time.Time // door time it arrived
	lastIssued time.Time // site time it was issued: the clock floor
	dirty      bool      // not written to the store yet
	persisted  time.Time // monotonic time of the last write
	stale      bool
	behind     bool // the door's clock is behind the floor beyond ClockSkew (logged)
}

// newFreshness starts from what the store holds.
func newFreshness(c *core, st freshStore, ss store.SyncState) *freshness {
	return &freshness{core: c, st: st, lastLocal: ss.LastSignedAt, lastIssued: ss.LastIssuedAt, persisted: c.mono()}
}

// signed counts the issued_at of an authentic message for freshness and
// for the clock floor (the latest signed site time, a lower bound on the
// real time: store.Decide judges no card's time rule before it, and the
// commander no command's expiry).
//
// While the door's clock is synced, a message issued more than ClockSkew
// ahead of it counts for neither: the site's clock may be wrong, and
// taking its word would hold freshness (no later message would be newer)
// and the floor (cards and schedules would be judged at a time that has
// not come) until real time caught up. The message is otherwise handled as
// usual: an allowlist change is authentic and ordered by seq, and a
// revocation must not wait for the site to fix its clock.
//
// While the door's clock is not synced there is nothing to judge issued_at
// against, and the signed site time is the best time the door has: it
// counts as it comes.
//
// The floor never goes back, whatever the door's clock says, synced or
// not: a clock set back (a forged NTP answer, a bad real-time clock) may
// claim to be synced, and an old message replayed to it would look like
// proof that the floor lies in the future. A door whose clock is behind
// the floor judges its time rules at the floor, counts as fresh only
// messages issued after it, and logs the clock step (checkClock) until
// its clock catches up.
func (f *freshness) signed(ctx context.Context, in inbound) {
	defer f.checkClock()
	issued := in.msg.Head().IssuedAt
	if f.quality() != store.TimeSynced {
		f.seen(ctx, issued)
		return
	}
	now := f.clock.Now()
	if limit := now.Add(f.o.ClockSkew); issued.After(limit) {
		f.log.Warn("mqtt: signed message issued in the future; not counted as fresh",
			"topic", in.topic, "kid", in.kid, "issued_at", issued.UTC().Format(time.RFC3339),
			"door_time", now.UTC().Format(time.RFC3339), "skew", f.o.ClockSkew)
		f.update(func(s *Stats) { s.FutureIssued++ })
		return
	}
	f.seen(ctx, issued)
}

// checkClock logs a clock step: the door's clock found behind the clock
// floor by more than ClockSkew, once, and once more when the clock has
// caught up. A normal lag (the two clocks differ by a few seconds) is not
// one. It runs whenever the floor may have moved and at every tick, and
// logs only on a change.
func (f *freshness) checkClock() {
	now, floor := f.clock.Now(), f.lastIssued
	lag := floor.Sub(now)
	behind := !floor.IsZero() && lag > f.o.ClockSkew
	if behind == f.behind {
		return
	}
	f.behind = behind
	if behind {
		f.log.Warn("mqtt: clock step: the door's clock is behind the last signed site time; time rules are judged at the site time",
			"door_time", now.UTC().Format(time.RFC3339), "site_time", floor.UTC().Format(time.RFC3339),
			"behind", lag.Round(time.Second).String(), "clock", f.quality())
		return
	}
	f.log.Info("mqtt: the door's clock has caught up with the last signed site time",
		"door_time", now.UTC().Format(time.RFC3339), "site_time", floor.UTC().Format(time.RFC3339), "clock", f.quality())
}

// floorNow is the door's best time: its clock, or the clock floor when
// that is later. Commands expire and site keys retire by it.
func (f *freshness) floorNow() time.Time {
	if now := f.clock.Now(); !f.lastIssued.After(now) {
		return now
	}
	return f.lastIssued
}

// seen records an authentic message issued at issued.
func (f *freshness) seen(ctx context.Context, issued time.Time) {
	if !issued.After(f.lastIssued) {
		return
	}
	f.lastIssued = issued
	f.lastLocal = f.clock.Now()
	f.dirty = true
	if f.stale {
		// Written before the door hears that it is fresh again.
		f.persist(true)
		f.check(ctx)
	}
}

// persist writes the freshness to the store when due (or when forced).
func (f *freshness) persist(force bool) {
	if !f.dirty || (!force && f.mono().Sub(f.persisted) < f.o.MarkSignedInterval) {
		return
	}
	if err := f.st.MarkSigned(f.lastLocal, f.lastIssued); err != nil {
		f.storeErr("mark signed", err)
		return
	}
	f.dirty = false
	f.persisted = f.mono()
}

// check raises acl_stale once when the allowlist goes stale and tells the
// door whenever staleness changes. It runs at every tick, and checks the
// door's clock against the clock floor too (checkClock).
func (f *freshness) check(ctx context.Context) {
	f.checkClock()
	now := f.clock.Now()
	last := f.lastLocal
	stale := last.IsZero() || now.Sub(last) > f.o.StaleAfter
	if stale == f.stale {
		return
	}
	f.stale = stale
	// The door first: the policy it applies while stale is in its status
	// only once it knows.
	if err := f.door.SetStale(ctx, stale); err != nil {
		f.log.Error("mqtt: the door was not told of the allowlist's freshness", "stale", stale, "err", err)
	}
	if stale {
		since := "never"
		if !last.IsZero() {
			since = last.UTC().Format(time.RFC3339)
		}
		policy := f.door.Status().StalePolicy
		f.log.Warn("mqtt: allowlist stale", "last_signed", since, "policy", policy)
		f.event(store.ReasonACLStale, fmt.Sprintf("no fresh signed message from the site since %s (stale after %s); policy %s",
			since, f.o.StaleAfter, policy))
	} else {
		f.log.Info("mqtt: allowlist fresh again")
	}
	// Shown in Stats last, so that whoever watches ACLStale finds the
	// acl_stale event handed to the journal and the door already told.
	f.update(func(s *Stats) { s.ACLStale = stale })
	f.statusDue()
}
