package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/mqtt"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Access reviews (docs/access.md): the API's routes and the CLI's
// commands.
//
//	GET /v1/access/who?door=&at=&mode=&tz=&format=csv            mqttsite.AccessReport
//	GET /v1/access/what?holder=&at=&mode=&tz=&format=csv         mqttsite.AccessReport
//	GET /v1/access/explain?uid=|holder=&door=&at=&pin_entered=1  []mqttsite.Explanation
//	GET /v1/access/unused?days=&format=csv                       []site.Unused

// accessRoutes adds the access review routes.
func (a *api) accessRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/access/who", a.accessWho)
	m.HandleFunc("GET /v1/access/what", a.accessWhat)
	m.HandleFunc("GET /v1/access/explain", a.accessExplain)
	m.HandleFunc("GET /v1/access/unused", a.accessUnused)
}

// accessQuery reads at, mode and tz: the moment, and, when given, the
// doors' mode and time zone to assume in place of those each door
// reports in its status (from its config file).
func (a *api) accessQuery(q url.Values) (mqttsite.AccessQuery, error) {
	var aq mqttsite.AccessQuery
	if s := q.Get("at"); s != "" {
		t, err := parseWhen("at", s)
		if err != nil {
			return aq, badRequest(err)
		}
		aq.At = t
	}
	mode := store.Mode(q.Get("mode"))
	switch mode {
	case "", store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN:
	default:
		return aq, badRequest(fmt.Errorf("mode %q: want card, card+pin or card-or-pin", mode))
	}
	var loc *time.Location
	if tz := q.Get("tz"); tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return aq, badRequest(fmt.Errorf("tz %q: %w", tz, err))
		}
		loc = l
	}
	past := !aq.At.IsZero()
	aq.Policy = func(id string) mqttsite.DoorPolicy {
		return a.doorPolicy(id, mode, loc, past)
	}
	return aq, nil
}

// doorPolicy is door id's policy as the reports take it: the mode and
// time zone given, or else those of its last status (card+pin and UTC
// without one), and, for now, the lockdown, stale allowlist and clock of
// its last status, through the door's own rule (door.Status.AskAs).
func (a *api) doorPolicy(id string, mode store.Mode, loc *time.Location, past bool) mqttsite.DoorPolicy {
	var st mqtt.Status
	d, err := a.db.Door(id)
	known := err == nil && len(d.Status) > 0
	if known {
		if err := json.Unmarshal(d.Status, &st); err != nil {
			a.log.Warn("access: door status unreadable", "door", id, "err", err)
			known = false
		}
	}
	p := mqttsite.DoorPolicy{ClockTrusted: true}
	p.Mode, p.Store.Location, p.Notes = doorSettings(id, &st, mode, loc)
	if past {
		p.Notes = append(p.Notes, "at a past moment, doors are taken as not in lockdown, with a fresh allowlist and a synced clock")
		return p
	}
	if !known {
		p.Notes = append(p.Notes, "door "+id+" has sent no status: taken as not in lockdown, with a fresh allowlist and a synced clock")
		return p
	}
	ds := door.Status{Mode: p.Mode, Lockdown: st.Lockdown, Stale: st.ACLStale, StalePolicy: door.StalePolicy(st.StalePolicy)}
	p.Mode, p.Lockdown = ds.AskAs(true)
	p.ClockTrusted = st.Clock != store.TimeUnsynced
	if st.ACLStale {
		p.Notes = append(p.Notes, fmt.Sprintf("door %s reports a stale allowlist: policy %s", id, st.StalePolicy))
	}
	return p
}

// doorSettings is the mode and time zone a report takes for door id: those
// given, or else those of its last status st, or else card+pin and UTC;
// the note says which.
func doorSettings(id string, st *mqtt.Status, mode store.Mode, loc *time.Location) (store.Mode, *time.Location, []string) {
	var notes []string
	from := "given"
	switch {
	case mode != "":
	case st.Mode != "":
		mode, from = st.Mode, "reported by the door"
	default:
		mode, from = store.ModeCardPIN, "assumed: door "+id+" has not reported it"
	}
	notes = append(notes, fmt.Sprintf("door mode %s %s", mode, from))
	from = "given"
	switch {
	case loc != nil:
	case st.TZ != "":
		l, err := time.LoadLocation(st.TZ)
		if err == nil {
			loc, from = l, "reported by the door"
			break
		}
		loc, from = time.UTC, fmt.Sprintf("assumed: door %s reports %q, unknown here", id, st.TZ)
	default:
		loc, from = time.UTC, "assumed: door "+id+" has not reported it"
	}
	return mode, loc, append(notes, fmt.Sprintf("time zone %s %s", loc, from))
}

