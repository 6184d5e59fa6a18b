package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store/site"
)

// testClock is a clock the console reads and the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// consoleSite is a real latch serve with its console on a loopback port.
type consoleSite struct {
	*testSite
	sv    *served
	base  string // http://127.0.0.1:PORT
	con   *console
	clock *testClock
}

// startConsole runs latch serve with a console. With a clock, the
// console reads it instead of the time.
func startConsoleSite(t testing.TB, o serveOptions, clock *testClock) *consoleSite {
	t.Helper()
	cs := &consoleSite{testSite: initSite(t), clock: clock}
	if o.web.Listen == "" {
		o.web.Listen = "127.0.0.1:0"
	}
	scheme := "http://"
	if o.web.Cert != "" {
		scheme = "https://"
	}
	o.webReady = func(addr string) { cs.base = scheme + addr }
	edit := o.consoleReady
	o.consoleReady = func(c *console) {
		cs.con = c
		if clock != nil {
			c.now = clock.Now
		}
		if edit != nil {
			edit(c)
		}
	}
	cs.sv = cs.start(t, o)
	t.Cleanup(func() { cs.sv.stop(t) })
	return cs
}

// addUser makes a console account with the CLI.
func (cs *consoleSite) addUser(t testing.TB, name, role, password string) {
	t.Helper()
	cs.ok(t, password+"\n", "user", "add", name, "--role", role)
}

// browser is an HTTP client of the console with its own cookies. It does
// not follow redirects, so that a test sees them.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func (cs *consoleSite) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: hangGuard,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, base: cs.base, c: c}
}

// page is an answer.
type page struct {
	code     int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return page{code: res.StatusCode, body: string(body), location: res.Header.Get("Location"), header: res.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// api calls the console's API as a page's script does.
func (b *browser) api(method, path, csrf, body string) page {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set(csrfHeader, csrf)
	}
	return b.do(req)
}

func (b *browser) login(name, password string) page {
	b.t.Helper()
	return b.post("/login", url.Values{"name": {name}, "password": {password}, "next": {"/doors"}})
}

// mustLogin logs in and returns the session's CSRF token.
func (b *browser) mustLogin(name, password string) string {
	b.t.Helper()
	if p := b.login(name, password); p.code != http.StatusSeeOther || p.location != "/doors" {
		b.t.Fatalf("login %s: %d %s: %s", name, p.code, p.location, p.body)
	}
	return b.csrf()
}

var csrfRE = regexp.MustCompile(`data-csrf="([0-9a-f]+)"`)

// csrf reads the session's token from a page.
func (b *browser) csrf() string {
	b.t.Helper()
	p := b.get("/doors")
	m := csrfRE.FindStringSubmatch(p.body)
	if p.code != http.StatusOK || m == nil {
		b.t.Fatalf("no CSRF token on /doors: %d %s", p.code, p.body)
	}
	return m[1]
}

// cookie returns the session cookie the browser holds.
func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

const (
	adminPW = "a long admin passphrase"
	opPW    = "an operator passphrase"
	audPW   = "the auditor passphrase"
)

// actions returns the site's log of actions, oldest first.
func actions(t testing.TB, db *site.DB) []site.Action {
	t.Helper()
	out, _, err := db.Actions(0, 10000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// hasAction reports whether the log has an action of user with what and
// a result starting with result.
func hasAction(as []site.Action, user, what, result string) bool {
	for _, a := range as {
		if a.User == user && a.What == what && strings.HasPrefix(a.Result, result) {
			return true
		}
	}
	return false
}

func TestConsoleNeedsSession(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	b := cs.browser(t)
	for _, path := range []string{"/", "/doors", "/people", "/people/x", "/activity", "/actions", "/integrity", "/users", "/changes/1", "/people/x/enroll?door=d", "/visitors", "/activity/export?format=csv", "/nope"} {
		p := b.get(path)
		if p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login?next=") {
			t.Errorf("GET %s without a session: %d %q, want a redirect to the login page", path, p.code, p.location)
		}
		if strings.Contains(p.body, "<table") {
			t.Errorf("GET %s without a session showed a table", path)
		}
	}
	for _, path := range []string{"/api/v1/holders", "/api/v1/audit/events", "/api/v1/backup"} {
		if p := b.get(path); p.code != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401", path, p.code)
		}
	}
	req, _ := http.NewRequest("GET", cs.base+"/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	if p := b.do(req); p.code != http.StatusUnauthorized {
		t.Errorf("GET /live without a session: %d, want 401", p.code)
	}
	for _, path := range []string{"/people", "/doors/front/unlock", "/cards/04A1B2C3/revoke", "/users", "/logout"} {
		if p := b.post(path, url.Values{"csrf": {"x"}}); p.code != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d, want 401", path, p.code)
		}
	}
	if p := b.get("/login"); p.code != http.StatusOK || !strings.Contains(p.body, `name="password"`) {
		t.Fatalf("the login page: %d", p.code)
	}
	if p := b.get("/static/console.css"); p.code != http.StatusOK {
		t.Fatalf("the style sheet: %d", p.code)
	}
	// A next that leaves the console is not followed.
	cs.addUser(t, "ada", "admin", adminPW)
	p := b.post("/login", url.Values{"name": {"ada"}, "password": {adminPW}, "next": {"//evil.example/"}})
	if p.code != http.StatusSeeOther || p.location != "/doors" {
		t.Fatalf("login with an outside next: %d %q", p.code, p.location)
	}
}

