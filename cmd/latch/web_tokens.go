package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchdoor/latch/store/site"
)

// The accounts page's API tokens: an admin lists them, makes one (its
// secret is shown on the answer page, once) and revokes one, through the
// API as the session's account.

// tokensData is what the tokens page shows.
type tokensData struct {
	Tokens  []tokenView
	Created *tokenCreated // a token just made, with its secret
}

// tokenPageRoutes adds the tokens page, for admins.
func (c *console) tokenPageRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /users/tokens", c.auth(site.RoleAdmin, c.tokensPage))
	m.HandleFunc("POST /users/tokens", c.auth(site.RoleAdmin, c.tokenAdd))
	m.HandleFunc("POST /users/tokens/{name}/revoke", c.auth(site.RoleAdmin, c.tokenRevokeForm))
}

// showTokens renders the tokens page, with a token just made if any.
func (c *console) showTokens(w http.ResponseWriter, r *http.Request, ss *session, created *tokenCreated) {
	res := c.call(r, ss, "GET", "/v1/tokens", nil)
	d := tokensData{Created: created}
	if err := res.err(); err != nil {
		c.errorPage(w, r, ss, res.code, err)
		return
	}
	if err := json.Unmarshal(res.body, &d.Tokens); err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	c.page(w, r, ss, "tokens", "API tokens", d)
}

func (c *console) tokensPage(w http.ResponseWriter, r *http.Request, ss *session) {
	c.showTokens(w, r, ss, nil)
}

// tokenAdd makes a token and answers with the page that shows its secret
// (not a redirect: the secret is not kept anywhere to show later).
func (c *console) tokenAdd(w http.ResponseWriter, r *http.Request, ss *session) {
	req := tokenReq{Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role")}
	if days := strings.TrimSpace(r.PostFormValue("days")); days != "" && days != "0" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			c.done(w, r, ss, "/users/tokens", "", fmt.Errorf("valid for %q days: want a whole number", days))
			return
		}
		req.ExpiresS = int64(n) * 24 * 3600
	}
	res := c.call(r, ss, "POST", "/v1/tokens", req)
	c.record(r, ss, site.Action{What: "token create", Target: "token " + req.Name, Detail: "role " + req.Role, Result: result(res)})
	if err := res.err(); err != nil {
		c.done(w, r, ss, "/users/tokens", "", err)
		return
	}
	var t tokenCreated
	if err := json.Unmarshal(res.body, &t); err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	c.showTokens(w, r, ss, &t)
}

func (c *console) tokenRevokeForm(w http.ResponseWriter, r *http.Request, ss *session) {
	name := r.PathValue("name")
	res := c.call(r, ss, "DELETE", "/v1/tokens/"+url.PathEscape(name), nil)
	c.record(r, ss, site.Action{What: "token revoke", Target: "token " + name, Result: result(res)})
	c.done(w, r, ss, "/users/tokens", fmt.Sprintf("Token %s revoked.", name), res.err())
}
