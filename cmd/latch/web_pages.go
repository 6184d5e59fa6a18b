package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// timeFormat is how the console shows a time, in the site's time zone.
const timeFormat = "2006-01-02 15:04:05"

// pageFuncs are the templates' helpers.
var pageFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(timeFormat)
	},
	// clock is a time of day, HH:MM in the site's time zone.
	"clock":    func(t time.Time) string { return t.Local().Format("15:04") },
	"join":     strings.Join,
	"schedule": formatSchedule,
	"weekly":   weeklySpec,
	// seg escapes an id as one path segment: a holder id may hold / ? #.
	"seg": url.PathEscape,
	// local is a time as a datetime-local field holds it, in the site's
	// time zone; "" for the zero time.
	"local": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02T15:04:05")
	},
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(webFiles, "web/pages/*.html")
	if err != nil {
		return nil, err
	}
	out := make(map[string]*template.Template, len(names))
	for _, n := range names {
		t, err := template.New("layout.html").Funcs(pageFuncs).ParseFS(webFiles, "web/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: page %s: %w", n, err)
		}
		out[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return out, nil
}

// pageData is what every page gets: the account, its token, a message
// from the last change, and the page's own data.
type pageData struct {
	Title    string
	Nav      string
	User     string
	Role     site.Role
	CSRF     string
	Operator bool // may change people and doors
	Admin    bool
	Flash    string
	Error    string
	Alarms   alarmCount // the nav's badge
	Data     any
}

