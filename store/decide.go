package store

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// cardView is everything the card checks read, in one read transaction.
type cardView struct {
	found     bool
	card      Card
	holder    Holder
	revoked   bool
	lock      lockoutRec
	lockdown  bool        // stored lockdown of the door
	doorFails []time.Time // recent bad PINs at the door
	floor     time.Time   // latest signed site time (SyncState.LastIssuedAt): the clock floor
}

func (s *Store) readCardView(tx *bolt.Tx, req *Request) (cardView, error) {
	var v cardView
	var err error
	if err = s.guardGet(tx, bucketLockdown, []byte(req.Door)); err != nil {
		return v, err
	}
	if v.lockdown, err = readLockdown(tx, req.Door); err != nil {
		return v, err
	}
	if err = s.guardGet(tx, bucketDoorFails, []byte(req.Door)); err != nil {
		return v, err
	}
	if fv := tx.Bucket(bucketDoorFails).Get([]byte(req.Door)); fv != nil {
		if v.doorFails, err = decodeTimes(fv); err != nil {
			return v, fmt.Errorf("bad-PIN history of door %q: %w", req.Door, err)
		}
	}
	if err = s.guardGet(tx, bucketSync, keyLastIssued); err != nil {
		return v, err
	}
	if v.floor, err = optionalTime(tx.Bucket(bucketSync), keyLastIssued); err != nil {
		return v, err
	}
	if err = s.guardGet(tx, bucketCards, req.UID); err != nil {
		return v, err
	}
	cv := tx.Bucket(bucketCards).Get(req.UID)
	if cv == nil {
		return v, nil
	}
	if v.card, err = decideCard(req.UID, cv); err != nil {
		return v, err
	}
	v.found = true
	if err = s.guardGet(tx, bucketHolders, []byte(v.card.HolderID)); err != nil {
		return v, err
	}
	if hv := tx.Bucket(bucketHolders).Get([]byte(v.card.HolderID)); hv != nil {
		if v.holder, err = decideHolder([]byte(v.card.HolderID), hv); err != nil {
			return v, err
		}
	}
	if err = s.guardGet(tx, bucketRevokedCards, req.UID); err != nil {
		return v, err
	}
	if err = s.guardGet(tx, bucketRevokedHolders, []byte(v.card.HolderID)); err != nil {
		return v, err
	}
	v.revoked = tx.Bucket(bucketRevokedCards).Get(req.UID) != nil ||
		tx.Bucket(bucketRevokedHolders).Get([]byte(v.card.HolderID)) != nil
	if err = s.guardGet(tx, bucketLockout, req.UID); err != nil {
		return v, err
	}
	if lv := tx.Bucket(bucketLockout).Get(req.UID); lv != nil {
		if v.lock, err = decodeLockout(lv); err != nil {
			return v, fmt.Errorf("lockout of card %X: %w", req.UID, err)
		}
	}
	return v, nil
}

