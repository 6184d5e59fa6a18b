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

// The Group PatchOp forms Okta and Entra ID send are read as member
// changes in order; a rename is read (and refused by the handler); what
// latch cannot do is an error naming the operation.
func TestDecodeSCIMGroupPatch(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       []memberOp
		rename     string
	}{
		{"Okta remove by filter path", `{"schemas":["` + scimPatchSchema + `"],"Operations":[{"op":"remove","path":"members[value eq \"jdoe@example.com\"]"}]}`,
			[]memberOp{{"remove", []string{"jdoe@example.com"}}}, ""},
		{"Okta add", `{"Operations":[{"op":"add","path":"members","value":[{"value":"a","display":"A"},{"value":"b"}]}]}`,
			[]memberOp{{"add", []string{"a", "b"}}}, ""},
		{"Okta replace without a path, same name", `{"Operations":[{"op":"replace","value":{"id":"lab","displayName":"lab"}}]}`, nil, "lab"},
		{"Entra ID add and remove with value arrays", `{"Operations":[{"op":"Add","path":"members","value":[{"value":"a"}]},{"op":"Remove","path":"members","value":[{"value":"b"}]}]}`,
			[]memberOp{{"add", []string{"a"}}, {"remove", []string{"b"}}}, ""},
		{"replace all members, one object", `{"Operations":[{"op":"replace","path":"members","value":{"value":"c"}}]}`,
			[]memberOp{{"replace", []string{"c"}}}, ""},
		{"replace with none", `{"Operations":[{"op":"replace","path":"members","value":[]}]}`,
			[]memberOp{{"replace", []string{}}}, ""},
		{"remove all", `{"Operations":[{"op":"remove","path":"members"}]}`, []memberOp{{"remove", nil}}, ""},
		{"members without a path", `{"Operations":[{"op":"add","value":{"members":[{"value":"d"}],"externalId":"x"}}]}`,
			[]memberOp{{"add", []string{"d"}}}, ""},
		{"rename", `{"Operations":[{"op":"replace","path":"displayName","value":"annex"}]}`, nil, "annex"},
	} {
		e, err := decodeSCIMGroupPatch([]byte(c.body))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.EqualFunc(e.ops, c.want, func(a, b memberOp) bool {
			return a.op == b.op && slices.Equal(a.ids, b.ids) && (a.ids == nil) == (b.ids == nil)
		}) {
			t.Errorf("%s: ops %+v, want %+v", c.name, e.ops, c.want)
		}
		if got := deref(e.name); got != c.rename {
			t.Errorf("%s: name %q, want %q", c.name, got, c.rename)
		}
	}
	for _, c := range []struct{ body, want string }{
		{`{"Operations":[]}`, "0 operations"},
		{`{"Operations":[{"op":"move","path":"members"}]}`, `op "move"`},
		{`{"Operations":[{"op":"add","path":"members[value eq \"a\"]"}]}`, "only remove"},
		{`{"Operations":[{"op":"remove","path":"members[value ne \"a\"]"}]}`, "want members[value eq"},
		{`{"Operations":[{"op":"add","path":"members","value":[{"display":"no id"}]}]}`, "value (the user's id) is missing"},
		{`{"Operations":[{"op":"add","path":"members","value":"a"}]}`, "want an array"},
		{`{"Operations":[{"op":"replace","path":"displayName","value":"Lab Team"}]}`, "latch door group"},
		{`{"Operations":[{"op":"remove","path":"displayName"}]}`, "cannot be removed"},
		{`{"Operations":[{"op":"remove"}]}`, "remove needs a path"},
	} {
		if _, err := decodeSCIMGroupPatch([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.body, err, c.want)
		}
	}
}

