package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // schedules in named zones, whatever the host has

	bolt "go.etcd.io/bbolt"
)

var (
	uidAda  = []byte{0x04, 0x52, 0x7A, 0x91, 0x33, 0x6E, 0x80}
	uidBob  = []byte{0x1C, 0x2D, 0x3E, 0x4F}
	uidCleo = []byte{0x04, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}
)

const adaPIN, adaDuress = "482916", "482999"

// enrol puts a card with a PIN (none if pin is "") opening door "front",
// after mod changes it.
func enrol(t testing.TB, s *Store, uid []byte, holder, pin string, mod func(c *Card)) Card {
	t.Helper()
	c := Card{UID: uid, HolderID: holder, HolderName: "Card " + holder, Doors: []string{"front"}}
	if pin != "" {
		h, err := HashPIN([]byte(pin), uid, fastPIN)
		mustDo(t, err)
		c.PINHash = h
	}
	if mod != nil {
		mod(&c)
	}
	mustDo(t, s.PutCard(c))
	return c
}

func cardReq(uid []byte, mode Mode, now time.Time) Request {
	return Request{UID: uid, Door: "front", DoorGroups: []string{"building-a"}, Mode: mode, Now: now, ClockTrusted: true}
}

func pinReq(uid []byte, pin string, now time.Time) Request {
	r := cardReq(uid, ModeCardPIN, now)
	r.PIN = []byte(pin)
	return r
}

func decide(t testing.TB, s *Store, req Request) Decision {
	t.Helper()
	d, err := s.Decide(req)
	if err != nil {
		t.Fatalf("Decide(%X): %v", req.UID, err)
	}
	return d
}

func expect(t testing.TB, what string, d Decision, out Outcome, r Reason) {
	t.Helper()
	if d.Outcome != out || d.Reason != r {
		t.Errorf("%s: got outcome %d reason %q (note %q), want %d %q", what, d.Outcome, d.Reason, d.Note, out, r)
	}
}

