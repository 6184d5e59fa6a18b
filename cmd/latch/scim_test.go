package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// An identity provider's SCIM client, with an admin API token, creates a
// user, deactivates it with a PATCH (active=false), reactivates it, and
// deletes it; the user's card is refused at both doors (the real daemon,
// a tap) from the sync after each deactivation, and the holder and their
// history stay.
func TestSCIMDeactivatesAtDoors(t *testing.T) {
	var base string
	s, sv, front, back := startE2EWith(t, serveOptions{web: webConfig{Listen: "127.0.0.1:0"}, webReady: func(addr string) { base = "http://" + addr }})
	okta := makeToken(t, s, "okta", "admin")
	ops := makeToken(t, s, "ops", "operator")
	scim := func(token, method, path, body string, want int) map[string]any {
		t.Helper()
		return scimCall(t, base, token, method, path, body, want)
	}
	const uid = "0C0C0C0C"
	tapBoth := func(want string) {
		t.Helper()
		s.current(t, "front", "back")
		for _, d := range []*simDoor{front, back} {
			d.tapPIN(uid, "", want)
		}
	}

	u := scim(okta, "POST", "/scim/v2/Users", `{"schemas":["`+scimUserSchema+`"],"userName":"jdoe@example.com","externalId":"00u1",
		"name":{"givenName":"Jane","familyName":"Doe"},"emails":[{"value":"jdoe@example.com","primary":true}],"active":true}`, http.StatusCreated)
	if u["id"] != "jdoe@example.com" || u["active"] != true || u["displayName"] != "Jane Doe" {
		t.Fatalf("created: %v", u)
	}
	scim(okta, "POST", "/scim/v2/Users", `{"userName":"jdoe@example.com"}`, http.StatusConflict)
	scim(ops, "POST", "/scim/v2/Users", `{"userName":"x"}`, http.StatusForbidden)
	scim("", "GET", "/scim/v2/Users", "", http.StatusUnauthorized)
	if _, err := newClient(&env{getenv: func(string) string { return "" }}, s.sock).call(t.Context(), "POST", "/v1/cards",
		cardAddReq{UID: uid, Holder: "jdoe@example.com", Doors: []string{"*"}, Flags: store.Flags{CardOnly: true}}); err != nil {
		t.Fatal(err)
	}
	tapBoth("granted")

	list := scim(okta, "GET", "/scim/v2/Users?"+url.Values{"filter": {`userName eq "jdoe@example.com"`}}.Encode(), "", http.StatusOK)
	if list["totalResults"] != float64(1) {
		t.Fatalf("filter: %v", list)
	}
	if l := scim(okta, "GET", "/scim/v2/Users?"+url.Values{"filter": {`userName eq "nobody"`}}.Encode(), "", http.StatusOK); l["totalResults"] != float64(0) {
		t.Fatalf("filter of nobody: %v", l)
	}

	// Okta deactivates: a PATCH without a path.
	u = scim(okta, "PATCH", "/scim/v2/Users/jdoe@example.com", `{"schemas":["`+scimPatchSchema+`"],"Operations":[{"op":"replace","value":{"active":false}}]}`, http.StatusOK)
	if u["active"] != false {
		t.Fatalf("after active=false: %v", u)
	}
	tapBoth("revoked")

	// Entra ID reactivates: a path, and the value as a string.
	u = scim(okta, "PATCH", "/scim/v2/Users/jdoe@example.com", `{"schemas":["`+scimPatchSchema+`"],"Operations":[{"op":"Replace","path":"active","value":"True"},{"op":"replace","path":"name.familyName","value":"Roe"}]}`, http.StatusOK)
	if u["active"] != true || u["displayName"] != " Roe" && u["displayName"] != "Roe" {
		t.Fatalf("after active=true: %v", u)
	}
	tapBoth("granted")

	// A PUT that deactivates, then a DELETE: still refused, history kept.
	scim(okta, "PUT", "/scim/v2/Users/jdoe@example.com", `{"userName":"jdoe@example.com","name":{"formatted":"Jane Doe"},"active":false}`, http.StatusOK)
	scim(okta, "DELETE", "/scim/v2/Users/jdoe@example.com", "", http.StatusNoContent)
	scim(okta, "GET", "/scim/v2/Users/jdoe@example.com", "", http.StatusNotFound)
	tapBoth("revoked")
	if h, err := sv.db.Holder("jdoe@example.com"); err != nil || h.Name != "Jane Doe" {
		t.Fatalf("the holder after the delete: %+v, %v", h, err)
	}
	if _, err := sv.db.Card([]byte{0x0C, 0x0C, 0x0C, 0x0C}); err != nil {
		t.Fatalf("the card after the delete: %v", err)
	}
	collected(t, sv.db, "front")
	var reasons []string
	for rec, err := range sv.db.Query(site.Filter{Holder: "jdoe@example.com", Door: "front", Type: store.TypeAccess, Limit: 100}) {
		if err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, string(rec.Event.Reason))
	}
	slices.Sort(reasons)
	if want := []string{"granted", "granted", "revoked", "revoked"}; !slices.Equal(reasons, want) {
		t.Errorf("front door's access events of the holder: %v, want %v", reasons, want)
	}

	// The change log names the token; a deletion says so.
	es, _, err := sv.db.Changes(site.ChangeFilter{Who: "okta"})
	if err != nil {
		t.Fatal(err)
	}
	ops2 := map[string]int{}
	for _, e := range es {
		if e.From != "token okta" {
			t.Errorf("entry %d from %q", e.Seq, e.From)
		}
		ops2[e.Op]++
	}
	if ops2["scim user create"] != 2 || ops2["scim user patch"] != 2 || ops2["scim user replace"] != 1 || ops2["scim user delete"] != 1 {
		t.Errorf("change-log ops of the token: %v", ops2)
	}
	if last := es[len(es)-1]; !strings.Contains(string(last.After), scimDeleted) {
		t.Errorf("the delete's entry: %s", last.After)
	}

	// Created again: reinstated.
	scim(okta, "POST", "/scim/v2/Users", `{"userName":"jdoe@example.com","displayName":"Jane Doe"}`, http.StatusCreated)
	tapBoth("granted")
}