// Decide answers an access request. With a nil PIN it is the card stage:
// in card+PIN mode an acceptable card gets NeedPIN (reason pin_required)
// unless it has Flags.CardOnly, and a card with no PIN enrolled is Denied
// with pin_required. With a non-nil PIN it is the PIN stage for the same
// card: every card check runs again, then the PIN is checked; bad PINs
// count towards the card's and the door's lockout and a good one resets
// the card's count.
//
// Checks, in order: random_uid, unknown_card, revoked (card or holder),
// locked_out, expired / not_yet_valid, wrong_door, outside_schedule,
// lockdown (Request.Lockdown or SetLockdown, unless the card has the
// lockdown override), then the PIN (the door's bad-PIN limit gives
// locked_out; bad_pin; granted or granted_duress).
//
// Time rules (validity dates, weekly windows, holidays) are never judged
// before the clock floor, the latest signed site time the door has seen
// (SyncState.LastIssuedAt): while Request.ClockTrusted is true they are
// judged at the later of Request.Now and the floor, so a clock set back
// while it claims to be synced cannot reopen an expired card; a lag of
// more than Options.ClockSkew is named in Decision.Note. While
// Request.ClockTrusted is false, validity dates are judged against the
// floor alone, Options.UntrustedClock decides what the floor cannot
// settle, and Decision.Note says what was done. Schedules are read in
// Options.Location. PIN lockouts run on Request.Now.
//
// A card lists the doors and door groups it opens; "*" opens every door.
// Validity is ValidFrom <= now < ValidUntil (a zero time is no bound).
//
// Timing: the PIN stage always runs exactly one argon2id derivation per
// secret of the card's holder (the card's PIN hash, or a dummy hash with
// Options.PINParams when there is none, is unknown, or the request is
// refused before the PIN; plus the holder's duress hash when the holder
// has one), whatever the outcome, so the answer time does not depend on
// whether the PIN was right.
//
// In card-or-PIN mode a request with no UID and a PIN would be a keypad
// code; codes are not enrolled in this store, so it is Denied unknown_card.
//
// On error the Decision is Denied; the store never grants from a record it
// cannot read.
func (s *Store) Decide(req Request) (Decision, error) {
	pinStage := req.PIN != nil
	switch req.Mode {
	case ModeCardOnly, ModeCardPIN, ModeCardOrPIN:
	default:
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		return Decision{Outcome: Denied}, fmt.Errorf("store: decide: %w: door mode %q, want card, card+pin or card-or-pin", ErrInvalidArgument, req.Mode)
	}
	if err := checkID("door", req.Door); err != nil {
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		return Decision{Outcome: Denied}, fmt.Errorf("store: decide: %w: %w", ErrInvalidArgument, err)
	}
	if req.RandomUID {
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		return Decision{Outcome: Denied, Reason: ReasonRandomUID, Note: "the reader reports a random UID, which is never a credential"}, nil
	}
	if len(req.UID) == 0 {
		d := Decision{Outcome: Denied, Reason: ReasonUnknownCard}
		if pinStage {
			s.burn(req.PIN, nil, nil)
			if req.Mode == ModeCardOrPIN {
				d.Note = "no keypad codes are enrolled on this door"
			}
		}
		return d, nil
	}
	var v cardView
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		v, err = s.readCardView(tx, &req)
		return err
	})
	if err != nil {
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		return Decision{Outcome: Denied}, fmt.Errorf("store: decide card %X at door %q: %w", req.UID, req.Door, err)
	}
	d, ok := s.checkCard(&req, &v)
	if !pinStage {
		if !ok {
			return d, nil
		}
		return s.cardStage(&req, &v, d), nil
	}
	return s.pinStage(&req, &v, d, ok)
}

// checkCard runs every check before the PIN. ok false means d is a denial.
func (s *Store) checkCard(req *Request, v *cardView) (d Decision, ok bool) {
	d = Decision{Outcome: Denied}
	if !v.found {
		d.Reason = ReasonUnknownCard
		return d, false
	}
	c := &v.card
	d.HolderID, d.HolderName, d.ExtendedUnlock = c.HolderID, c.HolderName, c.Flags.ExtendedUnlock
	if v.holder.Name != "" {
		d.HolderName = v.holder.Name
	}
	if v.revoked {
		d.Reason = ReasonRevoked
		return d, false
	}
	if req.Now.Before(v.lock.Until) {
		d.Reason = ReasonLockedOut
		d.Note = fmt.Sprintf("%d consecutive bad PINs; locked out until %s", v.lock.Fails, v.lock.Until.UTC().Format(time.RFC3339))
		return d, false
	}
	at, lag := s.ruleTime(req, v.floor)
	var notes []string
	if hasTimeRules(c) {
		notes = addNote(notes, lag)
	}
	r, note := s.checkValidity(req, c, at, v.floor)
	if r != "" {
		d.Reason, d.Note = r, joinNotes(addNote(notes, note))
		return d, false
	}
	notes = addNote(notes, note)
	if !opensDoor(c, req) {
		d.Reason = ReasonWrongDoor
		return d, false
	}
	if r, note = s.checkSchedule(req, c, at); r != "" {
		d.Reason, d.Note = r, joinNotes(addNote(notes, note))
		return d, false
	}
	notes = addNote(notes, note)
	if (req.Lockdown || v.lockdown) && !c.Flags.LockdownOverride {
		d.Reason = ReasonLockdown
		return d, false
	}
	d.Note = joinNotes(notes)
	return d, true
}