// render writes a page.
func (c *console) render(w http.ResponseWriter, r *http.Request, ss *session, code int, page, title string, data any, flash, errMsg string) {
	t := c.pages[page]
	if t == nil {
		c.log.Error("no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	pd := pageData{Title: title, Nav: page, Flash: flash, Error: errMsg, Data: data}
	if n, ok := data.(interface{ navEntry() string }); ok && n.navEntry() != "" {
		pd.Nav = n.navEntry()
	}
	if ss != nil {
		pd.User, pd.Role, pd.CSRF = ss.user, ss.role, ss.csrf
		pd.Operator, pd.Admin = ss.can(site.RoleOperator), ss.can(site.RoleAdmin)
		pd.Alarms = c.openAlarms()
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, pd); err != nil {
		c.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// errorPage shows an error.
func (c *console) errorPage(w http.ResponseWriter, r *http.Request, ss *session, code int, err error) {
	c.render(w, r, ss, code, "error", http.StatusText(code), nil, "", err.Error())
}

// done ends a change made by a form: back to where it came from (a path
// of this console), with a message for the next page.
func (c *console) done(w http.ResponseWriter, r *http.Request, ss *session, to, msg string, err error) {
	c.sessions.mu.Lock()
	if err != nil {
		ss.flashErr, ss.flash = err.Error(), ""
	} else {
		ss.flash, ss.flashErr = msg, ""
	}
	c.sessions.mu.Unlock()
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// flash takes the session's message.
func (c *console) flash(ss *session) (msg, errMsg string) {
	c.sessions.mu.Lock()
	defer c.sessions.mu.Unlock()
	msg, errMsg = ss.flash, ss.flashErr
	ss.flash, ss.flashErr = "", ""
	return msg, errMsg
}

// page renders a page with the session's message (a background refresh
// leaves it for the next page).
func (c *console) page(w http.ResponseWriter, r *http.Request, ss *session, name, title string, data any) {
	var msg, errMsg string
	if !background(r) {
		msg, errMsg = c.flash(ss)
	}
	c.render(w, r, ss, http.StatusOK, name, title, data, msg, errMsg)
}

// --- login ---

type loginData struct {
	Next string
	Name string
}

// safeNext is a path of this console to go to after logging in (or back
// to from a change): a plain absolute path, nothing a browser could read
// as another host.
func safeNext(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil, u.Scheme != "", u.Host != "", u.User != nil, u.Opaque != "",
		!strings.HasPrefix(s, "/"), strings.HasPrefix(s, "//"), strings.HasPrefix(s, "/login"),
		strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '\\' }):
		return "/doors"
	}
	return s
}

func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	if ss := c.session(r); ss != nil {
		http.Redirect(w, r, "/doors", http.StatusSeeOther)
		return
	}
	c.render(w, r, nil, http.StatusOK, "login", "Log in", loginData{Next: safeNext(r.URL.Query().Get("next"))}, "", "")
}

// login checks a password, within the login limits.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	name, pw, next := r.PostFormValue("name"), r.PostFormValue("password"), safeNext(r.PostFormValue("next"))
	addr := clientAddr(r)
	now := c.now()
	again := func(code int, msg string) {
		c.render(w, r, nil, code, "login", "Log in", loginData{Next: next, Name: name}, "", msg)
	}
	if len(name) > 64 || len(pw) > 1024 {
		again(http.StatusBadRequest, "That name or password is too long.")
		return
	}
	if until, first := c.limits.lockedUntil(name, addr, now); !until.IsZero() {
		if first {
			c.record(r, nil, site.Action{User: name, What: "login", Result: "refused: locked after too many failed logins (further tries until " + until.UTC().Format(time.RFC3339) + " are not recorded each)"})
		}
		again(http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins: try again after %s.", until.Local().Format("15:04")))
		return
	}
	u, uerr := c.a.db.User(name)
	hash := u.Hash
	if uerr != nil {
		hash = c.dummy
	}
	ok, err := c.verify(r, hash, pw)
	if err != nil {
		c.log.Error("check a password", "user", name, "err", err)
		again(http.StatusInternalServerError, "The password could not be checked; see the service's log.")
		return
	}
	if uerr != nil || !ok || u.Disabled {
		locked := c.limits.fail(name, addr, now)
		res := "refused: wrong name or password"
		if locked {
			res += "; now locked for " + lockFor.String()
		}
		c.record(r, nil, site.Action{User: name, What: "login", Result: res})
		c.log.Info("console login refused", "user", name, "from", addr, "locked", locked)
		again(http.StatusUnauthorized, "Wrong name or password.")
		return
	}
	c.limits.succeed(name)
	token, ss := c.sessions.start(u, now)
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Value: token, Path: "/", HttpOnly: true, Secure: c.https,
		SameSite: http.SameSiteStrictMode, MaxAge: int(c.sessions.ttl / time.Second)})
	c.record(r, ss, site.Action{What: "login"})
	c.log.Info("console login", "user", name, "role", u.Role, "from", addr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// verify checks a password against a hash, one at a time: a flood of
// logins waits for its turn and does not hold up the PIN hashes of the
// API.
func (c *console) verify(r *http.Request, hash, pw string) (bool, error) {
	select {
	case c.checking <- struct{}{}:
		defer func() { <-c.checking }()
	case <-r.Context().Done():
		return false, r.Context().Err()
	}
	return store.VerifyPIN(hash, []byte(pw))
}

func (c *console) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	c.sessions.end(ss)
	c.record(r, ss, site.Action{What: "logout"})
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Value: "", Path: "/", HttpOnly: true, Secure: c.https,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- doors ---

// doorRow is a door as the Doors page shows it.
type doorRow struct {
	doorView
	Alarms []string
	Reader string
}

// doorRows returns every door.
func (c *console) doorRows() ([]doorRow, error) {
	ds, err := c.a.db.ListDoors()
	if err != nil {
		return nil, err
	}
	out := make([]doorRow, 0, len(ds))
	for _, d := range ds {
		row := doorRow{doorView: c.a.doorView(d)}
		var st mqtt.Status
		if len(d.Status) > 0 && json.Unmarshal(d.Status, &st) == nil {
			row.Alarms = doorAlarms(&st)
			row.Reader = st.Reader
		}
		out = append(out, row)
	}
	return out, nil
}

// doorAlarms lists what in a door's status needs someone's attention.
func doorAlarms(st *mqtt.Status) []string {
	var out []string
	for _, part := range strings.Split(st.DoorState, ",") {
		switch part {
		case "door_held":
			out = append(out, "held open")
		case "door_forced":
			out = append(out, "forced")
		case "tamper":
			out = append(out, "tamper")
		}
	}
	if st.Reader != "" && st.Reader != "ok" {
		out = append(out, "reader fault")
	}
	if st.Journal != "" && st.Journal != "ok" {
		out = append(out, "journal: "+st.Journal)
	}
	if st.ACLStale {
		out = append(out, "allowlist stale")
	}
	return out
}

func (c *console) doorsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	rows, err := c.doorRows()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	c.page(w, r, ss, "doors", "Doors", doorsData{Rows: rows, MaxUnlock: int(mqtt.MaxUnlockDuration / time.Second)})
}

