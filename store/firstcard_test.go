package store

import "testing"

// TestDecideFirstCard: a card counts for a first-card unlock schedule only
// when its door list names the group itself, at the card stage and after
// the PIN; a wildcard or the door's id alone does not count, and a denial
// never does.
func TestDecideFirstCard(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", adaPIN, func(c *Card) { c.Doors = []string{"front", "managers"} })
	enrol(t, s, uidBob, "bob", "", func(c *Card) { c.Doors = []string{"*"}; c.Flags.CardOnly = true })
	enrol(t, s, uidCleo, "cleo", "", func(c *Card) { c.Flags.CardOnly = true; c.ValidUntil = testEpoch })
	for _, tc := range []struct {
		name  string
		req   Request
		out   Outcome
		first bool
	}{
		{"member, card stage", withGroup(cardReq(uidAda, ModeCardOnly, testEpoch)), Granted, true},
		{"member, PIN stage", withGroup(pinReq(uidAda, adaPIN, testEpoch)), Granted, true},
		{"member, not asked", cardReq(uidAda, ModeCardOnly, testEpoch), Granted, false},
		{"wildcard card", withGroup(cardReq(uidBob, ModeCardOnly, testEpoch)), Granted, false},
		{"expired card", withGroup(cardReq(uidCleo, ModeCardOnly, testEpoch)), Denied, false},
	} {
		d := decide(t, s, tc.req)
		if d.Outcome != tc.out || d.FirstCard != tc.first {
			t.Errorf("%s: outcome %d first card %v (reason %q), want %d %v", tc.name, d.Outcome, d.FirstCard, d.Reason, tc.out, tc.first)
		}
	}
}

func withGroup(r Request) Request {
	r.FirstCardGroup = "managers"
	return r
}
