package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// The Visitors page's forms: what is wrong comes back as the page's
// error, naming the field; a typed UID registers the visitor at once;
// End visit ends it, once; an auditor may do neither.
func TestVisitorForms(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "otto", "operator", opPW)
	cs.addUser(t, "aud", "auditor", audPW)
	b := cs.browser(t)
	csrf := b.mustLogin("otto", opPW)
	until := time.Now().Add(2 * time.Hour).Format("2006-01-02T15:04")
	form := func(edit func(url.Values)) url.Values {
		f := url.Values{"csrf": {csrf}, "holder": {"vic"}, "name": {"Vic Visitor"}, "host": {"ada"}, "until": {until},
			"doors": {"front", "back,lab"}, "uses": {"2"}, "uid": {"04e1e2e3"}}
		edit(f)
		return f
	}
	// submit posts the form and returns the page it leads to.
	submit := func(path string, f url.Values) string {
		t.Helper()
		p := b.post(path, f)
		if p.code != http.StatusSeeOther || p.location != "/visitors" {
			t.Fatalf("POST %s: %d %q: %s", path, p.code, p.location, p.body)
		}
		return b.get("/visitors").body
	}
	for _, c := range []struct {
		what string
		edit func(url.Values)
		want string
	}{
		{"no card", func(f url.Values) { f.Del("uid") }, "card: type its UID, or choose a door to tap it at"},
		{"a UID and a door", func(f url.Values) { f.Set("enroll_door", "front") }, "not both"},
		{"a bad start", func(f url.Values) { f.Set("from", "monday") }, `from &#34;monday&#34;`},
		{"negative uses", func(f url.Values) { f.Set("uses", "-1") }, `uses &#34;-1&#34;`},
		{"no host", func(f url.Values) { f.Set("host", "") }, "host is missing"},
		{"a bad UID", func(f url.Values) { f.Set("uid", "zz") }, `uid &#34;ZZ&#34; is not hex`},
		{"a card and a code", func(f url.Values) { f.Set("code", "6") }, "card or keypad code: choose one"},
		{"a short code", func(f url.Values) { f.Del("uid"); f.Set("code", "4") }, "keypad code &#34;4&#34;: want 6 to 12 digits"},
		{"a tap at no door", func(f url.Values) { f.Del("uid"); f.Set("enroll_door", "nowhere") }, "enroll_door &#34;nowhere&#34;: not found"},
		{"a tap after the window", func(f url.Values) {
			f.Del("uid")
			f.Set("enroll_door", "front")
			f.Set("from", time.Now().Add(-2*time.Hour).Format("2006-01-02T15:04"))
			f.Set("until", time.Now().Add(-time.Hour).Format("2006-01-02T15:04"))
		}, "the window is over"},
	} {
		if body := submit("/visitors", form(c.edit)); !strings.Contains(body, `<p class="error">`) || !strings.Contains(body, c.want) {
			t.Errorf("%s: the page does not say %q:\n%s", c.what, c.want, body)
		}
	}
	if vs, err := cs.sv.db.Visitors(); err != nil || len(vs) != 0 {
		t.Fatalf("visitors after the refusals: %+v, %v", vs, err)
	}

	body := submit("/visitors", form(func(url.Values) {}))
	if !strings.Contains(body, "Visitor vic registered for ada, card 04E1E2E3.") {
		t.Fatalf("the registration's page:\n%s", body)
	}
	v, err := cs.sv.db.Visitor("vic")
	if err != nil || v.Name != "Vic Visitor" || strings.Join(v.Doors, " ") != "front back lab" || v.Uses != 2 ||
		v.Until.Local().Format("2006-01-02T15:04") != until || time.Since(v.From) > time.Minute {
		t.Fatalf("the visitor: %+v, %v", v, err)
	}
	if !strings.Contains(body, `<tr data-holder="vic">`) || !strings.Contains(body, "2 of 2") || !strings.Contains(body, "expected") {
		t.Fatalf("the visit is not listed as expected with 2 uses left:\n%s", body)
	}
	if body := submit("/visitors", form(func(f url.Values) { f.Del("uid"); f.Set("enroll_door", "front") })); !strings.Contains(body, "exists") {
		t.Errorf("a tap for a holder id taken: the page does not say so:\n%s", body)
	}

	if body := submit("/visitors/vic/end", url.Values{"csrf": {csrf}}); !strings.Contains(body, "Visit of vic ended: the card is revoked.") ||
		!strings.Contains(body, "ended: visit ended by otto") {
		t.Fatalf("the end's page:\n%s", body)
	}
	if body := submit("/visitors/vic/end", url.Values{"csrf": {csrf}}); !strings.Contains(body, "conflict") {
		t.Fatalf("a second end: the page does not refuse it:\n%s", body)
	}

	// A keypad code: shown once, in the page after the registration.
	body = submit("/visitors", form(func(f url.Values) { f.Set("holder", "kay"); f.Del("uid"); f.Set("code", "8") }))
	m := regexp.MustCompile(`Visitor kay registered for ada, keypad code ([0-9]{8}) \(shown this once`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the code's registration page:\n%s", body)
	}
	key, err := store.CodeKey([]byte(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := cs.sv.db.Card(key); err != nil || c.HolderID != "kay" {
		t.Fatalf("the code's card: %+v, %v", c, err)
	}
	if again := b.get("/visitors").body; strings.Contains(again, m[1]) || !strings.Contains(again, `<tr data-holder="kay">`) {
		t.Fatalf("the code is shown again, or kay is not listed:\n%s", again)
	}

	a := cs.browser(t)
	acsrf := a.mustLogin("aud", audPW)
	if p := a.post("/visitors/vic/end", url.Values{"csrf": {acsrf}}); p.code != http.StatusForbidden {
		t.Fatalf("the auditor's end: %d", p.code)
	}
	if p := a.get("/visitors"); p.code != http.StatusOK || strings.Contains(p.body, `action="/visitors"`) || !strings.Contains(p.body, `data-holder="vic"`) {
		t.Fatalf("the auditor's Visitors page: %d\n%s", p.code, p.body)
	}
}
