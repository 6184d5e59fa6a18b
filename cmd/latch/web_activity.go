package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The Activity page: the collected events, newest first, a page at a
// time, with the newest arriving live; and the site's own log of actions.

const (
	// activityPageSize is how many events a page shows.
	activityPageSize = 50
	// activityBudget bounds the index keys one page reads: a filter that
	// matches little stops there and offers to search further back.
	activityBudget = 100000
)

// eventReasons and eventTypes are the filter's choices.
var (
	eventTypes   = []store.EventType{store.TypeAccess, store.TypeDoor, store.TypeSync, store.TypeSystem}
	eventReasons = []store.Reason{
		store.ReasonGranted, store.ReasonGrantedDuress, store.ReasonUnknownCard, store.ReasonRevoked, store.ReasonExpired,
		store.ReasonNotYetValid, store.ReasonOutsideSchedule, store.ReasonWrongDoor, store.ReasonPINRequired,
		store.ReasonPINTimeout, store.ReasonBadPIN, store.ReasonLockedOut, store.ReasonLockdown, store.ReasonRandomUID,
		store.ReasonDoorForced, store.ReasonDoorHeld, store.ReasonDoorClosed, store.ReasonExitRequest, store.ReasonTamper,
		store.ReasonReaderFault, store.ReasonReaderOK, store.ReasonGrantedNotOpened, store.ReasonUnlockInterrupt,
		store.ReasonACLApplied, store.ReasonACLRejected, store.ReasonSnapshotApplied, store.ReasonCommandApplied,
		store.ReasonCommandRejected, store.ReasonACLStale, store.ReasonKeyRotated, store.ReasonStarted, store.ReasonStopped,
		store.ReasonEventsLost, store.ReasonJournalFault,
	}
)

// activityFilter is the page's filter as the form gives it.
type activityFilter struct {
	Door, Holder, UID, Type, Reason, From, To string
}

// activityFilterOf reads the form from a query, and the store's filter.
func activityFilterOf(q url.Values) (activityFilter, site.Filter, error) {
	af := activityFilter{Door: strings.TrimSpace(q.Get("door")), Holder: strings.TrimSpace(q.Get("holder")),
		UID: strings.TrimSpace(q.Get("uid")), Type: q.Get("type"), Reason: q.Get("reason"), From: q.Get("from"), To: q.Get("to")}
	f := site.Filter{Door: af.Door, Holder: af.Holder, Type: store.EventType(af.Type), Reason: store.Reason(af.Reason)}
	if af.UID != "" {
		uid, err := parseUID(af.UID)
		if err != nil {
			return af, f, fmt.Errorf("UID %q: %w", af.UID, err)
		}
		f.UID = fmt.Sprintf("%X", uid)
	}
	var err error
	if f.From, err = formTime("from", af.From); err != nil {
		return af, f, err
	}
	if f.To, err = formTime("to", af.To); err != nil {
		return af, f, err
	}
	return af, f, nil
}

