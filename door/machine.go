package door

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
)

// This file is the door's state machine: next is a pure function from a
// state, an event and the time to a new state and the actions the loop must
// carry out. It never touches a pin, the store or a channel; decisions from
// the allowlist are requested with actDecide and come back as evDecided.

// maxPINDigits is the longest PIN or code the keypad collects; further
// digits are ignored (they still beep, like every key).
const maxPINDigits = 12

// decideTimeout bounds the wait for the allowlist's answer; after it the
// question counts as failed (ReasonDecisionError) and the reader is free
// again.
const decideTimeout = 30 * time.Second

// ReasonDecisionError is logged, as a denial, when the allowlist could not
// answer: a storage error, or no answer within 30 s. The door stays locked.
const ReasonDecisionError store.Reason = "decision_error"

// recordTimeout bounds the wait for the journal to make a grant's record
// durable; after it the grant counts as not recorded.
const recordTimeout = 10 * time.Second

// params is the immutable part of the machine: the door's configuration.
type params struct {
	door      string
	groups    []string
	mode      store.Mode
	unlock    time.Duration // grant and exit-button window
	extended  time.Duration // grant window for cards with ExtendedUnlock
	held      time.Duration // door open this long without a hold-open window: door_held
	preAlarm  time.Duration // beep this long before door_held
	pinFirst  time.Duration // wait for the first PIN digit
	interKey  time.Duration // wait between PIN digits
	maxRemote time.Duration // longest signed unlock
	// stalePolicy is what decisions do while the allowlist is stale.
	stalePolicy StalePolicy
	schedule    *unlockSchedule
	// firstCard, if set, makes the unlock schedule first-card: a window
	// holds the door unlocked only once a granted card whose door list
	// names this group has opened it.
	firstCard string
	// openUnrecorded opens for a grant whose record could not be made
	// durable (availability) instead of refusing it with journal_fault.
	openUnrecorded bool
}

// grantWindow is the unlock window after a granted credential.
type grantWindow struct {
	until      time.Time // zero: no grant
	opened     bool      // the door opened during the window
	uid        []byte
	holder     string
	holderName string
}

// decision is the allowlist question in flight (at most one).
type decision struct {
	active     bool
	id         uint64
	uid        []byte
	random     bool
	pin        []byte // nil: card stage; non-nil (maybe empty): PIN stage
	lockdown   bool   // the lockdown flag the question was asked with
	deadline   time.Time
	holder     string
	holderName string

	// staleNote is the note a decision asked under a stale allowlist
	// carries into its event.
	staleNote string

	// firstCard: the allowlist said the card counts for a first-card
	// unlock schedule.
	firstCard bool

	// A granted question waits for its record to be durable (recording)
	// before the door opens until until.
	recording bool
	grantEv   store.Event
	until     time.Time
}

// pinEntry collects digits after a card that needs its PIN, or a code alone
// on a card-or-PIN door (uid nil).
type pinEntry struct {
	active     bool
	uid        []byte
	random     bool
	digits     []byte
	deadline   time.Time
	holder     string
	holderName string
}

// state is everything the door knows. It is a value: next works on a copy
// and never writes into a slice it did not allocate.
type state struct {
	p *params

	trusted     bool // the clock is trusted
	lockdown    bool
	readerFault bool
	tamper      bool

	journalFault  bool   // the journal cannot write
	journalDetail string // the journal's state, as it says it ("ok" while it writes)

	stale       bool        // the allowlist is stale: no fresh word from the site
	stalePolicy StalePolicy // what decisions do meanwhile

	contactKnown bool
	open         bool

	grant       grantWindow
	rexUntil    time.Time
	rexOpened   bool
	remoteUntil time.Time

	schedOpen    bool      // the unlock schedule's window is open at schedChecked
	schedCheck   time.Time // when to evaluate the schedule again
	schedChecked time.Time // when it was last evaluated
	// schedStarted: a first-card schedule's window was opened by a card
	// that counts; it ends with the window or a lockdown.
	schedStarted bool
	// floor is the latest signed site time, a lower bound on the real
	// time: the unlock schedule is judged at the later of it and the
	// clock, so a clock set back cannot reopen a window.
	floor time.Time

	relay         bool // the relay is releasing the door
	recorded      bool // an unlock record is in the StateStore
	recordedUntil time.Time

	forced       bool
	held         bool
	heldAt       time.Time // door_held fires at this time; zero: not timing
	preAlarmDone bool

	card    []byte // UID in the reader's field, nil when none
	pending decision
	nextID  uint64
	pin     pinEntry

	offline   bool      // the link to the site is down (SiteLink)
	note      note      // a message the display shows for a moment
	noteUntil time.Time // when note ends
}

