package mqtt

import (
	"context"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// maxSeen bounds the in-memory cache of honoured command ids; the store
// remembers them too, so the cache only saves disk writes on a flood.
const maxSeen = 4096

// cmdStore is what the commander needs from the store.
type cmdStore interface {
	// RecordCommand remembers a command id until it expires; fresh is false
	// for a replay or an expired command.
	RecordCommand(id string, seq uint64, expires, now time.Time) (fresh bool, err error)
}

// commander checks the signed commands addressed to the door, remembers
// them so that each is honoured at most once, and carries them out.
type commander struct {
	*core
	st cmdStore
	// floor is the door's best time (freshness.floorNow).
	floor func() time.Time
	// resync asks the site for a snapshot (syncer.resync).
	resync func()

	seen   map[string]time.Time // command ids honoured, until expiry
	seqMax uint64               // highest command seq recorded (store.SyncState.CommandSeqMax)
}

func newCommander(c *core, st cmdStore, floor func() time.Time, resync func(), seqMax uint64) *commander {
	return &commander{core: c, st: st, floor: floor, resync: resync, seen: make(map[string]time.Time), seqMax: seqMax}
}

// handle checks a verified command against this door and its clock,
// records it so it is honoured at most once, and carries it out.
//
// A command's expiry is judged at the later of the door's clock and the
// site's own time: the latest signed issued_at the door has seen (the
// clock floor), which only moves forward, survives restarts and is never
// brought back by the door's clock, synced or not. So a command is
// refused once expired by either; the floor catches an old command whose
// id the door has forgotten (ids are kept only until they expire) when the
// door's clock has gone back, or stands behind the site's.
//
// The id and the expiry are the replay defence: the seq, the site's
// command counter, cannot be one on its own. The counter is the site's,
// shared by all its doors, so the seqs one door sees have gaps that say
// nothing about time; and commands may arrive out of order (a site
// publishing again after a reconnect, or from several connections), so a
// rule that every seq must exceed the last would refuse valid commands.
//
// The seq does decide one thing: lockdown on and off set the same state,
// and an off that arrives after a later command must not undo it, as that
// later command may have been a lockdown on. A lockdown off whose seq is
// below the highest the door has recorded is refused as superseded; the
// door stays in lockdown, which is safe, and the site can send a new off.
// The store keeps only the highest seq of any command, so an off is also
// refused after a later unlock or resync. Lockdown on is never refused for
// its order.
//
// A command issued more than ClockSkew ahead of the door's own clock is
// refused as not yet valid, but for lockdown on: the door's clock being
// behind the site's must not stop a lockdown, and lockdown on can only make
// the door more secure. Such a command is still honoured at most once (its
// id is kept until its expiry has passed by the door's clock or the floor)
// and never after it expired by either. Only the door's own clock counts
// for "not yet valid": judged by the floor, a door that has heard nothing
// newer for a while (a Pi still at 1970, a broker holding messages back)
// would take a command withheld since the floor's time as new.
func (c *commander) handle(ctx context.Context, in inbound, m *Command) {
	now := c.clock.Now()
	at := c.floor() // now, or the clock floor when that is later
	var err error
	switch {
	case in.retained:
		err = fmt.Errorf("%w: commands are never retained", ErrRetained)
	case m.Door != c.o.Door:
		err = fmt.Errorf("%w: for %q", ErrWrongDoor, m.Door)
	case !m.failSafe() && now.Add(c.o.ClockSkew).Before(m.IssuedAt):
		err = fmt.Errorf("%w: issued at %s, door time %s", ErrExpired, m.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !at.Before(m.ExpiresAt) && at.Equal(now):
		err = fmt.Errorf("%w: expired at %s, door time %s", ErrExpired, m.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !at.Before(m.ExpiresAt):
		err = fmt.Errorf("%w: expired at %s, before the site time %s of a signed message already seen (door time %s)", ErrExpired,
			m.ExpiresAt.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case m.Action == ActionUnlock && m.Duration() > c.o.MaxUnlock:
		err = fmt.Errorf("%w: unlock for %s, this door allows at most %s", ErrMalformed, m.Duration(), c.o.MaxUnlock)
	case m.liftsLockdown() && m.Seq < c.seqMax:
		err = fmt.Errorf("%w: lockdown off at seq %d, command seq %d already recorded", ErrSuperseded, m.Seq, c.seqMax)
	}
	if err == nil {
		if exp, ok := c.seen[m.ID]; ok && at.Before(exp) {
			err = fmt.Errorf("%w: command %s", ErrReplay, m.ID)
		}
	}
	if err != nil {
		c.reject(in, fmt.Errorf("command %s (seq %d): %w", m.ID, m.Seq, err))
		return
	}
	fresh, serr := c.st.RecordCommand(m.ID, m.Seq, m.ExpiresAt, at)
	if serr != nil {
		c.storeErr("record command", serr)
		return
	}
	if !fresh {
		c.reject(in, fmt.Errorf("command %s (seq %d): %w", m.ID, m.Seq, ErrReplay))
		return
	}
	c.remember(m.ID, m.ExpiresAt, at)
	c.seqMax = max(c.seqMax, m.Seq)

	by := fmt.Sprintf("command %s seq %d key %s", m.ID, m.Seq, in.kid)
	var what string
	switch m.Action {
	case ActionUnlock:
		what = fmt.Sprintf("unlock %s", m.Duration())
		c.update(func(s *Stats) { s.Unlocks++ })
		err = c.door.Unlock(ctx, m.Duration(), by)
	case ActionLockdown:
		what = fmt.Sprintf("lockdown %s", onOff(*m.On))
		err = c.door.SetLockdown(ctx, *m.On, by)
	case ActionResync:
		what = "resync"
		c.resync()
	}
	if err != nil {
		c.log.Error("mqtt: door refused a command", "cmd", what, "by", by, "err", err)
		c.event(store.ReasonCommandRejected, fmt.Sprintf("%s by %s: door: %v", what, by, err))
		c.update(func(s *Stats) { s.CommandsRejected++ })
		return
	}
	c.log.Debug("mqtt: command applied", "cmd", what, "by", by) // the audit event says it
	// The audit event is handed to the journal before the count moves; it
	// is in the log once the journal has written what it holds.
	c.event(store.ReasonCommandApplied, fmt.Sprintf("%s by %s", what, by))
	c.update(func(s *Stats) { s.CommandsApplied++ })
	c.statusDue()
}

// failSafe reports whether the command can only make the door more
// secure: lockdown on.
func (m *Command) failSafe() bool {
	return m.Action == ActionLockdown && m.On != nil && *m.On
}

// liftsLockdown reports whether the command is lockdown off.
func (m *Command) liftsLockdown() bool {
	return m.Action == ActionLockdown && m.On != nil && !*m.On
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// remember caches an honoured command id until it expires.
func (c *commander) remember(id string, exp, now time.Time) {
	if len(c.seen) >= maxSeen {
		for k, e := range c.seen {
			if !now.Before(e) {
				delete(c.seen, k)
			}
		}
	}
	if len(c.seen) < maxSeen {
		c.seen[id] = exp
	}
}