func (a *api) accessWho(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq, err := a.accessQuery(q)
	if err == nil && q.Get("door") == "" {
		err = badRequest(fmt.Errorf("door is required"))
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	rep, err := a.site.Who(q.Get("door"), aq)
	a.report(w, r, rep, err)
}

func (a *api) accessWhat(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq, err := a.accessQuery(q)
	if err == nil && q.Get("holder") == "" {
		err = badRequest(fmt.Errorf("holder is required"))
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	rep, err := a.site.What(q.Get("holder"), aq)
	a.report(w, r, rep, err)
}

// report answers a who or what report, as JSON or (format=csv) CSV.
func (a *api) report(w http.ResponseWriter, r *http.Request, rep mqttsite.AccessReport, err error) {
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"door", "holder", "holder_name", "uid", "via", "schedule", "valid_from", "valid_until", "mode", "pin",
		"revoked", "holder_revoked", "decision", "reason", "note", "last_use", "last_use_door"})
	for _, e := range rep.Entries {
		_ = cw.Write([]string{e.Door, e.Holder, e.HolderName, e.UID, e.Via, scheduleWords(e.Schedule), csvTime(e.ValidFrom), csvTime(e.ValidUntil),
			string(e.Mode), e.PIN, e.Revoked, e.HolderRevoked, e.Decision, string(e.Reason), e.Note, csvTime(e.LastUse), e.LastUseDoor})
	}
	cw.Flush()
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// scheduleWords is a schedule in one line: "Mon 08:00-18:00; holidays
// 2025-12-25", or "always".
func scheduleWords(s store.Schedule) string {
	var parts []string
	for d, ws := range s.Weekly {
		for _, w := range ws {
			parts = append(parts, fmt.Sprintf("%s %02d:%02d-%02d:%02d", time.Weekday(d).String()[:3], w.From/60, w.From%60, w.To/60, w.To%60))
		}
	}
	if len(s.Holidays) > 0 {
		parts = append(parts, "holidays "+strings.Join(s.Holidays, ","))
	}
	if len(parts) == 0 {
		return "always"
	}
	return strings.Join(parts, "; ")
}

func (a *api) accessExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq, err := a.accessQuery(q)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	d := q.Get("door")
	var uids [][]byte
	switch {
	case d == "":
		err = fmt.Errorf("door is required")
	case q.Get("uid") != "" && q.Get("holder") == "":
		var uid []byte
		if uid, err = parseUID(q.Get("uid")); err == nil {
			uids = append(uids, uid)
		}
	case q.Get("holder") != "" && q.Get("uid") == "":
		if uids, err = a.db.CardsOf(q.Get("holder")); err == nil && len(uids) == 0 {
			_, err = a.db.Holder(q.Get("holder"))
		}
	default:
		err = fmt.Errorf("give uid or holder")
	}
	if err != nil {
		if !isStatus(err) {
			err = badRequest(err)
		}
		a.failErr(w, r, err)
		return
	}
	out := []mqttsite.Explanation{}
	for _, uid := range uids {
		x, err := a.site.Explain(uid, d, q.Get("pin_entered") == "1", aq)
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		out = append(out, x)
	}
	writeJSON(w, http.StatusOK, out)
}

// isStatus reports whether err already maps to a status of its own.
func isStatus(err error) bool { return status(err) != http.StatusInternalServerError }

func (a *api) accessUnused(w http.ResponseWriter, r *http.Request) {
	days, err := strconv.Atoi(r.URL.Query().Get("days"))
	if err != nil || days < 1 {
		a.failErr(w, r, badRequest(fmt.Errorf("days %q: want a whole number of days, 1 or more", r.URL.Query().Get("days"))))
		return
	}
	out, err := a.db.Unused(time.Duration(days)*24*time.Hour, a.now())
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, out)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"uid", "holder", "enrolled", "last_use", "last_use_door", "revoked"})
	for _, u := range out {
		_ = cw.Write([]string{u.UID, u.Holder, csvTime(u.Enrolled), csvTime(u.LastUse), u.LastUseDoor, strconv.FormatBool(u.Revoked)})
	}
	cw.Flush()
}

// accessCmd is what the access commands share: --at, --mode, --tz,
// --csv.
type accessCmd struct {
	*clientCmd
	at, mode, tz *string
	csv          *bool
}

