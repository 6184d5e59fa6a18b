package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// The console's Visitors page: the visits under way, to come and over,
// with an End visit button; and a form that registers a visitor, with
// the card's UID typed or tapped at a door. A tap goes through the
// enrolment page (enroll.html, console.js's enroll), which waits for the
// card and then posts the registration with its UID. Every change is an
// API request made as the logged-in account (visitors.go), so each is a
// change-log entry; operators may make them, as through the API.

func (c *console) visitorPageRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /visitors", c.auth(site.RoleAuditor, c.visitorsPage))
	m.HandleFunc("POST /visitors", c.auth(site.RoleOperator, c.visitorAddForm))
	m.HandleFunc("POST /visitors/{holder}/end", c.auth(site.RoleOperator, c.visitorEndForm))
}

// visitorRow is a visit as the page lists it.
type visitorRow struct {
	site.Visitor
	State string // expected, on site, upcoming, over, ended
	Left  string // uses left: a number, or "any"
	Open  bool   // it can be ended
}

// visitorList is one of the page's tables.
type visitorList struct {
	ID, Heading, Caption string
	Rows                 []visitorRow
}

// visitorsData is the Visitors page's.
type visitorsData struct {
	Lists       []visitorList // under way, upcoming, over
	Doors       []string      // approved doors, for the tap
	Targets     []string      // doors and groups, for the card
	From, Until string        // the form's default window, datetime-local
}

// visitorRowOf is v as the page shows it at now.
func visitorRowOf(v site.Visitor, now time.Time) visitorRow {
	row := visitorRow{Visitor: v, Left: "any"}
	if v.Uses > 0 {
		row.Left = strconv.Itoa(max(v.Uses-v.Used, 0)) + " of " + strconv.Itoa(v.Uses)
	}
	switch {
	case !v.Ended.IsZero():
		row.State = "ended: " + v.EndReason
	case !now.Before(v.Until):
		row.State = "over"
	case now.Before(v.From):
		row.State, row.Open = "upcoming", true
	case v.FirstSeen.IsZero():
		row.State, row.Open = "expected", true
	default:
		row.State, row.Open = "on site", true
	}
	return row
}

func (c *console) visitorsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	vs, code, err := apiGet[[]site.Visitor](c, r, ss, "/v1/visitors")
	if err != nil {
		c.errorPage(w, r, ss, code, err)
		return
	}
	now := c.now()
	d := visitorsData{Lists: []visitorList{
		{ID: "visitors-current", Caption: "Visits under way: the window is open."},
		{ID: "visitors-upcoming", Heading: "Upcoming", Caption: "Visits whose window has not started."},
		{ID: "visitors-ended", Heading: "Over", Caption: "Visits ended by an operator or by their uses, or whose window is over."},
	}}
	// Newest window first in each list.
	slices.SortStableFunc(vs, func(a, b site.Visitor) int { return b.From.Compare(a.From) })
	for _, v := range vs {
		row := visitorRowOf(v, now)
		i := 0
		switch {
		case !row.Open:
			i = 2
		case row.State == "upcoming":
			i = 1
		}
		d.Lists[i].Rows = append(d.Lists[i].Rows, row)
	}
	if ss.can(site.RoleOperator) {
		ds, err := c.a.db.ListDoors()
		if err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		for _, door := range ds {
			if door.Approved == nil {
				continue
			}
			d.Doors = append(d.Doors, door.ID)
			for _, g := range door.Groups {
				if !slices.Contains(d.Targets, g) {
					d.Targets = append(d.Targets, g)
				}
			}
		}
		slices.Sort(d.Targets)
		d.Targets = append(slices.Clone(d.Doors), d.Targets...)
		from := now.Truncate(time.Minute)
		d.From, d.Until = from.Local().Format("2006-01-02T15:04"), from.Add(8*time.Hour).Local().Format("2006-01-02T15:04")
	}
	c.page(w, r, ss, "visitors", "Visitors", d)
}

// visitorFields are the registration form's fields, carried through a
// tap.
var visitorFields = []string{"holder", "name", "host", "from", "until", "doors", "uses"}