// query is the filter as a URL query (for the next page, the stream and
// the exports).
func (af activityFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"door": af.Door, "holder": af.Holder, "uid": af.UID, "type": af.Type, "reason": af.Reason, "from": af.From, "to": af.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// exportQuery is the console's export link's query.
func (af activityFilter) exportQuery(format string) string {
	q := af.query()
	q.Set("format", format)
	return q.Encode()
}

// exportQuery is the filter as the API's export takes it: RFC 3339 times.
func exportQuery(f site.Filter, format string) url.Values {
	q := url.Values{"format": {format}}
	for k, v := range map[string]string{"door": f.Door, "holder": f.Holder, "uid": f.UID, "type": string(f.Type), "reason": string(f.Reason)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.From.IsZero() {
		q.Set("from", f.From.Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.Format(time.RFC3339Nano))
	}
	return q
}

// eventRow is an event as the page shows it.
type eventRow struct {
	When   string `json:"when"`
	Door   string `json:"door"`
	Seq    uint64 `json:"seq"`
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Holder string `json:"holder,omitempty"`
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
	Detail string `json:"detail,omitempty"`
	Denied bool   `json:"denied,omitempty"`
	Why    string `json:"why,omitempty"` // for a refused card: the explain page at its door and time
}

func newEventRow(door string, e *store.Event) eventRow {
	row := eventRow{When: e.Time.Local().Format(timeFormat), Door: door, Seq: e.Seq, Type: string(e.Type), Reason: string(e.Reason),
		Holder: e.Holder, Name: e.HolderName, UID: e.UID, Detail: e.Detail,
		Denied: e.Type == store.TypeAccess && e.Reason != store.ReasonGranted && e.Reason != store.ReasonGrantedDuress}
	if row.Denied && row.UID != "" {
		row.Why = whyLink(row.UID, door, e.Time.UTC().Format(time.RFC3339Nano))
	}
	return row
}

type activityData struct {
	Filter   activityFilter
	Types    []store.EventType
	Reasons  []store.Reason
	Rows     []eventRow
	Next     string // the link to the next (older) page
	Newest   string // the link to the newest page
	First    bool   // the newest page: new events arrive live
	Stream   string // the live stream's query
	CSV      string
	JSONL    string
	Reached  string // how far back a page that ran out of budget searched
	Scanned  int
	ServerMS string
	Actions  []site.Action // the latest site actions, beside the newest events
}

func (c *console) activityPage(w http.ResponseWriter, r *http.Request, ss *session) {
	start := time.Now()
	af, f, err := activityFilterOf(r.URL.Query())
	d := activityData{Filter: af, Types: eventTypes, Reasons: eventReasons}
	if err != nil {
		c.render(w, r, ss, http.StatusBadRequest, "activity", "Activity", d, "", err.Error())
		return
	}
	cursor := r.URL.Query().Get("cursor")
	end, err := c.a.db.ArrivalEnd()
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	p, err := c.a.db.QueryPage(f, cursor, activityPageSize, activityBudget)
	if err != nil {
		c.render(w, r, ss, status(err), "activity", "Activity", d, "", err.Error())
		return
	}
	for _, rec := range p.Records {
		d.Rows = append(d.Rows, newEventRow(rec.Door, &rec.Event))
	}
	d.Newest = "/activity?" + af.query().Encode()
	if p.Next != "" {
		nq := af.query()
		nq.Set("cursor", p.Next)
		d.Next = "/activity?" + nq.Encode()
	}
	if !p.Reached.IsZero() {
		d.Reached = p.Reached.Local().Format(timeFormat)
	}
	d.Scanned = p.Scanned
	d.First = cursor == "" && af.To == ""
	if d.First && af.Door == "" && af.Holder == "" && af.UID == "" && af.Type == "" && af.Reason == "" {
		if d.Actions, _, err = c.a.db.Actions(0, 5, 0, nil); err != nil {
			c.errorPage(w, r, ss, http.StatusInternalServerError, err)
			return
		}
	}
	sq := af.query()
	sq.Set("after", strconv.FormatUint(end, 10))
	d.Stream = "/activity/stream?" + sq.Encode()
	d.CSV = "/activity/export?" + af.exportQuery("csv")
	d.JSONL = "/activity/export?" + af.exportQuery("jsonl")
	d.ServerMS = fmt.Sprintf("%.1f", float64(time.Since(start).Microseconds())/1000)
	c.page(w, r, ss, "activity", "Activity", d)
}

// activityStream sends, as server-sent events, each event stored after
// the cursor "after" that the filter selects, as it arrives.
func (c *console) activityStream(w http.ResponseWriter, r *http.Request, ss *session) {
	_, f, err := activityFilterOf(r.URL.Query())
	if err != nil {
		c.refuse(w, r, ss, http.StatusBadRequest, err)
		return
	}
	// A reconnecting EventSource resumes after the last event it got.
	from := r.URL.Query().Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id
	}
	after, err := strconv.ParseUint(from, 10, 64)
	if err != nil {
		c.refuse(w, r, ss, http.StatusBadRequest, fmt.Errorf("after %q is not a cursor", from))
		return
	}
	ctx, cancel := c.a.streams.follow(r)
	defer cancel()
	rc := startEvents(w, "activity")
	for {
		wake := c.wake()
		evs, next, err := c.a.db.EventsSince(after, 1000, f.Door)
		if err != nil {
			_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", jsonString(err.Error()))
			_ = rc.Flush()
			return
		}
		for _, ev := range evs {
			if !f.Selects(ev.Door, &ev.Event) {
				continue
			}
			b, _ := json.Marshal(newEventRow(ev.Door, &ev.Event))
			_, _ = fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.Cursor, b)
		}
		if len(evs) > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if next != after {
			after = next
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			if !c.alive(r) {
				return // logged out, expired, or the account changed
			}
		case <-time.After(c.recheck):
			if !c.keepAlive(w, rc, r) {
				return
			}
		}
	}
}

