package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// bearer calls the console's HTTPS API with an API token and no cookie.
func bearer(t testing.TB, base, token, method, path, body string) page {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: hangGuard, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return page{code: res.StatusCode, body: b.String(), location: res.Header.Get("Location"), header: res.Header}
}

var tokenRE = regexp.MustCompile(`latch_[0-9a-f]{64}`)

// makeToken runs latch token create and returns the secret it printed.
func makeToken(t testing.TB, s *testSite, name, role string, extra ...string) string {
	t.Helper()
	out := s.ok(t, "", append([]string{"token", "create", name, "--role", role}, extra...)...)
	tok := tokenRE.FindString(out)
	if tok == "" {
		t.Fatalf("token create printed no token: %q", out)
	}
	return tok
}

// An API token acts with its role through the console's role table,
// without a CSRF token; an expired, revoked, unknown or malformed one is
// a 401; the site keeps only its hash; the change log names the token.
func TestAPITokens(t *testing.T) {
	clock := &testClock{t: time.Now()}
	cs := startConsoleSite(t, serveOptions{}, clock)
	op := makeToken(t, cs.testSite, "ci", "operator", "--expires", "1h")
	aud := makeToken(t, cs.testSite, "reports", "auditor", "--expires", "90d")
	if _, _, errs := cs.cli(t, "", "token", "create", "ci", "--role", "admin"); !strings.Contains(errs, "exists") {
		t.Errorf("a second token ci: %q", errs)
	}

	// The role table, with no CSRF token and no cookie.
	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		{op, "GET", "/api/v1/holders", "", 200},
		{op, "POST", "/api/v1/holders", `{"id":"alice","name":"Alice"}`, 201},
		{op, "POST", "/api/v1/cards", `{"uid":"04A1B2C3","holder":"alice","doors":["front"]}`, 201},
		{op, "POST", "/api/v1/cards", `{"uid":"04A1B2C4","holder":"alice","flags":{"lockdown_override":true}}`, 403},
		{op, "GET", "/api/v1/users", "", 403},
		{op, "GET", "/api/v1/tokens", "", 403},
		{aud, "GET", "/api/v1/cards/04A1B2C3", "", 200},
		{aud, "POST", "/api/v1/revoke", `{"uid":"04A1B2C3","reason":"lost"}`, 403},
		{"latch_" + strings.Repeat("0", 64), "GET", "/api/v1/holders", "", 401},
		{"not-a-token", "GET", "/api/v1/holders", "", 401},
		{"", "GET", "/api/v1/holders", "", 401},
	} {
		if p := bearer(t, cs.base, c.token, c.method, c.path, c.body); p.code != c.want {
			t.Errorf("%s %s with %.12s…: %d, want %d: %s", c.method, c.path, c.token, p.code, c.want, p.body)
		}
	}
	// A token opens no page: the header is not looked at there.
	if p := bearer(t, cs.base, op, "GET", "/doors", ""); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("a page with a token: %d %s", p.code, p.location)
	}

	// The change log: who is the token, from is "token NAME".
	es, _, err := cs.sv.db.Changes(site.ChangeFilter{Target: "holder alice"})
	if err != nil || len(es) != 1 || es[0].Who != "ci" || es[0].From != "token ci" || es[0].Role != "operator" || es[0].Result != "ok" {
		t.Fatalf("change log of the token's change: %+v, %v", es, err)
	}

	// Only the hash is kept.
	tk, err := cs.sv.db.Token("ci")
	if err != nil || tk.Hash != tokenHash(op) {
		t.Fatalf("stored token: %+v, %v", tk, err)
	}
	raw, err := os.ReadFile(cs.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{op, aud, strings.TrimPrefix(op, tokenPrefix)} {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("the database file holds a token's secret")
		}
	}

	// Expiry on the console's clock; a revocation at once.
	clock.Add(2 * time.Hour)
	if p := bearer(t, cs.base, op, "GET", "/api/v1/holders", ""); p.code != http.StatusUnauthorized || !strings.Contains(p.body, "expired") {
		t.Errorf("an expired token: %d %s", p.code, p.body)
	}
	if p := bearer(t, cs.base, aud, "GET", "/api/v1/holders", ""); p.code != 200 {
		t.Errorf("a token within its 90 days: %d %s", p.code, p.body)
	}
	cs.ok(t, "", "token", "revoke", "reports")
	if p := bearer(t, cs.base, aud, "GET", "/api/v1/holders", ""); p.code != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d %s", p.code, p.body)
	}
	var ts []tokenView
	if err := json.Unmarshal([]byte(cs.ok(t, "", "token", "list", "--json")), &ts); err != nil || len(ts) != 2 {
		t.Fatalf("token list: %v %+v", err, ts)
	}
	// The API's clock is the real one: ci is still active there; the
	// console judged it on its own clock.
	if ts[1].Name != "reports" || ts[1].State != "revoked" {
		t.Errorf("token list: %+v", ts)
	}

	// The accounts page: an admin makes a token, sees it once, revokes it.
	cs.addUser(t, "ada", "admin", adminPW)
	br := cs.browser(t)
	csrf := br.mustLogin("ada", adminPW)
	p := br.post("/users/tokens", url.Values{"csrf": {csrf}, "name": {"okta"}, "role": {"admin"}, "days": {"30"}})
	secret := tokenRE.FindString(p.body)
	if p.code != 200 || secret == "" {
		t.Fatalf("make a token on the page: %d %s", p.code, p.body)
	}
	if p := br.get("/users/tokens"); p.code != 200 || strings.Contains(p.body, secret) || !strings.Contains(p.body, "okta") {
		t.Errorf("the tokens page again: %d; shows the secret: %v", p.code, strings.Contains(p.body, secret))
	}
	if p := bearer(t, cs.base, secret, "GET", "/api/v1/users", ""); p.code != 200 {
		t.Errorf("the page's admin token: %d %s", p.code, p.body)
	}
	if p := br.post("/users/tokens/okta/revoke", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Errorf("revoke on the page: %d %s", p.code, p.body)
	}
	if p := bearer(t, cs.base, secret, "GET", "/api/v1/users", ""); p.code != http.StatusUnauthorized {
		t.Errorf("the page's token after its revocation: %d", p.code)
	}
	// An operator's session may not see the page.
	cs.addUser(t, "otto", "operator", opPW)
	ob := cs.browser(t)
	ob.mustLogin("otto", opPW)
	if p := ob.get("/users/tokens"); p.code != http.StatusForbidden {
		t.Errorf("an operator on the tokens page: %d", p.code)
	}
}

func FuzzParseBearer(f *testing.F) {
	f.Add("Bearer latch_" + strings.Repeat("ab", 32))
	f.Add("bearer  latch_" + strings.Repeat("0", 64))
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer latch_" + strings.Repeat("A", 64))
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := parseBearer(h)
		if err != nil {
			return
		}
		if !tokenRE.MatchString(tok) || len(tok) != len(tokenPrefix)+64 || !strings.HasSuffix(h, tok) {
			t.Fatalf("parseBearer(%q) = %q", h, tok)
		}
	})
}