// A Group resource's displayName must be a latch group name, and its
// members need ids.
func TestDecodeSCIMGroup(t *testing.T) {
	g, err := decodeSCIMGroup([]byte(`{"schemas":["` + scimGroupSchema + `"],"displayName":"lab","members":[{"value":"a"},{"value":"b"},{"value":"a"}]}`))
	if err != nil || g.DisplayName != "lab" || !slices.Equal(memberIDs(g.Members), []string{"a", "b"}) {
		t.Fatalf("decoded %+v, %v", g, err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"members":[]}`, "displayName is missing"},
		{`{"displayName":"Lab"}`, "a-z 0-9"},
		{`{"displayName":"lab team"}`, "a-z 0-9"},
		{`{"displayName":"lab","members":[{"value":""}]}`, "member 1"},
		{`{"displayName":"lab","members":[{"value":"a\u0001"}]}`, "control character"},
	} {
		if _, err := decodeSCIMGroup([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.body, err, c.want)
		}
	}
}

// An identity provider's SCIM client manages group "lab", the door group
// of door front: a user whose card does not list front is refused there,
// is granted once a PATCH adds them to "lab", and refused again once a
// PATCH removes them; a holder who had "lab" on their card by hand keeps
// it through their own membership and its end, a card added later to a
// member gets the group, and deleting the group takes it off every card
// it gave it to; a card that replaces a member's card keeps the group as
// the membership's. Each change is one change-log entry naming the group
// and its members.
func TestSCIMGroupsAtDoors(t *testing.T) {
	var base string
	s, sv, front, back := startE2EWith(t, serveOptions{web: webConfig{Listen: "127.0.0.1:0"}, webReady: func(addr string) { base = "http://" + addr }})
	okta := makeToken(t, s, "okta", "admin")
	scim := func(method, path, body string, want int) map[string]any {
		t.Helper()
		return scimCall(t, base, okta, method, path, body, want)
	}
	s.ok(t, "", "door", "groups", "front", "staff,lab")
	s.ok(t, "", "door", "groups", "back", "staff")
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	addCard := func(uid, holder string, doors ...string) {
		t.Helper()
		if _, err := cl.call(t.Context(), "POST", "/v1/cards", cardAddReq{UID: uid, Holder: holder, Doors: doors, Flags: store.Flags{CardOnly: true}}); err != nil {
			t.Fatal(err)
		}
	}
	cardDoors := func(uid string) []string {
		t.Helper()
		b, _ := parseUID(uid)
		c, err := sv.db.Card(b)
		if err != nil {
			t.Fatal(err)
		}
		return c.Doors
	}
	const jane, hand = "0D0D0D0D", "0E0E0E0E"
	scim("POST", "/scim/v2/Users", `{"userName":"jdoe","displayName":"Jane Doe"}`, http.StatusCreated)
	scim("POST", "/scim/v2/Users", `{"userName":"hank","displayName":"Hank"}`, http.StatusCreated)
	addCard(jane, "jdoe", "back")
	addCard(hand, "hank", "lab") // lab by hand
	s.current(t, "front", "back")
	front.tapPIN(jane, "", "unknown_card")
	back.tapPIN(jane, "", "granted")
	front.tapPIN(hand, "", "granted")

	// Names latch cannot use as a door group, or that are a door's id.
	for _, bad := range []string{`{"displayName":"Lab Team"}`, `{"displayName":"front"}`} {
		if e := scim("POST", "/scim/v2/Groups", bad, http.StatusBadRequest); e["scimType"] != "invalidValue" {
			t.Errorf("POST %s: %v", bad, e)
		}
	}
	g := scim("POST", "/scim/v2/Groups", `{"schemas":["`+scimGroupSchema+`"],"displayName":"lab","members":[]}`, http.StatusCreated)
	if g["id"] != "lab" || g["members"] != nil {
		t.Fatalf("created: %v", g)
	}
	scim("POST", "/scim/v2/Groups", `{"displayName":"lab"}`, http.StatusConflict)

	// An unknown member: refused, naming the id, nothing applied.
	e := scim("PATCH", "/scim/v2/Groups/lab", `{"Operations":[{"op":"add","path":"members","value":[{"value":"jdoe"},{"value":"ghost"}]}]}`, http.StatusBadRequest)
	if e["scimType"] != "invalidValue" || !strings.Contains(e["detail"].(string), `"ghost"`) {
		t.Errorf("unknown member: %v", e)
	}
	if slices.Contains(cardDoors(jane), "lab") {
		t.Fatalf("a refused PATCH changed the card: %v", cardDoors(jane))
	}

	// Added (Entra ID's form): granted at front.
	g = scim("PATCH", "/scim/v2/Groups/lab", `{"schemas":["`+scimPatchSchema+`"],"Operations":[{"op":"Add","path":"members","value":[{"value":"jdoe"},{"value":"hank"}]}]}`, http.StatusOK)
	if ms, _ := g["members"].([]any); len(ms) != 2 {
		t.Fatalf("after the add: %v", g)
	}
	if got := cardDoors(jane); !slices.Equal(got, []string{"back", "lab"}) {
		t.Errorf("jane's card after the add: %v", got)
	}
	s.current(t, "front", "back")
	front.tapPIN(jane, "", "granted")
	u := scim("GET", "/scim/v2/Users/jdoe", "", http.StatusOK)
	if gs, _ := u["groups"].([]any); len(gs) != 1 || gs[0].(map[string]any)["value"] != "lab" {
		t.Errorf("the user's groups: %v", u["groups"])
	}
	l := scim("GET", "/scim/v2/Groups?"+url.Values{"filter": {`displayName eq "lab"`}, "excludedAttributes": {"members"}}.Encode(), "", http.StatusOK)
	if rs, _ := l["Resources"].([]any); l["totalResults"] != float64(1) || len(rs) != 1 || rs[0].(map[string]any)["members"] != nil {
		t.Errorf("filtered list: %v", l)
	}
	scim("PATCH", "/scim/v2/Groups/lab", `{"Operations":[{"op":"replace","path":"displayName","value":"annex"}]}`, http.StatusBadRequest)

	// A card added later to a member gets the group.
	const later = "0F0F0F0F"
	addCard(later, "jdoe", "back")
	if got := cardDoors(later); !slices.Equal(got, []string{"back", "lab"}) {
		t.Errorf("a member's new card: %v", got)
	}
	// Replaced (lost): the new card carries lab as the membership's.
	const replaced = "0A0A0A0A"
	if _, err := cl.call(t.Context(), "POST", "/v1/cards/"+later+"/replace", replaceReq{NewUID: replaced, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}

	// Removed (Okta's form): refused at front again; hank's lab, there
	// by hand, stays.
	scim("PATCH", "/scim/v2/Groups/lab", `{"Operations":[{"op":"remove","path":"members[value eq \"jdoe\"]"}]}`, http.StatusOK)
	if got := cardDoors(jane); !slices.Equal(got, []string{"back"}) {
		t.Errorf("jane's card after the remove: %v", got)
	}
	for _, uid := range []string{later, replaced} {
		if got := cardDoors(uid); !slices.Equal(got, []string{"back"}) {
			t.Errorf("jane's card %s after the remove: %v", uid, got)
		}
	}
	s.current(t, "front", "back")
	front.tapPIN(jane, "", "unknown_card")
	back.tapPIN(jane, "", "granted")
	front.tapPIN(hand, "", "granted")

	// Deleted: hank leaves the group with it, his card keeps lab.
	scim("DELETE", "/scim/v2/Groups/lab", "", http.StatusNoContent)
	scim("GET", "/scim/v2/Groups/lab", "", http.StatusNotFound)
	if got := cardDoors(hand); !slices.Equal(got, []string{"lab"}) {
		t.Errorf("hank's card after the delete: %v", got)
	}
	s.current(t, "front", "back")
	front.tapPIN(hand, "", "granted")

	es, _, err := sv.db.Changes(site.ChangeFilter{Target: "scim group lab"})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		ops = append(ops, e.Op+" "+e.Result+": "+e.Detail)
	}
	want := []string{
		"scim group create ok: ",
		`scim group create refused (409): group "lab": exists: `,
		`scim group patch refused (400): member "ghost": no such user: `,
		"scim group patch ok: members added: jdoe, hank",
		`scim group patch refused (400): displayName "annex" is not the group's id "lab": a group is not renamed (its id is its name, which the identity provider holds); delete it and create the new one: `,
		"scim group patch ok: members removed: jdoe",
		"scim group delete ok: members removed: hank",
	}
	if !slices.Equal(ops, want) {
		t.Errorf("change-log entries of the group:\n%s\nwant\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if last := es[len(es)-1]; !strings.Contains(string(last.Before), `"hank"`) || string(last.After) != "null" {
		t.Errorf("the delete's entry: before %s, after %s", last.Before, last.After)
	}
	var doc map[string]any
	if err := json.Unmarshal(es[3].After, &doc); err != nil || len(doc["members"].([]any)) != 2 {
		t.Errorf("the add's entry after: %s", es[3].After)
	}
}