// doorsData is the Doors page: the doors, and the longest unlock a door
// takes, in seconds.
type doorsData struct {
	Rows      []doorRow
	MaxUnlock int
}

// confirmData asks to confirm a command to a door.
type confirmData struct {
	Door, Action, Question string
	Fields                 map[string]string
}

func (c *console) doorUnlock(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	secs, err := strconv.Atoi(r.PostFormValue("seconds"))
	if max := int(mqtt.MaxUnlockDuration / time.Second); err != nil || secs < 1 || secs > max {
		c.done(w, r, ss, "/doors", "", fmt.Errorf("unlock %s: give 1 to %d seconds", id, max))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		c.page(w, r, ss, "confirm", "Confirm", confirmData{Door: id, Action: "/doors/" + url.PathEscape(id) + "/unlock",
			Question: fmt.Sprintf("Unlock door %s for %d seconds? Anyone can walk in while it is unlocked.", id, secs),
			Fields:   map[string]string{"seconds": strconv.Itoa(secs)}})
		return
	}
	res := c.call(r, ss, "POST", "/v1/doors/"+url.PathEscape(id)+"/unlock", unlockReq{DurationMS: int64(secs) * 1000})
	c.record(r, ss, site.Action{What: "unlock", Target: "door " + id, Detail: fmt.Sprintf("%d s", secs), Result: result(res)})
	c.done(w, r, ss, "/doors", fmt.Sprintf("Door %s was sent an unlock for %d s.", id, secs), res.err())
}

func (c *console) doorLockdown(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	on := r.PostFormValue("on") == "true"
	if r.PostFormValue("confirm") != "yes" {
		q := fmt.Sprintf("Put door %s in lockdown? Only cards allowed to override a lockdown will open it.", id)
		if !on {
			q = fmt.Sprintf("Take door %s out of lockdown?", id)
		}
		c.page(w, r, ss, "confirm", "Confirm", confirmData{Door: id, Action: "/doors/" + url.PathEscape(id) + "/lockdown",
			Question: q, Fields: map[string]string{"on": strconv.FormatBool(on)}})
		return
	}
	res := c.call(r, ss, "POST", "/v1/doors/"+url.PathEscape(id)+"/lockdown", lockdownReq{On: &on})
	what := "lockdown on"
	if !on {
		what = "lockdown off"
	}
	c.record(r, ss, site.Action{What: what, Target: "door " + id, Result: result(res)})
	c.done(w, r, ss, "/doors", fmt.Sprintf("Door %s was sent %s.", id, what), res.err())
}

// result is an API answer as the site's log of actions records it.
func result(res apiResult) string {
	if err := res.err(); err != nil {
		return "failed: " + err.Error()
	}
	return "ok"
}

// --- people ---

// peoplePageSize is how many holders the People page lists at once.
const peoplePageSize = 50

// maxPeopleScan bounds the holders a name search reads per page.
const maxPeopleScan = 200000

type personRow struct {
	holderView
	CardCount int
}

type peopleData struct {
	Q       string
	Rows    []personRow
	Next    string // the holder id to list after, for the next page
	Card    *cardView
	Scanned int
}

