package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchdoor/latch/mqtt"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The change log: every change made through the API (and so through the
// CLI and the console) is one entry of the site database's change log,
// with who, from where, when, what, the affected record before and after,
// and how it ended (see docs/audit.md).
//
//	GET  /v1/audit/changes?who=&target=&from=&to=&after=&limit=   []site.ChangeEntry, oldest first
//	POST /v1/audit/changes/{seq}/notes                             noteReq → site.ChangeEntry
//
// logChanges wraps the API: each request of a mutating method gets a
// slot in its context, which the handler fills (describe) with the
// change's target and how to read its record; a change committed to the
// database carries the entry into its transaction (recording, a.commit).
// A request whose entry was not appended by then (refused, failed, or not
// a change of the database) gets it appended when the handler returns.

// changeOps names the operation of each mutating API route. A mutating
// route missing here is logged as "unrecorded" (and fails the change-log
// tests).
var changeOps = map[string]string{
	"POST /v1/holders":                     "holder add",
	"DELETE /v1/holders/{id}":              "holder remove",
	"POST /v1/cards":                       "card add",
	"DELETE /v1/cards/{uid}":               "card remove",
	"PATCH /v1/cards/{uid}":                "card set",
	"POST /v1/cards/{uid}/pin":             "pin set",
	"POST /v1/cards/{uid}/replace":         "card replace",
	"POST /v1/revoke":                      "revoke",
	"POST /v1/reinstate":                   "reinstate",
	"POST /v1/doors/{id}/approve":          "door approve",
	"DELETE /v1/doors/{id}/approval":       "door unapprove",
	"PUT /v1/doors/{id}/groups":            "door groups",
	"POST /v1/doors/{id}/unlock":           "door unlock",
	"POST /v1/doors/{id}/lockdown":         "door lockdown",
	"POST /v1/keys/rotate":                 "key rotate",
	"POST /v1/users":                       "account add",
	"PUT /v1/users/{name}/password":        "account password",
	"PUT /v1/users/{name}/role":            "account role",
	"DELETE /v1/users/{name}":              "account remove",
	"POST /v1/audit/changes/{seq}/notes":   "note",
	"POST /v1/reviews":                     "review start",
	"POST /v1/reviews/{id}/decisions":      "review decide",
	"POST /v1/reviews/{id}/complete":       "review complete",
	"POST /v1/tokens":                      "token create",
	"DELETE /v1/tokens/{name}":             "token revoke",
	"POST /v1/import":                      "import",
	"POST /scim/v2/Users":                  "scim user create",
	"PUT /scim/v2/Users/{id}":              "scim user replace",
	"PATCH /scim/v2/Users/{id}":            "scim user patch",
	"DELETE /scim/v2/Users/{id}":           "scim user delete",
	"POST /scim/v2/Groups":                 "scim group create",
	"PUT /scim/v2/Groups/{id}":             "scim group replace",
	"PATCH /scim/v2/Groups/{id}":           "scim group patch",
	"DELETE /scim/v2/Groups/{id}":          "scim group delete",
	"POST /v1/alarms/{id}/ack":             "alarm ack",
	"POST /v1/alarms/{id}/assign":          "alarm assign",
	"POST /v1/alarms/{id}/notes":           "alarm note",
	"POST /v1/alarms/{id}/resolve":         "alarm resolve",
	"POST /v1/visitors":                    "visitor add",
	"POST /v1/visitors/{holder}/end":       "visitor end",
	"POST /v1/notify/rules":                "notify rule add",
	"DELETE /v1/notify/rules/{name}":       "notify rule remove",
	"POST /v1/notify/rules/{name}/disable": "notify rule disable",
	"POST /v1/notify/rules/{name}/enable":  "notify rule enable",
	"POST /v1/alarms/{id}/snooze":          "alarm snooze",
}

// opOutcome is the operation of an entry that records how a change that
// is not a database commit (a command, a key rotation) ended; it refers
// to the entry written before it was tried.
const opOutcome = "outcome"

// records reads what a change-log entry shows of a record: the site
// database, or a change's own transaction.
type records interface {
	Card(uid []byte) (store.Card, error)
	Holder(id string) (store.Holder, error)
	Revoked(uid []byte) (store.Revocation, error)
	HolderRevoked(id string) (store.Revocation, error)
	Door(id string) (site.Door, error)
	User(name string) (site.User, error)
	SCIMGroup(name string) (site.SCIMGroup, error)
	SCIMMembers(group string) ([]site.SCIMMember, error)
}