func TestConsoleSecurity(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}
	cs := startConsoleSite(t, serveOptions{}, clock)
	cs.addUser(t, "ada", "admin", adminPW)
	cs.addUser(t, "otto", "operator", opPW)
	cs.addUser(t, "aud", "auditor", audPW)
	if code, _, errs := cs.cli(t, "short\n", "user", "add", "x", "--role", "admin"); code == 0 || !strings.Contains(errs, "at least 12") {
		t.Fatalf("a short password was taken: %d %s", code, errs)
	}

	// Headers every page carries.
	b := cs.browser(t)
	if p := b.login("ada", "wrong password!"); p.code != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong name or password") {
		t.Fatalf("a wrong password: %d", p.code)
	}
	csrf := b.mustLogin("ada", adminPW)
	ck := b.cookie(sessionCookie)
	if ck == nil {
		t.Fatal("no session cookie")
	}
	p := b.get("/doors")
	for k, want := range map[string]string{"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if !strings.Contains(p.header.Get(k), want) {
			t.Errorf("header %s = %q, want %q", k, p.header.Get(k), want)
		}
	}

	// HTML in a holder's name is text.
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	if p := b.post("/people", url.Values{"csrf": {csrf}, "id": {"mallory"}, "name": {evil}}); p.code != http.StatusSeeOther || p.location != "/people/mallory" {
		t.Fatalf("add holder: %d %s", p.code, p.location)
	}
	for _, path := range []string{"/people/mallory", "/people?q=mallory"} {
		p := b.get(path)
		if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
			t.Fatalf("%s shows the name as HTML", path)
		}
		if !strings.Contains(p.body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Fatalf("%s does not show the name as text", path)
		}
	}

	// A change without the CSRF token, or with another session's, is
	// refused and changes nothing.
	other := cs.browser(t)
	otherCSRF := other.mustLogin("otto", opPW)
	for _, form := range []url.Values{{"id": {"h1"}}, {"id": {"h1"}, "csrf": {""}}, {"id": {"h1"}, "csrf": {otherCSRF}}} {
		if p := b.post("/people", form); p.code != http.StatusForbidden {
			t.Fatalf("add holder with csrf %q: %d, want 403", form.Get("csrf"), p.code)
		}
	}
	if p := b.api("POST", "/api/v1/holders", "", `{"id":"h1"}`); p.code != http.StatusForbidden {
		t.Fatalf("API change without a token: %d", p.code)
	}
	if _, err := cs.sv.db.Holder("h1"); !errors.Is(err, site.ErrNotFound) {
		t.Fatalf("a refused change was made: %v", err)
	}
	// A request another site's page makes is refused before the token.
	req, _ := http.NewRequest("POST", cs.base+"/people", strings.NewReader(url.Values{"csrf": {csrf}, "id": {"h2"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := b.do(req); p.code != http.StatusForbidden {
		t.Fatalf("a cross-site POST: %d", p.code)
	}
	if p := b.api("POST", "/api/v1/holders", csrf, `{"id":"h1","name":"Holder One"}`); p.code != http.StatusCreated {
		t.Fatalf("API change with the token: %d %s", p.code, p.body)
	}

	// The auditor reads, and cannot change: no control, a 403 from the
	// pages' forms and from the API.
	a := cs.browser(t)
	acsrf := a.mustLogin("aud", audPW)
	cs.ok(t, "", "card", "add", "04A1B2C3", "--holder", "h1", "--doors", "front")
	hp := a.get("/people/h1")
	if hp.code != http.StatusOK || !strings.Contains(hp.body, "04A1B2C3") {
		t.Fatalf("auditor's holder page: %d", hp.code)
	}
	for _, control := range []string{"Revoke card", "Set PIN", "Add card", "Wait for the tap", `action="/cards/`} {
		if strings.Contains(hp.body, control) {
			t.Errorf("the auditor's page offers %q", control)
		}
	}
	if p := a.post("/cards/04A1B2C3/revoke", url.Values{"csrf": {acsrf}, "holder": {"h1"}, "reason": {"lost"}}); p.code != http.StatusForbidden {
		t.Fatalf("auditor revokes through the form: %d", p.code)
	}
	if p := a.api("POST", "/api/v1/revoke", acsrf, `{"uid":"04A1B2C3","reason":"lost"}`); p.code != http.StatusForbidden {
		t.Fatalf("auditor revokes through the API: %d %s", p.code, p.body)
	}
	if _, err := cs.sv.db.Revoked([]byte{0x04, 0xA1, 0xB2, 0xC3}); !errors.Is(err, site.ErrNotFound) {
		t.Fatalf("the auditor's revocation was made: %v", err)
	}
	for _, path := range []string{"/api/v1/holders", "/api/v1/audit/events", "/activity", "/integrity?run=1", "/actions"} {
		if p := a.get(path); p.code != http.StatusOK {
			t.Errorf("auditor GET %s: %d", path, p.code)
		}
	}
	for _, path := range []string{"/api/v1/backup", "/users", "/api/v1/users"} {
		if p := a.get(path); p.code != http.StatusForbidden {
			t.Errorf("auditor GET %s: %d, want 403", path, p.code)
		}
	}
	// The operator revokes, and cannot approve doors or manage accounts.
	if p := other.api("POST", "/api/v1/doors/front/approve", otherCSRF, `{"fingerprint":"x"}`); p.code != http.StatusForbidden {
		t.Fatalf("operator approves a door: %d", p.code)
	}
	if p := other.post("/users", url.Values{"csrf": {otherCSRF}, "name": {"eve"}, "role": {"admin"}, "password": {"eve's long password"}}); p.code != http.StatusForbidden {
		t.Fatalf("operator adds an account: %d", p.code)
	}
	p = other.post("/cards/04A1B2C3/revoke", url.Values{"csrf": {otherCSRF}, "holder": {"h1"}, "reason": {"lost"}})
	if p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/changes/") {
		t.Fatalf("operator revokes: %d %s", p.code, p.location)
	}
	if rv, err := cs.sv.db.Revoked([]byte{0x04, 0xA1, 0xB2, 0xC3}); err != nil || rv.Reason != "lost" {
		t.Fatalf("the operator's revocation: %+v %v", rv, err)
	}

	// A logout ends the session: its cookie is refused afterwards.
	if p := b.post("/logout", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("logout: %d", p.code)
	}
	replay := cs.browser(t)
	u, _ := url.Parse(cs.base)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: ck.Value, Path: "/"}})
	if p := replay.get("/doors"); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Fatalf("a cookie from before the logout: %d %s", p.code, p.location)
	}
	if p := replay.api("POST", "/api/v1/holders", csrf, `{"id":"h3"}`); p.code != http.StatusUnauthorized {
		t.Fatalf("an API change with a cookie from before the logout: %d", p.code)
	}

	// A new role ends the account's sessions.
	cs.ok(t, "", "user", "role", "aud", "operator")
	if p := a.get("/doors"); p.code != http.StatusSeeOther {
		t.Fatalf("a session from before a role change: %d", p.code)
	}

	// Sessions end after the idle time.
	s := cs.browser(t)
	s.mustLogin("ada", adminPW)
	clock.Add(defaultIdle)
	if p := s.get("/doors"); p.code != http.StatusSeeOther {
		t.Fatalf("a session idle for %v: %d", defaultIdle, p.code)
	}

	// 20 bad passwords lock the account for a while, even for the right
	// password; other accounts still log in from the same address.
	l := cs.browser(t)
	for i := range accountFails {
		if p := l.login("otto", "not the password"); p.code != http.StatusUnauthorized {
			t.Fatalf("bad password %d: %d", i+1, p.code)
		}
	}
	if p := l.login("otto", opPW); p.code != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many failed logins") {
		t.Fatalf("the right password after %d bad ones: %d", accountFails, p.code)
	}
	l.mustLogin("ada", adminPW)
	clock.Add(lockFor - time.Minute)
	if p := cs.browser(t).login("otto", opPW); p.code != http.StatusTooManyRequests {
		t.Fatalf("a minute before the lock ends: %d", p.code)
	}
	clock.Add(time.Minute)
	cs.browser(t).mustLogin("otto", opPW)

	// What was done, refused or failed is in the site's log of actions,
	// with who and from where.
	as := actions(t, cs.sv.db)
	for _, w := range []struct{ user, what, result string }{
		{"ada", "login", "refused: wrong"},
		{"ada", "login", "ok"},
		{"ada", "holder add", "ok"},
		{"ada", "refused", "no valid CSRF token"},
		{"aud", "refused", "role auditor may not"},
		{"otto", "revoke", "ok"},
		{"ada", "logout", "ok"},
		{"otto", "login", "refused: wrong name or password; now locked"},
		{"otto", "login", "refused: locked"},
		{"root", "account add", "ok"},
		{"root", "role set", "ok"},
	} {
		if !hasAction(as, w.user, w.what, w.result) {
			t.Errorf("no action %+v in the log", w)
		}
	}
	locked := 0
	for _, a := range as {
		if a.From == "" {
			t.Errorf("action %+v does not say from where", a)
		}
		if a.User == "otto" && strings.HasPrefix(a.Result, "refused: locked") {
			locked++
		}
	}
	if locked != 1 {
		t.Errorf("%d records of logins refused during one lock, want 1", locked)
	}
	if p := l.get("/actions?user=otto"); !strings.Contains(p.body, "now locked for 15m0s") {
		t.Errorf("the Site actions page does not show otto's lockout")
	}
	if p := l.get("/activity"); !strings.Contains(p.body, `id="latest-actions"`) || !strings.Contains(p.body, "otto") {
		t.Errorf("the Activity page does not show the latest site actions")
	}
	if out := cs.ok(t, "", "audit", "actions", "--user", "otto"); !strings.Contains(out, "now locked for 15m0s") || !strings.Contains(out, "revoke") {
		t.Errorf("latch audit actions --user otto:\n%s", out)
	}
	if out := cs.ok(t, "", "audit", "actions", "--json", "--limit", "3"); strings.Count(out, `"seq"`) != 3 {
		t.Errorf("latch audit actions --json --limit 3:\n%s", out)
	}
	for _, q := range []string{"limit=0", "before=x", "bogus=1", "user=a&user=b"} {
		if p := l.get("/api/v1/audit/actions?" + q); p.code != http.StatusBadRequest {
			t.Errorf("GET /api/v1/audit/actions?%s: %d, want 400", q, p.code)
		}
	}
}