func (c *console) peoplePage(w http.ResponseWriter, r *http.Request, ss *session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	after := r.URL.Query().Get("after")
	data := peopleData{Q: q}
	if q != "" {
		if uid, err := parseUID(q); err == nil && len(uid) >= 4 {
			if card, err := c.a.db.Card(uid); err == nil {
				v, err := c.a.cardView(card)
				if err == nil {
					data.Card = &v
				}
			}
		}
	}
	lq := strings.ToLower(q)
	if data.Card != nil && after == "" {
		// A UID names one card: its holder is the answer.
		h, err := c.a.db.Holder(data.Card.Holder)
		if err == nil {
			var v holderView
			if v, err = c.a.holderView(h); err == nil {
				uids, _ := c.a.db.CardsOf(h.ID)
				data.Rows = append(data.Rows, personRow{holderView: v, CardCount: len(uids)})
			}
		}
		if err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		c.page(w, r, ss, "people", "People and cards", data)
		return
	}
	for len(data.Rows) < peoplePageSize && data.Scanned < maxPeopleScan {
		hs, err := c.a.db.ListHolders(after, 1000)
		if err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		if len(hs) == 0 {
			after = ""
			break
		}
		for _, h := range hs {
			data.Scanned++
			after = h.ID
			if lq != "" && !strings.Contains(strings.ToLower(h.ID), lq) && !strings.Contains(strings.ToLower(h.Name), lq) {
				continue
			}
			v, err := c.a.holderView(h)
			if err != nil {
				c.errorPage(w, r, ss, http.StatusInternalServerError, err)
				return
			}
			uids, _ := c.a.db.CardsOf(h.ID)
			data.Rows = append(data.Rows, personRow{holderView: v, CardCount: len(uids)})
			if len(data.Rows) == peoplePageSize {
				break
			}
		}
		if len(hs) < 1000 && len(data.Rows) < peoplePageSize {
			after = ""
			break
		}
	}
	if after != "" {
		// A page that filled on the last holder has no next one.
		if more, err := c.a.db.ListHolders(after, 1); err == nil && len(more) == 0 {
			after = ""
		}
	}
	data.Next = after
	c.page(w, r, ss, "people", "People and cards", data)
}

func (c *console) holderAdd(w http.ResponseWriter, r *http.Request, ss *session) {
	id, name := strings.TrimSpace(r.PostFormValue("id")), strings.TrimSpace(r.PostFormValue("name"))
	res := c.call(r, ss, "POST", "/v1/holders", holderAddReq{ID: id, Name: name})
	c.record(r, ss, site.Action{What: "holder add", Target: "holder " + id, Detail: name, Result: result(res)})
	if res.err() != nil {
		c.done(w, r, ss, "/people", "", fmt.Errorf("add holder %q: %w", id, res.err()))
		return
	}
	c.done(w, r, ss, "/people/"+url.PathEscape(id), fmt.Sprintf("Holder %s added.", id), nil)
}

type holderData struct {
	Holder holderView
	Doors  []doorView
}

func (c *console) holderPage(w http.ResponseWriter, r *http.Request, ss *session) {
	res := c.call(r, ss, "GET", "/v1/holders/"+url.PathEscape(r.PathValue("id")), nil)
	if err := res.err(); err != nil {
		c.errorPage(w, r, ss, res.code, err)
		return
	}
	var d holderData
	if err := json.Unmarshal(res.body, &d.Holder); err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	ds, err := c.a.db.ListDoors()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	for _, door := range ds {
		if door.Approved != nil {
			d.Doors = append(d.Doors, c.a.doorView(door))
		}
	}
	c.page(w, r, ss, "holder", "Holder "+d.Holder.ID, d)
}

// enrollData is the enrolment page's: it waits for a tap at Door after
// the arrival cursor After, then shows the form that posts the UID
// tapped, with the fields of Carry, to Action. A holder's card (Holder
// set) asks for its doors and validity there; a visitor's carries its
// registration (web_visitors.go).
type enrollData struct {
	Holder   string
	Door     string
	After    uint64
	Groups   []string
	Action   string
	Carry    []formField
	Submit   string
	Back     string
	BackText string
	Section  string // the nav's entry: "" for People
}