var _, _ records = (*site.DB)(nil), (*site.Reader)(nil)

// recordState reads the records a change affects, as the API shows them;
// nil where one does not exist.
type recordState func(src records) (any, error)

// absent turns a record's ErrNotFound into nil (null in the log).
func absent[T any](v T, err error) (any, error) {
	if errors.Is(err, site.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func cardState(uid []byte) recordState {
	return func(src records) (any, error) {
		c, err := src.Card(uid)
		if err != nil {
			return absent(cardView{}, err)
		}
		return cardViewOf(src, c)
	}
}

func holderState(id string) recordState {
	return func(src records) (any, error) {
		h, err := src.Holder(id)
		if err != nil {
			return absent(holderView{}, err)
		}
		return holderViewOf(src, h)
	}
}

func doorState(id string) recordState {
	return func(src records) (any, error) {
		d, err := src.Door(id)
		return absent(doorConfigOf(d), err)
	}
}

func userState(name string) recordState {
	return func(src records) (any, error) {
		u, err := src.User(name)
		return absent(newUserView(u), err)
	}
}

// bothStates reads two records, as a two-element list.
func bothStates(a, b recordState) recordState {
	return func(src records) (any, error) {
		x, err := a(src)
		if err != nil {
			return nil, err
		}
		y, err := b(src)
		return []any{x, y}, err
	}
}

// revocations is what the card and holder views read besides the record.
type revocations interface {
	Revoked(uid []byte) (store.Revocation, error)
	HolderRevoked(id string) (store.Revocation, error)
}

// cardViewOf is a card as the API shows it, its revocations read from src.
func cardViewOf(src revocations, c store.Card) (cardView, error) {
	v := cardView{UID: fmt.Sprintf("%X", c.UID), Holder: c.HolderID, Doors: c.Doors,
		ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil, PINSet: c.PINHash != "", Schedule: c.Schedule, Flags: c.Flags}
	var err error
	if v.Revoked, err = revocation(src.Revoked(c.UID)); err != nil {
		return v, err
	}
	v.HolderRevoked, err = revocation(src.HolderRevoked(c.HolderID))
	return v, err
}

// holderViewOf is a holder as the API shows it, its revocation read from
// src.
func holderViewOf(src revocations, h store.Holder) (holderView, error) {
	rev, err := revocation(src.HolderRevoked(h.ID))
	return holderView{ID: h.ID, Name: h.Name, Revoked: rev}, err
}

// doorConfig is what an admin sets of a door: what the change log shows.
type doorConfig struct {
	ID       string   `json:"id"`
	Groups   []string `json:"groups,omitempty"`
	Identity string   `json:"identity,omitempty"`
	Pending  string   `json:"pending,omitempty"`
	Next     string   `json:"next,omitempty"`
}

func doorConfigOf(d site.Door) doorConfig {
	c := doorConfig{ID: d.ID, Groups: d.Groups}
	for _, f := range []struct {
		id *site.Identity
		p  *string
	}{{d.Approved, &c.Identity}, {d.Pending, &c.Pending}, {d.Next, &c.Next}} {
		if f.id != nil {
			*f.p = f.id.Fingerprint
		}
	}
	return c
}

// changeSlot is a mutating request's change-log entry in the making.
type changeSlot struct {
	rec   *site.ChangeRecord
	state recordState
	done  bool // its entry is appended
}

type changeSlotKey struct{}

// consoleActor is the console account a request is made for.
type consoleActor struct {
	name  string
	role  site.Role
	addr  string // the client's address
	token string // the API token's name, when the request carried one
}

type consoleActorKey struct{}

func slotOf(r *http.Request) *changeSlot {
	s, _ := r.Context().Value(changeSlotKey{}).(*changeSlot)
	return s
}

// changeSource says who makes r and from where: a console account, or
// the socket's operator.
func changeSource(r *http.Request) (who, role, from string) {
	if c, ok := r.Context().Value(consoleActorKey{}).(consoleActor); ok {
		if c.token != "" {
			return c.name, string(c.role), "token " + c.token
		}
		return c.name, string(c.role), "console " + c.addr
	}
	return operator(r), "", "socket"
}

// describe tells r's change-log entry what the change is about: its
// target, the records it affects (read before it, in its transaction when
// it commits, and after it), and a detail (a reason; never a secret).
func (a *api) describe(r *http.Request, target string, state recordState, detail string) {
	slot := slotOf(r)
	if slot == nil {
		return
	}
	who, role, from := changeSource(r)
	slot.state = state
	e := site.ChangeEntry{Time: a.now(), Who: who, Role: role, From: from, Op: changeOps[r.Pattern], Target: target, Detail: detail, Result: "ok"}
	if state != nil {
		// For a change refused before its transaction; its transaction
		// reads it again.
		e.Before = a.marshalState(state, a.db)
	}
	rd := func(rd *site.Reader) (json.RawMessage, error) { return marshalState(state, rd) }
	slot.rec = &site.ChangeRecord{Entry: e}
	if state != nil {
		slot.rec.Before, slot.rec.After = rd, rd
	}
}

func marshalState(state recordState, src records) (json.RawMessage, error) {
	if state == nil {
		return nil, nil
	}
	v, err := state(src)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// marshalState is marshalState of the database; a failure to read is
// written into the value, so that the entry is still appended.
func (a *api) marshalState(state recordState, src records) json.RawMessage {
	b, err := marshalState(state, src)
	if err != nil {
		a.log.Error("change log: read the record", "err", err)
		b, _ = json.Marshal(map[string]string{"unreadable": err.Error()})
	}
	return b
}

// recording returns the change record of r, or nil.
func (a *api) recording(r *http.Request) *site.ChangeRecord {
	if s := slotOf(r); s != nil {
		return s.rec
	}
	return nil
}

// dbFor is the database through which r's change is committed with its
// entry.
func (a *api) dbFor(r *http.Request) *site.DB {
	if rec := a.recording(r); rec != nil {
		return a.db.Recording(rec)
	}
	return a.db
}

// siteFor is the site through which r's change is committed with its
// entry.
func (a *api) siteFor(r *http.Request) mqttsite.Recorder { return a.site.Recording(a.recording(r)) }

// logBefore appends r's entry now, with result "sending": for a change
// that is not a database commit (a command to a door, a key rotation),
// logged before it is tried. It returns the entry's seq, for the outcome.
func (a *api) logBefore(r *http.Request) (uint64, error) {
	slot := slotOf(r)
	if slot == nil || slot.rec == nil {
		return 0, nil
	}
	e := slot.rec.Entry
	e.Result = "sending"
	got, err := a.db.AppendChange(e)
	if err != nil {
		return 0, err
	}
	slot.done = true
	return got.Seq, nil
}

// logOutcome appends how the change logged as entry ref ended: after is
// what it made (nil when it failed), err why it failed.
func (a *api) logOutcome(r *http.Request, ref uint64, after any, err error) {
	if ref == 0 {
		return
	}
	who, role, from := changeSource(r)
	e := site.ChangeEntry{Time: a.now(), Who: who, Role: role, From: from, Op: opOutcome, Ref: ref, Result: "ok"}
	if slot := slotOf(r); slot != nil && slot.rec != nil {
		e.Target, e.Before = slot.rec.Entry.Target, slot.rec.Entry.Before
	}
	if err != nil {
		e.Result = "failed: " + err.Error()
		e.After = e.Before
	} else if e.After, err = json.Marshal(after); err != nil {
		e.After = nil
	}
	if _, err := a.db.AppendChange(e); err != nil {
		a.log.Error("change log: append an outcome", "ref", ref, "err", err)
	}
}

// changeWriter notes a mutating request's status and error message.
type changeWriter struct {
	http.ResponseWriter
	code int
	body []byte // the start of an error answer
}

func (cw *changeWriter) WriteHeader(code int) { cw.code = code; cw.ResponseWriter.WriteHeader(code) }

func (cw *changeWriter) Write(b []byte) (int, error) {
	if cw.code >= 400 && len(cw.body) < 2048 {
		cw.body = append(cw.body, b[:min(len(b), 2048-len(cw.body))]...)
	}
	return cw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (cw *changeWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// logChanges logs each mutating request h serves in the change log.
func (a *api) logChanges(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			h.ServeHTTP(w, r)
			return
		}
		slot := &changeSlot{}
		r = r.WithContext(context.WithValue(r.Context(), changeSlotKey{}, slot))
		cw := &changeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		a.settle(r, slot, cw)
	})
}

// settle appends r's entry if the handler did not: the change refused or
// failed (nothing changed: after is before), or made outside a database
// transaction.
func (a *api) settle(r *http.Request, slot *changeSlot, cw *changeWriter) {
	if slot.done || (slot.rec != nil && slot.rec.Stored() != nil) || r.Pattern == "" || r.Pattern == "/" {
		return
	}
	if slot.rec == nil {
		a.describe(r, strings.TrimPrefix(r.URL.Path, "/v1/"), nil, "")
	}
	e := slot.rec.Entry
	if e.Op == "" {
		e.Op = "unrecorded " + r.Pattern
	}
	switch {
	case cw.code/100 == 2:
		e.Result = "ok"
		e.After = a.marshalState(slot.state, a.db)
	default:
		var eb errorBody
		_ = json.Unmarshal(cw.body, &eb)
		word := "refused"
		if cw.code >= 500 {
			word = "failed"
		}
		e.Result = fmt.Sprintf("%s (%d): %s", word, cw.code, eb.Error)
		e.After = e.Before
	}
	if _, err := a.db.AppendChange(e); err != nil {
		a.log.Error("change log: append", "op", e.Op, "target", e.Target, "err", err)
	}
}

// --- reading the log, notes, verifying ---

// noteReq comments an entry of the change log.
type noteReq struct {
	Text string `json:"text"`
}

func decodeNote(b []byte) (noteReq, error) {
	var n noteReq
	if err := decodeStrict(b, &n); err != nil {
		return n, err
	}
	if strings.TrimSpace(n.Text) == "" {
		return n, errors.New("text is missing")
	}
	return n, checkText("text", n.Text, 2048)
}

func (a *api) changeRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/audit/changes", a.auditChanges)
	m.HandleFunc("POST /v1/audit/changes/{seq}/notes", a.changeNote)
}

// changeFilter reads a change-log query.
func changeFilter(q url.Values) (site.ChangeFilter, error) {
	var f site.ChangeFilter
	get, err := queryValues(q, "who", "target", "from", "to", "after", "limit")
	if err != nil {
		return f, err
	}
	f.Who, f.Target = get("who"), get("target")
	for _, t := range []struct {
		k string
		p *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := get(t.k); s != "" {
			if *t.p, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return f, fmt.Errorf("%s %q is not an RFC 3339 time", t.k, s)
			}
		}
	}
	if s := get("after"); s != "" {
		if f.After, err = strconv.ParseUint(s, 10, 64); err != nil {
			return f, fmt.Errorf("after %q: want an entry's seq", s)
		}
	}
	f.Limit = maxAuditLimit
	if s := get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 || f.Limit > maxAuditLimit {
			return f, fmt.Errorf("limit %q: want 1 to %d", s, maxAuditLimit)
		}
	}
	return f, nil
}