func TestServeConfig(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{"", ""},
		{"[web]\nlisten = \"127.0.0.1:8080\"\n", ""},
		{"[web]\nlisten = \"[::1]:8080\"\nsession = \"1h\"\nidle = \"10m\"\n", ""},
		{"[web]\nlisten = \"localhost:8080\"\n", ""},
		{"[web]\nlisten = \"0.0.0.0:8080\"\n", "not a loopback address"},
		{"[web]\nlisten = \"192.0.2.1:8080\"\n", "give web.cert and web.key"},
		{"[web]\nlisten = \"0.0.0.0:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n", ""},
		{"[web]\nlisten = \"0.0.0.0:8443\"\ncert = \"c.pem\"\n", "go together"},
		{"[web]\nlisten = \"8080\"\n", "want HOST:PORT"},
		{"[web]\nlisen = \"127.0.0.1:8080\"\n", "unknown setting web.lisen"},
		{"[web]\nlisten = \"127.0.0.1:8080\"\nidle = \"forever\"\n", "not a duration"},
		{"[web]\nlisten = \"127.0.0.1:8080\"\nidle = \"2h\"\nsession = \"1h\"\n", "web.idle"},
		{"[web]\nlisten = 8080\n", "line"},
		{"[web\n", "line 2"},
	} {
		_, err := parseServeConfig([]byte(c.in))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one with %q", c.in, err, c.err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "serve.toml")
	if err := os.WriteFile(path, []byte("[web]\nlisten = \"0.0.0.0:80\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := initSite(t)
	code, _, errs := latch(t, "", "serve", "--db", s.db, "--key", s.key, "--socket", s.sock, "--config", path)
	if code == 0 || !strings.Contains(errs, path) || !strings.Contains(errs, "not a loopback address") {
		t.Fatalf("serve with a console on 0.0.0.0 without TLS: exit %d: %s", code, errs)
	}
}

func FuzzServeConfig(f *testing.F) {
	f.Add([]byte("[web]\nlisten = \"127.0.0.1:8080\"\ncert = \"a\"\nkey = \"b\"\nsession = \"8h\"\nidle = \"30m\"\n"))
	f.Add([]byte("[web]\nlisten = \"0.0.0.0:1\"\n"))
	f.Add([]byte("x = [1, {a = 2}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseServeConfig(b)
		if err != nil {
			return
		}
		// What is accepted is safe to run.
		w := c.Web
		if w.Listen != "" && w.Cert == "" {
			host, _, err := net.SplitHostPort(w.Listen)
			if err != nil || !loopbackHost(host) {
				t.Fatalf("accepted a console on %q without TLS", w.Listen)
			}
		}
		if w.Idle.Duration > w.Session.Duration || w.Idle.Duration < time.Minute {
			t.Fatalf("accepted idle %v with session %v", w.Idle.Duration, w.Session.Duration)
		}
	})
}

func TestConsoleTLS(t *testing.T) {
	pki := brokertest.NewPKI(t)
	cs := startConsoleSite(t, serveOptions{web: webConfig{Listen: "127.0.0.1:0", Cert: pki.ServerCert, Key: pki.ServerKey}}, nil)
	cs.addUser(t, "ada", "admin", adminPW)
	b := cs.browser(t)
	b.c.Transport = &http.Transport{TLSClientConfig: pki.ClientTLS("")}
	p := b.login("ada", adminPW)
	if p.code != http.StatusSeeOther {
		t.Fatalf("login over HTTPS: %d", p.code)
	}
	set := p.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-" + sessionCookie + "=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("the session cookie %q lacks %q", set, want)
		}
	}
	if p := b.get("/doors"); p.code != http.StatusOK || !strings.Contains(p.header.Get("Strict-Transport-Security"), "max-age") {
		t.Fatalf("a page over HTTPS: %d %v", p.code, p.header)
	}
	// HTTP/2, so that a browser's live pages share one connection.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(""), ForceAttemptHTTP2: true}}
	res, err := h2.Get(cs.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("the console speaks %s over TLS, want HTTP/2", res.Proto)
	}
	// Plain HTTP on the TLS port is refused.
	plain := cs.browser(t)
	plain.base = "http://" + strings.TrimPrefix(cs.base, "https://")
	if res, err := plain.c.Get(plain.base + "/login"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("the console answered plain HTTP on its TLS port")
		}
	}
}