// streamRecheck is how often, at most, a quiet stream checks that its
// session still holds.
const streamRecheck = 30 * time.Second

// keepAlive is a quiet stream's check every streamRecheck: false when the
// session has ended (logged out, expired, the account changed) or the
// client is gone; else it sends a comment line, which also keeps proxies
// from closing an idle connection.
func (c *console) keepAlive(w http.ResponseWriter, rc *http.ResponseController, r *http.Request) bool {
	if !c.alive(r) {
		return false
	}
	if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// wake returns a channel closed when there may be something new to show:
// the site's next update of its stats or stored events.
func (c *console) wake() <-chan struct{} { return c.a.site.Updated() }

// startEvents begins a stream of server-sent events, with a comment line
// naming it so that the client sees the stream open at once.
func startEvents(w http.ResponseWriter, name string) *http.ResponseController {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, ": latch %s\n\n", name)
	_ = rc.Flush()
	return rc
}

// jsonString is s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// liveStream tells a page, as server-sent events, that the doors' state
// may have changed, at most every liveEvery, and how many alarms are open
// as soon as that changes (an "alarms" event, also sent first): the page
// then reloads its live parts and its badge.
func (c *console) liveStream(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := c.a.streams.follow(r)
	defer cancel()
	rc := startEvents(w, "live")
	// The next wakes are taken before each message, so that an update
	// after it is not missed. While quiet runs, the doors' changes wait.
	wake, alarms := c.wake(), c.alarmsChanged()
	var quiet <-chan time.Time
	_, _ = fmt.Fprint(w, c.alarmsMessage())
	_ = rc.Flush()
	for {
		doors := wake
		if quiet != nil {
			doors = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-doors:
		case <-alarms:
		case <-quiet:
			quiet = nil
			continue
		case <-time.After(c.recheck):
			if !c.keepAlive(w, rc, r) {
				return
			}
			continue
		}
		if !c.alive(r) {
			return // logged out, expired, or the account changed
		}
		var msg string
		if quiet == nil && fired(wake) {
			wake, quiet, msg = c.wake(), time.After(liveEvery), "data: change\n\n"
		}
		if fired(alarms) {
			alarms = c.alarmsChanged()
			msg += c.alarmsMessage()
		}
		if _, err := fmt.Fprint(w, msg); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// activityExport streams the filtered events as CSV or JSON lines, through
// the API's export, and records who exported what.
func (c *console) activityExport(w http.ResponseWriter, r *http.Request, ss *session) {
	_, f, err := activityFilterOf(r.URL.Query())
	if err != nil {
		c.errorPage(w, r, ss, http.StatusBadRequest, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "csv" && format != "jsonl" {
		c.errorPage(w, r, ss, http.StatusBadRequest, fmt.Errorf("format %q: want csv or jsonl", format))
		return
	}
	q := exportQuery(f, format)
	req := c.apiRequest(r, ss, "GET", "/v1/audit/export?"+q.Encode(), http.NoBody)
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK,
		disposition: fmt.Sprintf(`attachment; filename="latch-events-%s.%s"`, c.now().Format("20060102-150405"), format)}
	c.apiMux.ServeHTTP(sw, req)
	res := "ok"
	if sw.code != http.StatusOK {
		res = fmt.Sprintf("status %d", sw.code)
	}
	c.record(r, ss, site.Action{What: "export", Detail: q.Encode(), Result: res})
}

type actionsData struct {
	User   string
	Rows   []site.Action
	Before uint64
}

// actionsPage shows the site's log of actions, newest first.
func (c *console) actionsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	d := actionsData{User: strings.TrimSpace(r.URL.Query().Get("user"))}
	var before uint64
	if s := r.URL.Query().Get("before"); s != "" {
		var err error
		if before, err = strconv.ParseUint(s, 10, 64); err != nil {
			c.errorPage(w, r, ss, http.StatusBadRequest, fmt.Errorf("before %q is not a number", s))
			return
		}
	}
	var keep func(*site.Action) bool
	if d.User != "" {
		keep = func(a *site.Action) bool { return a.User == d.User }
	}
	rows, next, err := c.a.db.Actions(before, activityPageSize, activityBudget, keep)
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	d.Rows, d.Before = rows, next
	c.page(w, r, ss, "actions", "Site actions", d)
}
