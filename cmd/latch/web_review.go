package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// The console's recertification pages: the reviews (and, for admins, the
// form that starts one), and a review's holders with keep and remove
// buttons and a comment field for its owner or an admin. Every change is
// an API request made as the logged-in account (review.go), which checks
// the owner.

func (c *console) reviewPageRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /reviews", c.auth(site.RoleAuditor, c.reviewsPage))
	m.HandleFunc("POST /reviews", c.auth(site.RoleAdmin, c.reviewStart))
	m.HandleFunc("GET /reviews/{id}", c.auth(site.RoleAuditor, c.reviewPage))
	m.HandleFunc("POST /reviews/{id}/decide", c.auth(site.RoleAuditor, c.reviewDecide))
	m.HandleFunc("POST /reviews/{id}/complete", c.auth(site.RoleAuditor, c.reviewComplete))
}

// reviewPageData is a review page's: the review, and whether the account
// may decide on it.
type reviewPageData struct {
	Review   reviewView
	CanAct   bool
	Accounts []userView // for the start form
	Reviews  []reviewView
}

// apiGet calls a GET route of the API in-process and decodes its answer.
func apiGet[T any](c *console, r *http.Request, ss *session, path string) (T, int, error) {
	var v T
	res := c.call(r, ss, "GET", path, nil)
	if err := res.err(); err != nil {
		return v, res.code, err
	}
	return v, res.code, json.Unmarshal(res.body, &v)
}

func (c *console) reviewsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	var d reviewPageData
	var code int
	var err error
	if d.Reviews, code, err = apiGet[[]reviewView](c, r, ss, "/v1/reviews"); err == nil && ss.can(site.RoleAdmin) {
		d.Accounts, code, err = apiGet[[]userView](c, r, ss, "/v1/users")
	}
	if err != nil {
		c.errorPage(w, r, ss, code, err)
		return
	}
	c.page(w, r, ss, "reviews", "Reviews", d)
}

func (c *console) reviewStart(w http.ResponseWriter, r *http.Request, ss *session) {
	req := reviewStartReq{Group: strings.TrimSpace(r.PostFormValue("group")), Owner: r.PostFormValue("owner")}
	if s := r.PostFormValue("due"); s != "" {
		t, err := time.ParseInLocation(time.DateOnly, s, time.Local)
		if err != nil {
			c.done(w, r, ss, "/reviews", "", errors.New("the due date: want YYYY-MM-DD"))
			return
		}
		req.Due = t
	}
	res := c.call(r, ss, "POST", "/v1/reviews", req)
	c.record(r, ss, site.Action{What: "review start", Target: "group " + req.Group, Detail: "owner " + req.Owner, Result: result(res)})
	var v reviewView
	if err := res.err(); err != nil || json.Unmarshal(res.body, &v) != nil {
		c.done(w, r, ss, "/reviews", "", res.err())
		return
	}
	c.done(w, r, ss, fmt.Sprintf("/reviews/%d", v.ID), fmt.Sprintf("Review %d started: %d holders to decide.", v.ID, len(v.Holders)), nil)
}

func (c *console) reviewPage(w http.ResponseWriter, r *http.Request, ss *session) {
	v, code, err := apiGet[reviewView](c, r, ss, "/v1/reviews/"+r.PathValue("id"))
	if err != nil {
		c.errorPage(w, r, ss, code, err)
		return
	}
	d := reviewPageData{Review: v, CanAct: !v.Done() && (ss.user == v.Owner || ss.can(site.RoleAdmin))}
	c.page(w, r, ss, "review", fmt.Sprintf("Review %d", v.ID), d)
}

func (c *console) reviewDecide(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	back := "/reviews/" + id
	req := decideReq{Holder: r.PostFormValue("holder"), Decision: site.Decision(r.PostFormValue("decision")), Comment: strings.TrimSpace(r.PostFormValue("comment"))}
	res := c.call(r, ss, "POST", "/v1/reviews/"+id+"/decisions", req)
	c.record(r, ss, site.Action{What: "review decide", Target: "review " + id, Detail: fmt.Sprintf("%s %s: %s", req.Decision, req.Holder, req.Comment), Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("Review %s: %s %s.", id, req.Decision, req.Holder))
}

func (c *console) reviewComplete(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	res := c.call(r, ss, "POST", "/v1/reviews/"+id+"/complete", nil)
	c.record(r, ss, site.Action{What: "review complete", Target: "review " + id, Result: result(res)})
	c.done(w, r, ss, "/reviews/"+id, fmt.Sprintf("Review %s completed.", id), res.err())
}
