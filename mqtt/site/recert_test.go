package site

import (
	"slices"
	"testing"

	"github.com/latchdoor/latch/store"
)

// Withdrawing a holder from a group takes away every door of the group,
// whichever entry of a card's door list reached it, and leaves every
// other door the holder could open.
func TestWithdrawGroup(t *testing.T) {
	s, _, _ := newSiteWithDoors(t, nil, "front", "back", "lab1", "other")
	for door, groups := range map[string][]string{"front": {"staff"}, "back": {"staff", "lab"}, "lab1": {"lab"}} {
		if _, err := s.SetGroups(t.Context(), door, groups, false); err != nil {
			t.Fatal(err)
		}
	}
	card := func(uid byte, holder string, doors ...string) store.Op {
		return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{4, 0, 0, uid}, HolderID: holder, Doors: doors, PINHash: ""}}
	}
	ops := []store.Op{
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice"}},
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "bob"}},
		card(1, "alice", "staff"), card(2, "alice", "*"), card(3, "alice", "lab"), card(4, "alice", "other"), card(5, "alice", "front", "lab1"),
		card(6, "bob", "front", "back"),
	}
	if _, err := s.Commit(ops...); err != nil {
		t.Fatal(err)
	}
	q := AccessQuery{Policy: func(string) DoorPolicy { return DoorPolicy{Mode: store.ModeCardOnly, ClockTrusted: true} }}
	holders := func() []string {
		hs, doors, _, err := s.GroupHolders("staff", q)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(doors, []string{"back", "front"}) {
			t.Fatalf("staff doors %v", doors)
		}
		var out []string
		for _, h := range hs {
			out = append(out, h.Holder)
		}
		return out
	}
	if got := holders(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("holders before: %v", got)
	}
	opens := func() map[string][]string {
		rep, err := s.What("alice", q)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, e := range rep.Entries {
			out[e.UID] = append(out[e.UID], e.Door)
		}
		return out
	}
	before := opens()
	w, err := s.WithdrawGroup("alice", "staff")
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 4 { // cards 1, 2, 3 and 5; card 4 never reached staff
		t.Fatalf("%d ops, want 4: %+v", len(w), w)
	}
	if _, err := s.Commit(w...); err != nil {
		t.Fatal(err)
	}
	if got := holders(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("holders after: %v", got)
	}
	after := opens()
	for uid, doors := range before {
		var want []string
		for _, d := range doors {
			if d != "front" && d != "back" {
				want = append(want, d)
			}
		}
		if !slices.Equal(after[uid], want) {
			t.Errorf("card %s opens %v, want %v (before: %v)", uid, after[uid], want, doors)
		}
	}
	if again, err := s.WithdrawGroup("alice", "staff"); err != nil || len(again) != 0 {
		t.Errorf("second withdrawal: %v, %v; want nothing to do", again, err)
	}
	if _, _, _, err := s.GroupHolders("nowhere", q); err == nil {
		t.Error("a group with no door: no error")
	}
}