func TestConsoleDoorCommands(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "otto", "operator", opPW)
	b := cs.browser(t)
	csrf := b.mustLogin("otto", opPW)
	// A command asks for a confirmation first.
	p := b.post("/doors/front/unlock", url.Values{"csrf": {csrf}, "seconds": {"7"}})
	if p.code != http.StatusOK || !strings.Contains(p.body, "Unlock door front for 7 seconds?") || !strings.Contains(p.body, `name="confirm" value="yes"`) {
		t.Fatalf("unlock without a confirmation: %d\n%s", p.code, p.body)
	}
	p = b.post("/doors/front/lockdown", url.Values{"csrf": {csrf}, "on": {"true"}})
	if p.code != http.StatusOK || !strings.Contains(p.body, "Put door front in lockdown?") {
		t.Fatalf("lockdown without a confirmation: %d", p.code)
	}
	// Out of range, or to a door the site does not have: refused, with why.
	for _, c := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/doors/front/unlock", url.Values{"seconds": {"0"}, "confirm": {"yes"}}, "give 1 to 60 seconds"},
		{"/doors/front/unlock", url.Values{"seconds": {"3600"}, "confirm": {"yes"}}, "give 1 to 60 seconds"},
		{"/doors/nowhere/unlock", url.Values{"seconds": {"5"}, "confirm": {"yes"}}, "nowhere"},
		{"/doors/nowhere/lockdown", url.Values{"on": {"true"}, "confirm": {"yes"}}, "nowhere"},
	} {
		c.form.Set("csrf", csrf)
		if p := b.post(c.path, c.form); p.code != http.StatusSeeOther || p.location != "/doors" {
			t.Fatalf("POST %s: %d %s", c.path, p.code, p.location)
		}
		if p := b.get("/doors"); !strings.Contains(p.body, c.want) {
			t.Errorf("POST %s %v: the Doors page does not say %q", c.path, c.form, c.want)
		}
	}
	if !hasAction(actions(t, cs.sv.db), "otto", "unlock", "failed:") {
		t.Error("a failed unlock is not in the site's actions")
	}
}