// formField is a form's hidden field.
type formField struct{ Name, Value string }

// navEntry names the nav's entry of the page: People, or the section
// that started the enrolment.
func (d enrollData) navEntry() string { return d.Section }

func (c *console) enrollPage(w http.ResponseWriter, r *http.Request, ss *session) {
	holder, door := r.PathValue("id"), r.URL.Query().Get("door")
	if _, err := c.a.holder(holder); err != nil {
		c.errorPage(w, r, ss, status(err), err)
		return
	}
	d, err := c.a.db.Door(door)
	if err != nil {
		c.done(w, r, ss, "/people/"+url.PathEscape(holder), "", fmt.Errorf("enrol at door %q: %w", door, err))
		return
	}
	after, err := c.a.db.ArrivalEnd()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	c.record(r, ss, site.Action{What: "enrol started", Target: "holder " + holder, Detail: "door " + door})
	back := "/people/" + url.PathEscape(holder)
	c.page(w, r, ss, "enroll", "Enrol a card", enrollData{Holder: holder, Door: door, After: after, Groups: d.Groups,
		Action: back + "/cards", Submit: "Add this card to " + holder, Back: back, BackText: "Back to " + holder})
}

// formTime reads a date (YYYY-MM-DD) or datetime-local field in the
// site's time zone; empty is the zero time.
func formTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want a date like 2026-12-31", field, s)
}

// formList reads a list of ids separated by commas or spaces.
func formList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