func TestDecideCardStage(t *testing.T) {
	now := testEpoch // Monday 09:30 UTC
	cases := []struct {
		name  string
		setup func(t *testing.T, s *Store)
		req   func() Request
		out   Outcome
		why   Reason
	}{
		{"random uid wins over a valid card", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", adaPIN, nil) },
			func() Request { r := cardReq(uidAda, ModeCardPIN, now); r.RandomUID = true; return r }, Denied, ReasonRandomUID},
		{"unknown card", nil, func() Request { return cardReq(uidBob, ModeCardPIN, now) }, Denied, ReasonUnknownCard},
		{"no uid", nil, func() Request { return cardReq(nil, ModeCardOnly, now) }, Denied, ReasonUnknownCard},
		{"valid card, card+pin: need the PIN", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", adaPIN, nil) },
			func() Request { return cardReq(uidAda, ModeCardPIN, now) }, NeedPIN, ReasonPINRequired},
		{"card-only door", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", adaPIN, nil) },
			func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"card-or-pin door with a card", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", adaPIN, nil) },
			func() Request { return cardReq(uidAda, ModeCardOrPIN, now) }, Granted, ReasonGranted},
		{"card-only flag on a card+pin door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", "", func(c *Card) { c.Flags.CardOnly = true })
		}, func() Request { return cardReq(uidAda, ModeCardPIN, now) }, Granted, ReasonGranted},
		{"no PIN enrolled on a card+pin door", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", "", nil) },
			func() Request { return cardReq(uidAda, ModeCardPIN, now) }, Denied, ReasonPINRequired},
		{"revoked card", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, nil)
			mustDo(t, s.Revoke(Revocation{UID: uidAda, Reason: "lost"}))
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonRevoked},
		{"revoked holder, card enrolled after the revocation", func(t *testing.T, s *Store) {
			mustDo(t, s.Revoke(Revocation{HolderID: "ada", Reason: "left"}))
			enrol(t, s, uidAda, "ada", adaPIN, nil)
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonRevoked},
		{"revoked before locked out", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, nil)
			for range 5 {
				decide(t, s, pinReq(uidAda, "000000", now))
			}
			mustDo(t, s.Revoke(Revocation{UID: uidAda}))
		}, func() Request { return cardReq(uidAda, ModeCardPIN, now) }, Denied, ReasonRevoked},
		{"locked out before expired", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.ValidUntil = now.Add(10 * time.Second) })
			for range 5 {
				decide(t, s, pinReq(uidAda, "000000", now))
			}
		}, func() Request { return cardReq(uidAda, ModeCardPIN, now.Add(20*time.Second)) }, Denied, ReasonLockedOut},
		{"expired", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.ValidUntil = now })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonExpired},
		{"not yet valid", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.ValidFrom = now.Add(time.Second) })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonNotYetValid},
		{"valid from now", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.ValidFrom, c.ValidUntil = now, now.Add(time.Second) })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"expired before wrong door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.ValidUntil = now; c.Doors = []string{"lab"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonExpired},
		{"wrong door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = []string{"lab", "building-b"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonWrongDoor},
		{"no doors at all", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = nil })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonWrongDoor},
		{"door group", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = []string{"building-a"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"every door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = []string{"*"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"wrong door before outside schedule", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) {
				c.Doors = []string{"lab"}
				c.Schedule.Weekly[time.Tuesday] = []Window{{From: 0, To: 1440}}
			})
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonWrongDoor},
		{"outside schedule: no window on Monday", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Schedule.Weekly[time.Tuesday] = []Window{{From: 0, To: 1440}} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonOutsideSchedule},
		{"outside schedule: before the window", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) {
				c.Schedule.Weekly[time.Monday] = []Window{{From: 6 * 60, To: 9 * 60}, {From: 9*60 + 31, To: 17 * 60}}
			})
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonOutsideSchedule},
		{"inside the second window", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) {
				c.Schedule.Weekly[time.Monday] = []Window{{From: 6 * 60, To: 9 * 60}, {From: 9*60 + 30, To: 17 * 60}}
			})
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"holiday", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Schedule.Holidays = []string{"2026-03-02"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Denied, ReasonOutsideSchedule},
		{"holiday on another day", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Schedule.Holidays = []string{"2026-03-03"} })
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"outside schedule before lockdown", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Schedule.Holidays = []string{"2026-03-02"} })
		}, func() Request { r := cardReq(uidAda, ModeCardOnly, now); r.Lockdown = true; return r }, Denied, ReasonOutsideSchedule},
		{"lockdown in the request", func(t *testing.T, s *Store) { enrol(t, s, uidAda, "ada", adaPIN, nil) },
			func() Request { r := cardReq(uidAda, ModeCardOnly, now); r.Lockdown = true; return r }, Denied, ReasonLockdown},
		{"lockdown stored for the door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, nil)
			mustDo(t, s.SetLockdown("front", true))
		}, func() Request { return cardReq(uidAda, ModeCardPIN, now) }, Denied, ReasonLockdown},
		{"lockdown of another door", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, nil)
			mustDo(t, s.SetLockdown("lab", true))
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
		{"lockdown override", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Flags.LockdownOverride = true })
		}, func() Request { r := cardReq(uidAda, ModeCardPIN, now); r.Lockdown = true; return r }, NeedPIN, ReasonPINRequired},
		{"revocation lifted", func(t *testing.T, s *Store) {
			enrol(t, s, uidAda, "ada", adaPIN, nil)
			mustDo(t, s.Revoke(Revocation{UID: uidAda}))
			mustDo(t, s.Reinstate(Revocation{UID: uidAda}))
		}, func() Request { return cardReq(uidAda, ModeCardOnly, now) }, Granted, ReasonGranted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			d := decide(t, s, tc.req())
			expect(t, tc.name, d, tc.out, tc.why)
		})
	}
}

func TestDecideFillsHolder(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Flags.ExtendedUnlock = true })
	d := decide(t, s, cardReq(uidAda, ModeCardOnly, testEpoch))
	if d.HolderID != "ada" || d.HolderName != "Card ada" || !d.ExtendedUnlock {
		t.Errorf("decision %+v: want holder ada, the card's name and extended unlock", d)
	}
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada Lovelace"}))
	d = decide(t, s, cardReq(uidAda, ModeCardOnly, testEpoch))
	if d.HolderName != "Ada Lovelace" {
		t.Errorf("holder name %q, want the holder record's", d.HolderName)
	}
}

func TestDecideBadRequests(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = []string{"*"} })
	for _, req := range []Request{
		{UID: uidAda, Door: "front", Mode: "sometimes", Now: testEpoch, ClockTrusted: true},
		{UID: uidAda, Door: "", Mode: ModeCardOnly, Now: testEpoch, ClockTrusted: true},
		{UID: uidAda, Door: "front", Mode: "", PIN: []byte(adaPIN), Now: testEpoch, ClockTrusted: true},
	} {
		d, err := s.Decide(req)
		if !errors.Is(err, ErrInvalidArgument) || d.Outcome != Denied {
			t.Errorf("Decide(%+v) = %+v, %v; want Denied and ErrInvalidArgument", req, d, err)
		}
	}
}