func joinNotes(notes []string) string {
	out := ""
	for i, n := range notes {
		if i > 0 {
			out += "; "
		}
		out += n
	}
	return out
}

// addNote appends note to notes unless it is empty.
func addNote(notes []string, note string) []string {
	if note == "" {
		return notes
	}
	return append(notes, note)
}

// ruleTime is the time a trusted clock's time rules are judged at: the
// later of Request.Now and the clock floor. A normal lag of the door's
// clock behind the site's, up to Options.ClockSkew, makes no note; a
// longer one does. With an untrusted clock there is no note: the rules
// then judge validity against the floor alone and say so themselves.
func (s *Store) ruleTime(req *Request, floor time.Time) (at time.Time, note string) {
	if !floor.After(req.Now) {
		return req.Now, ""
	}
	if lag := floor.Sub(req.Now); req.ClockTrusted && lag > s.opts.ClockSkew {
		note = fmt.Sprintf("local clock behind the last signed site time by %s; judged at the site time %s",
			lag.Round(time.Second), floor.UTC().Format(time.RFC3339))
	}
	return floor, note
}

// hasTimeRules reports whether the card's access depends on the time.
func hasTimeRules(c *Card) bool {
	return !c.ValidFrom.IsZero() || !c.ValidUntil.IsZero() || !scheduleEmpty(&c.Schedule)
}

func opensDoor(c *Card, req *Request) bool {
	for _, d := range c.Doors {
		if d == "*" || d == req.Door || slices.Contains(req.DoorGroups, d) {
			return true
		}
	}
	return false
}

// checkValidity applies ValidFrom/ValidUntil: at the time at (see
// ruleTime) while the clock is trusted, against the floor alone while it
// is not. It returns a denial reason, or "" with an optional note.
func (s *Store) checkValidity(req *Request, c *Card, at, floor time.Time) (Reason, string) {
	if req.ClockTrusted {
		switch {
		case !c.ValidUntil.IsZero() && !at.Before(c.ValidUntil):
			return ReasonExpired, ""
		case !c.ValidFrom.IsZero() && at.Before(c.ValidFrom):
			return ReasonNotYetValid, ""
		}
		return "", ""
	}
	deny := s.opts.UntrustedClock == UntrustedDenyBound
	var notes []string
	if !c.ValidUntil.IsZero() {
		switch {
		case !floor.IsZero() && !floor.Before(c.ValidUntil):
			return ReasonExpired, "clock not trusted; the last signed site time shows the card has expired"
		case deny:
			return ReasonExpired, "clock not trusted: the card has an end date that cannot be checked, so it is refused"
		default:
			notes = append(notes, "clock not trusted: end date not checked")
		}
	}
	if !c.ValidFrom.IsZero() && (floor.IsZero() || floor.Before(c.ValidFrom)) {
		if deny {
			return ReasonNotYetValid, "clock not trusted: the card has a start date that cannot be checked, so it is refused"
		}
		notes = append(notes, "clock not trusted: start date not checked")
	}
	return "", joinNotes(notes)
}

func scheduleEmpty(sc *Schedule) bool {
	if len(sc.Holidays) > 0 {
		return false
	}
	for _, ws := range sc.Weekly {
		if len(ws) > 0 {
			return false
		}
	}
	return true
}