func (c *console) cardAdd(w http.ResponseWriter, r *http.Request, ss *session) {
	holder := r.PathValue("id")
	back := "/people/" + url.PathEscape(holder)
	uid := strings.ToUpper(strings.TrimSpace(r.PostFormValue("uid")))
	req := cardAddReq{UID: uid, Holder: holder, Doors: formList(r.PostFormValue("doors"))}
	var err error
	if req.ValidFrom, err = formTime("valid from", r.PostFormValue("valid_from")); err == nil {
		req.ValidUntil, err = formTime("valid until", r.PostFormValue("valid_until"))
	}
	if err != nil {
		c.done(w, r, ss, back, "", err)
		return
	}
	res := c.call(r, ss, "POST", "/v1/cards", req)
	c.record(r, ss, site.Action{What: "card add", Target: "card " + uid, Detail: "holder " + holder, Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("Card %s added to %s.", uid, holder))
}

// changed ends a form that changed the allowlist: to the change's
// progress page, door by door, or back with the error.
func (c *console) changed(w http.ResponseWriter, r *http.Request, ss *session, res apiResult, back, msg string) {
	if err := res.err(); err != nil {
		c.done(w, r, ss, back, "", err)
		return
	}
	var cr changeResult
	if err := json.Unmarshal(res.body, &cr); err != nil || cr.Seq == 0 {
		c.done(w, r, ss, back, msg, nil)
		return
	}
	c.sessions.remember(ss, cr.Seq, cr.Doors)
	if cr.Warning != "" {
		msg += " " + cr.Warning
	}
	c.done(w, r, ss, fmt.Sprintf("/changes/%d?back=%s", cr.Seq, url.QueryEscape(back)), msg, nil)
}

func (c *console) holderRevoke(w http.ResponseWriter, r *http.Request, ss *session) {
	holder := r.PathValue("id")
	c.revocation(w, r, ss, revokeReq{Holder: holder, Reason: strings.TrimSpace(r.PostFormValue("reason"))}, "holder "+holder, "/people/"+url.PathEscape(holder))
}

func (c *console) cardRevoke(w http.ResponseWriter, r *http.Request, ss *session) {
	uid := r.PathValue("uid")
	back := "/people/" + url.PathEscape(r.PostFormValue("holder"))
	c.revocation(w, r, ss, revokeReq{UID: uid, Reason: strings.TrimSpace(r.PostFormValue("reason"))}, "card "+uid, back)
}

// revocation revokes or reinstates (the form's action) a card or holder.
func (c *console) revocation(w http.ResponseWriter, r *http.Request, ss *session, req revokeReq, target, back string) {
	what, path := "revoke", "/v1/revoke"
	if r.PostFormValue("action") == "reinstate" {
		what, path = "reinstate", "/v1/reinstate"
	} else if req.Reason == "" {
		c.done(w, r, ss, back, "", errors.New("give a reason for the revocation: the audit log keeps it"))
		return
	}
	res := c.call(r, ss, "POST", path, req)
	c.record(r, ss, site.Action{What: what, Target: target, Detail: req.Reason, Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("%s: %sd.", target, what))
}

func (c *console) cardPIN(w http.ResponseWriter, r *http.Request, ss *session) {
	uid, holder := r.PathValue("uid"), r.PostFormValue("holder")
	back := "/people/" + url.PathEscape(holder)
	pin, again := r.PostFormValue("pin"), r.PostFormValue("pin_again")
	if pin != again {
		c.done(w, r, ss, back, "", errors.New("the two PINs differ: type the same PIN twice"))
		return
	}
	res := c.call(r, ss, "POST", "/v1/cards/"+url.PathEscape(uid)+"/pin", pinSetReq{Holder: holder, PIN: pin})
	c.record(r, ss, site.Action{What: "pin set", Target: "card " + uid, Detail: "holder " + holder, Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("The PIN of card %s is set.", uid))
}

func (c *console) cardReplace(w http.ResponseWriter, r *http.Request, ss *session) {
	uid, holder := r.PathValue("uid"), r.PostFormValue("holder")
	back := "/people/" + url.PathEscape(holder)
	req := replaceReq{NewUID: strings.ToUpper(strings.TrimSpace(r.PostFormValue("new_uid"))), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	res := c.call(r, ss, "POST", "/v1/cards/"+url.PathEscape(uid)+"/replace", req)
	c.record(r, ss, site.Action{What: "card replace", Target: "card " + uid, Detail: "new card " + req.NewUID + ": " + req.Reason, Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("Card %s is revoked and replaced by %s: set its PIN.", uid, req.NewUID))
}

func (c *console) cardEdit(w http.ResponseWriter, r *http.Request, ss *session) {
	uid, holder := r.PathValue("uid"), r.PostFormValue("holder")
	back := "/people/" + url.PathEscape(holder)
	from, err := formTime("valid from", r.PostFormValue("valid_from"))
	var until time.Time
	if err == nil {
		until, err = formTime("valid until", r.PostFormValue("valid_until"))
	}
	if err != nil {
		c.done(w, r, ss, back, "", err)
		return
	}
	sc, err := parseSchedule(r.PostFormValue("schedule"))
	if err == nil {
		sc.Holidays, err = parseHolidays(r.PostFormValue("holidays"))
	}
	if err != nil {
		c.done(w, r, ss, back, "", err)
		return
	}
	doors := formList(r.PostFormValue("doors"))
	on := func(k string) *bool { v := r.PostFormValue(k) == "on"; return &v }
	req := cardSetReq{Doors: &doors, ValidFrom: &from, ValidUntil: &until, Schedule: &sc,
		CardOnly: on("card_only"), ExtendedUnlock: on("extended_unlock"), LockdownOverride: on("lockdown_override")}
	if !ss.can(site.RoleAdmin) {
		// Opening during a lockdown is an admin's to grant: the form does
		// not offer it to operators, and their edits keep what the card has.
		card, err := c.a.card(uid)
		if err != nil {
			c.done(w, r, ss, back, "", err)
			return
		}
		req.LockdownOverride = &card.Flags.LockdownOverride
	}
	res := c.call(r, ss, "PATCH", "/v1/cards/"+url.PathEscape(uid), req)
	c.record(r, ss, site.Action{What: "card edit", Target: "card " + uid,
		Detail: fmt.Sprintf("doors %s; valid %s to %s; schedule %s; card only %v, extended unlock %v, lockdown override %v",
			strings.Join(doors, " "), from.Format(time.DateOnly), until.Format(time.DateOnly), formatSchedule(sc),
			*req.CardOnly, *req.ExtendedUnlock, *req.LockdownOverride), Result: result(res)})
	c.changed(w, r, ss, res, back, fmt.Sprintf("Card %s changed.", uid))
}

// --- a change's progress ---

type progressRow struct {
	doorView
	Target  uint64
	Applied bool
}

type progressData struct {
	Seq     uint64
	Back    string
	Rows    []progressRow
	Applied int
	Known   bool // the targets of this session's change are known
}

func (c *console) changePage(w http.ResponseWriter, r *http.Request, ss *session) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		c.errorPage(w, r, ss, http.StatusBadRequest, fmt.Errorf("change %q is not a number", r.PathValue("seq")))
		return
	}
	targets := c.sessions.targets(ss, seq)
	rows, err := c.doorRows()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	d := progressData{Seq: seq, Back: safeNext(r.URL.Query().Get("back")), Known: targets != nil}
	for _, row := range rows {
		if row.Identity == "" {
			continue
		}
		p := progressRow{doorView: row.doorView, Target: targets[row.ID]}
		p.Applied = (targets != nil && p.AppliedSeq >= p.Target) || p.Current
		if p.Applied {
			d.Applied++
		}
		d.Rows = append(d.Rows, p)
	}
	c.page(w, r, ss, "change", fmt.Sprintf("Change %d", seq), d)
}

// --- accounts ---

func (c *console) usersPage(w http.ResponseWriter, r *http.Request, ss *session) {
	us, err := c.a.db.ListUsers()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	for i := range us {
		us[i].Hash = ""
	}
	c.page(w, r, ss, "users", "Accounts", us)
}

func (c *console) userAdd(w http.ResponseWriter, r *http.Request, ss *session) {
	req := userAddReq{Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role"), Password: r.PostFormValue("password")}
	res := c.call(r, ss, "POST", "/v1/users", req)
	c.record(r, ss, site.Action{What: "account add", Target: "account " + req.Name, Detail: "role " + req.Role, Result: result(res)})
	c.done(w, r, ss, "/users", fmt.Sprintf("Account %s (%s) added.", req.Name, req.Role), res.err())
}

func (c *console) userRemove(w http.ResponseWriter, r *http.Request, ss *session) {
	name := r.PathValue("name")
	if name == ss.user {
		c.done(w, r, ss, "/users", "", errors.New("you cannot remove your own account"))
		return
	}
	res := c.call(r, ss, "DELETE", "/v1/users/"+url.PathEscape(name), nil)
	c.record(r, ss, site.Action{What: "account remove", Target: "account " + name, Result: result(res)})
	c.done(w, r, ss, "/users", fmt.Sprintf("Account %s removed.", name), res.err())
}

// --- integrity ---

type integrityData struct {
	Ran      bool
	Doors    []verifyView
	Bad      int
	Findings []site.Finding
}

func (c *console) integrityPage(w http.ResponseWriter, r *http.Request, ss *session) {
	var d integrityData
	if r.URL.Query().Get("run") == "1" {
		res := c.call(r, ss, "GET", "/v1/audit/verify", nil)
		if err := res.err(); err != nil {
			c.errorPage(w, r, ss, res.code, err)
			return
		}
		if err := json.Unmarshal(res.body, &d.Doors); err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		d.Ran = true
		for _, v := range d.Doors {
			if !v.OK {
				d.Bad++
			}
		}
		c.record(r, ss, site.Action{What: "verify", Detail: fmt.Sprintf("%d doors, %d bad", len(d.Doors), d.Bad)})
	}
	res := c.call(r, ss, "GET", "/v1/audit/findings?limit=100", nil)
	if res.err() == nil {
		_ = json.Unmarshal(res.body, &d.Findings)
	}
	slices.Reverse(d.Findings)
	c.page(w, r, ss, "integrity", "Integrity", d)
}
