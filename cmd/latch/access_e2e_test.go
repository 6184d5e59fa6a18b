package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
)

// verdict is a decision in the three words the reports use, and its reason.
type verdict struct {
	decision string
	reason   store.Reason
}

func doorVerdict(d store.Decision) verdict {
	switch d.Outcome {
	case store.Granted:
		return verdict{"opens", d.Reason}
	case store.NeedPIN:
		return verdict{"opens with PIN", store.ReasonPINRequired}
	}
	return verdict{"denied", d.Reason}
}

// The access reports agree with the doors. Two doors running latchd (front
// in staff; back in staff and lab, then staff alone), 60 cards of 25
// holders with random door lists, validity dates, weekly windows,
// holidays, switches, PINs and revocations. For 1,000 random (holder,
// door, time) triples over the next three weeks, `who` (the card's
// entry, or its absence), `explain` and the door's own decision agree:
// the door's decision is store.Decide on the door's own bbolt file, after
// the door stopped, at the chosen time (the simulated door runs on the
// system clock, which the harness cannot move). A few cards are also
// tapped at the running doors. `who --at` a moment before later changes
// (revocations, new cards, a door leaving a group) matches Decide on a
// copy of each door's file taken at that moment.
func TestAccessReportsAgreeWithDoors(t *testing.T) {
	s, _, front, back := startE2E(t)
	s.ok(t, "", "door", "groups", "back", "staff,lab")
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	ctx := t.Context()
	call := func(method, path string, in any) []byte {
		t.Helper()
		raw, err := cl.call(ctx, method, path, in)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return raw
	}
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.Now().UTC().Truncate(time.Minute)
	holders := make([]string, 25)
	for i := range holders {
		holders[i] = fmt.Sprintf("h%02d", i)
		call("POST", "/v1/holders", holderAddReq{ID: holders[i], Name: "Holder " + holders[i]})
	}
	cardsOf := map[string][]string{}
	for i := range 60 {
		uid := fmt.Sprintf("0A%06X", i)
		c := cardAddReq{UID: uid, Holder: holders[i%len(holders)],
			Doors: [][]string{{"staff"}, {"lab"}, {"front"}, {"back"}, {"*"}, {"elsewhere"}, {"lab", "front"}}[rng.IntN(7)]}
		if rng.IntN(3) == 0 {
			c.ValidFrom = now.Add(time.Duration(rng.IntN(7*24)) * time.Hour)
		}
		if rng.IntN(3) == 0 {
			c.ValidUntil = now.Add(time.Duration(7*24+rng.IntN(14*24)) * time.Hour)
		}
		if rng.IntN(2) == 0 {
			for d := range 7 {
				if rng.IntN(3) > 0 {
					from := uint16(rng.IntN(12 * 60))
					c.Schedule.Weekly[d] = []store.Window{{From: from, To: from + uint16(60+rng.IntN(11*60))}}
				}
			}
			if rng.IntN(2) == 0 {
				c.Schedule.Holidays = []string{now.AddDate(0, 0, 1+rng.IntN(20)).Format(time.DateOnly)}
			}
		}
		c.Flags = store.Flags{CardOnly: rng.IntN(3) == 0, LockdownOverride: rng.IntN(5) == 0}
		call("POST", "/v1/cards", c)
		if rng.IntN(4) == 0 {
			call("POST", "/v1/cards/"+uid+"/pin", pinSetReq{Holder: c.Holder, PIN: "2468"})
		}
		switch rng.IntN(10) {
		case 0:
			call("POST", "/v1/revoke", revokeReq{UID: uid, Reason: "lost"})
		case 1:
			call("POST", "/v1/revoke", revokeReq{Holder: c.Holder, Reason: "left"})
		}
		cardsOf[c.Holder] = append(cardsOf[c.Holder], uid)
	}
	s.current(t, "front", "back")

	// Cards tapped at the running doors now: the door's event, explain.
	for _, d := range []*simDoor{front, back} {
		for _, uid := range []string{"0A000000", "0A000001", "0A000002", "0A000003"} {
			var xs []mqttsite.Explanation
			decodeInto(t, call("GET", "/v1/access/explain?"+url.Values{"uid": {uid}, "door": {d.name}}.Encode(), nil), &xs)
			if n := strings.Join(xs[0].Notes, "; "); !strings.Contains(n, "door mode card+pin reported by the door") ||
				!strings.Contains(n, "time zone UTC reported by the door") {
				t.Errorf("explain %s at %s: notes %q should name the mode and zone the door reported", uid, d.name, n)
			}
			d.tapPIN(uid, "", string(xs[0].Reason))
		}
	}

	// The doors' files as they are now: the moment of the --at check.
	snap := t.TempDir()
	front.quit()
	back.quit()
	for _, d := range []*simDoor{front, back} {
		copyFile(t, filepath.Join(d.data, "latch.db"), filepath.Join(snap, d.name+".db"))
	}
	then := time.Now().UTC()
	front.start()
	back.start()
	s.current(t, "front", "back")

	// Later changes: revocations, a new card, back leaves lab.
	// (A revocation of what is revoked, or a reinstatement of what is
	// not, is refused: either way the change is what the mix needs.)
	_, _ = cl.call(ctx, "POST", "/v1/revoke", revokeReq{Holder: "h03", Reason: "left"})
	_, _ = cl.call(ctx, "POST", "/v1/reinstate", revokeReq{UID: "0A000000"})
	_, _ = cl.call(ctx, "POST", "/v1/revoke", revokeReq{UID: "0A000005", Reason: "stolen"})
	call("POST", "/v1/cards", cardAddReq{UID: "0B000001", Holder: "h04", Doors: []string{"*"}, Flags: store.Flags{CardOnly: true}})
	s.ok(t, "", "door", "groups", "back", "staff")
	s.current(t, "front", "back")
	front.quit()
	back.quit()

	agree := func(what string, door string, at time.Time, st *store.Store, uids []string, who mqttsite.AccessReport) {
		t.Helper()
		in := map[string]mqttsite.AccessEntry{}
		for _, e := range who.Entries {
			in[e.UID] = e
		}
		for _, uid := range uids {
			raw, _ := cmdUID(uid)
			d, err := st.Decide(store.Request{UID: raw, Door: door, Mode: store.ModeCardPIN, Now: at, ClockTrusted: true})
			if err != nil {
				t.Fatal(err)
			}
			want := doorVerdict(d)
			got := verdict{"denied", store.ReasonUnknownCard}
			if e, ok := in[uid]; ok {
				got = verdict{e.Decision, e.Reason}
			}
			if got != want {
				t.Fatalf("%s: card %s at %s, %s: who says %v, the door %v (%s)", what, uid, door, at, got, want, d.Note)
			}
		}
	}
	open := func(path string) *store.Store {
		st, err := store.Open(path, &store.Options{SkipCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}

	// --at: the moment before the later changes, against the copies.
	for _, d := range []*simDoor{front, back} {
		var who mqttsite.AccessReport
		decodeInto(t, call("GET", "/v1/access/who?"+url.Values{"door": {d.name}, "at": {then.Format(time.RFC3339Nano)}}.Encode(), nil), &who)
		var all []string
		for _, us := range cardsOf {
			all = append(all, us...)
		}
		all = append(all, "0B000001")
		agree("who --at", d.name, then, open(filepath.Join(snap, d.name+".db")), all, who)
	}

	// 1,000 triples, now and ahead.
	doors := map[string]*store.Store{"front": open(filepath.Join(front.data, "latch.db")), "back": open(filepath.Join(back.data, "latch.db"))}
	kinds := map[string]int{}
	for range 1000 {
		h := holders[rng.IntN(len(holders))]
		door := []string{"front", "back"}[rng.IntN(2)]
		at := time.Now().UTC().Add(time.Minute + time.Duration(rng.Int64N(int64(21*24*time.Hour))))
		q := url.Values{"door": {door}, "at": {at.Format(time.RFC3339Nano)}}
		var who mqttsite.AccessReport
		decodeInto(t, call("GET", "/v1/access/who?"+q.Encode(), nil), &who)
		q.Set("holder", h)
		var xs []mqttsite.Explanation
		decodeInto(t, call("GET", "/v1/access/explain?"+q.Encode(), nil), &xs)
		agree("who", door, at, doors[door], cardsOf[h], who)
		in := map[string]mqttsite.AccessEntry{}
		for _, e := range who.Entries {
			in[e.UID] = e
		}
		for _, x := range xs {
			want := verdict{"denied", store.ReasonUnknownCard}
			if e, ok := in[x.UID]; ok {
				want = verdict{e.Decision, e.Reason}
			}
			if got := (verdict{x.Decision, x.Reason}); got != want {
				t.Fatalf("explain %s at %s, %s: %v (%s), who says %v", x.UID, door, at, got, x.Rule, want)
			}
			kinds[string(x.Reason)]++
		}
	}
	t.Logf("explained reasons over 1,000 triples: %v", kinds)
	for _, r := range []store.Reason{store.ReasonGranted, store.ReasonPINRequired, store.ReasonRevoked, store.ReasonExpired,
		store.ReasonNotYetValid, store.ReasonOutsideSchedule, store.ReasonUnknownCard} {
		if kinds[string(r)] == 0 {
			t.Errorf("no triple was decided %s: the mix does not cover it", r)
		}
	}
}

func decodeInto(t testing.TB, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}