func TestDecidePINStage(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	dh, err := HashPIN([]byte(adaDuress), nil, fastPIN)
	mustDo(t, err)
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada", DuressPINHash: dh}))
	enrol(t, s, uidBob, "bob", "", func(c *Card) { c.Flags.CardOnly = true })
	enrol(t, s, uidCleo, "cleo", "", nil)

	expect(t, "right PIN", decide(t, s, pinReq(uidAda, adaPIN, testEpoch)), Granted, ReasonGranted)
	expect(t, "wrong PIN", decide(t, s, pinReq(uidAda, "482917", testEpoch)), Denied, ReasonBadPIN)
	expect(t, "empty PIN", decide(t, s, pinReq(uidAda, "", testEpoch)), Denied, ReasonBadPIN)
	expect(t, "PIN with a letter", decide(t, s, pinReq(uidAda, "48291A", testEpoch)), Denied, ReasonBadPIN)
	expect(t, "PIN too long", decide(t, s, pinReq(uidAda, adaPIN+"1234567", testEpoch)), Denied, ReasonBadPIN)
	expect(t, "duress PIN", decide(t, s, pinReq(uidAda, adaDuress, testEpoch)), Granted, ReasonGrantedDuress)
	expect(t, "PIN for a card-only card", decide(t, s, pinReq(uidBob, "1234", testEpoch)), Granted, ReasonGranted)
	expect(t, "PIN for a card with none", decide(t, s, pinReq(uidCleo, "1234", testEpoch)), Denied, ReasonPINRequired)
	expect(t, "PIN for an unknown card", decide(t, s, pinReq([]byte{9, 9, 9, 9}, adaPIN, testEpoch)), Denied, ReasonUnknownCard)

	// Checks before the PIN run again at the PIN stage: a card revoked
	// between the two stages is refused even with the right PIN.
	mustDo(t, s.Revoke(Revocation{UID: uidAda}))
	expect(t, "right PIN, revoked meanwhile", decide(t, s, pinReq(uidAda, adaPIN, testEpoch)), Denied, ReasonRevoked)

	// Card-or-PIN without a card: a PIN is not a keypad code.
	r := Request{PIN: []byte(adaPIN), Door: "front", Mode: ModeCardOrPIN, Now: testEpoch, ClockTrusted: true}
	d := decide(t, s, r)
	expect(t, "a PIN typed alone", d, Denied, ReasonUnknownCard)
	if d.Note != "no keypad code matches" {
		t.Errorf("note %q should say no keypad code matches", d.Note)
	}
}

func TestDecideLockout(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	now := testEpoch
	for i := 1; i <= 4; i++ {
		expect(t, "bad PIN", decide(t, s, pinReq(uidAda, "111111", now)), Denied, ReasonBadPIN)
	}
	d := decide(t, s, pinReq(uidAda, "111111", now))
	expect(t, "fifth bad PIN", d, Denied, ReasonLockedOut)
	if !strings.Contains(d.Note, "30s") {
		t.Errorf("note %q should give the 30s lockout", d.Note)
	}
	// The lockout survives a restart.
	s = reopen(t, s, opts)
	expect(t, "card stage while locked out", decide(t, s, cardReq(uidAda, ModeCardPIN, now.Add(29*time.Second))), Denied, ReasonLockedOut)
	expect(t, "right PIN while locked out", decide(t, s, pinReq(uidAda, adaPIN, now.Add(29*time.Second))), Denied, ReasonLockedOut)
	expect(t, "card-only door while locked out", decide(t, s, cardReq(uidAda, ModeCardOnly, now.Add(29*time.Second))), Denied, ReasonLockedOut)

	// After 30 s the card is back; the next bad PIN locks it for 60 s.
	now = now.Add(30 * time.Second)
	expect(t, "card stage after the lockout", decide(t, s, cardReq(uidAda, ModeCardPIN, now)), NeedPIN, ReasonPINRequired)
	d = decide(t, s, pinReq(uidAda, "111111", now))
	expect(t, "bad PIN after a lockout", d, Denied, ReasonLockedOut)
	if !strings.Contains(d.Note, "1m0s") {
		t.Errorf("note %q should give the doubled 1m0s lockout", d.Note)
	}
	// Doubling stops at 15 minutes.
	for _, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute} {
		now = now.Add(15 * time.Minute)
		d = decide(t, s, pinReq(uidAda, "111111", now))
		if d.Reason != ReasonLockedOut || !strings.Contains(d.Note, want.String()) {
			t.Errorf("lockout %+v, want %s", d, want)
		}
	}
	// The right PIN after the lockout resets the count: four bad PINs are
	// again just bad PINs.
	now = now.Add(15 * time.Minute)
	expect(t, "right PIN after the lockout", decide(t, s, pinReq(uidAda, adaPIN, now)), Granted, ReasonGranted)
	for range 4 {
		expect(t, "bad PIN after reset", decide(t, s, pinReq(uidAda, "111111", now)), Denied, ReasonBadPIN)
	}
}

