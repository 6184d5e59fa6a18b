package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// API tokens, for scripts and identity providers that call the console's
// HTTPS API (/api/v1/..., /scim/v2/...) without a login:
//
//	GET    /v1/tokens           []tokenView
//	POST   /v1/tokens           tokenReq → tokenCreated (the secret, once)
//	DELETE /v1/tokens/{name}    tokenView: the token revoked (its record stays)
//
// A token is "latch_" and 64 hex digits (256 random bits); the site keeps
// only its SHA-256. A request carries it as `Authorization: Bearer TOKEN`
// and acts with the token's role, through the console's role table; it
// needs no CSRF token, since it carries no cookie a browser would send on
// its own.

// tokenPrefix starts every API token, so that a secret scanner can tell one.
const tokenPrefix = "latch_"

// maxTokenLife is the longest an API token may be valid.
const maxTokenLife = 5 * 365 * 24 * time.Hour

// tokenView is a token as the API shows it: no hash.
type tokenView struct {
	Name    string    `json:"name"`
	Role    site.Role `json:"role"`
	Created time.Time `json:"created"`
	By      string    `json:"by,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	Reason  string    `json:"reason,omitempty"`
	State   string    `json:"state"` // "active", "expired" or "revoked"
}

func newTokenView(t site.Token, now time.Time) tokenView {
	v := tokenView{Name: t.Name, Role: t.Role, Created: t.Created, By: t.By, Expires: t.Expires, Revoked: t.Revoked, Reason: t.Reason, State: "active"}
	switch {
	case !t.Revoked.IsZero():
		v.State = "revoked"
	case !t.Valid(now):
		v.State = "expired"
	}
	return v
}

// tokenReq makes a token.
type tokenReq struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	ExpiresS int64  `json:"expires_s,omitempty"` // valid for this many seconds; 0: no expiry
}

// tokenCreated is a new token with its secret, shown this once.
type tokenCreated struct {
	tokenView
	Token string `json:"token"`
}

func decodeTokenReq(b []byte) (tokenReq, error) {
	var r tokenReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := checkNameRole(r.Name, r.Role); err != nil {
		return r, err
	}
	if r.ExpiresS < 0 || time.Duration(r.ExpiresS)*time.Second > maxTokenLife {
		return r, fmt.Errorf("expires_s %d: want 0 (no expiry) to %d", r.ExpiresS, int64(maxTokenLife/time.Second))
	}
	return r, nil
}

// newTokenSecret returns a new token and the hex SHA-256 the site keeps.
func newTokenSecret() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24)
	token = tokenPrefix + hex.EncodeToString(b)
	return token, tokenHash(token)
}

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// parseBearer reads an Authorization header that carries an API token:
// the scheme Bearer (any case), then the token. It checks the token's
// form, not whether the site knows it.
func parseBearer(header string) (string, error) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("authorization: want Bearer and an API token")
	}
	tok = strings.TrimLeft(tok, " ")
	hexPart, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok || len(hexPart) != 64 || strings.ContainsFunc(hexPart, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) {
		return "", fmt.Errorf("authorization: not an API token (want %s and 64 lower-case hex digits)", tokenPrefix)
	}
	return tok, nil
}

func (a *api) tokenRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/tokens", a.tokenList)
	m.HandleFunc("POST /v1/tokens", a.tokenCreate)
	m.HandleFunc("DELETE /v1/tokens/{name}", a.tokenRevoke)
}

// tokenReader is what reads tokens: the database, or a change's
// transaction.
type tokenReader interface {
	Token(name string) (site.Token, error)
}

func tokenState(name string, now func() time.Time) recordState {
	return func(src records) (any, error) {
		tr, ok := src.(tokenReader)
		if !ok {
			return nil, fmt.Errorf("change log: %T cannot read tokens", src)
		}
		t, err := tr.Token(name)
		return absent(newTokenView(t, now()), err)
	}
}

func (a *api) tokenList(w http.ResponseWriter, r *http.Request) {
	ts, err := a.db.ListTokens()
	now := a.now()
	listViews(a, w, r, ts, err, func(t site.Token) (tokenView, error) { return newTokenView(t, now), nil })
}

func (a *api) tokenCreate(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeTokenReq)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	detail := "role " + req.Role
	if req.ExpiresS > 0 {
		detail += ", expires in " + (time.Duration(req.ExpiresS) * time.Second).String()
	}
	a.describe(r, "token "+req.Name, tokenState(req.Name, a.now), detail)
	if _, err := a.db.Token(req.Name); err == nil {
		a.failErr(w, r, fmt.Errorf("token %q: %w (revoked tokens keep their names)", req.Name, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, err)
		return
	}
	now := a.now().UTC()
	secret, hash := newTokenSecret()
	t := site.Token{Name: req.Name, Role: site.Role(req.Role), Hash: hash, Created: now, By: operator(r)}
	if req.ExpiresS > 0 {
		t.Expires = now.Add(time.Duration(req.ExpiresS) * time.Second)
	}
	if err := a.dbFor(r).PutToken(t); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("API token created", "token", t.Name, "role", t.Role, "expires", t.Expires, "by", operator(r))
	a.recordAPI(r, "token create", "token "+t.Name, detail)
	writeJSON(w, http.StatusCreated, tokenCreated{tokenView: newTokenView(t, now), Token: secret})
}

func (a *api) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := r.PathValue("name")
	a.describe(r, "token "+name, tokenState(name, a.now), "")
	t, err := a.db.Token(name)
	switch {
	case errors.Is(err, site.ErrNotFound):
		err = fmt.Errorf("token %q does not exist: %w", name, site.ErrNotFound)
	case err == nil && !t.Revoked.IsZero():
		err = fmt.Errorf("token %q is already revoked: %w", name, site.ErrConflict)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	t.Revoked, t.Reason = a.now().UTC(), "revoked by "+operator(r)
	if err := a.dbFor(r).PutToken(t); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("API token revoked", "token", name, "by", operator(r))
	a.recordAPI(r, "token revoke", "token "+name, "")
	writeJSON(w, http.StatusOK, newTokenView(t, a.now()))
}

// bearerSession returns the session an API token stands for, when r is a
// request of the API or SCIM with an Authorization header: nil and no
// error without one; an error when the token is malformed, unknown,
// expired or revoked (a 401).
func (c *console) bearerSession(r *http.Request) (*session, error) {
	h := r.Header.Get("Authorization")
	if h == "" || !tokenPath(r.URL.Path) {
		return nil, nil
	}
	tok, err := parseBearer(h)
	if err != nil {
		return nil, err
	}
	t, err := c.a.db.TokenByHash(tokenHash(tok))
	if errors.Is(err, site.ErrNotFound) {
		return nil, errors.New("unknown API token")
	}
	if err != nil {
		c.log.Error("read API token", "err", err)
		return nil, errors.New("the API token could not be checked")
	}
	if !t.Valid(c.now()) {
		c.log.Info("API token refused", "token", t.Name, "expires", t.Expires, "revoked", t.Revoked)
		return nil, fmt.Errorf("API token %q is expired or revoked", t.Name)
	}
	return &session{user: t.Name, role: t.Role, token: t.Name}, nil
}

// tokenPath reports whether an API token may be used on path: the API
// and SCIM, never a page.
func tokenPath(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/scim/")
}

// --- the CLI ---

// parseLife reads a token's life: Nd (days) or a Go duration.
func parseLife(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%q: want a number of days like 90d, or a duration like 12h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < time.Second {
		return 0, fmt.Errorf("%q: want a number of days like 90d, or a duration like 12h", s)
	}
	return v, nil
}

func cmdTokenCreate(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "token create")
	role := c.fs.String("role", "", "admin, operator or auditor")
	expires := c.fs.String("expires", "", "valid for this long: 90d, 12h (none: until revoked)")
	pos, err := c.parse(args, 1, "NAME")
	if err != nil {
		return err
	}
	if _, err := site.ParseRole(*role); err != nil {
		return usagef("--role %q: want admin, operator or auditor", *role)
	}
	req := tokenReq{Name: pos[0], Role: *role}
	if *expires != "" {
		d, err := parseLife(*expires)
		if err != nil {
			return usagef("--expires %v", err)
		}
		req.ExpiresS = int64(d / time.Second)
	}
	raw, err := c.client().call(ctx, "POST", "/v1/tokens", req)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, t tokenCreated) {
		exp := "never"
		if !t.Expires.IsZero() {
			exp = when(t.Expires)
		}
		fmt.Fprintf(w, "token %s (role %s, expires %s); it is shown this once, keep it now:\n%s\n", t.Name, t.Role, exp, t.Token)
	})
}

func cmdTokenList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "token list", "/v1/tokens", func(w io.Writer, ts []tokenView) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tCREATED\tEXPIRES\tBY")
		for _, t := range ts {
			exp := "never"
			if !t.Expires.IsZero() {
				exp = when(t.Expires)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.State, when(t.Created), exp, dash(t.By))
		}
		tw.Flush()
	})
}

func cmdTokenRevoke(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "token revoke", "NAME", "DELETE", func(id string) string { return "/v1/tokens/" + id }, func(w io.Writer, t tokenView) {
		fmt.Fprintf(w, "token %s revoked: it is refused from now on\n", t.Name)
	})
}