// checkSchedule applies the weekly windows and holidays at the time at
// (see ruleTime), in the door's time zone. If no weekday has a window,
// days are not restricted (only holidays are closed); otherwise a day
// without windows is closed. While the clock is not trusted they are not
// judged (the floor may be long past): Options.UntrustedClock decides.
func (s *Store) checkSchedule(req *Request, c *Card, at time.Time) (Reason, string) {
	sc := &c.Schedule
	if scheduleEmpty(sc) {
		return "", ""
	}
	if !req.ClockTrusted {
		if s.opts.UntrustedClock == UntrustedDenyBound {
			return ReasonOutsideSchedule, "clock not trusted: the card has a schedule that cannot be checked, so it is refused"
		}
		return "", "clock not trusted: schedule not checked"
	}
	t := at.In(s.opts.Location)
	if slices.Contains(sc.Holidays, t.Format(time.DateOnly)) {
		return ReasonOutsideSchedule, "holiday " + t.Format(time.DateOnly)
	}
	restricted := false
	for _, ws := range sc.Weekly {
		if len(ws) > 0 {
			restricted = true
			break
		}
	}
	if !restricted {
		return "", ""
	}
	minute := uint16(t.Hour()*60 + t.Minute())
	for _, w := range sc.Weekly[t.Weekday()] {
		if w.From <= minute && minute < w.To {
			return "", ""
		}
	}
	return ReasonOutsideSchedule, ""
}

// doorPINLocked reports whether the door refuses PINs: DoorMaxBadPINs bad
// PINs within DoorWindow before now. Entries from the future (a clock that
// went back) count as recent.
func (s *Store) doorPINLocked(fails []time.Time, now time.Time) (bool, time.Time) {
	pol := s.opts.Lockout
	n := 0
	var oldest time.Time
	for _, t := range fails {
		if now.Sub(t) < pol.DoorWindow {
			if n == 0 || t.Before(oldest) {
				oldest = t
			}
			n++
		}
	}
	return n >= pol.DoorMaxBadPINs, oldest.Add(pol.DoorWindow)
}

func (s *Store) cardStage(req *Request, v *cardView, d Decision) Decision {
	if req.Mode != ModeCardPIN || v.card.Flags.CardOnly {
		d.Outcome, d.Reason = Granted, ReasonGranted
		return d
	}
	if v.card.PINHash == "" {
		d.Outcome, d.Reason = Denied, ReasonPINRequired
		d.Note = joinNotes(append(noteList(d.Note), "no PIN is enrolled for this card"))
		return d
	}
	if locked, until := s.doorPINLocked(v.doorFails, req.Now); locked {
		d.Outcome, d.Reason = Denied, ReasonLockedOut
		d.Note = fmt.Sprintf("too many bad PINs at this door; PINs refused until %s", until.UTC().Format(time.RFC3339))
		return d
	}
	d.Outcome, d.Reason = NeedPIN, ReasonPINRequired
	return d
}

func noteList(n string) []string {
	if n == "" {
		return nil
	}
	return []string{n}
}

// burn runs the argon2id derivations of a PIN check: against primary (or
// the dummy hash) and against duress if set. It returns whether each
// matched. The number of derivations depends only on which hashes exist,
// never on the PIN.
func (s *Store) burn(pin []byte, primary, duress *phc) (okPrimary, okDuress bool) {
	h := &s.dummy
	if primary != nil {
		h = primary
	}
	s.argonRuns.Add(1)
	okPrimary = h.matches(pin) && primary != nil
	if duress != nil {
		s.argonRuns.Add(1)
		okDuress = duress.matches(pin)
	}
	return okPrimary, okDuress
}