func TestDecideLockoutConfigurable(t *testing.T) {
	s := openTest(t, &Options{PINParams: fastPIN, Lockout: LockoutPolicy{MaxBadPINs: 2, Backoff: time.Minute, MaxBackoff: 2 * time.Minute}})
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	expect(t, "first", decide(t, s, pinReq(uidAda, "111111", testEpoch)), Denied, ReasonBadPIN)
	expect(t, "second", decide(t, s, pinReq(uidAda, "111111", testEpoch)), Denied, ReasonLockedOut)
	expect(t, "59 s later", decide(t, s, cardReq(uidAda, ModeCardPIN, testEpoch.Add(59*time.Second))), Denied, ReasonLockedOut)
	expect(t, "60 s later", decide(t, s, cardReq(uidAda, ModeCardPIN, testEpoch.Add(60*time.Second))), NeedPIN, ReasonPINRequired)
}

func TestDecideDoorPINLimit(t *testing.T) {
	s := openTest(t, &Options{PINParams: fastPIN, Lockout: LockoutPolicy{DoorMaxBadPINs: 3, DoorWindow: time.Minute}})
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	enrol(t, s, uidBob, "bob", "7351", nil)
	enrol(t, s, uidCleo, "cleo", "8642", nil)
	now := testEpoch
	expect(t, "bob bad", decide(t, s, pinReq(uidBob, "0000", now)), Denied, ReasonBadPIN)
	expect(t, "cleo bad", decide(t, s, pinReq(uidCleo, "0000", now.Add(10*time.Second))), Denied, ReasonBadPIN)
	d := decide(t, s, pinReq(uidBob, "0000", now.Add(20*time.Second)))
	if d.Reason != ReasonBadPIN || !strings.Contains(d.Note, "this door") {
		t.Errorf("third bad PIN at the door: %+v, want bad_pin noting the door limit", d)
	}
	// Ada has made no mistake, but the door now refuses PINs.
	expect(t, "ada card stage", decide(t, s, cardReq(uidAda, ModeCardPIN, now.Add(30*time.Second))), Denied, ReasonLockedOut)
	expect(t, "ada right PIN", decide(t, s, pinReq(uidAda, adaPIN, now.Add(30*time.Second))), Denied, ReasonLockedOut)
	expect(t, "ada at another door", decide(t, s, func() Request {
		r := pinReq(uidAda, adaPIN, now.Add(30*time.Second))
		r.DoorGroups = []string{"front"}
		r.Door = "side"
		return r
	}()), Granted, ReasonGranted)
	// A card-only door is not affected: it takes no PIN.
	expect(t, "card-only mode", decide(t, s, cardReq(uidAda, ModeCardOnly, now.Add(30*time.Second))), Granted, ReasonGranted)
	// Once the first bad PIN is a minute old, PINs are taken again.
	expect(t, "ada after the window", decide(t, s, pinReq(uidAda, adaPIN, now.Add(61*time.Second))), Granted, ReasonGranted)
}

