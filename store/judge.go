package store

import (
	"fmt"
	"time"
)

// CardFacts are what a door's store reads beside a card when it decides
// about it, for a card judged outside any door's store: the site's view of
// a door, in an access review (JudgeCard).
type CardFacts struct {
	Holder  *Holder // the card's holder record, nil when there is none
	Revoked bool    // the card or its holder is revoked
	// Opens says the card's door list opens Request.Door: at the site, the
	// door's view holds the card (a door's store finds the door's id in
	// the narrowed list the view sent it).
	Opens bool
	// Floor is the latest signed site time the door had seen (zero: none);
	// time rules are never judged before it (see Decide).
	Floor time.Time
	// LockFails and LockedUntil are the card's bad-PIN count and lockout
	// at the door, when known.
	LockFails   uint32
	LockedUntil time.Time
	// PINsRefusedUntil is when the door's bad-PIN limit ends, when it
	// refuses PINs at Request.Now (zero: it does not, or it is not known).
	PINsRefusedUntil time.Time
}

// JudgeCard answers the card stage of Decide (Request.PIN is ignored) for
// card c as a door's store holding c and the facts f would: the same
// checks in the same order, by the same code (random_uid, unknown_card
// for a nil c, revoked, locked_out, expired / not_yet_valid, wrong_door,
// outside_schedule, lockdown, then the PIN requirement of the door's
// mode and the card's flags). Of opts it reads Location, UntrustedClock
// and ClockSkew (nil: the defaults of Open). It touches no file and runs
// no PIN hash.
func JudgeCard(c *Card, f *CardFacts, req Request, opts *Options) (Decision, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Decision{Outcome: Denied}, err
	}
	switch req.Mode {
	case ModeCardOnly, ModeCardPIN, ModeCardOrPIN:
	default:
		return Decision{Outcome: Denied}, fmt.Errorf("store: judge: %w: door mode %q, want card, card+pin or card-or-pin", ErrInvalidArgument, req.Mode)
	}
	if req.RandomUID {
		return Decision{Outcome: Denied, Reason: ReasonRandomUID, Note: "the reader reports a random UID, which is never a credential"}, nil
	}
	var v cardView
	if c != nil {
		v = cardViewOf(c, f)
	}
	d, ok, err := o.judgeCard(&req, &v, &cardReads{f: f})
	if err != nil || !ok {
		return d, err
	}
	if !f.PINsRefusedUntil.IsZero() && req.Now.Before(f.PINsRefusedUntil) {
		v.doorLocked, v.doorUntil = true, f.PINsRefusedUntil
	}
	return cardStage(&req, &v, d), nil
}

// cardViewOf is the view a door's store reads of c (see readCardView),
// made from the record types.
func cardViewOf(c *Card, f *CardFacts) cardView {
	v := cardView{found: true, revoked: f.Revoked, lock: lockoutRec{Fails: f.LockFails, Until: f.LockedUntil}}
	r := &v.rec
	r.flags = flagsByte(c.Flags)
	r.holderID, r.name = []byte(c.HolderID), []byte(c.HolderName)
	if c.PINHash != "" {
		r.flags |= recPIN
		v.hasPIN = true
	}
	if !c.ValidFrom.IsZero() {
		r.flags |= recValidFrom
		r.validFrom = c.ValidFrom
	}
	if !c.ValidUntil.IsZero() {
		r.flags |= recValidUntil
		r.validUntil = c.ValidUntil
	}
	if !scheduleEmpty(&c.Schedule) {
		r.flags |= recSchedule
		e := encoder{}
		e.schedule(&c.Schedule)
		r.schedule = e.b
	}
	if f.Holder != nil && f.Holder.Name != "" {
		v.holderName = []byte(f.Holder.Name)
	}
	return v
}