// newState returns the state of a door at start: locked, contact unknown.
func newState(p *params, lockdown, trusted bool) state {
	return state{p: p, lockdown: lockdown, trusted: trusted}
}

// Events into the machine.
type event interface{ isEvent() }

type (
	evTick  struct{}               // time passed
	evTrust struct{ trusted bool } // clock trust changed
	evCard  struct {               // a card entered the field
		uid    []byte
		random bool
	}
	evCardGone struct{}               // the card left the field
	evKey      struct{ key rune }     // a keypad key
	evContact  struct{ open bool }    // debounced door contact
	evExit     struct{ pressed bool } // debounced exit button
	evTamper   struct{ active bool }  // debounced tamper switch
	evReader   struct {               // reader health changed
		ok     bool
		detail string
	}
	evRemoteUnlock struct { // signed unlock command
		d       time.Duration
		by, why string
	}
	evLockdown struct { // signed lockdown command or config
		on      bool
		by, why string
	}
	evDecided struct { // the allowlist's answer
		id  uint64
		d   store.Decision
		err error
	}
	evRecorded struct { // the journal's answer for a grant's record
		id  uint64
		err error
	}
	evJournal struct { // the journal's health changed
		ok     bool
		detail string
	}
	evFloor struct{ t time.Time } // the latest signed site time moved
	evLink  struct{ online bool } // the link to the site came up or went down
	evStale struct {              // the allowlist went stale or fresh again
		stale  bool
		policy StalePolicy
	}
)

func (evTick) isEvent()         {}
func (evTrust) isEvent()        {}
func (evCard) isEvent()         {}
func (evCardGone) isEvent()     {}
func (evKey) isEvent()          {}
func (evContact) isEvent()      {}
func (evExit) isEvent()         {}
func (evTamper) isEvent()       {}
func (evReader) isEvent()       {}
func (evRemoteUnlock) isEvent() {}
func (evLockdown) isEvent()     {}
func (evDecided) isEvent()      {}
func (evRecorded) isEvent()     {}
func (evJournal) isEvent()      {}
func (evFloor) isEvent()        {}
func (evStale) isEvent()        {}
func (evLink) isEvent()         {}

// Actions out of the machine.
type action interface{ isAction() }

type (
	actRelay  struct{ unlock bool } // drive the relay
	actDecide struct {              // ask the allowlist; answer with evDecided{id}
		id  uint64
		req store.Request
	}
	actLog         struct{ ev store.Event } // append to the journal (Clock and BootID filled by the loop)
	actRecordGrant struct {                 // write ev and the unlock record durably; answer with evRecorded{id}
		id    uint64
		ev    store.Event
		until time.Time
	}
	actFeedback     struct{ p patternID } // play a one-shot pattern
	actRecordUnlock struct {              // write the unlock record
		until time.Time
		cause string
	}
	actClearUnlock struct{}          // clear the unlock record
	actLockdown    struct{ on bool } // persist the lockdown flag
	actFirstCard   struct {          // persist the first-card start of the schedule (zero until: clear it)
		until time.Time
	}
)

func (actRelay) isAction()        {}
func (actDecide) isAction()       {}
func (actLog) isAction()          {}
func (actRecordGrant) isAction()  {}
func (actFeedback) isAction()     {}
func (actRecordUnlock) isAction() {}
func (actClearUnlock) isAction()  {}
func (actLockdown) isAction()     {}
func (actFirstCard) isAction()    {}

// machine carries one transition.
type machine struct {
	s    state
	now  time.Time
	acts []action
}

// emit queues an action. A one-shot feedback pattern that tells the person
// at the door something also puts its message on the display for a moment.
func (m *machine) emit(a action) {
	m.acts = append(m.acts, a)
	if f, ok := a.(actFeedback); ok {
		if n := noteFor(f.p); n != noteNone {
			m.s.note, m.s.noteUntil = n, m.now.Add(noteTime)
		}
	}
}