// TestDecideConstantWork checks that the PIN stage does the same argon2id
// work whatever the answer: right, wrong, malformed, unknown card, locked
// out, revoked, random UID.
func TestDecideConstantWork(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	enrol(t, s, uidCleo, "cleo", "", nil)
	enrol(t, s, uidBob, "bob", "7351", nil)
	dh, err := HashPIN([]byte("9753"), nil, fastPIN)
	mustDo(t, err)
	mustDo(t, s.PutHolder(Holder{ID: "bob", DuressPINHash: dh}))
	locked := []byte{0x04, 1, 2, 3, 4, 5, 6}
	enrol(t, s, locked, "lena", adaPIN, nil)
	for range 5 {
		decide(t, s, pinReq(locked, "000000", testEpoch))
	}
	revoked := []byte{0x04, 6, 5, 4, 3, 2, 1}
	enrol(t, s, revoked, "rex", adaPIN, nil)
	mustDo(t, s.Revoke(Revocation{UID: revoked}))

	cost := func(req Request) uint64 {
		before := s.PINChecks()
		if _, err := s.Decide(req); err != nil {
			t.Fatal(err)
		}
		return s.PINChecks() - before
	}
	random := pinReq(uidAda, adaPIN, testEpoch)
	random.RandomUID = true
	noUID := pinReq(nil, adaPIN, testEpoch)
	noUID.Mode = ModeCardOrPIN
	for name, req := range map[string]Request{
		"right":           pinReq(uidAda, adaPIN, testEpoch),
		"wrong":           pinReq(uidAda, "000001", testEpoch),
		"malformed":       pinReq(uidAda, "12", testEpoch),
		"unknown card":    pinReq([]byte{7, 7, 7, 7}, adaPIN, testEpoch),
		"locked out":      pinReq(locked, adaPIN, testEpoch),
		"revoked":         pinReq(revoked, adaPIN, testEpoch),
		"random uid":      random,
		"no uid":          noUID,
		"no PIN enrolled": pinReq(uidCleo, adaPIN, testEpoch),
	} {
		if n := cost(req); n != 1 {
			t.Errorf("%s: %d argon2id derivations, want exactly 1", name, n)
		}
	}
	// A holder with a duress PIN costs one more, on every answer alike.
	for name, pin := range map[string]string{"right": "7351", "wrong": "7352", "duress": "9753"} {
		if n := cost(pinReq(uidBob, pin, testEpoch)); n != 2 {
			t.Errorf("duress holder, %s PIN: %d derivations, want 2", name, n)
		}
	}
	// The card stage never runs argon2id.
	if n := cost(cardReq(uidAda, ModeCardPIN, testEpoch)); n != 0 {
		t.Errorf("card stage: %d derivations, want 0", n)
	}
}

func TestDecideUntrustedClock(t *testing.T) {
	boot := time.Date(1970, 1, 1, 0, 0, 42, 0, time.UTC) // a Pi without RTC
	signed := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type card struct {
		name string
		mod  func(c *Card)
	}
	cards := []card{
		{"plain", nil},
		{"ends later", func(c *Card) { c.ValidUntil = signed.Add(24 * time.Hour) }},
		{"ended before the signed time", func(c *Card) { c.ValidUntil = signed.Add(-time.Hour) }},
		{"started before the signed time", func(c *Card) { c.ValidFrom = signed.Add(-time.Hour) }},
		{"starts later", func(c *Card) { c.ValidFrom = signed.Add(time.Hour) }},
		{"schedule", func(c *Card) { c.Schedule.Weekly[time.Thursday] = []Window{{From: 0, To: 60}} }},
	}
	want := map[UntrustedClockPolicy]map[string]Reason{
		UntrustedDenyBound: {
			"plain": ReasonGranted, "ends later": ReasonExpired, "ended before the signed time": ReasonExpired,
			"started before the signed time": ReasonGranted, "starts later": ReasonNotYetValid, "schedule": ReasonOutsideSchedule,
		},
		UntrustedIgnoreSchedules: {
			"plain": ReasonGranted, "ends later": ReasonGranted, "ended before the signed time": ReasonExpired,
			"started before the signed time": ReasonGranted, "starts later": ReasonGranted, "schedule": ReasonGranted,
		},
	}
	for pol, wants := range want {
		t.Run(pol.String(), func(t *testing.T) {
			s := openTest(t, &Options{PINParams: fastPIN, UntrustedClock: pol})
			mustDo(t, s.MarkSigned(boot, signed))
			for i, c := range cards {
				uid := []byte{0x04, byte(i), 0, 0}
				enrol(t, s, uid, "h", "", c.mod)
				req := cardReq(uid, ModeCardOnly, boot)
				req.ClockTrusted = false
				d := decide(t, s, req)
				if d.Reason != wants[c.name] {
					t.Errorf("%s: reason %q (note %q), want %q", c.name, d.Reason, d.Note, wants[c.name])
				}
				if c.name != "plain" && c.name != "started before the signed time" && !strings.Contains(d.Note, "clock not trusted") {
					t.Errorf("%s: note %q should say the clock is not trusted", c.name, d.Note)
				}
			}
		})
	}
}

func TestDecideScheduleInDoorTimeZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	mustDo(t, err)
	s := openTest(t, &Options{PINParams: fastPIN, Location: berlin})
	enrol(t, s, uidAda, "ada", "", func(c *Card) {
		c.Schedule.Weekly[time.Monday] = []Window{{From: 8 * 60, To: 9 * 60}} // 08:00-09:00 Berlin time
		c.Schedule.Holidays = []string{"2026-03-31"}
	})
	for _, tc := range []struct {
		at   time.Time
		want Reason
	}{
		{time.Date(2026, 3, 2, 7, 30, 0, 0, time.UTC), ReasonGranted},           // 08:30 CET
		{time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC), ReasonOutsideSchedule},   // 09:30 CET
		{time.Date(2026, 3, 30, 6, 30, 0, 0, time.UTC), ReasonGranted},          // 08:30 CEST, after the change
		{time.Date(2026, 3, 30, 7, 30, 0, 0, time.UTC), ReasonOutsideSchedule},  // 09:30 CEST
		{time.Date(2026, 3, 30, 22, 30, 0, 0, time.UTC), ReasonOutsideSchedule}, // 00:30 Tuesday 31st, a holiday, in Berlin
	} {
		d := decide(t, s, cardReq(uidAda, ModeCardOnly, tc.at))
		if d.Reason != tc.want {
			t.Errorf("at %s: %q, want %q", tc.at.In(berlin), d.Reason, tc.want)
		}
	}
}

// Time rules are never judged before the clock floor, the latest signed
// site time, even while the clock is trusted: a clock set back while it
// claims to be synced (a forged NTP answer, a bad real-time clock) cannot
// reopen an expired card or a closed schedule. A lag within ClockSkew is
// the normal difference between two clocks: it changes the time the rules
// are judged at, and nothing else.
func TestDecideClockFloor(t *testing.T) {
	floor := testEpoch // Monday 2026-03-02 09:30 UTC
	const lagNote = "local clock behind the last signed site time by "
	cases := []struct {
		name  string
		floor time.Time     // zero: no signed message seen
		skew  time.Duration // Options.ClockSkew (0: the default, 30 s)
		now   time.Time     // the door's clock, trusted
		card  func(c *Card)
		pin   bool   // the PIN stage (card+PIN), else the card stage (card only)
		want  Reason // ReasonGranted for a grant
		note  string // "": no note; else a part of it
	}{
		// Validity dates.
		{name: "expired by the floor, clock set back before the end", floor: floor, now: floor.Add(-(3*time.Hour + 2*time.Minute)),
			card: func(c *Card) { c.ValidUntil = floor.Add(-time.Hour) }, want: ReasonExpired, note: lagNote + "3h2m0s; judged at the site time 2026-03-02T09:30:00Z"},
		{name: "the same without a floor", now: floor.Add(-(3*time.Hour + 2*time.Minute)),
			card: func(c *Card) { c.ValidUntil = floor.Add(-time.Hour) }, want: ReasonGranted},
		{name: "expired by the floor, PIN stage", floor: floor, now: floor.Add(-2 * time.Hour), pin: true,
			card: func(c *Card) { c.ValidUntil = floor.Add(-time.Hour) }, want: ReasonExpired, note: lagNote + "2h0m0s"},
		{name: "ends exactly at the floor", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.ValidUntil = floor }, want: ReasonExpired, note: lagNote},
		{name: "ends after the floor", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.ValidUntil = floor.Add(time.Minute) }, want: ReasonGranted, note: lagNote + "1h0m0s"},
		{name: "starts after now, at the floor", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.ValidFrom = floor }, want: ReasonGranted, note: lagNote + "1h0m0s"},
		{name: "starts after now, before the floor", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.ValidFrom = floor.Add(-time.Minute) }, want: ReasonGranted, note: lagNote},
		{name: "starts after the floor", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.ValidFrom = floor.Add(time.Minute) }, want: ReasonNotYetValid, note: lagNote},
		{name: "clock ahead of the floor is used", floor: floor, now: floor.Add(2 * time.Hour),
			card: func(c *Card) { c.ValidUntil = floor.Add(time.Hour) }, want: ReasonExpired},

		// Weekly windows and holidays, read at the floor.
		{name: "window open at the floor, clock set back before it", floor: floor, now: floor.Add(-3 * time.Hour),
			card: func(c *Card) { c.Schedule.Weekly[time.Monday] = []Window{{From: 9 * 60, To: 10 * 60}} }, want: ReasonGranted, note: lagNote + "3h0m0s"},
		{name: "window closed at the floor, clock set back into it", floor: floor, now: floor.Add(-time.Hour),
			card: func(c *Card) { c.Schedule.Weekly[time.Monday] = []Window{{From: 8 * 60, To: 9 * 60}} }, want: ReasonOutsideSchedule, note: lagNote + "1h0m0s"},
		{name: "the same without a floor", now: floor.Add(-time.Hour),
			card: func(c *Card) { c.Schedule.Weekly[time.Monday] = []Window{{From: 8 * 60, To: 9 * 60}} }, want: ReasonGranted},
		{name: "holiday at the floor, clock set back to the day before", floor: floor, now: floor.Add(-12 * time.Hour),
			card: func(c *Card) { c.Schedule.Holidays = []string{"2026-03-02"} }, want: ReasonOutsideSchedule, note: "holiday 2026-03-02"},

		// A normal lag: the floor is used, nothing else shows.
		{name: "window opens between the clock and the floor", floor: floor, now: floor.Add(-3 * time.Second),
			card: func(c *Card) { c.Schedule.Weekly[time.Monday] = []Window{{From: 9*60 + 30, To: 10 * 60}} }, want: ReasonGranted},
		{name: "the same without a floor", now: floor.Add(-3 * time.Second),
			card: func(c *Card) { c.Schedule.Weekly[time.Monday] = []Window{{From: 9*60 + 30, To: 10 * 60}} }, want: ReasonOutsideSchedule},
		{name: "ends between the clock and the floor", floor: floor, now: floor.Add(-3 * time.Second),
			card: func(c *Card) { c.ValidUntil = floor.Add(-time.Second) }, want: ReasonExpired},
		{name: "valid by both", floor: floor, now: floor.Add(-3 * time.Second),
			card: func(c *Card) { c.ValidFrom, c.ValidUntil = floor.Add(-time.Hour), floor.Add(time.Hour) }, want: ReasonGranted},
		{name: "lag at the skew", floor: floor, now: floor.Add(-30 * time.Second),
			card: func(c *Card) { c.ValidUntil = floor.Add(time.Hour) }, want: ReasonGranted},
		{name: "lag past the skew", floor: floor, now: floor.Add(-31 * time.Second),
			card: func(c *Card) { c.ValidUntil = floor.Add(time.Hour) }, want: ReasonGranted, note: lagNote + "31s"},
		{name: "lag within a wider configured skew", floor: floor, skew: time.Hour, now: floor.Add(-50 * time.Minute),
			card: func(c *Card) { c.ValidUntil = floor.Add(-time.Minute) }, want: ReasonExpired},

		// No time rule, no note.
		{name: "card without time rules", floor: floor, now: floor.Add(-3 * time.Hour), want: ReasonGranted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, &Options{PINParams: fastPIN, ClockSkew: tc.skew})
			if !tc.floor.IsZero() {
				mustDo(t, s.MarkSigned(tc.floor, tc.floor))
			}
			pin := ""
			if tc.pin {
				pin = adaPIN
			}
			enrol(t, s, uidAda, "ada", pin, tc.card)
			req := cardReq(uidAda, ModeCardOnly, tc.now)
			if tc.pin {
				req = pinReq(uidAda, adaPIN, tc.now)
			}
			d := decide(t, s, req)
			out := Denied
			if tc.want == ReasonGranted {
				out = Granted
			}
			expect(t, tc.name, d, out, tc.want)
			switch {
			case tc.note == "" && d.Note != "":
				t.Errorf("note %q, want none", d.Note)
			case !strings.Contains(d.Note, tc.note):
				t.Errorf("note %q, want it to contain %q", d.Note, tc.note)
			}
		})
	}
}

