package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The web console: server-rendered pages for facility admins, operators
// and auditors, on the address of the configuration's [web] section. It
// is a client of the API: every change a page makes is an API request
// made in-process as the logged-in account, after the console checked the
// session, the CSRF token and the account's role, and recorded in the
// site's log of actions. /api/v1/... is the same API for the pages'
// scripts, with the same checks.

//go:embed web
var webFiles embed.FS

const (
	// sessionCookie names the login cookie; over HTTPS it carries the
	// __Host- prefix, which binds it to this host and path /.
	sessionCookie = "latch_session"
	// csrfField and csrfHeader carry the session's CSRF token in a form
	// and in a script's request.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
	// maxFormBytes bounds a form's body.
	maxFormBytes = 64 << 10
)

// console serves the web console.
type console struct {
	a        *api
	apiMux   *http.ServeMux
	log      *slog.Logger
	now      func() time.Time
	https    bool
	sessions *sessions
	limits   *loginLimits
	pages    map[string]*template.Template
	// dummy is a password hash checked for an unknown account, so that
	// a login takes as long whether or not the account exists.
	dummy string
	// checking bounds the password checks run at once.
	checking chan struct{}
	// recheck is how often, at most, a quiet stream checks that its
	// session still holds (streamRecheck; tests shorten it).
	recheck time.Duration
}

// liveEvery is how often, at most, a live page is told to refresh.
const liveEvery = 500 * time.Millisecond

// newConsole makes the console of an API.
func newConsole(a *api, cfg webConfig, log *slog.Logger) (*console, error) {
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	dummy, err := store.HashSecret([]byte(randomToken()), a.pins)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &console{a: a, log: log.With("part", "console"), now: a.now, https: cfg.Cert != "",
		sessions: newSessions(cfg.Session.Duration, cfg.Idle.Duration), limits: newLoginLimits(),
		pages: pages, dummy: dummy, checking: make(chan struct{}, 1), recheck: streamRecheck}
	c.apiMux = a.mux()
	return c, nil
}

