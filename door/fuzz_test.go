package door

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// fuzzSchedule opens the door for ten minutes twice an hour, every day, so
// that random walks through time cross its edges.
func fuzzSchedule(t testing.TB) *unlockSchedule {
	var s store.Schedule
	for d := range s.Weekly {
		for h := uint16(0); h < 24; h++ {
			s.Weekly[d] = append(s.Weekly[d], store.Window{From: h*60 + 5, To: h*60 + 15}, store.Window{From: h*60 + 40, To: h*60 + 50})
		}
	}
	u, err := compileSchedule(&s, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var fuzzSteps = [...]time.Duration{0, time.Millisecond, 300 * time.Millisecond, time.Second, 4 * time.Second, 5 * time.Second, 11 * time.Second, 31 * time.Second}

var fuzzReasons = [...]store.Reason{store.ReasonUnknownCard, store.ReasonRevoked, store.ReasonLockedOut, store.ReasonBadPIN, store.ReasonLockdown, store.ReasonRandomUID, "", store.ReasonGrantedDuress}

// fuzzEvent builds an event from two bytes; answer is the question in
// flight, if any, and recording says whether its grant waits for its
// record.
func fuzzEvent(op, arg byte, answer *actDecide, recording bool) event {
	switch op % 20 {
	case 0:
		return card(uidA)
	case 1:
		return card(uidB)
	case 2:
		return evCard{uid: []byte{0x08, arg, 0x01, 0x02}, random: true}
	case 3:
		return evCardGone{}
	case 4:
		return evKey{rune('0' + arg%10)}
	case 5:
		return evKey{'*'}
	case 6:
		return evKey{'#'}
	case 7:
		return evContact{true}
	case 8:
		return evContact{false}
	case 9:
		return evExit{true}
	case 10:
		return evExit{false}
	case 11:
		if arg&0x80 != 0 {
			return evStale{stale: arg%2 == 0, policy: []StalePolicy{StaleKeepGoing, StaleCardAndPIN, StaleOverrideOnly}[(arg>>1)%3]}
		}
		return evTamper{arg%2 == 0}
	case 12:
		if arg&0x80 != 0 {
			return evJournal{ok: arg%2 == 0, detail: "fault: no space left on device"}
		}
		return evReader{ok: arg%2 == 0}
	case 13:
		return evRemoteUnlock{d: time.Duration(arg) * 7 * time.Second}
	case 14:
		return evLockdown{on: true}
	case 15:
		return evLockdown{on: false}
	case 16, 17:
		if answer == nil {
			return evTick{}
		}
		if recording {
			var err error
			if arg%3 == 0 {
				err = errors.New("no space left on device")
			}
			return evRecorded{id: answer.id, err: err}
		}
		d := store.Decision{HolderID: "h", ExtendedUnlock: arg&0x40 != 0, FirstCard: arg&0x20 != 0}
		var err error
		switch arg % 4 {
		case 0:
			d.Outcome, d.Reason = store.Granted, store.ReasonGranted
			if arg&0x80 != 0 {
				d.Reason = store.ReasonGrantedDuress
			}
		case 1:
			d.Outcome, d.Reason = store.Denied, fuzzReasons[(arg>>2)%8]
		case 2:
			d.Outcome = store.NeedPIN
		case 3:
			err = errors.New("storage failed")
		}
		return evDecided{id: answer.id, d: d, err: err}
	case 18:
		if arg%2 == 1 {
			return evRecorded{id: 1<<40 + uint64(arg)}
		}
		return evDecided{id: 1<<40 + uint64(arg), d: store.Decision{Outcome: store.Granted}}
	default:
		return evTick{}
	}
}

// maxFuzzSteps bounds one input: long walks add time, not coverage.
const maxFuzzSteps = 300

// deepCopy copies s with its own slices, to check that next leaves its input
// alone.
func deepCopy(s state) state {
	s.card = slices.Clone(s.card)
	s.grant.uid = slices.Clone(s.grant.uid)
	s.pending.uid = slices.Clone(s.pending.uid)
	s.pending.pin = slices.Clone(s.pending.pin)
	s.pin.uid = slices.Clone(s.pin.uid)
	s.pin.digits = slices.Clone(s.pin.digits)
	return s
}

// FuzzNext walks the state machine through random event sequences and
// checks its invariants after every step.
func FuzzNext(f *testing.F) {
	f.Add(uint8(0), false, []byte{0, 0, 16, 0, 7, 3, 8, 3, 19, 5})
	f.Add(uint8(1), false, []byte{0, 0, 16, 2, 4, 1, 4, 2, 6, 0, 16, 0, 7, 0, 19, 7, 19, 7, 8, 0})
	f.Add(uint8(2), true, []byte{4, 1, 4, 2, 6, 0, 16, 1, 7, 4, 19, 7, 8, 0, 13, 10, 14, 0, 7, 0})
	f.Add(uint8(1), true, []byte{9, 0, 7, 1, 19, 6, 8, 0, 11, 0, 12, 1, 12, 0, 0, 0, 14, 0, 16, 0, 15, 0})
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, mode uint8, sched bool, data []byte) {
	if len(data) > maxFuzzSteps*2 {
		data = data[:maxFuzzSteps*2]
	}
	p := testParams([]store.Mode{store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN}[mode%3])
	if sched {
		p.schedule = fuzzSchedule(t)
		if mode&0x20 != 0 {
			p.firstCard = "managers"
		}
	}
	p.openUnrecorded = mode&0x40 != 0
	s := newState(p, mode&0x80 != 0, true)
	now := t0
	var inFlight *actDecide
	relayModel := false
	for i := 0; i+1 < len(data); i += 2 {
		op, arg := data[i], data[i+1]
		if op%20 == 19 {
			now = now.Add(fuzzSteps[arg%8])
		} else {
			now = now.Add(fuzzSteps[(op/20)%8] / 10)
		}
		e := fuzzEvent(op, arg, inFlight, s.pending.active && s.pending.recording)
		if op%20 == 19 && arg&0x80 != 0 {
			e = evTrust{!s.trusted}
		}
		prev := s
		before := deepCopy(prev)
		var acts []action
		s, acts = next(prev, e, now)
		if !reflect.DeepEqual(prev, before) {
			t.Fatalf("step %d: next changed its input state", i/2)
		}
		check := func(ok bool, format string, args ...any) {
			if !ok {
				t.Helper()
				t.Fatalf("step %d (%T %+v at +%v): %s\nactions %q", i/2, e, e, now.Sub(t0), fmt.Sprintf(format, args...), describe(acts))
			}
		}

		// Count what came out.
		var access []store.Event
		var decides []actDecide
		var records []actRecordGrant
		forcedLogged, firstLogged := false, false
		for _, a := range acts {
			switch a := a.(type) {
			case actRelay:
				check(a.unlock != relayModel, "relay driven to the state it is in")
				relayModel = a.unlock
			case actLog:
				if a.ev.Type == store.TypeAccess {
					access = append(access, a.ev)
				}
				if a.ev.Reason == store.ReasonDoorForced {
					forcedLogged = true
				}
				firstLogged = firstLogged || a.ev.Reason == store.ReasonScheduleFirstCard
				check(a.ev.Door == p.door && a.ev.Time.Equal(now), "event door/time %q %v", a.ev.Door, a.ev.Time)
			case actDecide:
				decides = append(decides, a)
			case actRecordGrant:
				records = append(records, a)
				access = append(access, a.ev)
				check(a.ev.Door == p.door && a.ev.Time.Equal(now), "event door/time %q %v", a.ev.Door, a.ev.Time)
				check(s.pending.recording && s.pending.id == a.id, "a grant's record not waited for")
			}
		}
		check(len(records) <= 1, "%d grants recorded at once", len(records))
		// A grant opens the door only after its record (or, when the door
		// opens without one, after the journal failed to make it).
		if len(records) == 1 {
			check(!s.grant.until.After(prev.grant.until), "granted before the record was durable")
		}
		check(relayModel == s.relay, "relay model %t, state %t", relayModel, s.relay)

		// The relay is released only within a grant, exit, signed
		// unlock or schedule window.
		schedOpen := p.schedule != nil && p.schedule.openAt(now) && s.trusted && !s.lockdown && (p.firstCard == "" || s.schedStarted)
		// A first-card window starts only with its event, inside the
		// window, out of lockdown; it never outlives the window.
		check(!s.schedStarted || prev.schedStarted || firstLogged, "first-card window started without schedule_first_card")
		check(!firstLogged || (s.schedStarted && !prev.schedStarted && p.firstCard != ""), "schedule_first_card without a start")
		check(!s.schedStarted || (p.schedule.openAt(now) && !s.lockdown), "first-card window outlives its window or a lockdown")
		inWindow := active(s.grant.until, now) || active(s.rexUntil, now) || active(s.remoteUntil, now) || schedOpen
		check(!s.relay || inWindow, "relay released outside every window")
		check(s.relay == inWindow, "relay locked within a window")
		// Windows are bounded.
		check(s.grant.until.IsZero() || !s.grant.until.After(now.Add(p.extended)), "grant window too long")
		check(s.rexUntil.IsZero() || !s.rexUntil.After(now.Add(p.unlock)), "exit window too long")
		check(s.remoteUntil.IsZero() || !s.remoteUntil.After(now.Add(p.maxRemote)), "remote window too long")
		check(!s.lockdown || s.remoteUntil.IsZero(), "signed unlock survives lockdown")

		// One question at a time; PIN entry and a question exclude
		// each other.
		check(len(decides) <= 1, "%d questions at once", len(decides))
		check(!(s.pending.active && s.pin.active), "PIN entry while a question is in flight")
		if len(decides) == 1 {
			check(s.pending.active && s.pending.id == decides[0].id, "question not recorded as pending")
			mode, lockdown := s.askAs(len(decides[0].req.UID) > 0)
			check(decides[0].req.Lockdown == lockdown && decides[0].req.Mode == mode, "question asked with a stale lockdown flag or mode")
			check(!lockdown == !(s.lockdown || (s.stale && s.stalePolicy == StaleOverrideOnly)), "override-only policy not applied")
		}

		// Every grant and every denial is exactly one audit event.
		timedOut := prev.pending.active && !now.Before(prev.pending.deadline)
		rec, isRec := e.(evRecorded)
		if timedOut {
			want := ReasonDecisionError
			if prev.pending.recording {
				want = store.ReasonJournalFault
			}
			check(len(access) == 1 && access[0].Reason == want, "question timed out: access events %+v", access)
		} else if isRec && prev.pending.active && prev.pending.recording && rec.id == prev.pending.id {
			switch {
			case rec.err == nil && prev.pending.lockdown != prev.lockdown:
				check(len(access) == 0 && !s.grant.until.After(prev.grant.until), "grant opened after lockdown changed")
			case !now.Before(prev.pending.until):
				check(len(access) <= 1 && !s.grant.until.After(prev.grant.until), "a grant answered after its window opened the door")
			case rec.err == nil:
				check(len(access) == 0 && s.relay && active(s.grant.until, now), "recorded grant did not release the door")
			case p.openUnrecorded:
				check(len(access) == 1 && access[0].Reason == prev.pending.grantEv.Reason, "unrecorded grant: access events %+v", access)
				check(s.relay && active(s.grant.until, now), "unrecorded grant did not release the door (open without record)")
			default:
				check(len(access) == 1 && access[0].Reason == store.ReasonJournalFault, "unrecorded grant: access events %+v", access)
				check(!s.grant.until.After(prev.grant.until), "unrecorded grant opened the door")
			}
		} else if d, ok := e.(evDecided); ok && inFlight != nil && d.id == inFlight.id && !prev.pending.recording {
			switch {
			case d.err != nil:
				check(len(access) == 1 && access[0].Reason == ReasonDecisionError, "error answer: %d access events", len(access))
				check(!s.grant.until.After(prev.grant.until), "error answer granted")
			case prev.pending.lockdown != prev.lockdown: // the door's own lockdown, not the flag a stale policy asks with
				check(len(access) == 0 && len(decides) == 1, "answer to a stale lockdown flag was used")
			case d.d.Outcome == store.Granted:
				check(len(access) == 1 && access[0].Reason == d.d.Reason && len(records) == 1, "grant: access events %+v", access)
				check(s.pending.recording, "grant did not wait for its record")
			case d.d.Outcome == store.Denied:
				check(len(access) == 1, "denial: %d access events", len(access))
				check(access[0].Reason != store.ReasonGranted && access[0].Reason != store.ReasonGrantedDuress, "denial logged as %s", access[0].Reason)
			case d.d.Outcome == store.NeedPIN && inFlight.req.PIN == nil:
				check(len(access) == 0 && s.pin.active, "need PIN: access events %+v, pin %t", access, s.pin.active)
			default:
				check(len(access) == 1, "need PIN at PIN stage: %d access events", len(access))
			}
		} else {
			check(len(access) <= 1, "%d access events without an answer", len(access))
			if len(access) == 1 {
				r := access[0].Reason
				check(prev.pin.active && (r == store.ReasonPINTimeout || r == store.ReasonPINRequired), "access event %s without an answer", r)
			}
		}

		// A forced door always raises door_forced.
		if c, ok := e.(evContact); ok && c.open && prev.contactKnown && !prev.open {
			prevSched := p.schedule != nil && p.schedule.openAt(now) && prev.trusted && !prev.lockdown && (p.firstCard == "" || prev.schedStarted)
			authorised := active(prev.grant.until, now) || active(prev.rexUntil, now) || active(prev.remoteUntil, now) || prevSched
			check(forcedLogged == !authorised, "door opened (authorised %t): door_forced logged %t", authorised, forcedLogged)
			check(s.forced == !authorised, "forced state %t, authorised %t", s.forced, authorised)
		} else {
			check(!forcedLogged, "door_forced without the door opening")
		}

		// The door standing open outside a hold-open window is timed.
		if s.open && !s.held && !(active(s.remoteUntil, now) || schedOpen) {
			check(!s.heldAt.IsZero() && !s.heldAt.After(now.Add(p.held)), "door open without a held timer (%v)", s.heldAt)
		}
		// Nothing is overdue after a step: the loop never spins.
		if d := s.deadline(); !d.IsZero() {
			check(d.After(now), "deadline %v not after now", d.Sub(t0))
		}

		if len(decides) == 1 {
			inFlight = &decides[0]
		} else if !s.pending.active {
			inFlight = nil
		}
	}
}
