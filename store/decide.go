package store

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// cardView is everything the checks read, in one read transaction. rec
// and holderName alias the database's memory and are used only inside
// that transaction; what the PIN stage needs afterwards is copied.
type cardView struct {
	found      bool
	rec        cardRec
	holderName []byte // the holder record's name, nil without one
	revoked    bool
	lock       lockoutRec
	lockdown   bool      // stored lockdown of the door (read only when it matters)
	doorLocked bool      // the door refuses PINs (too many bad PINs recently)
	doorUntil  time.Time // ... until then

	// Copies for the PIN stage.
	hasPIN, hasDuress bool
	primary, duress   pinCopy
}

// pinCopy holds a PIN hash copied out of a record.
type pinCopy struct {
	params PINParams
	salt   [maxSaltLen]byte
	key    [maxKeyLen]byte
}

func (p *pinCopy) set(h *phc) {
	p.params = h.params
	copy(p.salt[:], h.salt)
	copy(p.key[:], h.key)
}

func (p *pinCopy) phc() phc {
	return phc{params: p.params, salt: p.salt[:p.params.SaltLen], key: p.key[:p.params.KeyLen]}
}

// readCardView reads the card, its holder, revocations and lockout. What
// only some requests need (the clock floor, the door's lockdown and bad-PIN
// history) checkCard and readDoorFails read when they get there: each
// bucket a decision opens costs bbolt allocations and, with a cold page
// cache, a read of the disk.
func (s *Store) readCardView(tx *bolt.Tx, req *Request) (cardView, error) {
	var v cardView
	var err error
	if err = s.guardGet(tx, bucketCards, req.UID); err != nil {
		return v, err
	}
	cv := tx.Bucket(bucketCards).Get(req.UID)
	if cv == nil {
		return v, nil
	}
	if v.rec, err = parseCardRec(req.UID, cv); err != nil {
		return v, err
	}
	v.found = true
	if v.rec.flags&recPIN != 0 {
		v.hasPIN = true
		v.primary.set(&v.rec.pin)
	}
	if err = s.guardGet(tx, bucketHolders, v.rec.holderID); err != nil {
		return v, err
	}
	if hv := tx.Bucket(bucketHolders).Get(v.rec.holderID); hv != nil {
		h, err := parseHolderRec(v.rec.holderID, hv)
		if err != nil {
			return v, err
		}
		v.holderName = h.name
		if h.hasDuress {
			v.hasDuress = true
			v.duress.set(&h.duress)
		}
	}
	if v.rec.flags&recHolderName != 0 && len(v.holderName) == 0 {
		return v, fmt.Errorf("card %X: %w: its holder name is its holder's, and holder %s has none", req.UID, ErrCorrupt, keyText(v.rec.holderID))
	}
	if err = s.guardGet(tx, bucketRevokedCards, req.UID); err != nil {
		return v, err
	}
	if err = s.guardGet(tx, bucketRevokedHolders, v.rec.holderID); err != nil {
		return v, err
	}
	v.revoked = tx.Bucket(bucketRevokedCards).Get(req.UID) != nil ||
		tx.Bucket(bucketRevokedHolders).Get(v.rec.holderID) != nil
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

// readDoorFails reads whether the door refuses PINs, for a request that
// gets to the PIN.
func (s *Store) readDoorFails(tx *bolt.Tx, req *Request, v *cardView) error {
	door := []byte(req.Door)
	if err := s.guardGet(tx, bucketDoorFails, door); err != nil {
		return err
	}
	fv := tx.Bucket(bucketDoorFails).Get(door)
	if fv == nil {
		return nil
	}
	var err error
	if v.doorLocked, v.doorUntil, err = s.doorPINLockedRec(fv, req.Now); err != nil {
		return fmt.Errorf("bad-PIN history of door %q: %w", req.Door, err)
	}
	return nil
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
// In card-or-PIN mode a request with no UID and a PIN is a keypad code
// (see CodeKey): it is looked up by its key and judged as a card, with no
// PIN stage; in other modes it is Denied unknown_card.
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
	if len(req.UID) == 0 && pinStage && req.Mode == ModeCardOrPIN {
		return s.decideCode(req)
	}
	if len(req.UID) == 0 || IsCodeKey(req.UID) {
		d := Decision{Outcome: Denied, Reason: ReasonUnknownCard}
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		switch {
		case len(req.UID) > 0:
			d.Note = fmt.Sprintf("a UID of %d bytes is a keypad code's key, never a card", CodeKeyLen)
		case pinStage:
			d.Note = "keypad codes are typed without a card only in card-or-pin mode"
		}
		return d, nil
	}
	var v cardView
	var d Decision
	var ok bool
	gen := s.names.gen.Load() // before the transaction: see nameCache
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if v, err = s.readCardView(tx, &req); err != nil {
			return err
		}
		if d, ok, err = s.checkCard(tx, &req, &v, gen); err != nil || !ok {
			return err
		}
		if pinStage || (req.Mode == ModeCardPIN && v.rec.flags&flagCardOnly == 0 && v.hasPIN) {
			return s.readDoorFails(tx, &req, &v)
		}
		return nil
	})
	if err != nil {
		if pinStage {
			s.burn(req.PIN, nil, nil)
		}
		return Decision{Outcome: Denied}, fmt.Errorf("store: decide card %X at door %q: %w", req.UID, req.Door, err)
	}
	if !pinStage {
		if !ok {
			return d, nil
		}
		return cardStage(&req, &v, d), nil
	}
	return s.pinStage(&req, &v, d, ok)
}

