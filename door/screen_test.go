package door

import (
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func TestScreen(t *testing.T) {
	pinA := []timed{{0, card(uidA)}, {0, needPIN(1)}}
	pinDecided := func(d evDecided) []timed {
		d.id = 2
		return cat(pinA, keys(time.Second, "1234#"), []timed{{2 * time.Second, d}})
	}
	tests := []struct {
		name string
		mode store.Mode
		init func(*state)
		evs  []timed
		want [2]string
	}{
		{name: "idle, card and PIN", evs: []timed{{0, evTick{}}}, want: [2]string{"Present card", ""}},
		{name: "idle, card or PIN", mode: store.ModeCardOrPIN, evs: []timed{{0, evTick{}}}, want: [2]string{"Card or PIN", ""}},
		{name: "offline", evs: []timed{{0, evLink{online: false}}}, want: [2]string{"Present card", "Offline"}},
		{name: "online again", evs: []timed{{0, evLink{online: false}}, {time.Second, evLink{online: true}}}, want: [2]string{"Present card", ""}},
		{name: "card waiting for its PIN", evs: pinA, want: [2]string{"Enter PIN", ""}},
		{name: "PIN digits are masked", evs: cat(pinA, keys(time.Second, "123")), want: [2]string{"Enter PIN", "***"}},
		{name: "star clears the digits", evs: cat(pinA, keys(time.Second, "123*")), want: [2]string{"Enter PIN", ""}},
		{name: "the PIN is being checked", evs: cat(pinA, keys(time.Second, "1234#")), want: [2]string{"Checking PIN", ""}},
		{name: "granted", evs: pinDecided(granted(0)), want: [2]string{"Access granted", ""}},
		{name: "granted under duress reads as granted",
			evs:  pinDecided(evDecided{d: store.Decision{Outcome: store.Granted, Reason: store.ReasonGrantedDuress}}),
			want: [2]string{"Access granted", ""}},
		{name: "bad PIN reads as any denial", evs: pinDecided(denied(0, store.ReasonBadPIN)), want: [2]string{"Access denied", ""}},
		{name: "unknown card reads as any denial", evs: []timed{{0, card(uidA)}, {0, denied(1, store.ReasonUnknownCard)}}, want: [2]string{"Access denied", ""}},
		{name: "locked out", evs: pinDecided(denied(0, store.ReasonLockedOut)), want: [2]string{"Locked out", "Try again later"}},
		{name: "the message ends after its time",
			evs:  cat(pinDecided(denied(0, store.ReasonBadPIN)), []timed{{2*time.Second + noteTime, evTick{}}}),
			want: [2]string{"Present card", ""}},
		{name: "granted, then the door stays unlocked after the message",
			evs:  cat(pinDecided(granted(0)), []timed{{2*time.Second + noteTime, evTick{}}}),
			want: [2]string{"Door unlocked", ""}},
		{name: "a new card replaces the message with the PIN prompt",
			evs: cat(pinDecided(denied(0, store.ReasonBadPIN)),
				[]timed{{3 * time.Second, evCardGone{}}, {3 * time.Second, card(uidA)}, {3 * time.Second, needPIN(3)}}),
			want: [2]string{"Enter PIN", ""}},
		{name: "PIN timeout reads as a denial", evs: cat(pinA, []timed{{11 * time.Second, evTick{}}}), want: [2]string{"Access denied", ""}},
		{name: "a key with no card asks for the card first", evs: keys(0, "1"), want: [2]string{"Present card", "then enter PIN"}},
		{name: "a key with no card, card-only door", mode: store.ModeCardOnly, evs: keys(0, "1"), want: [2]string{"Present card", ""}},
		{name: "a code alone starts PIN entry on a card-or-PIN door", mode: store.ModeCardOrPIN, evs: keys(0, "12"), want: [2]string{"Enter PIN", "**"}},
		{name: "exit button unlocks", evs: []timed{{0, evExit{pressed: true}}}, want: [2]string{"Door unlocked", ""}},
		{name: "lockdown", init: func(s *state) { s.lockdown = true }, evs: []timed{{0, evTick{}}}, want: [2]string{"Lockdown", "No entry"}},
		{name: "door forced", evs: []timed{{0, evContact{open: true}}}, want: [2]string{"Door forced", "Alarm raised"}},
		{name: "door held", evs: []timed{{0, evExit{pressed: true}}, {time.Second, evContact{open: true}}, {31 * time.Second, evTick{}}},
			want: [2]string{"Door held open", "Please close it"}},
		{name: "close the door before door_held", evs: []timed{{0, evExit{pressed: true}}, {time.Second, evContact{open: true}}, {26 * time.Second, evTick{}}},
			want: [2]string{"Please close", "the door"}},
		{name: "tamper", evs: []timed{{0, evTamper{active: true}}}, want: [2]string{"Tamper alarm", ""}},
		{name: "journal fault", evs: []timed{{0, evJournal{ok: false, detail: "fault: disk full"}}}, want: [2]string{"Out of service", ""}},
		{name: "journal fault on a door that opens unrecorded",
			init: func(s *state) { p := *s.p; p.openUnrecorded = true; s.p = &p },
			evs:  []timed{{0, evJournal{ok: false, detail: "fault: disk full"}}}, want: [2]string{"Present card", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = store.ModeCardPIN
			}
			s, _ := run(t, testParams(mode), tc.init, tc.evs)
			if got := s.screen(); got != tc.want {
				t.Errorf("screen = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaskedPIN(t *testing.T) {
	for n, want := range map[int]string{0: "", 1: "*", 4: "****", 12: "************", 40: "****************"} {
		if got := maskedPIN(n); got != want {
			t.Errorf("maskedPIN(%d) = %q, want %q", n, got, want)
		}
	}
}
