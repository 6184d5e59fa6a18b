package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// The console's Alarms page: the open alarms first, then the latest
// closed ones; operators acknowledge, assign, note, snooze and resolve
// them. Every step is an API request made as the logged-in account
// (alarms.go), so each is a change-log entry. The nav's badge counts the
// open alarms not snoozed on every page, and the live stream
// (liveStream) tells open pages when alarms change.

// alarmsClosedShown is how many closed alarms the page lists.
const alarmsClosedShown = 50

func (c *console) alarmPageRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /alarms", c.auth(site.RoleAuditor, c.alarmsPage))
	m.HandleFunc("POST /alarms/{id}/{step}", c.auth(site.RoleOperator, c.alarmStep))
	m.HandleFunc("POST /alarms/{id}/snooze", c.auth(site.RoleOperator, c.alarmSnoozeForm))
}

// alarmsData is the Alarms page's.
type alarmsData struct {
	Open, Closed []site.Alarm
	Accounts     []string  // for the assign form
	Now          time.Time // the alarms' clock: which alarms are snoozed
}

func (c *console) alarmsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	var d alarmsData
	open, code, err := apiGet[[]site.Alarm](c, r, ss, "/v1/alarms?open=1")
	if err != nil {
		c.errorPage(w, r, ss, code, err)
		return
	}
	recent, code, err := apiGet[[]site.Alarm](c, r, ss, fmt.Sprintf("/v1/alarms?limit=%d", len(open)+alarmsClosedShown))
	if err != nil {
		c.errorPage(w, r, ss, code, err)
		return
	}
	d.Open, d.Now = open, c.a.alarmNow()
	for _, a := range recent {
		if !a.IsOpen() {
			d.Closed = append(d.Closed, a)
		}
	}
	if ss.can(site.RoleOperator) {
		us, err := c.a.db.ListUsers()
		if err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
		for _, u := range us {
			if !u.Disabled {
				d.Accounts = append(d.Accounts, u.Name)
			}
		}
	}
	c.page(w, r, ss, "alarms", "Alarms", d)
}

// alarmSteps are the page's buttons: the form's step, the API's, and
// what the page says after it.
var alarmSteps = map[string]struct{ api, done string }{
	"ack":     {"ack", "acknowledged"},
	"assign":  {"assign", "assigned"},
	"note":    {"notes", "noted"},
	"resolve": {"resolve", "resolved"},
}

// alarmStep takes a step on an alarm through the API.
func (c *console) alarmStep(w http.ResponseWriter, r *http.Request, ss *session) {
	id, step := r.PathValue("id"), r.PathValue("step")
	s, ok := alarmSteps[step]
	if !ok {
		c.errorPage(w, r, ss, http.StatusNotFound, fmt.Errorf("no such step on an alarm: %q", step))
		return
	}
	req := alarmReq{Account: r.PostFormValue("account"), Text: strings.TrimSpace(r.PostFormValue("text"))}
	res := c.call(r, ss, "POST", "/v1/alarms/"+id+"/"+s.api, req)
	detail := req.Text
	if req.Account != "" {
		detail = "to " + req.Account
	}
	c.record(r, ss, site.Action{What: "alarm " + step, Target: "alarm " + id, Detail: detail, Result: result(res)})
	c.done(w, r, ss, "/alarms", fmt.Sprintf("Alarm %s %s.", id, s.done), res.err())
}

// alarmSnoozeForm snoozes an alarm for the duration chosen (0: ends its
// snooze) through the API.
func (c *console) alarmSnoozeForm(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	d, err := time.ParseDuration(r.PostFormValue("for"))
	if err != nil {
		c.done(w, r, ss, "/alarms", "", fmt.Errorf("snooze for %q: want a duration like 15m", r.PostFormValue("for")))
		return
	}
	secs := int64(d / time.Second)
	req := snoozeReq{ForS: &secs, Text: strings.TrimSpace(r.PostFormValue("text"))}
	res := c.call(r, ss, "POST", "/v1/alarms/"+id+"/snooze", req)
	c.record(r, ss, site.Action{What: "alarm snooze", Target: "alarm " + id, Detail: req.detail(), Result: result(res)})
	msg := fmt.Sprintf("Alarm %s snoozed for %s.", id, strings.TrimSpace(r.PostFormValue("for")))
	if secs == 0 {
		msg = fmt.Sprintf("Alarm %s is back: its snooze ended.", id)
	}
	c.done(w, r, ss, "/alarms", msg, res.err())
}

// alarmCount is what the nav's badge shows: the open alarms not snoozed,
// and the newest of them (a page beeps when a newer one opens).
type alarmCount struct {
	Open   int    `json:"open"`
	Newest uint64 `json:"newest"`
}

// openAlarms counts the open alarms not snoozed; a failure to is logged
// and counts none.
func (c *console) openAlarms() alarmCount {
	as, err := c.a.db.Alarms(true, 0)
	if err != nil {
		c.log.Error("count the open alarms", "err", err)
		return alarmCount{}
	}
	var n alarmCount
	now := c.a.alarmNow()
	for _, a := range as {
		if !a.Snoozed(now) {
			n.Open++
			n.Newest = max(n.Newest, a.ID)
		}
	}
	return n
}

// alarmsChanged returns a channel closed at the next alarm change: the
// engine's, or never without one.
func (c *console) alarmsChanged() <-chan struct{} {
	if c.a.alarms == nil {
		return nil
	}
	return c.a.alarms.Changed()
}

// alarmsMessage is the live stream's message of the open alarms.
func (c *console) alarmsMessage() string {
	b, _ := json.Marshal(c.openAlarms())
	return "event: alarms\ndata: " + string(b) + "\n\n"
}

// fired reports whether ch is closed (a nil channel never is).
func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