// next is the door's transition function.
func next(s state, e event, now time.Time) (state, []action) {
	m := &machine{s: s, now: now}
	m.advance()
	switch e := e.(type) {
	case evTick:
	case evTrust:
		m.s.trusted = e.trusted
	case evCard:
		m.card(e)
	case evCardGone:
		m.s.card = nil
	case evKey:
		m.key(e.key)
	case evContact:
		m.contact(e.open)
	case evExit:
		m.exit(e.pressed)
	case evTamper:
		m.tamperSwitch(e.active)
	case evReader:
		m.reader(e)
	case evRemoteUnlock:
		m.remoteUnlock(e)
	case evLockdown:
		m.setLockdown(e)
	case evDecided:
		m.decided(e)
	case evRecorded:
		m.recorded(e)
	case evJournal:
		m.s.journalFault, m.s.journalDetail = !e.ok, e.detail
	case evFloor:
		m.s.floor = e.t
		m.schedule(true)
	case evStale:
		m.s.stale, m.s.stalePolicy = e.stale, e.policy
	case evLink:
		m.s.offline = !e.online
	}
	m.reconcile()
	return m.s, m.acts
}

// clampTo shortens *t to at most limit, so that a clock moved backwards
// cannot stretch a window.
func clampTo(t *time.Time, limit time.Time) {
	if !t.IsZero() && t.After(limit) {
		*t = limit
	}
}

// active reports whether a window ending at until is open at now.
func active(until, now time.Time) bool {
	return !until.IsZero() && now.Before(until)
}

func (s *state) grantOn(now time.Time) bool  { return active(s.grant.until, now) }
func (s *state) rexOn(now time.Time) bool    { return active(s.rexUntil, now) }
func (s *state) remoteOn(now time.Time) bool { return active(s.remoteUntil, now) }

// scheduleOn reports whether the unlock schedule holds the door open: only
// with a trusted clock, never in lockdown, and for a first-card schedule
// only once a card that counts started it.
func (s *state) scheduleOn() bool {
	return s.p.schedule != nil && s.schedOpen && s.trusted && !s.lockdown &&
		(s.p.firstCard == "" || s.schedStarted)
}

// holdOpen reports whether the door may stand open without door_held.
func (s *state) holdOpen(now time.Time) bool { return s.remoteOn(now) || s.scheduleOn() }

// authorised reports whether the relay may release the door at now.
func (s *state) authorised(now time.Time) bool {
	return s.grantOn(now) || s.rexOn(now) || s.remoteOn(now) || s.scheduleOn()
}

// advance carries out everything that falls due by now.
func (m *machine) advance() {
	s, now, p := &m.s, m.now, m.s.p
	clampTo(&s.grant.until, now.Add(p.extended))
	clampTo(&s.rexUntil, now.Add(p.unlock))
	clampTo(&s.remoteUntil, now.Add(p.maxRemote))
	clampTo(&s.pin.deadline, now.Add(max(p.pinFirst, p.interKey)))
	clampTo(&s.heldAt, now.Add(p.held))
	clampTo(&s.pending.deadline, now.Add(max(decideTimeout, recordTimeout)))
	clampTo(&s.noteUntil, now.Add(noteTime))
	if !s.noteUntil.IsZero() && !now.Before(s.noteUntil) {
		s.note, s.noteUntil = noteNone, time.Time{}
	}

	if !s.grant.until.IsZero() && !now.Before(s.grant.until) {
		if !s.grant.opened {
			m.log(store.TypeDoor, store.ReasonGrantedNotOpened, s.grant.uid, s.grant.holder, s.grant.holderName, "")
		}
		s.grant = grantWindow{}
	}
	if !s.rexUntil.IsZero() && !now.Before(s.rexUntil) {
		s.rexUntil, s.rexOpened = time.Time{}, false
	}
	if !s.remoteUntil.IsZero() && !now.Before(s.remoteUntil) {
		s.remoteUntil = time.Time{}
	}
	m.schedule(false)
	if s.pending.active && !now.Before(s.pending.deadline) {
		if s.pending.recording {
			m.access(store.ReasonJournalFault, s.pending.uid, s.pending.holder, s.pending.holderName,
				fmt.Sprintf("the journal did not confirm the grant's record within %v; the door stayed locked", recordTimeout))
		} else {
			m.access(ReasonDecisionError, s.pending.uid, s.pending.holder, s.pending.holderName, fmt.Sprintf("the allowlist did not answer within %v", decideTimeout))
		}
		m.emit(actFeedback{patDenied})
		s.pending = decision{}
	}
	if s.pin.active && !now.Before(s.pin.deadline) {
		m.access(store.ReasonPINTimeout, s.pin.uid, s.pin.holder, s.pin.holderName, "")
		m.emit(actFeedback{patDenied})
		s.pin = pinEntry{}
	}
	if s.open && !s.heldAt.IsZero() && !s.held {
		if !s.preAlarmDone && !now.Before(s.heldAt.Add(-p.preAlarm)) {
			s.preAlarmDone = true
			if now.Before(s.heldAt) {
				m.emit(actFeedback{patPreAlarm})
			}
		}
		if !now.Before(s.heldAt) {
			s.held = true
			m.log(store.TypeDoor, store.ReasonDoorHeld, nil, "", "", fmt.Sprintf("open for more than %v", p.held))
		}
	}
}