// scimCall makes a SCIM request with an API token and returns its
// answer's JSON object (nil when it has none); it fails t unless the
// status is want.
func scimCall(t *testing.T, base, token, method, path, body string, want int) map[string]any {
	t.Helper()
	p := bearer(t, base, token, method, path, body)
	if p.code != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, p.code, want, p.body)
	}
	var m map[string]any
	if p.body != "" {
		if err := json.Unmarshal([]byte(p.body), &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, p.body)
		}
	}
	return m
}

// The SCIM decoders and the filter never panic, and what they accept is
// within the limits.
func FuzzSCIM(f *testing.F) {
	f.Add([]byte(`{"userName":"a","name":{"givenName":"A","familyName":"B"},"active":false}`))
	f.Add([]byte(`{"Operations":[{"op":"replace","value":{"active":"False","name":{"formatted":"x"}}}]}`))
	f.Add([]byte(`userName eq "a\"b"`))
	f.Add([]byte(`{"displayName":"lab","members":[{"value":"a"},{"value":"a"},{"value":"b","display":"B"}]}`))
	f.Add([]byte(`{"Operations":[{"op":"remove","path":"members[value eq \"a\"]"},{"op":"Add","path":"members","value":[{"value":"b"}]}]}`))
	f.Add([]byte(`{"Operations":[{"op":"replace","value":{"id":"lab","displayName":"lab","members":{"value":"c"}}},{"op":"remove","path":"members"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := decodeSCIMUser(b); err == nil && (u.UserName == "" || len(u.holderName()) > 255) {
			t.Fatalf("user %+v", u)
		}
		if e, err := decodeSCIMPatch(b); err == nil && e.name != nil && len(*e.name) > 255 {
			t.Fatalf("patch %+v", e)
		}
		if id, err := parseSCIMFilter(string(b)); err == nil && !strings.Contains(string(b), "eq") {
			t.Fatalf("filter %q read as %q", b, id)
		}
		if g, err := decodeSCIMGroup(b); err == nil && (checkSCIMGroupName(g.DisplayName) != nil || checkSCIMMembers(g.Members) != nil) {
			t.Fatalf("group %+v", g)
		}
		if e, err := decodeSCIMGroupPatch(b); err == nil {
			if e.name != nil && checkSCIMGroupName(*e.name) != nil {
				t.Fatalf("group patch renames to %q", *e.name)
			}
			for _, op := range e.ops {
				if op.op != "add" && op.op != "remove" && op.op != "replace" || op.ids == nil && op.op != "remove" || slices.Contains(op.ids, "") {
					t.Fatalf("group patch op %+v", op)
				}
			}
		}
		if _, id, err := parseSCIMFilterOf(string(b), "displayName"); err == nil && !strings.Contains(strings.ToLower(string(b)), "displayname") {
			t.Fatalf("group filter %q read as %q", b, id)
		}
	})
}