func TestUserCommands(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "ada", "admin", adminPW)
	cs.addUser(t, "otto", "operator", opPW)
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{adminPW + "\n", []string{"user", "add", "ada", "--role", "admin"}, `account "ada": exists`},
		{adminPW + "\n", []string{"user", "add", "eve", "--role", "root"}, "--role"},
		{adminPW + "\n", []string{"user", "add", "e ve", "--role", "admin"}, "want 1 to 64"},
		{"eve\n", []string{"user", "add", "eve", "--role", "admin"}, "at least 12"},
		{"", []string{"user", "add", "eve", "--role", "admin"}, "no password on standard input"},
		{"", []string{"user", "remove", "nobody"}, `account "nobody" does not exist`},
		{"", []string{"user", "role", "otto", "root"}, "want admin, operator or auditor"},
	} {
		code, _, errs := cs.cli(t, c.stdin, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("latch %s: exit %d: %q, want an error with %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}
	out := cs.ok(t, "", "user", "list")
	if !strings.Contains(out, "ada") || !strings.Contains(out, "operator") || strings.Contains(out, "argon2") {
		t.Fatalf("user list:\n%s", out)
	}
	// A new password: the old one no longer logs in, the new one does, and
	// the sessions from before end.
	b := cs.browser(t)
	b.mustLogin("otto", opPW)
	cs.ok(t, "a brand new passphrase\n", "user", "passwd", "otto")
	if p := b.get("/doors"); p.code != http.StatusSeeOther {
		t.Fatalf("a session from before a new password: %d", p.code)
	}
	if p := b.login("otto", opPW); p.code != http.StatusUnauthorized {
		t.Fatalf("the old password: %d", p.code)
	}
	b.mustLogin("otto", "a brand new passphrase")
	cs.ok(t, "", "user", "remove", "otto")
	if p := b.get("/doors"); p.code != http.StatusSeeOther {
		t.Fatalf("a session of a removed account: %d", p.code)
	}
	if p := b.login("otto", "a brand new passphrase"); p.code != http.StatusUnauthorized {
		t.Fatalf("a removed account logs in: %d", p.code)
	}
}

func TestConsoleCardForms(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "otto", "operator", opPW)
	cs.ok(t, "", "holder", "add", "h1")
	cs.ok(t, "", "card", "add", "04A1B2C3", "--holder", "h1", "--doors", "front")
	b := cs.browser(t)
	csrf := b.mustLogin("otto", opPW)
	uid := []byte{0x04, 0xA1, 0xB2, 0xC3}

	// Doors, validity, schedule, holidays and switches in one form.
	p := b.post("/cards/04A1B2C3/edit", url.Values{"csrf": {csrf}, "holder": {"h1"}, "doors": {"front, back"},
		"valid_until": {"2027-01-31"}, "schedule": {"mon-fri 08:00-18:00, sat 09:00-12:00"}, "holidays": {"2026-12-25, 2027-01-01"},
		"card_only": {"on"}, "lockdown_override": {"on"}})
	if p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/changes/") {
		t.Fatalf("card edit: %d %s", p.code, p.location)
	}
	card, err := cs.sv.db.Card(uid)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(card.Doors, " ") != "front back" || card.ValidUntil.Format(time.DateOnly) != "2027-01-31" ||
		len(card.Schedule.Weekly[time.Monday]) != 1 || len(card.Schedule.Weekly[time.Saturday]) != 1 || len(card.Schedule.Weekly[time.Sunday]) != 0 ||
		strings.Join(card.Schedule.Holidays, " ") != "2026-12-25 2027-01-01" || !card.Flags.CardOnly || card.Flags.ExtendedUnlock {
		t.Fatalf("the card after the edit: %+v", card)
	}
	// Opening during a lockdown is an admin's to grant: an operator's
	// form does not set it, nor does an operator's API call.
	if card.Flags.LockdownOverride {
		t.Fatal("an operator's form gave the card the lockdown override")
	}
	if p := b.api("PATCH", "/api/v1/cards/04A1B2C3", csrf, `{"lockdown_override": true}`); p.code != http.StatusForbidden {
		t.Fatalf("an operator's API call for the lockdown override: %d %s", p.code, p.body)
	}
	if p := b.api("POST", "/api/v1/cards", csrf, `{"uid": "04A1B2C4", "holder": "h1", "flags": {"lockdown_override": true}}`); p.code != http.StatusForbidden {
		t.Fatalf("an operator's card add with the lockdown override: %d %s", p.code, p.body)
	}
	if p := b.api("PATCH", "/api/v1/cards/04A1B2C3", csrf, `{"card_only": false}`); p.code != http.StatusOK {
		t.Fatalf("an operator's API card edit: %d %s", p.code, p.body)
	}
	cs.addUser(t, "ada", "admin", adminPW)
	adm := cs.browser(t)
	acsrf := adm.mustLogin("ada", adminPW)
	if p := adm.api("PATCH", "/api/v1/cards/04A1B2C3", acsrf, `{"lockdown_override": true}`); p.code != http.StatusOK {
		t.Fatalf("an admin's API call for the lockdown override: %d %s", p.code, p.body)
	}
	if !strings.Contains(adm.get("/people/h1").body, `name="lockdown_override" checked`) {
		t.Fatal("the admin's form does not show the override")
	}
	if strings.Contains(b.get("/people/h1").body, `name="lockdown_override"`) {
		t.Fatal("the operator's form offers the override")
	}
	// The operator's edit keeps the override the admin gave.
	if p := b.post("/cards/04A1B2C3/edit", url.Values{"csrf": {csrf}, "holder": {"h1"}, "doors": {"front back"}, "valid_until": {"2027-01-31"},
		"schedule": {"mon-fri 08:00-18:00, sat 09:00-12:00"}, "holidays": {"2026-12-25, 2027-01-01"}, "card_only": {"on"}}); p.code != http.StatusSeeOther {
		t.Fatalf("card edit: %d", p.code)
	}
	if card, _ := cs.sv.db.Card(uid); !card.Flags.LockdownOverride {
		t.Fatal("an operator's edit took away the override an admin gave")
	}
	hp := b.get("/people/h1")
	for _, want := range []string{"mon 08:00-18:00", "sat 09:00-12:00", "closed 2026-12-25,2027-01-01", `value="2027-01-31T00:00:00"`} {
		if !strings.Contains(hp.body, want) {
			t.Errorf("the holder's page does not show %q", want)
		}
	}
	// A bad schedule or PIN is refused with what is wrong, and changes nothing.
	for _, c := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/cards/04A1B2C3/edit", url.Values{"schedule": {"weekdays 8-6"}, "doors": {"front"}}, "want a day"},
		{"/cards/04A1B2C3/edit", url.Values{"holidays": {"25/12/2026"}, "doors": {"front"}}, "not a YYYY-MM-DD date"},
		{"/cards/04A1B2C3/pin", url.Values{"pin": {"12"}, "pin_again": {"12"}}, "PIN refused"},
		{"/cards/04A1B2C3/pin", url.Values{"pin": {"4821"}, "pin_again": {"4812"}}, "the two PINs differ"},
		{"/cards/04A1B2C3/pin", url.Values{"pin": {"B2C3"}, "pin_again": {"B2C3"}}, "PIN refused"},
		{"/cards/04A1B2C3/revoke", url.Values{"reason": {""}}, "give a reason"},
	} {
		c.form.Set("csrf", csrf)
		c.form.Set("holder", "h1")
		if p := b.post(c.path, c.form); p.code != http.StatusSeeOther || p.location != "/people/h1" {
			t.Fatalf("POST %s %v: %d %s", c.path, c.form, p.code, p.location)
		}
		if p := b.get("/people/h1"); !strings.Contains(p.body, c.want) {
			t.Errorf("POST %s %v: the page does not say %q", c.path, c.form, c.want)
		}
	}
	after, _ := cs.sv.db.Card(uid)
	if after.PINHash != "" || strings.Join(after.Doors, " ") != "front back" {
		t.Fatalf("a refused form changed the card: %+v", after)
	}
	if _, err := cs.sv.db.Revoked(uid); !errors.Is(err, site.ErrNotFound) {
		t.Fatalf("a revocation without a reason was made: %v", err)
	}
	// A good PIN, and a replacement in one step.
	if p := b.post("/cards/04A1B2C3/pin", url.Values{"csrf": {csrf}, "holder": {"h1"}, "pin": {"4821"}, "pin_again": {"4821"}}); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/changes/") {
		t.Fatalf("set PIN: %d %s", p.code, p.location)
	}
	if p := b.post("/cards/04A1B2C3/replace", url.Values{"csrf": {csrf}, "holder": {"h1"}, "new_uid": {"04D1E2F3"}, "reason": {"lost"}}); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/changes/") {
		t.Fatalf("replace: %d %s", p.code, p.location)
	}
	if rv, err := cs.sv.db.Revoked(uid); err != nil || rv.Reason != "lost" {
		t.Fatalf("the replaced card: %+v %v", rv, err)
	}
	if nc, err := cs.sv.db.Card([]byte{0x04, 0xD1, 0xE2, 0xF3}); err != nil || nc.HolderID != "h1" || strings.Join(nc.Doors, " ") != "front back" {
		t.Fatalf("the new card: %+v %v", nc, err)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/people/alice":              "/people/alice",
		"/activity?door=front&uid=1": "/activity?door=front&uid=1",
		"/people/a%2Fb":              "/people/a%2Fb",
		"":                           "/doors",
		"//evil.example/":            "/doors",
		"/\t/evil.example":           "/doors",
		"/\n/evil.example":           "/doors",
		"/\\evil.example":            "/doors",
		"https://evil.example/":      "/doors",
		"javascript:alert(1)":        "/doors",
		"people":                     "/doors",
		"/login?next=/x":             "/doors",
		"/ /evil":                    "/doors",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":              "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":   "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":       "::ffff:192.0.2.7",
		"not an address at all!": "not an address at all!",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConsoleHostileIDsAndLastAdmin(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "ada", "admin", adminPW)
	cs.addUser(t, "otto", "operator", opPW)
	// A holder id that is a path: every link and form on its page stays
	// under that holder.
	const evil = "../users/ada/remove?"
	cs.ok(t, "", "holder", "add", evil)
	b := cs.browser(t)
	b.mustLogin("ada", adminPW)
	p := b.get("/people/" + url.PathEscape(evil))
	if p.code != http.StatusOK {
		t.Fatalf("the holder's page: %d", p.code)
	}
	for _, m := range regexp.MustCompile(`(?:action|href)="([^"]*)"`).FindAllStringSubmatch(p.body, -1) {
		if strings.Contains(m[1], "/users/") && !strings.Contains(m[1], "%2Fusers%2F") {
			t.Errorf("the page of holder %q has a link or form to %s", evil, m[1])
		}
	}
	// The API through the console takes the same id, escaped.
	if p := b.api("GET", "/api/v1/holders/"+url.PathEscape(evil), "", ""); p.code != http.StatusOK || !strings.Contains(p.body, `"id": "../users/ada/remove?"`) {
		t.Fatalf("GET the holder through /api: %d %s", p.code, p.body)
	}
	// The only admin cannot be removed or demoted.
	for _, args := range [][]string{{"user", "remove", "ada"}, {"user", "role", "ada", "operator"}} {
		if code, _, errs := cs.cli(t, "", args...); code == 0 || !strings.Contains(errs, "the only admin") {
			t.Errorf("latch %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
	}
	cs.ok(t, "", "user", "role", "otto", "admin")
	cs.ok(t, "", "user", "role", "ada", "operator")
}

func TestConsoleStreamsEndWithTheSession(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{consoleReady: func(c *console) { c.recheck = 20 * time.Millisecond }}, nil)
	cs.addUser(t, "aud", "auditor", audPW)
	b := cs.browser(t)
	csrf := b.mustLogin("aud", audPW)
	for _, path := range []string{"/live", "/activity/stream?after=0"} {
		req, _ := http.NewRequest("GET", cs.base+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		res, err := b.c.Do(req)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", path, res, err)
		}
		// A keepalive comes after a recheck that found the session holding.
		br := bufio.NewReader(res.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s ended while the session held: %v", path, err)
			}
			if line == ": keepalive\n" {
				break
			}
		}
		ended := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, br); ended <- err }()
		if path == "/activity/stream?after=0" {
			if p := b.post("/logout", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
				t.Fatalf("logout: %d", p.code)
			}
		} else {
			cs.ok(t, "", "user", "role", "aud", "operator") // ends the session too
			csrf = b.mustLogin("aud", audPW)
		}
		select {
		case <-ended:
		case <-time.After(hangGuard):
			t.Fatalf("%s went on after the session ended", path)
		}
		res.Body.Close()
	}
}