// schedule evaluates the unlock schedule when it is due (or force), at
// the later of the clock and the floor; its next change is set on the
// clock's time line.
func (m *machine) schedule(force bool) {
	s, now, p := &m.s, m.now, m.s.p
	if p.schedule == nil || !(force || s.schedCheck.IsZero() || !now.Before(s.schedCheck) || now.Before(s.schedChecked)) {
		return
	}
	rule := now
	if s.floor.After(now) {
		rule = s.floor
	}
	s.schedOpen = p.schedule.openAt(rule)
	s.schedCheck = now.Add(p.schedule.nextChange(rule).Sub(rule))
	s.schedChecked = now
	if !s.schedOpen {
		m.endFirstCard()
	}
}

// startFirstCard starts a first-card schedule's window for the card of
// d, which has just opened the door: from now on the window holds the
// door unlocked until it ends. Nothing happens outside a window, with an
// untrusted clock, in lockdown or when the window is already started.
func (m *machine) startFirstCard(d decision) {
	s := &m.s
	if s.p.firstCard == "" || !d.firstCard || s.schedStarted || !s.schedOpen || !s.trusted || s.lockdown {
		return
	}
	s.schedStarted = true
	m.emit(actFirstCard{until: s.schedCheck})
	m.log(store.TypeDoor, store.ReasonScheduleFirstCard, d.uid, d.holder, d.holderName,
		fmt.Sprintf("unlock schedule started by a card of %q; unlocked until %s", s.p.firstCard, s.schedCheck.UTC().Format(time.RFC3339)))
}

// endFirstCard ends a started first-card window: the next window waits
// for a card that counts again.
func (m *machine) endFirstCard() {
	if m.s.schedStarted {
		m.s.schedStarted = false
		m.emit(actFirstCard{})
	}
}

// reconcile drives the relay from the windows, keeps the unlock record and
// the held timer in step.
func (m *machine) reconcile() {
	s, now, p := &m.s, m.now, m.s.p
	want := s.authorised(now)
	if want != s.relay {
		s.relay = want
		m.emit(actRelay{unlock: want})
	}
	if want {
		until, cause := s.unlockEnd(now)
		if !s.recorded || !until.Equal(s.recordedUntil) {
			s.recorded, s.recordedUntil = true, until
			m.emit(actRecordUnlock{until: until, cause: cause})
		}
	} else if s.recorded {
		s.recorded, s.recordedUntil = false, time.Time{}
		m.emit(actClearUnlock{})
	}
	switch {
	case !s.open:
		s.heldAt, s.preAlarmDone = time.Time{}, false
	case s.held:
		// door_held stands until the door closes.
	case s.holdOpen(now):
		s.heldAt, s.preAlarmDone = time.Time{}, false
	case s.heldAt.IsZero():
		s.heldAt, s.preAlarmDone = now.Add(p.held), false
	}
}

// unlockEnd returns when the current unlock ends and why it is open.
func (s *state) unlockEnd(now time.Time) (time.Time, string) {
	var until time.Time
	var causes []string
	add := func(on bool, t time.Time, cause string) {
		if !on {
			return
		}
		causes = append(causes, cause)
		if t.After(until) {
			until = t
		}
	}
	add(s.grantOn(now), s.grant.until, "grant")
	add(s.rexOn(now), s.rexUntil, "exit_request")
	add(s.remoteOn(now), s.remoteUntil, "remote")
	add(s.scheduleOn(), s.schedCheck, "schedule")
	return until, strings.Join(causes, ",")
}

// deadline returns the next time at which the machine needs a tick, or zero.
func (s *state) deadline() time.Time {
	var d time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	consider(s.grant.until)
	consider(s.rexUntil)
	consider(s.remoteUntil)
	if s.p.schedule != nil {
		consider(s.schedCheck)
	}
	if s.pin.active {
		consider(s.pin.deadline)
	}
	if s.pending.active {
		consider(s.pending.deadline)
	}
	consider(s.noteUntil)
	if s.open && !s.held && !s.heldAt.IsZero() {
		if !s.preAlarmDone {
			consider(s.heldAt.Add(-s.p.preAlarm))
		}
		consider(s.heldAt)
	}
	return d
}