// visitorForm reads the registration form: its request, and the door to
// tap the card at when no UID was typed. No start is now.
func visitorForm(r *http.Request, now time.Time) (visitorAddReq, error) {
	var req visitorAddReq
	var doors []string
	for _, s := range r.PostForm["doors"] {
		doors = append(doors, formList(s)...)
	}
	req = visitorAddReq{Holder: strings.TrimSpace(r.PostFormValue("holder")), Name: strings.TrimSpace(r.PostFormValue("name")),
		Host: strings.TrimSpace(r.PostFormValue("host")), Doors: doors, UID: strings.ToUpper(strings.TrimSpace(r.PostFormValue("uid")))}
	if req.Name == "" {
		req.Name = req.Holder
	}
	var err error
	if req.From, err = formTime("from", r.PostFormValue("from")); err != nil {
		return req, err
	}
	if req.From.IsZero() {
		req.From = now
	}
	if req.Until, err = formTime("until", r.PostFormValue("until")); err != nil {
		return req, err
	}
	if s := strings.TrimSpace(r.PostFormValue("uses")); s != "" {
		if req.Uses, err = strconv.Atoi(s); err != nil || req.Uses < 0 {
			return req, fmt.Errorf("uses %q: want a whole number, 0 for any", s)
		}
	}
	door := strings.TrimSpace(r.PostFormValue("enroll_door"))
	if s := strings.TrimSpace(r.PostFormValue("code")); s != "" {
		if req.Code, err = strconv.Atoi(s); err != nil || req.Code < minCodeDigits || req.Code > maxCodeDigits {
			return req, fmt.Errorf("keypad code %q: want %d to %d digits", s, minCodeDigits, maxCodeDigits)
		}
		if req.UID != "" || door != "" {
			return req, errors.New("card or keypad code: choose one")
		}
		return req, nil
	}
	switch {
	case req.UID == "" && door == "":
		return req, errors.New("card: type its UID, or choose a door to tap it at")
	case req.UID != "" && door != "":
		return req, errors.New("card: type its UID or choose a door to tap it at, not both")
	}
	req.EnrollDoor = door
	return req, nil
}

// visitorAddForm registers a visitor: with the UID typed, at once; to
// tap the card, through the enrolment page, once the registration's
// checks pass.
func (c *console) visitorAddForm(w http.ResponseWriter, r *http.Request, ss *session) {
	req, err := visitorForm(r, c.now())
	if err != nil {
		c.done(w, r, ss, "/visitors", "", err)
		return
	}
	if req.EnrollDoor != "" {
		c.visitorTapPage(w, r, ss, req)
		return
	}
	res := c.call(r, ss, "POST", "/v1/visitors", req)
	cred, shown := "card "+req.UID, "card "+req.UID
	if req.Code != 0 {
		// The code is in this answer alone: shown once, never recorded.
		var vr visitorResult
		if res.err() == nil && json.Unmarshal(res.body, &vr) == nil {
			shown = "keypad code " + vr.Code + " (shown this once: give it to the visitor; it opens doors in card-or-pin mode)"
		}
		cred = fmt.Sprintf("keypad code of %d digits", req.Code)
	}
	c.record(r, ss, site.Action{What: "visitor add", Target: "visitor " + req.Holder, Detail: "host " + req.Host + ", " + cred, Result: result(res)})
	c.done(w, r, ss, "/visitors", fmt.Sprintf("Visitor %s registered for %s, %s.", req.Holder, req.Host, shown), res.err())
}

// visitorTapPage checks a registration as the API will, then shows the
// enrolment page: it waits for the card at the door and posts the
// registration back with its UID.
func (c *console) visitorTapPage(w http.ResponseWriter, r *http.Request, ss *session, req visitorAddReq) {
	b, err := json.Marshal(req)
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	var after uint64
	v, err := decodeVisitorAdd(b)
	if err == nil {
		after, err = c.a.visitorTapFrom(&v)
	}
	if err != nil {
		c.done(w, r, ss, "/visitors", "", fmt.Errorf("visitor %s: %s", req.Holder, strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")))
		return
	}
	d := enrollData{Door: req.EnrollDoor, After: after, Action: "/visitors", Submit: "Register " + req.Holder + " with this card",
		Back: "/visitors", BackText: "Back to the visitors", Section: "visitors"}
	for _, f := range visitorFields {
		for _, val := range r.PostForm[f] {
			d.Carry = append(d.Carry, formField{Name: f, Value: val})
		}
	}
	c.record(r, ss, site.Action{What: "enrol started", Target: "visitor " + req.Holder, Detail: "door " + req.EnrollDoor})
	c.page(w, r, ss, "enroll", "Register visitor "+req.Holder+": tap the card", d)
}

func (c *console) visitorEndForm(w http.ResponseWriter, r *http.Request, ss *session) {
	holder := r.PathValue("holder")
	res := c.call(r, ss, "POST", "/v1/visitors/"+url.PathEscape(holder)+"/end", nil)
	c.record(r, ss, site.Action{What: "visitor end", Target: "visitor " + holder, Result: result(res)})
	c.done(w, r, ss, "/visitors", fmt.Sprintf("Visit of %s ended: the card is revoked.", holder), res.err())
}
