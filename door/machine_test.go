package door

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func testParams(mode store.Mode) *params {
	return &params{
		door:      "front",
		groups:    []string{"staff"},
		mode:      mode,
		unlock:    5 * time.Second,
		extended:  15 * time.Second,
		held:      30 * time.Second,
		preAlarm:  5 * time.Second,
		pinFirst:  10 * time.Second,
		interKey:  5 * time.Second,
		maxRemote: time.Hour,
	}
}

// describe renders actions compactly for comparison.
func describe(acts []action) []string {
	var out []string
	for _, a := range acts {
		switch a := a.(type) {
		case actRelay:
			if a.unlock {
				out = append(out, "relay unlock")
			} else {
				out = append(out, "relay lock")
			}
		case actDecide:
			pin := "nil"
			if a.req.PIN != nil {
				pin = fmt.Sprintf("%q", a.req.PIN)
			}
			out = append(out, fmt.Sprintf("decide uid=%X pin=%s lockdown=%t", a.req.UID, pin, a.req.Lockdown))
		case actLog:
			s := fmt.Sprintf("log %s/%s", a.ev.Type, a.ev.Reason)
			if a.ev.UID != "" {
				s += " uid=" + a.ev.UID
			}
			out = append(out, s)
		case actRecordGrant:
			s := fmt.Sprintf("record %s/%s", a.ev.Type, a.ev.Reason)
			if a.ev.UID != "" {
				s += " uid=" + a.ev.UID
			}
			out = append(out, s)
		case actFeedback:
			out = append(out, "fb "+a.p.String())
		case actRecordUnlock:
			out = append(out, "record "+a.cause)
		case actClearUnlock:
			out = append(out, "clear record")
		case actLockdown:
			out = append(out, fmt.Sprintf("lockdown %t", a.on))
		case actFirstCard:
			if a.until.IsZero() {
				out = append(out, "first card clear")
			} else {
				out = append(out, "first card until "+a.until.UTC().Format("15:04"))
			}
		default:
			out = append(out, fmt.Sprintf("%T", a))
		}
	}
	return out
}

type timed struct {
	at time.Duration
	ev event
}

var uidA = []byte{0x04, 0xA1, 0xB2, 0xC3}
var uidB = []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}

func card(uid []byte) evCard { return evCard{uid: uid} }

func granted(id uint64) evDecided {
	return evDecided{id: id, d: store.Decision{Outcome: store.Granted, Reason: store.ReasonGranted, HolderID: "h1", HolderName: "Ada"}}
}

func denied(id uint64, r store.Reason) evDecided {
	return evDecided{id: id, d: store.Decision{Outcome: store.Denied, Reason: r}}
}

func needPIN(id uint64) evDecided {
	return evDecided{id: id, d: store.Decision{Outcome: store.NeedPIN, HolderID: "h1", HolderName: "Ada"}}
}

func keys(at time.Duration, ks string) []timed {
	var out []timed
	for _, k := range ks {
		out = append(out, timed{at, evKey{k}})
	}
	return out
}

func cat(parts ...[]timed) []timed { return slices.Concat(parts...) }

// run applies evs from a fresh state and returns the state and the actions
// of the last event. A grant's record is confirmed at once, as a journal
// that writes would: the actions of the confirmation follow the grant's.
func run(t *testing.T, p *params, init func(*state), evs []timed) (state, []action) {
	t.Helper()
	s := newState(p, false, true)
	s.contactKnown = true
	if init != nil {
		init(&s)
	}
	var acts []action
	for _, e := range evs {
		now := t0.Add(e.at)
		s, acts = next(s, e.ev, now)
		for _, a := range acts {
			if r, ok := a.(actRecordGrant); ok {
				var more []action
				s, more = next(s, evRecorded{id: r.id}, now)
				acts = append(slices.Clip(acts), more...)
				break
			}
		}
	}
	return s, acts
}