// An untrusted clock keeps its policies: validity dates are judged against
// the floor alone, whether the clock is behind or ahead of it.
func TestDecideUntrustedClockAheadOfFloor(t *testing.T) {
	floor := testEpoch
	for _, pol := range []UntrustedClockPolicy{UntrustedDenyBound, UntrustedIgnoreSchedules} {
		t.Run(pol.String(), func(t *testing.T) {
			s := openTest(t, &Options{PINParams: fastPIN, UntrustedClock: pol})
			mustDo(t, s.MarkSigned(floor, floor))
			// The untrusted clock says the card has ended; the floor cannot
			// tell. The policy decides, as before.
			enrol(t, s, uidAda, "ada", "", func(c *Card) { c.ValidUntil = floor.Add(time.Hour) })
			req := cardReq(uidAda, ModeCardOnly, floor.Add(48*time.Hour))
			req.ClockTrusted = false
			d := decide(t, s, req)
			want, out := ReasonExpired, Denied
			if pol == UntrustedIgnoreSchedules {
				want, out = ReasonGranted, Granted
			}
			expect(t, "untrusted clock ahead", d, out, want)
			if !strings.Contains(d.Note, "clock not trusted") || strings.Contains(d.Note, "local clock behind") {
				t.Errorf("note %q", d.Note)
			}
		})
	}
}