func (a *api) auditChanges(w http.ResponseWriter, r *http.Request) {
	f, err := changeFilter(r.URL.Query())
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	es, _, err := a.db.Changes(f)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if es == nil {
		es = []site.ChangeEntry{}
	}
	writeJSON(w, http.StatusOK, es)
}

// changeNote appends a note on an entry: an entry of its own, referring
// to it. Nothing else about the log can be changed.
func (a *api) changeNote(w http.ResponseWriter, r *http.Request) {
	seq, err := site.ParseChangeSeq(r.PathValue("seq"))
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	a.describe(r, fmt.Sprintf("entry %d", seq), nil, "")
	req, ok := decodeBody(a, w, r, decodeNote)
	if !ok {
		return
	}
	if es, _, err := a.db.Changes(site.ChangeFilter{After: seq - 1, Limit: 1}); err != nil || len(es) == 0 || es[0].Seq != seq {
		a.failErr(w, r, fmt.Errorf("change-log entry %d: %w", seq, site.ErrNotFound))
		return
	}
	slot := slotOf(r)
	e := slot.rec.Entry
	e.Detail, e.Ref, e.Result = req.Text, seq, "ok"
	got, err := a.db.AppendChange(e)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	slot.done = true
	writeJSON(w, http.StatusCreated, got)
}