func newAccessCmd(e *env, name string) *accessCmd {
	c := &accessCmd{clientCmd: newClientCmd(e, name)}
	c.at = c.fs.String("at", "", "the moment to answer for (RFC 3339 or YYYY-MM-DD); default now")
	c.mode = c.fs.String("mode", "", "the doors' mode to assume: card, card+pin or card-or-pin (default: each door's reported mode, else card+pin)")
	c.tz = c.fs.String("tz", "", "the doors' time zone to assume, for schedules (default: each door's reported zone, else UTC)")
	c.csv = c.fs.Bool("csv", false, "print CSV")
	return c
}

func (c *accessCmd) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"at": *c.at, "mode": *c.mode, "tz": *c.tz} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *c.csv {
		q.Set("format", "csv")
	}
	return q
}

// get calls path with q and prints the answer: CSV or JSON as is, else
// through human.
func accessGet[T any](ctx context.Context, c *accessCmd, path string, q url.Values, human func(w io.Writer, v T)) error {
	raw, err := c.client().call(ctx, "GET", path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if *c.csv {
		_, err := c.e.stdout.Write(raw)
		return err
	}
	return show(c.clientCmd, raw, human)
}

func cmdAccessWho(ctx context.Context, e *env, args []string) error {
	c := newAccessCmd(e, "access who")
	d := c.fs.String("door", "", "the door")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *d == "" {
		return usagef("--door is required")
	}
	q := c.query()
	q.Set("door", *d)
	return accessGet(ctx, c, "/v1/access/who", q, reportTable)
}

func cmdAccessWhat(ctx context.Context, e *env, args []string) error {
	c := newAccessCmd(e, "access what")
	h := c.fs.String("holder", "", "the holder")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *h == "" {
		return usagef("--holder is required")
	}
	q := c.query()
	q.Set("holder", *h)
	return accessGet(ctx, c, "/v1/access/what", q, reportTable)
}

func reportTable(w io.Writer, rep mqttsite.AccessReport) {
	fmt.Fprintf(w, "at %s (change %d)\n", rep.At.UTC().Format(time.RFC3339), rep.Seq)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w, "DOOR\tHOLDER\tUID\tVIA\tSCHEDULE\tVALID\tPIN\tREVOKED\tDECISION\tREASON\tLAST USE")
	for _, e := range rep.Entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Door, e.Holder, e.UID, e.Via, scheduleWords(e.Schedule),
			validWords(e.ValidFrom, e.ValidUntil), e.PIN, dash(strings.Trim(e.Revoked+" "+e.HolderRevoked, " ")), e.Decision, e.Reason, when(e.LastUse))
	}
}

func validWords(from, until time.Time) string {
	if from.IsZero() && until.IsZero() {
		return "-"
	}
	return csvTime(from) + ".." + csvTime(until)
}

func cmdAccessExplain(ctx context.Context, e *env, args []string) error {
	c := newAccessCmd(e, "access explain")
	h := c.fs.String("holder", "", "the holder (each of their cards)")
	u := c.fs.String("uid", "", "the card UID")
	d := c.fs.String("door", "", "the door")
	pin := c.fs.Bool("pin-entered", false, "take a card that needs its PIN as having typed it right")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *d == "" || (*h == "") == (*u == "") {
		return usagef("want --door and one of --holder and --uid")
	}
	if *c.csv {
		return usagef("--csv: explain prints text or --json")
	}
	q := c.query()
	q.Set("door", *d)
	if *h != "" {
		q.Set("holder", *h)
	} else {
		q.Set("uid", *u)
	}
	if *pin {
		q.Set("pin_entered", "1")
	}
	return accessGet(ctx, c, "/v1/access/explain", q, func(w io.Writer, xs []mqttsite.Explanation) {
		for _, x := range xs {
			fmt.Fprintf(w, "card %s of %s at door %s, %s (change %d): %s\n", x.UID, dash(x.Holder), x.Door, x.At.UTC().Format(time.RFC3339), x.Seq, x.Decision)
			fmt.Fprintf(w, "  rule: %s\n", x.Rule)
			for _, n := range x.Notes {
				fmt.Fprintf(w, "  note: %s\n", n)
			}
		}
	})
}

func cmdAccessUnused(ctx context.Context, e *env, args []string) error {
	c := newAccessCmd(e, "access unused")
	days := c.fs.Int("days", 90, "not used for this many days")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	q := url.Values{"days": {strconv.Itoa(*days)}}
	if *c.csv {
		q.Set("format", "csv")
	}
	return accessGet(ctx, c, "/v1/access/unused", q, func(w io.Writer, us []site.Unused) {
		fmt.Fprintln(w, "UID\tHOLDER\tENROLLED\tLAST USE\tREVOKED")
		for _, u := range us {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\n", u.UID, u.Holder, when(u.Enrolled), when(u.LastUse), u.Revoked)
		}
	})
}