// uidHex renders a UID as the audit log writes it.
func uidHex(uid []byte) string {
	return fmt.Sprintf("%X", uid)
}

// log emits an audit event.
func (m *machine) log(t store.EventType, r store.Reason, uid []byte, holder, name, detail string) {
	m.emit(actLog{ev: m.event(t, r, uid, holder, name, detail)})
}

// event builds an audit event at the machine's time.
func (m *machine) event(t store.EventType, r store.Reason, uid []byte, holder, name, detail string) store.Event {
	ev := store.Event{
		Time:       m.now,
		Door:       m.s.p.door,
		Type:       t,
		Reason:     r,
		Holder:     holder,
		HolderName: name,
		Detail:     detail,
	}
	if len(uid) > 0 {
		ev.UID = uidHex(uid)
	}
	return ev
}

// access emits the one audit event of a grant or denial.
func (m *machine) access(r store.Reason, uid []byte, holder, name, detail string) {
	m.log(store.TypeAccess, r, uid, holder, name, detail)
}

// askAs returns the mode and lockdown flag a question is asked with: the
// door's, unless the allowlist is stale and its policy demands more (a PIN
// with every card, or the lockdown override).
func (s *state) askAs(card bool) (store.Mode, bool) {
	return askAs(s.p.mode, s.lockdown, s.stale, s.stalePolicy, card)
}

// AskAs returns the mode and lockdown flag the door described by its
// status asks its allowlist about a card with (card false: a keypad code
// alone): its mode and lockdown, unless the allowlist is stale and its
// policy demands more. It is the rule the door itself follows.
func (st *Status) AskAs(card bool) (store.Mode, bool) {
	return askAs(st.Mode, st.Lockdown, st.Stale, st.StalePolicy, card)
}

func askAs(mode store.Mode, lockdown, stale bool, policy StalePolicy, card bool) (store.Mode, bool) {
	if stale {
		switch policy {
		case StaleCardAndPIN:
			// Every card needs its PIN, and a keypad code alone, one
			// factor whose revocation may not have arrived, opens
			// nothing (the allowlist refuses codes in card+PIN mode).
			mode = store.ModeCardPIN
		case StaleOverrideOnly:
			lockdown = true
		}
	}
	return mode, lockdown
}

// decide asks the allowlist about d.
func (m *machine) decide(d decision) {
	s := &m.s
	s.nextID++
	d.active, d.id, d.lockdown, d.deadline = true, s.nextID, s.lockdown, m.now.Add(decideTimeout)
	mode, lockdown := s.askAs(len(d.uid) > 0)
	d.staleNote = ""
	if s.stale && s.stalePolicy != StaleKeepGoing {
		d.staleNote = "allowlist stale: policy " + string(s.stalePolicy)
	}
	s.pending = d
	m.emit(actDecide{id: d.id, req: store.Request{
		UID:            slices.Clone(d.uid),
		RandomUID:      d.random,
		PIN:            slices.Clone(d.pin),
		Door:           s.p.door,
		DoorGroups:     slices.Clone(s.p.groups),
		Mode:           mode,
		Lockdown:       lockdown,
		Now:            m.now,
		ClockTrusted:   s.trusted,
		FirstCardGroup: s.p.firstCard,
	}})
}

func (m *machine) card(e evCard) {
	s := &m.s
	if len(e.uid) == 0 {
		return
	}
	if s.card != nil && bytes.Equal(s.card, e.uid) {
		return // still in the field: one decision per presentation
	}
	s.card = slices.Clone(e.uid)
	if s.pending.active {
		return // one question at a time; the card must leave and come back
	}
	if s.pin.active {
		m.access(store.ReasonPINRequired, s.pin.uid, s.pin.holder, s.pin.holderName, "PIN entry abandoned: a card was presented")
		s.pin = pinEntry{}
	}
	m.decide(decision{uid: s.card, random: e.random})
}

func isDigit(k rune) bool { return k >= '0' && k <= '9' }