// changeLogName is how verifyView names the change log.
const changeLogName = "changes"

// verifyChanges checks the change log's chain.
func (a *api) verifyChanges() (verifyView, error) {
	v, err := a.db.VerifyChanges()
	if err != nil {
		return verifyView{}, err
	}
	return verifyView{Log: changeLogName, OK: v.Bad == 0, Contiguous: v.Entries, Seq: v.Bad, Problem: v.Problem, Head: v.Head}, nil
}

// --- the CLI ---

func cmdAuditChanges(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit changes")
	who := c.fs.String("who", "", "only changes by this account or user")
	target := c.fs.String("target", "", "only changes whose target contains this (a UID, a holder, a door)")
	from := c.fs.String("from", "", "at or after: RFC 3339 time or YYYY-MM-DD (local midnight)")
	to := c.fs.String("to", "", "before: RFC 3339 time or YYYY-MM-DD (local midnight)")
	asCSV := c.fs.Bool("csv", false, "write CSV")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *asCSV && *c.json {
		return usagef("--csv and --json: choose one")
	}
	q := url.Values{}
	for k, v := range map[string]string{"who": *who, "target": *target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]string{"from": *from, "to": *to} {
		t, err := parseWhen("--"+k, v)
		if err != nil {
			return err
		}
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	raw, err := c.client().call(ctx, "GET", "/v1/audit/changes?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	// The answer is indented: before and after go back to their stored,
	// compact bytes, which the hash covers.
	var es []site.ChangeEntry
	if err := json.Unmarshal(raw, &es); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	for i := range es {
		for _, v := range []*json.RawMessage{&es[i].Before, &es[i].After} {
			var buf bytes.Buffer
			if json.Compact(&buf, *v) == nil {
				*v = buf.Bytes()
			}
		}
	}
	if raw, err = json.Marshal(es); err != nil {
		return err
	}
	if *asCSV {
		return writeChangesCSV(e.stdout, es)
	}
	return show(c, raw, func(w io.Writer, es []site.ChangeEntry) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tWHO\tFROM\tOP\tTARGET\tBEFORE → AFTER\tRESULT")
		for _, x := range es {
			op := x.Op
			if x.Ref != 0 {
				op = fmt.Sprintf("%s of #%d", x.Op, x.Ref)
			}
			change := string(x.Before) + " → " + string(x.After)
			if x.Detail != "" {
				change = x.Detail + ": " + change
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Seq, when(x.Time), x.Who, x.From, op, dash(x.Target), change, x.Result)
		}
		tw.Flush()
	})
}

// changesCSVHeader is the CSV form's first row.
var changesCSVHeader = []string{"seq", "time", "who", "role", "from", "op", "target", "detail", "before", "after", "result", "ref", "prev", "hash"}

func writeChangesCSV(w io.Writer, es []site.ChangeEntry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(changesCSVHeader); err != nil {
		return err
	}
	for _, x := range es {
		ref := ""
		if x.Ref != 0 {
			ref = strconv.FormatUint(x.Ref, 10)
		}
		rec := []string{strconv.FormatUint(x.Seq, 10), x.Time.UTC().Format(time.RFC3339Nano), x.Who, x.Role, x.From, x.Op, x.Target,
			x.Detail, string(x.Before), string(x.After), x.Result, ref, x.Prev, x.Hash}
		for i, s := range rec {
			rec[i] = spreadsheetSafe(s)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func cmdAuditNote(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit note")
	pos, err := c.parse(args, 2, "SEQ", "TEXT")
	if err != nil {
		return err
	}
	seq, err := site.ParseChangeSeq(pos[0])
	if err != nil {
		return usagef("SEQ %q: want the number of a change-log entry", pos[0])
	}
	raw, err := c.client().call(ctx, "POST", fmt.Sprintf("/v1/audit/changes/%d/notes", seq), noteReq{Text: pos[1]})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, x site.ChangeEntry) {
		fmt.Fprintf(w, "note #%d added to entry #%d\n", x.Seq, x.Ref)
	})
}

// commandDetail says what a command does, for its entry.
func commandDetail(c mqtt.Command) string {
	switch {
	case c.Action == mqtt.ActionUnlock:
		return fmt.Sprintf("unlock for %v", time.Duration(c.DurationMS)*time.Millisecond)
	case c.On != nil && *c.On:
		return "lockdown on"
	case c.On != nil:
		return "lockdown off"
	}
	return string(c.Action)
}

// keyState is the site key in use, for a rotation's entry.
func (a *api) keyState(records) (any, error) {
	if a.keys == nil {
		return nil, nil
	}
	a.keys.mu.Lock()
	defer a.keys.mu.Unlock()
	return map[string]string{"kid": a.keys.key.Kid}, nil
}

// verifiedName names what a verifyView checked: a door (with what, the
// word door), or the change log.
func verifiedName(v verifyView, what bool) string {
	switch {
	case v.Log != "":
		return "change log"
	case what:
		return "door " + v.Door
	}
	return v.Door
}