// checkCard runs every check before the PIN, inside the transaction tx
// that read v. ok false means d is a denial. A card that passes them is
// marked FirstCard when its door list names Request.FirstCardGroup.
func (s *Store) checkCard(tx *bolt.Tx, req *Request, v *cardView, gen uint64) (d Decision, ok bool, err error) {
	d, ok, err = s.opts.judgeCard(req, v, &cardReads{s: s, tx: tx, gen: gen})
	if err != nil || !ok || req.FirstCardGroup == "" {
		return d, ok, err
	}
	d.FirstCard, err = s.listsName(tx, &v.rec, req.FirstCardGroup, gen)
	return d, ok, err
}

// listsName reports whether the card's door list names name itself ("*"
// does not count).
func (s *Store) listsName(tx *bolt.Tx, c *cardRec, name string, gen uint64) (bool, error) {
	id, known, err := s.names.lookup(tx, name, gen, s.guardGet)
	if err != nil || !known {
		return false, err
	}
	listed := false
	c.eachDoor(func(d uint64) bool {
		listed = d == id
		return !listed
	})
	return listed, nil
}

// cardReads are what the checks before the PIN read besides the card,
// each only when a check gets to it: from a door's store (s, in tx), where
// each is a bucket a decision opens only when it matters, or from the
// facts given to JudgeCard (f).
type cardReads struct {
	s   *Store
	tx  *bolt.Tx
	gen uint64
	f   *CardFacts
}

// floor returns the clock floor (SyncState.LastIssuedAt).
func (r *cardReads) floor() (time.Time, error) {
	if r.f != nil {
		return r.f.Floor, nil
	}
	if err := r.s.guardGet(r.tx, bucketSync, keyLastIssued); err != nil {
		return time.Time{}, err
	}
	return optionalTime(r.tx.Bucket(bucketSync), keyLastIssued)
}

// opens reports whether the card opens the door.
func (r *cardReads) opens(c *cardRec, req *Request) (bool, error) {
	if r.f != nil {
		return r.f.Opens, nil
	}
	return r.s.opensDoor(r.tx, c, req, r.gen)
}

// lockdown reports the door's stored lockdown.
func (r *cardReads) lockdown(door string) (bool, error) {
	if r.f != nil {
		return false, nil
	}
	if err := r.s.guardGet(r.tx, bucketLockdown, []byte(door)); err != nil {
		return false, err
	}
	return readLockdown(r.tx, door)
}