func (m *machine) key(k rune) {
	s, now, p := &m.s, m.now, m.s.p
	if !isDigit(k) && k != '*' && k != '#' {
		return
	}
	m.emit(actFeedback{patKey})
	if s.pending.active {
		return
	}
	switch {
	case s.pin.active:
		switch k {
		case '*':
			s.pin.digits = nil
			s.pin.deadline = now.Add(p.interKey)
		case '#':
			e := s.pin
			s.pin = pinEntry{}
			digits := e.digits
			if digits == nil {
				digits = []byte{}
			}
			m.decide(decision{uid: e.uid, random: e.random, pin: digits, holder: e.holder, holderName: e.holderName})
		default:
			if len(s.pin.digits) < maxPINDigits {
				d := make([]byte, len(s.pin.digits), len(s.pin.digits)+1)
				copy(d, s.pin.digits)
				s.pin.digits = append(d, byte(k))
			}
			s.pin.deadline = now.Add(p.interKey)
		}
	case p.mode == store.ModeCardOrPIN && isDigit(k):
		s.pin = pinEntry{active: true, digits: []byte{byte(k)}, deadline: now.Add(p.interKey)}
	default:
		// A key with no card waiting for its PIN: the display says what
		// the door wants first.
		s.note, s.noteUntil = noteCardFirst, now.Add(noteTime)
	}
}

func (m *machine) contact(open bool) {
	s, now := &m.s, m.now
	if !s.contactKnown {
		// The first reading after start is a state, not an edge.
		s.contactKnown, s.open = true, open
		return
	}
	if open == s.open {
		return
	}
	s.open = open
	if open {
		if s.grantOn(now) {
			s.grant.opened = true
		}
		if s.rexOn(now) {
			s.rexOpened = true
		}
		if !s.authorised(now) {
			s.forced = true
			m.log(store.TypeDoor, store.ReasonDoorForced, nil, "", "", "")
		}
		return
	}
	// Closed: relock at once after a grant or exit that was used.
	if s.grantOn(now) && s.grant.opened {
		s.grant = grantWindow{}
	}
	if s.rexOn(now) && s.rexOpened {
		s.rexUntil, s.rexOpened = time.Time{}, false
	}
	if s.forced || s.held {
		var cleared []string
		if s.forced {
			cleared = append(cleared, string(store.ReasonDoorForced))
		}
		if s.held {
			cleared = append(cleared, string(store.ReasonDoorHeld))
		}
		m.log(store.TypeDoor, store.ReasonDoorClosed, nil, "", "", "clears "+strings.Join(cleared, ", "))
		s.forced, s.held = false, false
	}
	s.heldAt, s.preAlarmDone = time.Time{}, false
}

func (m *machine) exit(pressed bool) {
	s, now := &m.s, m.now
	if !pressed {
		return
	}
	until := now.Add(s.p.unlock)
	if until.After(s.rexUntil) {
		s.rexUntil = until
	}
	s.rexOpened = s.rexOpened || s.open
	m.log(store.TypeDoor, store.ReasonExitRequest, nil, "", "", "")
}

func (m *machine) tamperSwitch(on bool) {
	s := &m.s
	if on == s.tamper {
		return
	}
	s.tamper = on
	detail := "cleared"
	if on {
		detail = "active"
	}
	m.log(store.TypeDoor, store.ReasonTamper, nil, "", "", detail)
}

func (m *machine) reader(e evReader) {
	s := &m.s
	if e.ok == !s.readerFault {
		return
	}
	s.readerFault = !e.ok
	s.card = nil
	r := store.ReasonReaderOK
	if !e.ok {
		r = store.ReasonReaderFault
	}
	m.log(store.TypeDoor, r, nil, "", "", e.detail)
}

// who renders the author and reason of a command for the log.
func who(by, why string) string {
	switch {
	case by == "" && why == "":
		return ""
	case why == "":
		return " by " + by
	}
	return " by " + by + ": " + why
}

func (m *machine) remoteUnlock(e evRemoteUnlock) {
	s, now, p := &m.s, m.now, m.s.p
	d := e.d
	if d <= 0 {
		d = p.unlock
	}
	d = min(d, p.maxRemote)
	if s.lockdown {
		m.log(store.TypeDoor, store.ReasonCommandRejected, nil, "", "", fmt.Sprintf("unlock for %v refused: door in lockdown%s", d, who(e.by, e.why)))
		return
	}
	if until := now.Add(d); until.After(s.remoteUntil) {
		s.remoteUntil = until
	}
	m.log(store.TypeDoor, store.ReasonCommandApplied, nil, "", "", fmt.Sprintf("unlock for %v%s", d, who(e.by, e.why)))
}