func (s *Store) pinStage(req *Request, v *cardView, d Decision, ok bool) (Decision, error) {
	var primary, duress *phc
	if v.found && v.card.PINHash != "" {
		h, err := parsePHC(v.card.PINHash)
		if err != nil { // decodeCard checked it; this is damage
			s.burn(req.PIN, nil, nil)
			return Decision{Outcome: Denied}, fmt.Errorf("store: decide card %X: %w: pin hash: %w", req.UID, ErrCorrupt, err)
		}
		primary = &h
	}
	if v.found && v.holder.DuressPINHash != "" {
		h, err := parsePHC(v.holder.DuressPINHash)
		if err != nil {
			s.burn(req.PIN, primary, nil)
			return Decision{Outcome: Denied}, fmt.Errorf("store: decide card %X: %w: duress pin hash: %w", req.UID, ErrCorrupt, err)
		}
		duress = &h
	}
	okPIN, okDuress := s.burn(req.PIN, primary, duress)
	if !ok {
		return d, nil
	}
	if locked, until := s.doorPINLocked(v.doorFails, req.Now); locked {
		d.Outcome, d.Reason = Denied, ReasonLockedOut
		d.Note = fmt.Sprintf("too many bad PINs at this door; PINs refused until %s", until.UTC().Format(time.RFC3339))
		return d, nil
	}
	if checkPINFormat(req.PIN) != nil {
		okPIN, okDuress = false, false
	}
	switch {
	case okDuress:
		d.Outcome, d.Reason = Granted, ReasonGrantedDuress
	case okPIN:
		d.Outcome, d.Reason = Granted, ReasonGranted
	case primary == nil && v.card.Flags.CardOnly:
		d.Outcome, d.Reason = Granted, ReasonGranted
		return d, nil
	case primary == nil:
		d.Outcome, d.Reason = Denied, ReasonPINRequired
		d.Note = joinNotes(append(noteList(d.Note), "no PIN is enrolled for this card"))
		return d, nil
	}
	if d.Outcome == Granted {
		if v.lock.Fails > 0 {
			if err := s.update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketLockout).Delete(req.UID)
			}); err != nil {
				// The PIN was right but the file cannot be written: a
				// storage fault, and faults fail secure.
				return Decision{Outcome: Denied}, fmt.Errorf("store: decide card %X: reset bad-PIN count: %w", req.UID, err)
			}
		}
		return d, nil
	}
	return s.recordBadPIN(req, d)
}

// backoff is the lockout after the n-th bad PIN past the limit (n >= 0).
func (s *Store) backoff(n uint32) time.Duration {
	pol := s.opts.Lockout
	d := pol.Backoff
	for i := uint32(0); i < n && d < pol.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, pol.MaxBackoff)
}

// recordBadPIN counts a bad PIN against the card and the door.
func (s *Store) recordBadPIN(req *Request, d Decision) (Decision, error) {
	pol := s.opts.Lockout
	var rec lockoutRec
	var doorLocked bool
	var doorUntil time.Time
	err := s.update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLockout)
		rec = lockoutRec{}
		if v := lb.Get(req.UID); v != nil {
			var err error
			if rec, err = decodeLockout(v); err != nil {
				return fmt.Errorf("lockout of card %X: %w", req.UID, err)
			}
		}
		rec.Fails++
		if rec.Fails >= uint32(pol.MaxBadPINs) {
			rec.Until = req.Now.Add(s.backoff(rec.Fails - uint32(pol.MaxBadPINs)))
		}
		if err := lb.Put(req.UID, encodeLockout(rec)); err != nil {
			return err
		}
		db := tx.Bucket(bucketDoorFails)
		var fails []time.Time
		if v := db.Get([]byte(req.Door)); v != nil {
			var err error
			if fails, err = decodeTimes(v); err != nil {
				return fmt.Errorf("bad-PIN history of door %q: %w", req.Door, err)
			}
		}
		fails = append(fails, req.Now)
		if len(fails) > pol.DoorMaxBadPINs {
			fails = fails[len(fails)-pol.DoorMaxBadPINs:]
		}
		doorLocked, doorUntil = s.doorPINLocked(fails, req.Now)
		return db.Put([]byte(req.Door), encodeTimes(fails))
	})
	d.Outcome, d.Reason = Denied, ReasonBadPIN
	if err != nil {
		return d, fmt.Errorf("store: decide card %X: record bad PIN: %w", req.UID, err)
	}
	var notes []string
	if !rec.Until.IsZero() && req.Now.Before(rec.Until) {
		d.Reason = ReasonLockedOut
		notes = append(notes, fmt.Sprintf("%d consecutive bad PINs; card locked out for %s, until %s",
			rec.Fails, rec.Until.Sub(req.Now), rec.Until.UTC().Format(time.RFC3339)))
	}
	if doorLocked {
		notes = append(notes, fmt.Sprintf("too many bad PINs at this door; PINs refused until %s", doorUntil.UTC().Format(time.RFC3339)))
	}
	d.Note = joinNotes(notes)
	return d, nil
}

// PINChecks returns how many argon2id derivations Decide has run since
// Open (a measure of PIN-check load, and of the constant-work rule).
func (s *Store) PINChecks() uint64 { return s.argonRuns.Load() }