// judgeCard runs every check before the PIN on the card in v: the rules
// of Decide, whoever holds the card (a door's store, or JudgeCard). ok
// false means d is a denial.
func (o *Options) judgeCard(req *Request, v *cardView, r *cardReads) (d Decision, ok bool, err error) {
	d = Decision{Outcome: Denied}
	if !v.found {
		d.Reason = ReasonUnknownCard
		return d, false, nil
	}
	c := &v.rec
	d.HolderID, d.ExtendedUnlock = string(c.holderID), c.flags&flagExtended != 0
	if len(v.holderName) > 0 {
		d.HolderName = string(v.holderName)
	} else {
		d.HolderName = string(c.name)
	}
	if v.revoked {
		d.Reason = ReasonRevoked
		return d, false, nil
	}
	if req.Now.Before(v.lock.Until) {
		d.Reason = ReasonLockedOut
		d.Note = fmt.Sprintf("%d consecutive bad PINs; locked out until %s", v.lock.Fails, v.lock.Until.UTC().Format(time.RFC3339))
		return d, false, nil
	}
	var notes []string
	at, floor := req.Now, time.Time{}
	if hasTimeRules(c) {
		if floor, err = r.floor(); err != nil {
			return d, false, err
		}
		var lag string
		at, lag = o.ruleTime(req, floor)
		notes = addNote(notes, lag)
	}
	reason, note := o.checkValidity(req, c, at, floor)
	if reason != "" {
		d.Reason, d.Note = reason, joinNotes(addNote(notes, note))
		return d, false, nil
	}
	notes = addNote(notes, note)
	if open, err := r.opens(c, req); err != nil || !open {
		if err != nil {
			return d, false, err
		}
		d.Reason = ReasonWrongDoor
		return d, false, nil
	}
	if reason, note = o.checkSchedule(req, c, at); reason != "" {
		d.Reason, d.Note = reason, joinNotes(addNote(notes, note))
		return d, false, nil
	}
	notes = addNote(notes, note)
	if !req.Lockdown && c.flags&flagOverride == 0 {
		if v.lockdown, err = r.lockdown(req.Door); err != nil {
			return d, false, err
		}
	}
	if (req.Lockdown || v.lockdown) && c.flags&flagOverride == 0 {
		d.Reason = ReasonLockdown
		return d, false, nil
	}
	d.Note = joinNotes(notes)
	return d, true, nil
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
func (o *Options) ruleTime(req *Request, floor time.Time) (at time.Time, note string) {
	if !floor.After(req.Now) {
		return req.Now, ""
	}
	if lag := floor.Sub(req.Now); req.ClockTrusted && lag > o.ClockSkew {
		note = fmt.Sprintf("local clock behind the last signed site time by %s; judged at the site time %s",
			lag.Round(time.Second), floor.UTC().Format(time.RFC3339))
	}
	return floor, note
}

// hasTimeRules reports whether the card's access depends on the time.
func hasTimeRules(c *cardRec) bool {
	return c.flags&(recValidFrom|recValidUntil|recSchedule) != 0
}

// opensDoor reports whether the card lists "*", the door's id or one of
// its groups: by their numbers in the names bucket (see nameCache).
func (s *Store) opensDoor(tx *bolt.Tx, c *cardRec, req *Request, gen uint64) (bool, error) {
	var buf [8]uint64
	want := append(buf[:0], wildcardID)
	for i := -1; i < len(req.DoorGroups); i++ {
		name := req.Door
		if i >= 0 {
			name = req.DoorGroups[i]
		}
		id, ok, err := s.names.lookup(tx, name, gen, s.guardGet)
		if err != nil {
			return false, err
		}
		if ok {
			want = append(want, id)
		}
	}
	open := false
	c.eachDoor(func(id uint64) bool {
		open = slices.Contains(want, id)
		return !open
	})
	return open, nil
}

// checkValidity applies ValidFrom/ValidUntil: at the time at (see
// ruleTime) while the clock is trusted, against the floor alone while it
// is not. It returns a denial reason, or "" with an optional note.
func (o *Options) checkValidity(req *Request, c *cardRec, at, floor time.Time) (Reason, string) {
	if req.ClockTrusted {
		switch {
		case !c.validUntil.IsZero() && !at.Before(c.validUntil):
			return ReasonExpired, ""
		case !c.validFrom.IsZero() && at.Before(c.validFrom):
			return ReasonNotYetValid, ""
		}
		return "", ""
	}
	deny := o.UntrustedClock == UntrustedDenyBound
	var notes []string
	if !c.validUntil.IsZero() {
		switch {
		case !floor.IsZero() && !floor.Before(c.validUntil):
			return ReasonExpired, "clock not trusted; the last signed site time shows the card has expired"
		case deny:
			return ReasonExpired, "clock not trusted: the card has an end date that cannot be checked, so it is refused"
		default:
			notes = append(notes, "clock not trusted: end date not checked")
		}
	}
	if !c.validFrom.IsZero() && (floor.IsZero() || floor.Before(c.validFrom)) {
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
func (o *Options) checkSchedule(req *Request, c *cardRec, at time.Time) (Reason, string) {
	if c.schedule == nil {
		return "", ""
	}
	if !req.ClockTrusted {
		if o.UntrustedClock == UntrustedDenyBound {
			return ReasonOutsideSchedule, "clock not trusted: the card has a schedule that cannot be checked, so it is refused"
		}
		return "", "clock not trusted: schedule not checked"
	}
	t := at.In(o.Location)
	var date [len(time.DateOnly)]byte
	t.AppendFormat(date[:0], time.DateOnly)
	minute := uint64(t.Hour()*60 + t.Minute())
	// The stored schedule: per weekday from Sunday, a count and windows;
	// then the holidays (see encodeCard).
	d := decoder{b: c.schedule}
	restricted, open := false, false
	for day := range 7 {
		n := d.uvarint(maxWindows)
		restricted = restricted || n > 0
		for range n {
			from, to := d.uvarint(minutesPerDay), d.uvarint(minutesPerDay)
			if day == int(t.Weekday()) && from <= minute && minute < to {
				open = true
			}
		}
	}
	n := d.uvarint(maxHolidays)
	for range n {
		if string(d.strBytesU(len(time.DateOnly))) == string(date[:]) {
			return ReasonOutsideSchedule, "holiday " + string(date[:])
		}
	}
	if !restricted || open {
		return "", ""
	}
	return ReasonOutsideSchedule, ""
}

// doorPINLockedRec is doorPINLocked over a stored door_fails record,
// read in place.
func (s *Store) doorPINLockedRec(rec []byte, now time.Time) (bool, time.Time, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return false, time.Time{}, err
	}
	d := decoder{b: body}
	n := int(d.u16())
	if n > maxDoorFails {
		d.fail("%d times, limit %d", n, maxDoorFails)
	}
	pol := s.opts.Lockout
	count := 0
	var oldest time.Time
	for i := 0; i < n && d.err == nil; i++ {
		t := d.time()
		if now.Sub(t) < pol.DoorWindow {
			if count == 0 || t.Before(oldest) {
				oldest = t
			}
			count++
		}
	}
	if err := d.end(); err != nil {
		return false, time.Time{}, corrupt("door bad-PIN history", err)
	}
	return count >= pol.DoorMaxBadPINs, oldest.Add(pol.DoorWindow), nil
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

func cardStage(req *Request, v *cardView, d Decision) Decision {
	if req.Mode != ModeCardPIN || v.rec.flags&flagCardOnly != 0 {
		d.Outcome, d.Reason = Granted, ReasonGranted
		return d
	}
	if !v.hasPIN {
		d.Outcome, d.Reason = Denied, ReasonPINRequired
		d.Note = joinNotes(append(noteList(d.Note), "no PIN is enrolled for this card"))
		return d
	}
	if v.doorLocked {
		d.Outcome, d.Reason = Denied, ReasonLockedOut
		d.Note = doorLockNote(v.doorUntil)
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
	if v.found && v.hasPIN {
		h := v.primary.phc()
		primary = &h
	}
	if v.found && v.hasDuress {
		h := v.duress.phc()
		duress = &h
	}
	okPIN, okDuress := s.burn(req.PIN, primary, duress)
	if !ok {
		return d, nil
	}
	if v.doorLocked {
		d.Outcome, d.Reason = Denied, ReasonLockedOut
		d.Note = doorLockNote(v.doorUntil)
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
	case primary == nil && v.rec.flags&flagCardOnly != 0:
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
		var err error
		doorLocked, doorUntil, err = s.addDoorFail(tx, req)
		return err
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
		notes = append(notes, doorLockNote(doorUntil))
	}
	d.Note = joinNotes(notes)
	return d, nil
}

// doorLockNote is the decision's note while the door refuses PINs, until
// until.
func doorLockNote(until time.Time) string {
	return "too many bad PINs at this door; PINs refused until " + until.UTC().Format(time.RFC3339)
}

// addDoorFail adds a bad PIN at req.Now to the door's history and says
// whether the door now refuses PINs, and until when.
func (s *Store) addDoorFail(tx *bolt.Tx, req *Request) (locked bool, until time.Time, err error) {
	db := tx.Bucket(bucketDoorFails)
	var fails []time.Time
	if v := db.Get([]byte(req.Door)); v != nil {
		if fails, err = decodeTimes(v); err != nil {
			return false, time.Time{}, fmt.Errorf("bad-PIN history of door %q: %w", req.Door, err)
		}
	}
	fails = append(fails, req.Now)
	if n := s.opts.Lockout.DoorMaxBadPINs; len(fails) > n {
		fails = fails[len(fails)-n:]
	}
	locked, until = s.doorPINLocked(fails, req.Now)
	return locked, until, db.Put([]byte(req.Door), encodeTimes(fails))
}

// PINChecks returns how many argon2id derivations Decide has run since
// Open (a measure of PIN-check load, and of the constant-work rule).
func (s *Store) PINChecks() uint64 { return s.argonRuns.Load() }
