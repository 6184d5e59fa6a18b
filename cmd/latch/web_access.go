package main

import (
	"encoding/json"
	"net/http"
	"net/url"

	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store/site"
)

// The access review pages: who can open a door, what a holder's cards
// can open, unused cards, and why a card was refused. Each asks the API
// (/v1/access/...) as the session's account.

// accessPageData is what the access page shows: one of a report, the
// explanations of a card, or the unused cards.
type accessPageData struct {
	Kind    string // "who", "what", "explain" or "unused"
	Query   url.Values
	Report  *mqttsite.AccessReport
	Explain []mqttsite.Explanation
	Unused  []site.Unused
	CSV     string // the same answer as CSV, through the API proxy
}

// accessPageRoutes adds the access pages, for auditors and up.
func (c *console) accessPageRoutes(m *http.ServeMux) {
	for _, kind := range []string{"who", "what", "explain", "unused"} {
		m.HandleFunc("GET /access/"+kind, c.auth(site.RoleAuditor, func(w http.ResponseWriter, r *http.Request, ss *session) {
			c.accessPage(w, r, ss, kind)
		}))
	}
}

func (c *console) accessPage(w http.ResponseWriter, r *http.Request, ss *session, kind string) {
	d := accessPageData{Kind: kind, Query: r.URL.Query()}
	q := url.Values{}
	for _, k := range []string{"door", "holder", "uid", "at", "mode", "tz", "days", "pin_entered"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	ask := (kind == "who" && q.Get("door") != "") || (kind == "what" && q.Get("holder") != "") ||
		(kind == "explain" && q.Get("door") != "") || (kind == "unused" && q.Get("days") != "")
	if ask {
		res := c.call(r, ss, "GET", "/v1/access/"+kind+"?"+q.Encode(), nil)
		if err := res.err(); err != nil {
			c.errorPage(w, r, ss, res.code, err)
			return
		}
		var err error
		switch kind {
		case "who", "what":
			d.Report = new(mqttsite.AccessReport)
			err = json.Unmarshal(res.body, d.Report)
		case "explain":
			err = json.Unmarshal(res.body, &d.Explain)
		case "unused":
			err = json.Unmarshal(res.body, &d.Unused)
		}
		if err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		if kind != "explain" {
			q.Set("format", "csv")
			d.CSV = "/api/v1/access/" + kind + "?" + q.Encode()
		}
	}
	c.page(w, r, ss, "access", "Access review", d)
}

// whyLink is the explain page for a refused event: its card, door and
// time.
func whyLink(uid, door, at string) string {
	return "/access/explain?" + url.Values{"uid": {uid}, "door": {door}, "at": {at}}.Encode()
}