func (m *machine) setLockdown(e evLockdown) {
	s := &m.s
	word := "off"
	if e.on {
		word = "on"
	}
	if e.on == s.lockdown {
		m.log(store.TypeDoor, store.ReasonCommandApplied, nil, "", "", fmt.Sprintf("lockdown %s: no change%s", word, who(e.by, e.why)))
		return
	}
	s.lockdown = e.on
	if e.on {
		// Lockdown ends every hold-open and the current grant; the exit
		// button keeps working.
		s.grant = grantWindow{}
		s.remoteUntil = time.Time{}
		m.endFirstCard()
	}
	m.emit(actLockdown{on: e.on})
	m.log(store.TypeDoor, store.ReasonLockdown, nil, "", "", fmt.Sprintf("lockdown %s%s", word, who(e.by, e.why)))
}

func (m *machine) decided(e evDecided) {
	s, now, p := &m.s, m.now, m.s.p
	if !s.pending.active || e.id != s.pending.id || s.pending.recording {
		return // stale
	}
	d := s.pending
	s.pending = decision{}
	if e.err != nil {
		m.access(ReasonDecisionError, d.uid, d.holder, d.holderName, "allowlist: "+e.err.Error())
		m.emit(actFeedback{patDenied})
		return
	}
	if d.lockdown != s.lockdown {
		// Lockdown changed while the allowlist was deciding: ask again.
		m.decide(d)
		return
	}
	holder, name := e.d.HolderID, e.d.HolderName
	if holder == "" {
		holder, name = d.holder, d.holderName
	}
	if d.staleNote != "" {
		e.d.Note = joinNote(e.d.Note, d.staleNote)
	}
	switch e.d.Outcome {
	case store.Granted:
		r := e.d.Reason
		if r == "" {
			r = store.ReasonGranted
		}
		dur := p.unlock
		if e.d.ExtendedUnlock {
			dur = p.extended
		}
		// The door opens once the grant's record is durable.
		d.active, d.recording = true, true
		d.holder, d.holderName = holder, name
		d.grantEv = m.event(store.TypeAccess, r, d.uid, holder, name, e.d.Note)
		d.firstCard = e.d.FirstCard && r == store.ReasonGranted // a duress grant never unlocks the schedule
		d.until = now.Add(dur)
		d.deadline = now.Add(recordTimeout)
		s.pending = d
		m.emit(actRecordGrant{id: d.id, ev: d.grantEv, until: d.until})
	case store.NeedPIN:
		if d.pin != nil {
			r := e.d.Reason
			if r == "" {
				r = store.ReasonPINRequired
			}
			m.access(r, d.uid, holder, name, joinNote(e.d.Note, "the allowlist asked for a PIN at the PIN stage"))
			m.emit(actFeedback{patDenied})
			return
		}
		s.pin = pinEntry{active: true, uid: d.uid, random: d.random, deadline: now.Add(p.pinFirst), holder: holder, holderName: name}
	default:
		r, note := e.d.Reason, e.d.Note
		if e.d.Outcome != store.Denied {
			note = joinNote(note, fmt.Sprintf("unexpected outcome %d, denied", e.d.Outcome))
		}
		if r == "" || r == store.ReasonGranted || r == store.ReasonGrantedDuress {
			note = joinNote(note, fmt.Sprintf("denied with reason %q", r))
			r = store.ReasonUnknownCard
		}
		m.access(r, d.uid, holder, name, note)
		if r == store.ReasonLockedOut {
			m.emit(actFeedback{patLockedOut})
		} else {
			m.emit(actFeedback{patDenied})
		}
	}
}

