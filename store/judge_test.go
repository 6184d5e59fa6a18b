package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// JudgeCard answers as Decide's card stage does, for random cards (dates,
// schedules with holidays, flags, PIN or none, door lists naming the door,
// its group, another door or "*"), revocations of the card or its holder,
// lockdown, every mode, trusted and untrusted clocks, in a time zone that
// is not UTC: Decide on a store holding the cards, JudgeCard on the cards
// and the facts the store holds about them.
func TestJudgeCardAgreesWithDecide(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err) // no time zone database on this machine
	}
	for _, untrusted := range []UntrustedClockPolicy{UntrustedIgnoreSchedules, UntrustedDenyBound} {
		t.Run(fmt.Sprint(untrusted), func(t *testing.T) {
			opts := &Options{PINParams: fastPIN, Location: loc, UntrustedClock: untrusted}
			judgeAgainstDecide(t, openTest(t, opts), opts, rand.New(rand.NewPCG(1, uint64(untrusted))))
		})
	}
}

func judgeAgainstDecide(t *testing.T, s *Store, opts *Options, rng *rand.Rand) {
	base := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	pinHash, err := HashPIN([]byte("246810"), nil, fastPIN)
	mustDo(t, err)
	type held struct {
		c       Card
		revoked bool
	}
	var cards []held
	holders := map[string]*Holder{}
	revokedHolders := map[string]bool{}
	for i := range 200 {
		c := Card{UID: []byte{0x04, byte(i >> 8), byte(i), 0x33}, HolderID: fmt.Sprintf("h%d", i%50), HolderName: "card name"}
		if i%7 > 0 && i%3 > 0 { // some holders have no record
			h := &Holder{ID: c.HolderID, Name: "Holder " + c.HolderID}
			mustDo(t, s.PutHolder(*h))
			holders[h.ID] = h
		}
		c.Doors = [][]string{{"front"}, {"building-a"}, {"back"}, {"*"}, {"back", "front"}}[rng.IntN(5)]
		if rng.IntN(2) == 0 {
			c.PINHash = pinHash
		}
		if rng.IntN(3) == 0 {
			c.ValidFrom = base.Add(time.Duration(rng.IntN(7*24)) * time.Hour)
		}
		if rng.IntN(3) == 0 {
			c.ValidUntil = base.Add(time.Duration(7*24+rng.IntN(14*24)) * time.Hour)
		}
		if rng.IntN(2) == 0 {
			for d := range 7 {
				if rng.IntN(3) > 0 {
					from := uint16(rng.IntN(12 * 60))
					c.Schedule.Weekly[d] = []Window{{From: from, To: from + uint16(1+rng.IntN(12*60))}}
				}
			}
			if rng.IntN(2) == 0 {
				c.Schedule.Holidays = []string{base.AddDate(0, 0, rng.IntN(21)).Format(time.DateOnly)}
			}
		}
		c.Flags = Flags{CardOnly: rng.IntN(4) == 0, ExtendedUnlock: rng.IntN(4) == 0, LockdownOverride: rng.IntN(4) == 0}
		mustDo(t, s.PutCard(c))
		revoked := false
		switch rng.IntN(8) {
		case 0:
			mustDo(t, s.Revoke(Revocation{UID: c.UID, Reason: "lost"}))
			revoked = true
		case 1:
			mustDo(t, s.Revoke(Revocation{HolderID: c.HolderID, Reason: "left"}))
			revokedHolders[c.HolderID] = true
		}
		cards = append(cards, held{c, revoked})
	}
	for n := range 4000 {
		h := cards[rng.IntN(len(cards))]
		req := Request{UID: h.c.UID, Door: "front", DoorGroups: []string{"building-a"},
			Mode:         []Mode{ModeCardOnly, ModeCardPIN, ModeCardOrPIN}[rng.IntN(3)],
			Lockdown:     rng.IntN(6) == 0,
			Now:          base.Add(time.Duration(rng.Int64N(int64(28 * 24 * time.Hour)))),
			ClockTrusted: rng.IntN(5) > 0,
		}
		want, err := s.Decide(req)
		mustDo(t, err)
		opens := slices.Contains(h.c.Doors, "*") || slices.Contains(h.c.Doors, "front") || slices.Contains(h.c.Doors, "building-a")
		got, err := JudgeCard(&h.c, &CardFacts{Holder: holders[h.c.HolderID], Revoked: h.revoked || revokedHolders[h.c.HolderID], Opens: opens}, req, opts)
		mustDo(t, err)
		if got != want {
			t.Fatalf("request %d, card %+v at %s (%+v):\nJudgeCard %+v\nDecide    %+v", n, h.c, req.Now, req, got, want)
		}
	}
	if d, err := JudgeCard(nil, &CardFacts{}, Request{UID: []byte{1, 2, 3, 4}, Door: "front", Mode: ModeCardPIN}, opts); err != nil || d.Reason != ReasonUnknownCard {
		t.Fatalf("unknown card: %+v %v", d, err)
	}
}

// The facts a door's store keeps that the site learns only from events
// (a card's lockout, the door's bad-PIN limit) and the clock floor decide
// as they do in Decide.
func TestJudgeCardLockoutsAndFloor(t *testing.T) {
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	c := &Card{UID: []byte{4, 1, 2, 3}, HolderID: "ada", PINHash: "x", Doors: []string{"front"}, ValidUntil: now.Add(time.Hour)}
	req := Request{UID: c.UID, Door: "front", Mode: ModeCardPIN, Now: now, ClockTrusted: true}
	for _, tc := range []struct {
		name string
		f    CardFacts
		out  Outcome
		r    Reason
	}{
		{"acceptable", CardFacts{Opens: true}, NeedPIN, ReasonPINRequired},
		{"card locked out", CardFacts{Opens: true, LockFails: 5, LockedUntil: now.Add(time.Minute)}, Denied, ReasonLockedOut},
		{"lockout over", CardFacts{Opens: true, LockFails: 5, LockedUntil: now}, NeedPIN, ReasonPINRequired},
		{"door refuses PINs", CardFacts{Opens: true, PINsRefusedUntil: now.Add(time.Minute)}, Denied, ReasonLockedOut},
		{"floor past the end date", CardFacts{Opens: true, Floor: now.Add(2 * time.Hour)}, Denied, ReasonExpired},
		{"wrong door", CardFacts{}, Denied, ReasonWrongDoor},
	} {
		d, err := JudgeCard(c, &tc.f, req, nil)
		mustDo(t, err)
		if d.Outcome != tc.out || d.Reason != tc.r {
			t.Errorf("%s: %d %s (%s), want %d %s", tc.name, d.Outcome, d.Reason, d.Note, tc.out, tc.r)
		}
	}
	if _, err := JudgeCard(c, &CardFacts{}, Request{UID: c.UID, Door: "front", Mode: "open"}, nil); err == nil {
		t.Fatal("an unknown mode was judged")
	}
}