// FuzzConsoleForms feeds the console's parsers of form and query input
// anything: they refuse it or give what the store takes, and never panic.
func FuzzConsoleForms(f *testing.F) {
	f.Add("door=front&holder=alice&uid=04A1B2C3&type=access&reason=granted&from=2026-12-01T08:00&to=2026-12-02", "mon-fri 08:00-18:00, sat 09:00-12:00", "2026-12-25, 2027-01-01", "/people/a%2Fb")
	f.Add("uid=zz&from=yesterday", "weekdays 8-6", "25/12", "//evil")
	f.Fuzz(func(t *testing.T, query, schedule, holidays, next string) {
		q, err := url.ParseQuery(query)
		if err == nil {
			if _, f, err := activityFilterOf(q); err == nil && f.UID != "" && strings.ToUpper(f.UID) != f.UID {
				t.Fatalf("UID %q is not upper-case hex", f.UID)
			}
		}
		if sc, err := parseSchedule(schedule); err == nil {
			for _, ws := range sc.Weekly {
				for _, w := range ws {
					if w.From >= w.To || w.To > 24*60 {
						t.Fatalf("schedule %q gave the window %+v", schedule, w)
					}
				}
			}
		}
		if hs, err := parseHolidays(holidays); err == nil {
			for _, h := range hs {
				if _, err := time.Parse(time.DateOnly, h); err != nil {
					t.Fatalf("holiday %q", h)
				}
			}
		}
		if n := safeNext(next); !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.ContainsAny(n, "\\\t\n\r ") {
			t.Fatalf("safeNext(%q) = %q", next, n)
		}
	})
}