func TestNextTransitions(t *testing.T) {
	openDoor := timed{0, evContact{true}}
	grantA := []timed{{0, card(uidA)}, {0, granted(1)}}
	pinA := []timed{{0, card(uidA)}, {0, needPIN(1)}}
	tests := []struct {
		name  string
		mode  store.Mode
		init  func(*state)
		evs   []timed // the last one is under test
		want  []string
		check func(t *testing.T, s state)
	}{
		// Cards.
		{name: "card asks the allowlist", mode: store.ModeCardOnly,
			evs:  []timed{{0, card(uidA)}},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=false"}},
		{name: "same card still in the field is ignored",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, store.ReasonUnknownCard)}, {time.Second, card(uidA)}},
			want: nil},
		{name: "card presented again after leaving counts again",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, store.ReasonUnknownCard)}, {time.Second, evCardGone{}}, {2 * time.Second, card(uidA)}},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=false"}},
		{name: "another card while deciding is ignored",
			evs:  []timed{{0, card(uidA)}, {0, card(uidB)}},
			want: nil},
		{name: "empty UID is ignored",
			evs:  []timed{{0, evCard{}}},
			want: nil},
		{name: "random UID is passed to the allowlist",
			evs: []timed{{0, evCard{uid: uidA, random: true}}},
			check: func(t *testing.T, s state) {
				if !s.pending.random {
					t.Error("pending decision lost RandomUID")
				}
			},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=false"}},

		// Decisions.
		{name: "granted releases the door",
			evs:  grantA,
			want: []string{"record access/granted uid=04A1B2C3", "fb granted", "relay unlock"},
			check: func(t *testing.T, s state) {
				if !s.grant.until.Equal(t0.Add(5 * time.Second)) {
					t.Errorf("grant until %v, want +5s", s.grant.until)
				}
			}},
		{name: "granted with extended unlock",
			evs: []timed{{0, card(uidA)}, {0, evDecided{id: 1, d: store.Decision{Outcome: store.Granted, Reason: store.ReasonGranted, ExtendedUnlock: true}}}},
			check: func(t *testing.T, s state) {
				if !s.grant.until.Equal(t0.Add(15 * time.Second)) {
					t.Errorf("grant until %v, want +15s", s.grant.until)
				}
			},
			want: []string{"record access/granted uid=04A1B2C3", "fb granted", "relay unlock"}},
		{name: "granted under duress is logged as such and opens",
			evs:  []timed{{0, card(uidA)}, {0, evDecided{id: 1, d: store.Decision{Outcome: store.Granted, Reason: store.ReasonGrantedDuress}}}},
			want: []string{"record access/granted_duress uid=04A1B2C3", "fb granted", "relay unlock"}},
		{name: "denied",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, store.ReasonRevoked)}},
			want: []string{"log access/revoked uid=04A1B2C3", "fb denied"}},
		{name: "locked out has its own pattern",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, store.ReasonLockedOut)}},
			want: []string{"log access/locked_out uid=04A1B2C3", "fb locked_out"}},
		{name: "denied without a reason is logged as unknown_card",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, "")}},
			want: []string{"log access/unknown_card uid=04A1B2C3", "fb denied"}},
		{name: "unexpected outcome is a denial",
			evs:  []timed{{0, card(uidA)}, {0, evDecided{id: 1, d: store.Decision{Outcome: 42, Reason: store.ReasonGranted}}}},
			want: []string{"log access/unknown_card uid=04A1B2C3", "fb denied"}},
		{name: "allowlist error is a denial",
			evs:  []timed{{0, card(uidA)}, {0, evDecided{id: 1, err: errors.New("disk on fire")}}},
			want: []string{"log access/decision_error uid=04A1B2C3", "fb denied"}},
		{name: "no answer within the decision timeout",
			evs:  []timed{{0, card(uidA)}, {decideTimeout, evTick{}}},
			want: []string{"log access/decision_error uid=04A1B2C3", "fb denied"}},
		{name: "answer after the decision timeout is ignored",
			evs:  []timed{{0, card(uidA)}, {decideTimeout, evTick{}}, {decideTimeout + time.Second, granted(1)}},
			want: nil},
		{name: "stale answer is ignored",
			evs:  []timed{{0, card(uidA)}, {0, granted(7)}},
			want: nil},
		{name: "answer after lockdown changed is asked again",
			evs:  []timed{{0, card(uidA)}, {0, evLockdown{on: true}}, {0, granted(1)}},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=true"}},
		{name: "need PIN waits for digits",
			evs:  pinA,
			want: nil,
			check: func(t *testing.T, s state) {
				if !s.pin.active || !s.pin.deadline.Equal(t0.Add(10*time.Second)) {
					t.Errorf("pin entry %+v, want active until +10s", s.pin)
				}
				if s.base() != patAwaitingPIN {
					t.Errorf("base pattern %v, want awaiting_pin", s.base())
				}
			}},
		{name: "need PIN at the PIN stage is a denial",
			evs:  cat(pinA, keys(time.Second, "12#"), []timed{{time.Second, needPIN(2)}}),
			want: []string{"log access/pin_required uid=04A1B2C3", "fb denied"}},

		// PIN entry.
		{name: "digit beeps and is kept",
			evs:  cat(pinA, keys(time.Second, "7")),
			want: []string{"fb key"},
			check: func(t *testing.T, s state) {
				if string(s.pin.digits) != "7" || !s.pin.deadline.Equal(t0.Add(6*time.Second)) {
					t.Errorf("pin %+v", s.pin)
				}
			}},
		{name: "star clears",
			evs:  cat(pinA, keys(time.Second, "12*")),
			want: []string{"fb key"},
			check: func(t *testing.T, s state) {
				if len(s.pin.digits) != 0 || !s.pin.active {
					t.Errorf("pin %+v", s.pin)
				}
			}},
		{name: "hash submits the PIN with the card",
			evs:  cat(pinA, keys(time.Second, "1234#")),
			want: []string{"fb key", "decide uid=04A1B2C3 pin=\"1234\" lockdown=false"}},
		{name: "hash with no digits submits an empty PIN",
			evs:  cat(pinA, keys(time.Second, "#")),
			want: []string{"fb key", "decide uid=04A1B2C3 pin=\"\" lockdown=false"}},
		{name: "a thirteenth digit is ignored",
			evs:  cat(pinA, keys(time.Second, "1234567890123#")),
			want: []string{"fb key", "decide uid=04A1B2C3 pin=\"123456789012\" lockdown=false"}},
		{name: "PIN stage granted",
			evs:  cat(pinA, keys(time.Second, "1234#"), []timed{{time.Second, granted(2)}}),
			want: []string{"record access/granted uid=04A1B2C3", "fb granted", "relay unlock"}},
		{name: "PIN stage denied",
			evs:  cat(pinA, keys(time.Second, "9999#"), []timed{{time.Second, denied(2, store.ReasonBadPIN)}}),
			want: []string{"log access/bad_pin uid=04A1B2C3", "fb denied"}},
		{name: "no first digit within the PIN timeout",
			evs:  cat(pinA, []timed{{10 * time.Second, evTick{}}}),
			want: []string{"log access/pin_timeout uid=04A1B2C3", "fb denied"}},
		{name: "still waiting just before the PIN timeout",
			evs:  cat(pinA, []timed{{10*time.Second - 1, evTick{}}}),
			want: nil},
		{name: "too long between digits",
			evs:  cat(pinA, keys(2*time.Second, "12"), []timed{{7 * time.Second, evTick{}}}),
			want: []string{"log access/pin_timeout uid=04A1B2C3", "fb denied"}},
		{name: "digits keep the entry alive past the first timeout",
			evs:  cat(pinA, keys(4*time.Second, "1"), keys(8*time.Second, "2"), []timed{{12 * time.Second, evTick{}}}),
			want: nil},
		{name: "key with no card pending only beeps",
			evs:  keys(0, "5"),
			want: []string{"fb key"},
			check: func(t *testing.T, s state) {
				if s.pin.active {
					t.Error("card+PIN door started PIN entry without a card")
				}
			}},
		{name: "key while deciding only beeps",
			evs:  cat([]timed{{0, card(uidA)}}, keys(0, "5")),
			want: []string{"fb key"}},
		{name: "card-or-PIN: code alone starts entry", mode: store.ModeCardOrPIN,
			evs:  keys(0, "4"),
			want: []string{"fb key"},
			check: func(t *testing.T, s state) {
				if !s.pin.active || s.pin.uid != nil || string(s.pin.digits) != "4" {
					t.Errorf("pin %+v", s.pin)
				}
			}},
		{name: "card-or-PIN: code alone is submitted without UID", mode: store.ModeCardOrPIN,
			evs:  keys(0, "4711#"),
			want: []string{"fb key", "decide uid= pin=\"4711\" lockdown=false"}},
		{name: "card-or-PIN: code alone times out", mode: store.ModeCardOrPIN,
			evs:  cat(keys(0, "47"), []timed{{5 * time.Second, evTick{}}}),
			want: []string{"log access/pin_timeout", "fb denied"}},
		{name: "card during PIN entry abandons it and is decided",
			evs:  cat(pinA, keys(time.Second, "12"), []timed{{2 * time.Second, card(uidB)}}),
			want: []string{"log access/pin_required uid=04A1B2C3", "decide uid=04112233445566 pin=nil lockdown=false"}},

		// Grants and the door.
		{name: "grant ends with the door never opened",
			evs:  cat(grantA, []timed{{5 * time.Second, evTick{}}}),
			want: []string{"log door/granted_not_opened uid=04A1B2C3", "relay lock", "clear record"}},
		{name: "door opened within a grant is not forced",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}}),
			want: nil,
			check: func(t *testing.T, s state) {
				if s.forced || !s.grant.opened || !s.relay {
					t.Errorf("forced=%t opened=%t relay=%t", s.forced, s.grant.opened, s.relay)
				}
			}},
		{name: "door closed after a grant relocks at once",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {2 * time.Second, evContact{false}}}),
			want: []string{"relay lock", "clear record"}},
		{name: "grant ends while the door is open: no not-opened, relock",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {5 * time.Second, evTick{}}}),
			want: []string{"relay lock", "clear record"}},
		{name: "grant while the door already stands open",
			init: func(s *state) { s.open = true },
			evs:  cat(grantA, []timed{{time.Second, evContact{false}}}),
			want: []string{"relay lock", "clear record"}},
		{name: "first contact reading open is not forced",
			init: func(s *state) { s.contactKnown = false },
			evs:  []timed{openDoor},
			want: nil,
			check: func(t *testing.T, s state) {
				if s.forced || !s.open || !s.heldAt.Equal(t0.Add(30*time.Second)) {
					t.Errorf("forced=%t open=%t heldAt=%v", s.forced, s.open, s.heldAt)
				}
			}},
		{name: "door opened without a window is forced",
			evs:  []timed{openDoor},
			want: []string{"log door/door_forced"},
			check: func(t *testing.T, s state) {
				if !s.forced || s.base() != patAlarm {
					t.Errorf("forced=%t base=%v", s.forced, s.base())
				}
			}},
		{name: "door opened just after the grant ended is forced",
			evs:  cat(grantA, []timed{{5 * time.Second, evContact{true}}}),
			want: []string{"log door/granted_not_opened uid=04A1B2C3", "log door/door_forced", "relay lock", "clear record"}},
		{name: "repeated open reading changes nothing",
			evs:  []timed{openDoor, {time.Second, evContact{true}}},
			want: nil},
		{name: "forced door closed",
			evs:  []timed{openDoor, {time.Second, evContact{false}}},
			want: []string{"log door/door_closed"},
			check: func(t *testing.T, s state) {
				if s.forced || s.base() != patIdle {
					t.Errorf("forced=%t base=%v", s.forced, s.base())
				}
			}},
		{name: "normal close logs nothing",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {5 * time.Second, evTick{}}, {20 * time.Second, evContact{false}}}),
			want: nil},
		{name: "pre-alarm before held",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {5 * time.Second, evTick{}}, {26 * time.Second, evTick{}}}),
			want: []string{"fb pre_alarm"}},
		{name: "held",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {26 * time.Second, evTick{}}, {31 * time.Second, evTick{}}}),
			want: []string{"log door/door_held"},
			check: func(t *testing.T, s state) {
				if !s.held || s.base() != patAlarm {
					t.Errorf("held=%t base=%v", s.held, s.base())
				}
			}},
		{name: "held then closed",
			evs:  cat(grantA, []timed{{time.Second, evContact{true}}, {31 * time.Second, evTick{}}, {40 * time.Second, evContact{false}}}),
			want: []string{"log door/door_closed"}},
		{name: "forced and held, then closed",
			evs:  []timed{openDoor, {30 * time.Second, evTick{}}, {40 * time.Second, evContact{false}}},
			want: []string{"log door/door_closed"},
			check: func(t *testing.T, s state) {
				if s.forced || s.held {
					t.Errorf("forced=%t held=%t", s.forced, s.held)
				}
			}},

		// Exit button.
		{name: "exit button releases the door",
			evs:  []timed{{0, evExit{true}}},
			want: []string{"log door/exit_request", "relay unlock", "record exit_request"}},
		{name: "exit button released does nothing",
			evs:  []timed{{0, evExit{true}}, {time.Second, evExit{false}}},
			want: nil},
		{name: "door opened after exit button is not forced",
			evs:  []timed{{0, evExit{true}}, {time.Second, evContact{true}}},
			want: nil},
		{name: "door closed after exit relocks",
			evs:  []timed{{0, evExit{true}}, {time.Second, evContact{true}}, {3 * time.Second, evContact{false}}},
			want: []string{"relay lock", "clear record"}},
		{name: "exit window ends",
			evs:  []timed{{0, evExit{true}}, {5 * time.Second, evTick{}}},
			want: []string{"relay lock", "clear record"}},
		{name: "exit button works in lockdown",
			init: func(s *state) { s.lockdown = true },
			evs:  []timed{{0, evExit{true}}},
			want: []string{"log door/exit_request", "relay unlock", "record exit_request"}},

		// Tamper and reader.
		{name: "tamper", evs: []timed{{0, evTamper{true}}}, want: []string{"log door/tamper"},
			check: func(t *testing.T, s state) {
				if s.base() != patAlarm {
					t.Errorf("base %v", s.base())
				}
			}},
		{name: "tamper repeated", evs: []timed{{0, evTamper{true}}, {time.Second, evTamper{true}}}, want: nil},
		{name: "tamper cleared", evs: []timed{{0, evTamper{true}}, {time.Second, evTamper{false}}}, want: []string{"log door/tamper"}},
		{name: "reader fault", evs: []timed{{0, evReader{ok: false, detail: "no answer"}}}, want: []string{"log door/reader_fault"}},
		{name: "reader fault repeated", evs: []timed{{0, evReader{ok: false}}, {0, evReader{ok: false}}}, want: nil},
		{name: "reader ok after fault", evs: []timed{{0, evReader{ok: false}}, {time.Second, evReader{ok: true}}}, want: []string{"log door/reader_ok"}},
		{name: "reader ok when ok", evs: []timed{{0, evReader{ok: true}}}, want: nil},
		{name: "card counts again after a reader fault",
			evs:  []timed{{0, card(uidA)}, {0, denied(1, store.ReasonUnknownCard)}, {time.Second, evReader{ok: false}}, {2 * time.Second, evReader{ok: true}}, {3 * time.Second, card(uidA)}},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=false"}},

		// Remote commands.
		{name: "remote unlock",
			evs:  []timed{{0, evRemoteUnlock{d: 10 * time.Minute, by: "alice", why: "delivery"}}},
			want: []string{"log door/command_applied", "relay unlock", "record remote"}},
		{name: "remote unlock: door may stand open",
			evs:  []timed{{0, evRemoteUnlock{d: 10 * time.Minute}}, {time.Second, evContact{true}}, {5 * time.Minute, evTick{}}},
			want: nil,
			check: func(t *testing.T, s state) {
				if s.held || !s.heldAt.IsZero() || s.forced {
					t.Errorf("held=%t heldAt=%v forced=%t", s.held, s.heldAt, s.forced)
				}
			}},
		{name: "remote unlock: closing does not relock",
			evs:  []timed{{0, evRemoteUnlock{d: 10 * time.Minute}}, {time.Second, evContact{true}}, {2 * time.Second, evContact{false}}},
			want: nil},
		{name: "remote unlock ends",
			evs:  []timed{{0, evRemoteUnlock{d: 10 * time.Minute}}, {10 * time.Minute, evTick{}}},
			want: []string{"relay lock", "clear record"}},
		{name: "remote unlock ends with the door open: held timer starts",
			evs:  []timed{{0, evRemoteUnlock{d: time.Minute}}, {time.Second, evContact{true}}, {time.Minute, evTick{}}, {time.Minute + 30*time.Second, evTick{}}},
			want: []string{"log door/door_held"}},
		{name: "remote unlock without a duration uses the unlock time",
			evs: []timed{{0, evRemoteUnlock{}}},
			check: func(t *testing.T, s state) {
				if !s.remoteUntil.Equal(t0.Add(5 * time.Second)) {
					t.Errorf("remote until %v", s.remoteUntil)
				}
			},
			want: []string{"log door/command_applied", "relay unlock", "record remote"}},
		{name: "remote unlock is bounded",
			evs: []timed{{0, evRemoteUnlock{d: 48 * time.Hour}}},
			check: func(t *testing.T, s state) {
				if !s.remoteUntil.Equal(t0.Add(time.Hour)) {
					t.Errorf("remote until %v", s.remoteUntil)
				}
			},
			want: []string{"log door/command_applied", "relay unlock", "record remote"}},
		{name: "remote unlock refused in lockdown",
			init: func(s *state) { s.lockdown = true },
			evs:  []timed{{0, evRemoteUnlock{d: time.Minute}}},
			want: []string{"log door/command_rejected"}},
		{name: "lockdown on",
			evs:  []timed{{0, evLockdown{on: true, by: "bob"}}},
			want: []string{"lockdown true", "log door/lockdown"},
			check: func(t *testing.T, s state) {
				if s.base() != patLockdown {
					t.Errorf("base %v", s.base())
				}
			}},
		{name: "lockdown ends a grant and a remote unlock",
			evs:  cat(grantA, []timed{{0, evRemoteUnlock{d: time.Hour}}, {time.Second, evLockdown{on: true}}}),
			want: []string{"lockdown true", "log door/lockdown", "relay lock", "clear record"}},
		{name: "lockdown already on",
			init: func(s *state) { s.lockdown = true },
			evs:  []timed{{0, evLockdown{on: true}}},
			want: []string{"log door/command_applied"}},
		{name: "lockdown off",
			init: func(s *state) { s.lockdown = true },
			evs:  []timed{{0, evLockdown{on: false}}},
			want: []string{"lockdown false", "log door/lockdown"}},
		{name: "cards are asked with the lockdown flag",
			init: func(s *state) { s.lockdown = true },
			evs:  []timed{{0, card(uidA)}},
			want: []string{"decide uid=04A1B2C3 pin=nil lockdown=true"}},

		// Time.
		{name: "tick with nothing due", evs: []timed{{time.Hour, evTick{}}}, want: nil},
		{name: "clock moved back cannot stretch a grant",
			evs: cat(grantA, []timed{{-time.Hour, evTick{}}}),
			check: func(t *testing.T, s state) {
				if !s.grant.until.Equal(t0.Add(-time.Hour + 15*time.Second)) {
					t.Errorf("grant until %v", s.grant.until)
				}
			},
			want: []string{"record grant"}},
		{name: "trust change is recorded",
			evs: []timed{{0, evTrust{false}}},
			check: func(t *testing.T, s state) {
				if s.trusted {
					t.Error("still trusted")
				}
			},
			want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = store.ModeCardPIN
			}
			s, acts := run(t, testParams(mode), tc.init, tc.evs)
			if got := describe(acts); !slices.Equal(got, tc.want) {
				t.Errorf("actions:\n got %q\nwant %q", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// TestNextEventFields checks what goes into an audit event and a request.
func TestNextEventFields(t *testing.T) {
	p := testParams(store.ModeCardOnly)
	s, acts := run(t, p, nil, []timed{{0, card(uidA)}})
	req := acts[0].(actDecide).req
	want := store.Request{UID: uidA, Door: "front", DoorGroups: []string{"staff"}, Mode: store.ModeCardOnly, Now: t0, ClockTrusted: true}
	if fmt.Sprint(req) != fmt.Sprint(want) {
		t.Errorf("request %+v, want %+v", req, want)
	}
	_, acts = next(s, evDecided{id: 1, d: store.Decision{Outcome: store.Granted, Reason: store.ReasonGranted, HolderID: "h1", HolderName: "Ada", Note: "schedule ignored"}}, t0)
	ev := acts[0].(actRecordGrant).ev
	wantEv := store.Event{Time: t0, Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted, UID: "04A1B2C3", Holder: "h1", HolderName: "Ada", Detail: "schedule ignored"}
	if ev != wantEv {
		t.Errorf("event %+v, want %+v", ev, wantEv)
	}
	_, acts = next(newState(p, false, true), evRemoteUnlock{d: time.Minute, by: "alice", why: "delivery"}, t0)
	if d := acts[0].(actLog).ev.Detail; d != "unlock for 1m0s by alice: delivery" {
		t.Errorf("remote detail %q", d)
	}
}

// TestNextPure checks that next does not write into the state it was given.
func TestNextPure(t *testing.T) {
	p := testParams(store.ModeCardPIN)
	s, _ := run(t, p, nil, cat([]timed{{0, card(uidA)}, {0, needPIN(1)}}, keys(time.Second, "12")))
	before := fmt.Sprintf("%+v", s)
	digits := s.pin.digits
	for _, e := range []event{evKey{'3'}, evKey{'*'}, evKey{'#'}, card(uidB), evTick{}} {
		next(s, e, t0.Add(2*time.Second))
	}
	if after := fmt.Sprintf("%+v", s); after != before || string(digits) != "12" {
		t.Errorf("state changed:\n%s\n%s", before, after)
	}
}

func TestScheduleTransitions(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	sched := &store.Schedule{}
	// Monday to Friday 08:00-18:00 Berlin time.
	for d := time.Monday; d <= time.Friday; d++ {
		sched.Weekly[d] = []store.Window{{From: 8 * 60, To: 18 * 60}}
	}
	sched.Holidays = []string{"2025-03-05"}
	u, err := compileSchedule(sched, berlin)
	if err != nil {
		t.Fatal(err)
	}
	p := testParams(store.ModeCardPIN)
	p.schedule = u
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// Monday 3 March 2025, 07:00 Berlin.
	s := newState(p, false, true)
	s.contactKnown = true
	s, acts := next(s, evTick{}, at("2025-03-03 07:00"))
	if len(acts) != 0 || s.relay {
		t.Fatalf("07:00: %q relay=%t", describe(acts), s.relay)
	}
	if want := at("2025-03-03 08:00"); !s.deadline().Equal(want) {
		t.Fatalf("deadline %v, want %v", s.deadline(), want)
	}
	s, acts = next(s, evTick{}, at("2025-03-03 08:00"))
	if got := describe(acts); !slices.Equal(got, []string{"relay unlock", "record schedule"}) || s.base() != patUnlocked {
		t.Fatalf("08:00: %q", got)
	}
	// Open door and stand open: no alarm during free access.
	s, acts = next(s, evContact{true}, at("2025-03-03 09:00"))
	s, acts2 := next(s, evTick{}, at("2025-03-03 10:00"))
	if len(acts)+len(acts2) != 0 || s.forced || s.held {
		t.Fatalf("open during schedule: %q %q", describe(acts), describe(acts2))
	}
	s, _ = next(s, evContact{false}, at("2025-03-03 10:01"))
	// Lockdown suspends the schedule; lifting it resumes.
	s, acts = next(s, evLockdown{on: true}, at("2025-03-03 11:00"))
	if got := describe(acts); !slices.Equal(got, []string{"lockdown true", "log door/lockdown", "relay lock", "clear record"}) {
		t.Fatalf("lockdown: %q", got)
	}
	s, acts = next(s, evLockdown{on: false}, at("2025-03-03 11:05"))
	if !s.relay {
		t.Fatalf("lockdown lifted in the window: %q", describe(acts))
	}
	// An untrusted clock suspends the schedule.
	s, acts = next(s, evTrust{false}, at("2025-03-03 12:00"))
	if got := describe(acts); !slices.Equal(got, []string{"relay lock", "clear record"}) {
		t.Fatalf("untrusted: %q", got)
	}
	s, _ = next(s, evTrust{true}, at("2025-03-03 12:01"))
	s, acts = next(s, evTick{}, at("2025-03-03 18:00"))
	if got := describe(acts); !slices.Equal(got, []string{"relay lock", "clear record"}) {
		t.Fatalf("18:00: %q", got)
	}
	// Wednesday is a holiday: the next opening is Thursday 08:00.
	if want := at("2025-03-04 08:00"); !s.deadline().Equal(want) {
		t.Fatalf("deadline %v, want %v", s.deadline(), want)
	}
	s, _ = next(s, evTick{}, at("2025-03-04 18:00"))
	if want := at("2025-03-06 08:00"); !s.deadline().Equal(want) {
		t.Fatalf("deadline after Tuesday %v, want %v", s.deadline(), want)
	}
	s, acts = next(s, evTick{}, at("2025-03-05 12:00"))
	if s.relay || len(acts) != 0 {
		t.Fatalf("holiday: %q", describe(acts))
	}
	_ = s
}

// The unlock schedule is judged at the later of the clock and the latest
// signed site time: a clock set back into a window does not open it, and a
// clock behind the site opens and closes the window on the site's time.
func TestNextScheduleFloor(t *testing.T) {
	var sc store.Schedule
	sc.Weekly[time.Monday] = []store.Window{{From: 9*60 + 30, To: 10 * 60}} // 09:30-10:00 UTC; t0 is Monday 09:00
	u, err := compileSchedule(&sc, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	p := testParams(store.ModeCardOnly)
	p.schedule = u

	// Without a floor, 09:40 is inside the window.
	s, _ := run(t, p, nil, []timed{{40 * time.Minute, evTick{}}})
	if !s.relay {
		t.Fatal("09:40 without a floor: locked")
	}
	// The site's time is 10:05: a clock reading 09:40 was set back.
	s, acts := run(t, p, nil, []timed{{40 * time.Minute, evTick{}}, {40 * time.Minute, evFloor{t0.Add(65 * time.Minute)}}})
	if s.relay || !slices.Contains(describe(acts), "relay lock") {
		t.Fatalf("09:40 with the site at 10:05: relay %t, actions %q", s.relay, describe(acts))
	}
	// A clock 15 minutes behind a message the site signed at 09:30: the
	// window opens at 09:15 by the clock. The floor is a lower bound that
	// does not move by itself: at 09:45 the clock is ahead of it again and
	// rules, so the window closes at 10:00 by the clock.
	s, _ = run(t, p, nil, []timed{{15 * time.Minute, evFloor{t0.Add(30 * time.Minute)}}})
	if !s.relay {
		t.Fatal("09:15 by the clock, 09:30 by the site: locked")
	}
	if !s.schedCheck.Equal(t0.Add(45 * time.Minute)) {
		t.Fatalf("next check at %v by the clock, want 09:45 (10:00 by the floor)", s.schedCheck)
	}
	s, _ = run(t, p, nil, []timed{{15 * time.Minute, evFloor{t0.Add(30 * time.Minute)}}, {45 * time.Minute, evTick{}}})
	if !s.relay || !s.schedCheck.Equal(t0.Add(time.Hour)) {
		t.Fatalf("09:45 by the clock: relay %t, next check %v; want open until 10:00", s.relay, s.schedCheck)
	}
}

// A grant's record that the journal confirms only after the unlock time
// does not open the door: the person may have walked away.
func TestNextRecordAfterUnlockTime(t *testing.T) {
	p := testParams(store.ModeCardOnly)
	for _, err := range []error{nil, errors.New("no space left on device")} {
		s := newState(p, false, true)
		s.contactKnown = true
		s, _ = next(s, card(uidA), t0)
		s, acts := next(s, granted(1), t0)
		if got := describe(acts); !slices.Equal(got, []string{"record access/granted uid=04A1B2C3"}) {
			t.Fatalf("grant: %q", got)
		}
		s, acts = next(s, evRecorded{id: 1, err: err}, t0.Add(p.unlock))
		want := []string{"log door/granted_not_opened uid=04A1B2C3", "clear record", "fb denied"}
		if err != nil {
			want = []string{"log access/journal_fault uid=04A1B2C3", "fb denied"}
		}
		if got := describe(acts); s.relay || !slices.Equal(got, want) {
			t.Errorf("err %v: relay %t, actions %q, want %q", err, s.relay, got, want)
		}
	}
}

// A stale allowlist's policy changes how questions are asked: card+pin
// asks every card for its PIN, override-only asks with the lockdown flag,
// and the decision's event notes the policy.
func TestNextStalePolicy(t *testing.T) {
	p := testParams(store.ModeCardOnly)
	for _, tc := range []struct {
		policy   StalePolicy
		mode     store.Mode
		lockdown bool
		note     string
	}{
		{StaleKeepGoing, store.ModeCardOnly, false, ""},
		{StaleCardAndPIN, store.ModeCardPIN, false, "allowlist stale: policy card+pin"},
		{StaleOverrideOnly, store.ModeCardOnly, true, "allowlist stale: policy override-only"},
	} {
		s, acts := run(t, p, nil, []timed{{0, evStale{stale: true, policy: tc.policy}}, {0, card(uidA)}})
		req := acts[0].(actDecide).req
		if req.Mode != tc.mode || req.Lockdown != tc.lockdown {
			t.Errorf("%s: asked with mode %s lockdown %t", tc.policy, req.Mode, req.Lockdown)
		}
		if st := s.status(t0); !st.Stale || st.StalePolicy != tc.policy {
			t.Errorf("%s: status %+v", tc.policy, st)
		}
		_, acts = next(s, denied(1, store.ReasonUnknownCard), t0)
		if ev := acts[0].(actLog).ev; ev.Detail != tc.note {
			t.Errorf("%s: event detail %q, want %q", tc.policy, ev.Detail, tc.note)
		}
	}
	// Fresh again: asked as the door says.
	_, acts := run(t, p, nil, []timed{{0, evStale{stale: true, policy: StaleOverrideOnly}}, {0, evStale{stale: false, policy: StaleOverrideOnly}}, {0, card(uidA)}})
	if req := acts[0].(actDecide).req; req.Lockdown || req.Mode != store.ModeCardOnly {
		t.Errorf("fresh again: %+v", req)
	}
}