// consoleTLS is the console's TLS configuration with its certificate, or
// nil without one. It offers HTTP/2, so that a browser's live pages
// (each holding a stream open) share one connection.
func consoleTLS(cfg webConfig) (*tls.Config, error) {
	if cfg.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("console: web.cert and web.key: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}, nil
}

// handler returns the console's routes. Everything but the login page and
// the static files needs a session.
func (c *console) handler() http.Handler {
	m := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web/static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.auth(site.RoleAuditor, c.logout))
	m.HandleFunc("GET /{$}", c.auth(site.RoleAuditor, func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/doors", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /doors", c.auth(site.RoleAuditor, c.doorsPage))
	m.HandleFunc("POST /doors/{id}/unlock", c.auth(site.RoleOperator, c.doorUnlock))
	m.HandleFunc("POST /doors/{id}/lockdown", c.auth(site.RoleOperator, c.doorLockdown))
	m.HandleFunc("GET /people", c.auth(site.RoleAuditor, c.peoplePage))
	m.HandleFunc("POST /people", c.auth(site.RoleOperator, c.holderAdd))
	m.HandleFunc("GET /people/{id}", c.auth(site.RoleAuditor, c.holderPage))
	m.HandleFunc("GET /people/{id}/enroll", c.auth(site.RoleOperator, c.enrollPage))
	m.HandleFunc("POST /people/{id}/cards", c.auth(site.RoleOperator, c.cardAdd))
	m.HandleFunc("POST /people/{id}/revoke", c.auth(site.RoleOperator, c.holderRevoke))
	m.HandleFunc("POST /cards/{uid}/pin", c.auth(site.RoleOperator, c.cardPIN))
	m.HandleFunc("POST /cards/{uid}/revoke", c.auth(site.RoleOperator, c.cardRevoke))
	m.HandleFunc("POST /cards/{uid}/replace", c.auth(site.RoleOperator, c.cardReplace))
	m.HandleFunc("POST /cards/{uid}/edit", c.auth(site.RoleOperator, c.cardEdit))
	m.HandleFunc("GET /changes/{seq}", c.auth(site.RoleAuditor, c.changePage))
	m.HandleFunc("GET /activity", c.auth(site.RoleAuditor, c.activityPage))
	m.HandleFunc("GET /activity/stream", c.auth(site.RoleAuditor, c.activityStream))
	m.HandleFunc("GET /activity/export", c.auth(site.RoleAuditor, c.activityExport))
	m.HandleFunc("GET /actions", c.auth(site.RoleAuditor, c.actionsPage))
	m.HandleFunc("GET /integrity", c.auth(site.RoleAuditor, c.integrityPage))
	c.accessPageRoutes(m)
	c.reviewPageRoutes(m)
	c.tokenPageRoutes(m)
	c.alarmPageRoutes(m)
	c.notifyRulePageRoutes(m)
	c.visitorPageRoutes(m)
	m.HandleFunc("GET /changelog", c.auth(site.RoleAuditor, c.changelogPage))
	m.HandleFunc("POST /changelog/{seq}/note", c.auth(site.RoleAuditor, c.changelogNote))
	m.HandleFunc("GET /users", c.auth(site.RoleAdmin, c.usersPage))
	m.HandleFunc("POST /users", c.auth(site.RoleAdmin, c.userAdd))
	m.HandleFunc("POST /users/{name}/remove", c.auth(site.RoleAdmin, c.userRemove))
	m.HandleFunc("GET /live", c.auth(site.RoleAuditor, c.liveStream))
	m.HandleFunc("/api/", c.auth(site.RoleAuditor, c.apiProxy))
	m.HandleFunc("/scim/", c.auth(site.RoleAdmin, c.apiProxy)) // SCIM: the API's /scim/v2 routes, for admins
	m.HandleFunc("/", c.auth(site.RoleAuditor, func(w http.ResponseWriter, r *http.Request, ss *session) {
		c.errorPage(w, r, ss, http.StatusNotFound, errors.New("no such page"))
	}))
	return c.headers(http.NewCrossOriginProtection().Handler(m))
}

// headers sets what every answer carries: no framing, no sniffing, a
// policy that runs only the console's own scripts and styles, and no
// caching of pages that show people and cards.
func (c *console) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		if c.https {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// roleRank orders the roles.
func roleRank(r site.Role) int {
	switch r {
	case site.RoleAdmin:
		return 3
	case site.RoleOperator:
		return 2
	case site.RoleAuditor:
		return 1
	}
	return 0
}

// can reports whether a session's role is at least need.
func (ss *session) can(need site.Role) bool { return roleRank(ss.role) >= roleRank(need) }

// cookieName is the session cookie's name on this console.
func (c *console) cookieName() string {
	if c.https {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

// liveHeader marks a page's own background refresh (console.js): it does
// not count as activity for the idle timeout, and leaves the message of
// the last change for the page the user asks for next.
const liveHeader = "X-Latch-Live"

// background reports whether r is a page's background refresh.
func background(r *http.Request) bool { return r.Header.Get(liveHeader) == "1" }

// session returns the request's session, or nil. A session of an account
// removed, disabled or changed since the login is ended.
func (c *console) session(r *http.Request) *session { return c.lookup(r, !background(r)) }

// alive reports whether the session of a long request (a stream) still
// holds, without counting it as activity.
func (c *console) alive(r *http.Request) bool { return c.lookup(r, false) != nil }

// lookup is session, touching the session or not.
func (c *console) lookup(r *http.Request, touch bool) *session {
	ck, err := r.Cookie(c.cookieName())
	if err != nil {
		return nil
	}
	ss := c.sessions.get(ck.Value, c.now(), touch)
	if ss == nil {
		return nil
	}
	u, err := c.a.db.User(ss.user)
	if err != nil || u.Disabled || u.Role != ss.role || !u.Changed.Equal(ss.changed) {
		c.sessions.end(ss)
		return nil
	}
	return ss
}

// auth wraps a handler that needs a session with at least role need: no
// session is a redirect to the login page (a 401 for the API and
// streams); a lesser role is a 403; a change (any method but GET and
// HEAD) without the session's CSRF token is a 403.
func (c *console) auth(need site.Role, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, err := c.bearerSession(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: err.Error()})
			return
		}
		if ss == nil {
			ss = c.session(r)
		}
		if ss == nil {
			if r.Method == http.MethodGet && !tokenPath(r.URL.Path) && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.refuse(w, r, nil, http.StatusUnauthorized, errors.New("not logged in, or the session ended: log in again"))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && ss.token == "" {
			token := r.Header.Get(csrfHeader)
			if token == "" {
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
				token = r.PostFormValue(csrfField)
			}
			if !ss.csrfOK(token) {
				c.record(r, ss, site.Action{What: "refused", Target: r.Method + " " + r.URL.Path, Result: "no valid CSRF token"})
				c.refuse(w, r, ss, http.StatusForbidden, errors.New("the form's security token is missing or stale: reload the page and try again"))
				return
			}
		}
		if !ss.can(need) {
			c.record(r, ss, site.Action{What: "refused", Target: r.Method + " " + r.URL.Path, Result: "role " + string(ss.role) + " may not"})
			c.refuse(w, r, ss, http.StatusForbidden, fmt.Errorf("your role (%s) may not do this", ss.role))
			return
		}
		h(w, r, ss)
	}
}

// refuse answers an error: JSON to the API and scripts, a page otherwise.
func (c *console) refuse(w http.ResponseWriter, r *http.Request, ss *session, code int, err error) {
	if tokenPath(r.URL.Path) || r.Header.Get(csrfHeader) != "" || r.Header.Get("Accept") == "text/event-stream" {
		writeJSON(w, code, errorBody{Error: err.Error()})
		return
	}
	c.errorPage(w, r, ss, code, err)
}

// clientAddr is the request's remote address, without the port.
func clientAddr(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// record appends to the site's log of actions; a failure to is logged.
func (c *console) record(r *http.Request, ss *session, a site.Action) {
	a.Time = c.now().UTC()
	a.From = clientAddr(r)
	if ss != nil {
		a.User, a.Role = ss.user, ss.role
	}
	if a.Result == "" {
		a.Result = "ok"
	}
	if _, err := c.a.db.AppendAction(a); err != nil {
		c.log.Error("record a console action", "what", a.What, "user", a.User, "err", err)
	}
}

// operatorName is how the API's records name a console account.
func operatorName(ss *session, r *http.Request) string {
	if ss.token != "" {
		return fmt.Sprintf("%s (token, %s)", ss.user, clientAddr(r))
	}
	return fmt.Sprintf("%s (console, %s)", ss.user, clientAddr(r))
}

// apiResult is an in-process API answer.
type apiResult struct {
	code int
	body []byte
}

// err returns the API's error message as an error, or nil for a 2xx.
func (res apiResult) err() error {
	if res.code/100 == 2 {
		return nil
	}
	var e errorBody
	if json.Unmarshal(res.body, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("status %d", res.code)
}

// recorder is a ResponseWriter kept in memory.
type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (rc *recorder) Header() http.Header         { return rc.h }
func (rc *recorder) WriteHeader(code int)        { rc.code = code }
func (rc *recorder) Write(b []byte) (int, error) { return rc.buf.Write(b) }

// apiRequest makes an API request of r's session's account.
func (c *console) apiRequest(r *http.Request, ss *session, method, path string, body io.Reader) *http.Request {
	ctx := context.WithValue(r.Context(), operatorKey{}, operatorName(ss, r))
	ctx = context.WithValue(ctx, consoleKey{}, true)
	ctx = context.WithValue(ctx, consoleActorKey{}, consoleActor{name: ss.user, role: ss.role, addr: clientAddr(r), token: ss.token})
	req, _ := http.NewRequestWithContext(ctx, method, path, body)
	req.RemoteAddr = r.RemoteAddr
	return req
}

// call runs an API request in-process, with req marshalled as its body
// (nil: none), and returns its answer.
func (c *console) call(r *http.Request, ss *session, method, path string, req any) apiResult {
	var body io.Reader = http.NoBody
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return apiResult{code: http.StatusInternalServerError, body: []byte(`{"error":"encode request"}`)}
		}
		body = bytes.NewReader(b)
	}
	rc := &recorder{h: make(http.Header), code: http.StatusOK}
	c.a.logChanges(c.apiMux).ServeHTTP(rc, c.apiRequest(r, ss, method, path, body))
	return apiResult{code: rc.code, body: rc.buf.Bytes()}
}

// apiNeed is the least role that may call an API route (its mux pattern).
func apiNeed(pattern string) site.Role {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case path == "/v1/backup" || strings.HasPrefix(path, "/v1/users") || strings.HasPrefix(path, "/v1/tokens"):
		return site.RoleAdmin
	case path == "/v1/doors/{id}/enroll" || (method == http.MethodPost && strings.HasPrefix(path, "/v1/alarms/")):
		return site.RoleOperator
	case pattern == "POST /v1/audit/changes/{seq}/notes":
		return site.RoleAuditor
	case pattern == "POST /v1/reviews/{id}/decisions" || pattern == "POST /v1/reviews/{id}/complete":
		return site.RoleAuditor // the review's owner, or an admin (reviewAllowed)
	case method == http.MethodGet:
		return site.RoleAuditor
	}
	switch pattern {
	case "POST /v1/holders", "POST /v1/cards", "POST /v1/cards/{uid}/pin", "POST /v1/revoke", "POST /v1/reinstate",
		"POST /v1/cards/{uid}/replace", "PATCH /v1/cards/{uid}", "POST /v1/doors/{id}/unlock", "POST /v1/doors/{id}/lockdown",
		"POST /v1/visitors", "POST /v1/visitors/{holder}/end":
		return site.RoleOperator
	}
	return site.RoleAdmin
}

// apiProxy serves /api/v1/... as the API's /v1/..., as the session's
// account, if its role allows the route. A change is recorded in the
// site's log of actions.
func (c *console) apiProxy(w http.ResponseWriter, r *http.Request, ss *session) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/api") // a holder id may hold an escaped /
	req := c.apiRequest(r, ss, r.Method, path, r.Body)
	req.URL.RawQuery = r.URL.RawQuery
	req.Header = r.Header.Clone()
	_, pattern := c.apiMux.Handler(req)
	if pattern == "" || pattern == "/" {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, path)})
		return
	}
	change := r.Method != http.MethodGet && r.Method != http.MethodHead
	need := apiNeed(pattern)
	if pattern == "PATCH /v1/cards/{uid}" || pattern == "POST /v1/cards" {
		// Opening during a lockdown is an admin's to grant.
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "request body too large"})
			return
		}
		if grantsOverride(b) {
			need = site.RoleAdmin
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	if !ss.can(need) {
		c.record(r, ss, site.Action{What: "refused", Target: r.Method + " " + path, Result: fmt.Sprintf("role %s may not (needs %s)", ss.role, need)})
		writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("your role (%s) may not %s %s", ss.role, r.Method, path)})
		return
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	c.a.logChanges(c.apiMux).ServeHTTP(sw, req)
	if change || strings.HasSuffix(pattern, "/export") || strings.HasSuffix(pattern, "/backup") {
		res := "ok"
		if sw.code/100 != 2 {
			res = fmt.Sprintf("status %d", sw.code)
		}
		c.record(r, ss, site.Action{What: "api", Target: r.Method + " " + path, Result: res})
	}
}

// grantsOverride reports whether a card request's body sets the lockdown
// override (card set's lockdown_override, or card add's flags).
func grantsOverride(body []byte) bool {
	var req struct {
		LockdownOverride *bool `json:"lockdown_override"`
		Flags            struct {
			LockdownOverride bool `json:"lockdown_override"`
		} `json:"flags"`
	}
	if json.Unmarshal(body, &req) != nil {
		return false // the API refuses it
	}
	return (req.LockdownOverride != nil && *req.LockdownOverride) || req.Flags.LockdownOverride
}

// statusWriter notes the status of an answer passed through, and sets
// a Content-Disposition on a 200 only, so that an error is not saved as
// a file.
type statusWriter struct {
	http.ResponseWriter
	code        int
	disposition string
	wrote       bool
}

func (s *statusWriter) WriteHeader(code int) {
	if s.wrote {
		return
	}
	s.code, s.wrote = code, true
	if code == http.StatusOK && s.disposition != "" {
		s.Header().Set("Content-Disposition", s.disposition)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// trailers, deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes flushes through, for streams.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