// TestDoorNamesNumberedLater: a group no card listed when a decision asked
// about it opens the door as soon as a card that lists it is stored.
func TestDoorNamesNumberedLater(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.PutCard(Card{UID: uidAda, HolderID: "ada", Doors: []string{"front"}}))
	req := func(uid []byte) Request {
		return Request{UID: uid, Door: "side", DoorGroups: []string{"annex"}, Mode: ModeCardOnly, Now: testEpoch, ClockTrusted: true}
	}
	if d, err := s.Decide(req(uidAda)); err != nil || d.Reason != ReasonWrongDoor {
		t.Fatalf("card for front at side: %+v, %v", d, err)
	}
	mustDo(t, s.PutCard(Card{UID: uidBob, HolderID: "bob", Doors: []string{"annex"}}))
	if d, err := s.Decide(req(uidBob)); err != nil || d.Outcome != Granted {
		t.Errorf("card for the annex group at side, after the group was first listed: %+v, %v", d, err)
	}
	mustDo(t, s.PutCard(Card{UID: uidAda, HolderID: "ada", Doors: []string{"*"}}))
	if d, err := s.Decide(req(uidAda)); err != nil || d.Outcome != Granted {
		t.Errorf("card for every door: %+v, %v", d, err)
	}
}

// TestDecideAllocations: what Decide allocates beyond bbolt's own work
// (its read transaction, the buckets it opens, its lookups) is the
// decision's two strings, the holder id and name.
func TestDecideAllocations(t *testing.T) {
	s := openTest(t, nil)
	pin, err := HashPIN([]byte("2468"), nil, standardPIN)
	mustDo(t, err)
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada Lovelace"}))
	mustDo(t, s.PutCard(Card{UID: uidAda, HolderID: "ada", HolderName: "Ada Lovelace", Doors: []string{"front", "staff"}, PINHash: pin}))
	req := Request{UID: uidAda, Door: "front", DoorGroups: []string{"lobby"}, Mode: ModeCardPIN, Now: testEpoch, ClockTrusted: true}
	if d, err := s.Decide(req); err != nil || d.Outcome != NeedPIN {
		t.Fatalf("Decide: %+v, %v", d, err)
	}
	decide := testing.AllocsPerRun(200, func() {
		if _, err := s.Decide(req); err != nil {
			t.Fatal(err)
		}
	})
	// The same reads through bbolt alone: the card, its holder, the two
	// revocation buckets, the lockout, the lockdown and the door's bad
	// PINs.
	door := []byte(req.Door)
	reads := testing.AllocsPerRun(200, func() {
		mustDo(t, s.view(func(tx *bolt.Tx) error {
			tx.Bucket(bucketCards).Get(uidAda)
			tx.Bucket(bucketHolders).Get([]byte("ada"))
			tx.Bucket(bucketRevokedCards).Get(uidAda)
			tx.Bucket(bucketRevokedHolders).Get([]byte("ada"))
			tx.Bucket(bucketLockout).Get(uidAda)
			tx.Bucket(bucketLockdown).Get(door)
			tx.Bucket(bucketDoorFails).Get(door)
			return nil
		}))
	})
	t.Logf("allocations per decision: %.0f, of which bbolt's reads %.0f", decide, reads)
	if decide > reads+2 {
		t.Errorf("Decide allocates %.0f times, bbolt's reads %.0f: more than the result's two strings on top", decide, reads)
	}
}

// TestNamesDamagedKey moves a door's number to another name, as one
// flipped bit of a key in the names bucket would ('1' and '3' differ in
// one bit): the card must not open the other door, and the checks must
// find it.
func TestNamesDamagedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := Open(path, testOptions())
	mustDo(t, err)
	mustDo(t, s.PutCard(Card{UID: uidAda, HolderID: "ada", Doors: []string{"door1"}}))
	mustDo(t, s.Close())
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNames)
		v := append([]byte(nil), b.Get(nameKey("door1"))...)
		if err := b.Delete(nameKey("door1")); err != nil {
			return err
		}
		return b.Put(nameKey("door3"), v)
	})
	s, err = Open(path, testOptions())
	mustDo(t, err)
	defer s.Close()
	if d, err := s.Decide(Request{UID: uidAda, Door: "door3", Mode: ModeCardOnly, Now: testEpoch, ClockTrusted: true}); d.Outcome == Granted || !errors.Is(err, ErrCorrupt) {
		t.Errorf("card for door1 at door3 after the names key was damaged: %+v, %v; want Denied and ErrCorrupt", d, err)
	}
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Check: %v, want ErrCorrupt", err)
	}
	<-s.CheckDone()
	if err := s.Fault(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("background check: %v, want ErrCorrupt", err)
	}
}