// recorded opens the door for a grant whose record the journal made
// durable; when it could not, the door refuses with journal_fault, or opens
// anyway when the door is configured for availability.
func (m *machine) recorded(e evRecorded) {
	s, now := &m.s, m.now
	d := s.pending
	if !d.active || !d.recording || e.id != d.id {
		if e.err == nil {
			// Written after the door stopped waiting for it: say that the
			// grant was not used, and clear the unlock record it carried.
			m.log(store.TypeDoor, store.ReasonGrantedNotOpened, nil, "", "", "a grant's record was confirmed after the door stopped waiting for it; the door stayed locked")
			// Clear the unlock record it carried, unless an unlock is
			// recorded now or a newer grant's record, written after it,
			// carries one.
			if !s.recorded && !(s.pending.active && s.pending.recording) {
				m.emit(actClearUnlock{})
			}
		}
		return
	}
	s.pending = decision{}
	if !now.Before(d.until) {
		// The journal answered after the whole unlock time: opening now
		// would open for someone who may have walked away.
		if e.err == nil {
			m.log(store.TypeDoor, store.ReasonGrantedNotOpened, d.uid, d.holder, d.holderName, "the grant's record took longer than the unlock time; the door stayed locked")
			if !s.recorded {
				m.emit(actClearUnlock{})
			}
		} else {
			m.access(store.ReasonJournalFault, d.uid, d.holder, d.holderName,
				"the grant could not be recorded within the unlock time, so the door stayed locked: "+e.err.Error())
		}
		m.emit(actFeedback{patDenied})
		return
	}
	if e.err == nil && d.lockdown != s.lockdown {
		m.log(store.TypeDoor, store.ReasonGrantedNotOpened, d.uid, d.holder, d.holderName, "lockdown changed before the door opened")
		if !s.recorded {
			m.emit(actClearUnlock{})
		}
		m.emit(actFeedback{patDenied})
		return
	}
	if e.err != nil && !s.p.openUnrecorded {
		m.access(store.ReasonJournalFault, d.uid, d.holder, d.holderName,
			"the grant could not be recorded, so the door stayed locked: "+e.err.Error())
		m.emit(actFeedback{patDenied})
		return
	}
	if e.err != nil {
		ev := d.grantEv
		ev.Detail = joinNote(ev.Detail, "recorded late: the journal could not write when the door opened ("+e.err.Error()+")")
		ev.Time = now
		m.emit(actLog{ev: ev})
	}
	if d.until.After(s.grant.until) {
		s.grant = grantWindow{until: d.until, opened: s.open, uid: d.uid, holder: d.holder, holderName: d.holderName}
	}
	if e.err == nil && !s.recorded {
		// The unlock record went with the grant's record.
		s.recorded, s.recordedUntil = true, d.until
	}
	m.startFirstCard(d)
	m.emit(actFeedback{patGranted})
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// base returns the feedback pattern for the door's steady state.
func (s *state) base() patternID {
	switch {
	case s.forced || s.held || s.tamper:
		return patAlarm
	case s.journalFault:
		return patFault
	case s.pin.active:
		return patAwaitingPIN
	case s.relay:
		return patUnlocked
	case s.lockdown:
		return patLockdown
	}
	return patIdle
}

// Status is the door as the daemon and the site see it.
type Status struct {
	Door          string         `json:"door"`                    // the door id
	Mode          store.Mode     `json:"mode"`                    // the mode in force now (the unlock schedule may change it)
	Locked        bool           `json:"locked"`                  // the relay holds the door locked
	UnlockedUntil time.Time      `json:"unlocked_until,omitzero"` // when Locked is false: when the current unlock ends
	ContactKnown  bool           `json:"contact_known"`           // the door contact has reported since start
	Open          bool           `json:"open"`                    // the door contact says open
	Lockdown      bool           `json:"lockdown"`                // lockdown is on
	Alarms        []store.Reason `json:"alarms,omitempty"`        // active alarms: door_forced, door_held, tamper
	ReaderOK      bool           `json:"reader_ok"`               // the card reader is working
	AwaitingPIN   bool           `json:"awaiting_pin"`            // a card (or code) is waiting for its PIN
	ClockTrusted  bool           `json:"clock_trusted"`           // the clock has been synchronised
	JournalOK     bool           `json:"journal_ok"`              // the journal writes (false: grants are refused unless the door opens without a record)
	Stale         bool           `json:"allowlist_stale"`         // the allowlist is stale; StalePolicy applies
	StalePolicy   StalePolicy    `json:"stale_policy,omitempty"`  // while Stale
	Journal       string         `json:"journal"`                 // the journal's state in words: "ok", "reserve in use: …", "fault: …"
}

// status describes s at now.
func (s *state) status(now time.Time) Status {
	st := Status{
		Door:         s.p.door,
		Mode:         s.p.mode,
		Locked:       !s.relay,
		ContactKnown: s.contactKnown,
		Open:         s.open,
		Lockdown:     s.lockdown,
		ReaderOK:     !s.readerFault,
		AwaitingPIN:  s.pin.active,
		ClockTrusted: s.trusted,
		JournalOK:    !s.journalFault,
		Journal:      s.journalDetail,
		Stale:        s.stale,
	}
	if s.stale {
		st.StalePolicy = s.stalePolicy
	}
	if st.Journal == "" {
		st.Journal = "ok"
	}
	if s.relay {
		st.UnlockedUntil, _ = s.unlockEnd(now)
	}
	if s.forced {
		st.Alarms = append(st.Alarms, store.ReasonDoorForced)
	}
	if s.held {
		st.Alarms = append(st.Alarms, store.ReasonDoorHeld)
	}
	if s.tamper {
		st.Alarms = append(st.Alarms, store.ReasonTamper)
	}
	return st
}
