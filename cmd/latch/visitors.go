package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Visitors: a host asks for a visitor's access for a window; the visitor
// is a holder with one credential, a card (card only: a visitor has no
// PIN) or a keypad code the site makes (store.CodeKey: a visitor's PIN,
// typed without a card at doors in card-or-PIN mode, shown once in the
// answer and stored only as its key), whose ValidFrom and ValidUntil are
// the window, so that every door refuses it
// outside the window by itself, online or not. The site keeps a visitor
// record beside it (store/site's Visitor) and, as latch serve stores the
// doors' events, counts the visitor's granted uses (TallyVisits): the
// first badge-in is logged and raises the notification event
// visitor_arrived; a visitor's last allowed use revokes the credential,
// one change-log entry by latch serve with the reason "uses spent". See
// docs/visitors.md.
//
//	GET  /v1/visitors                 []site.Visitor
//	POST /v1/visitors                 visitorAddReq → visitorResult
//	POST /v1/visitors/{holder}/end    → visitorResult

// visitorAddReq is POST /v1/visitors.
type visitorAddReq struct {
	Holder string    `json:"holder"`         // the visitor's holder id: a new holder
	Name   string    `json:"name,omitempty"` // the visitor's name
	Host   string    `json:"host"`           // who the visitor visits: an account or a holder id
	From   time.Time `json:"from"`           // the window's start
	Until  time.Time `json:"until"`          // its end
	Doors  []string  `json:"doors"`          // door ids or group names
	Uses   int       `json:"uses,omitempty"` // granted uses allowed; 0: any within the window
	UID    string    `json:"uid,omitempty"`  // the visitor's card, hex; or
	Code   int       `json:"code,omitempty"` // a keypad code of this many digits (6 to 12) that the site makes; or
	visitorTapReq
}

// visitorAdd is a checked visitorAddReq.
type visitorAdd struct {
	visitorAddReq
	uid []byte
}

func decodeVisitorAdd(b []byte) (visitorAdd, error) {
	var r visitorAdd
	if err := decodeStrict(b, &r.visitorAddReq); err != nil {
		return r, err
	}
	switch {
	case r.Holder == "":
		return r, errors.New("holder is missing")
	case strings.TrimSpace(r.Host) == "":
		return r, errors.New("host is missing")
	case r.From.IsZero() || r.Until.IsZero() || !r.From.Before(r.Until):
		return r, errors.New("from and until: want a window, its start before its end")
	case len(r.Doors) == 0:
		return r, errors.New("doors is missing")
	case r.Uses < 0:
		return r, fmt.Errorf("uses %d: want 0 (any) or more", r.Uses)
	}
	for _, t := range []struct{ k, v string }{{"name", r.Name}, {"host", r.Host}} {
		if err := checkText(t.k, t.v, 255); err != nil {
			return r, err
		}
	}
	switch {
	case r.Code != 0 && (r.UID != "" || r.EnrollDoor != "" || r.EnrollWaitS != 0):
		return r, errors.New("code: a visitor has a card (uid or enroll_door) or a keypad code, not both")
	case r.Code != 0 && (r.Code < minCodeDigits || r.Code > maxCodeDigits):
		return r, fmt.Errorf("code %d: want %d to %d digits", r.Code, minCodeDigits, maxCodeDigits)
	case r.Code != 0:
		return r, nil
	}
	if err := r.card(); err != nil {
		return r, err
	}
	if store.IsCodeKey(r.uid) {
		return r, fmt.Errorf("uid %s: %d bytes is a keypad code's key; ask for a code instead", r.UID, store.CodeKeyLen)
	}
	return r, nil
}

// The length of a visitor's keypad code.
const (
	minCodeDigits     = 6
	maxCodeDigits     = 12
	defaultCodeDigits = 8
)

// newCode makes a random keypad code of n digits, none that a guesser
// tries first (one digit repeated, or a run up or down such as 123456).
func newCode(n int) ([]byte, error) {
	for {
		code := make([]byte, n)
		for i := range code {
			d, err := rand.Int(rand.Reader, big.NewInt(10))
			if err != nil {
				return nil, fmt.Errorf("make a keypad code: %w", err)
			}
			code[i] = '0' + byte(d.Int64())
		}
		if !guessable(code) {
			return code, nil
		}
	}
}

// guessable says whether every digit of code is the one before it plus
// the same step of -1, 0 or 1 (mod 10): 111111, 123456, 987654, 890123.
func guessable(code []byte) bool {
	for _, step := range []int{-1, 0, 1} {
		run := true
		for i := 1; i < len(code) && run; i++ {
			run = (int(code[i]-'0')-int(code[i-1]-'0')-step+20)%10 == 0
		}
		if run {
			return true
		}
	}
	return false
}

// visitorResult answers a visitor's add or end: the change and the
// record after it.
type visitorResult struct {
	changeResult
	Visitor site.Visitor `json:"visitor"`
	UID     string       `json:"uid,omitempty"` // add: the visitor's card
	// Code is the visitor's keypad code, in the answer to its add only:
	// the site keeps its key alone, so it is never shown again.
	Code string `json:"code,omitempty"`
}

// visitorReader reads a visitor record: the database, or a change's
// transaction.
type visitorReader interface {
	Visitor(holder string) (site.Visitor, error)
}

func visitorState(holder string) recordState {
	return func(src records) (any, error) {
		vr, ok := src.(visitorReader)
		if !ok {
			return nil, nil
		}
		return absent(vr.Visitor(holder))
	}
}

func (a *api) visitorRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/visitors", a.visitorList)
	m.HandleFunc("POST /v1/visitors", a.visitorAdd)
	m.HandleFunc("POST /v1/visitors/{holder}/end", a.visitorEnd)
}

func (a *api) visitorList(w http.ResponseWriter, r *http.Request) {
	vs, err := a.db.Visitors()
	listViews(a, w, r, vs, err, func(v site.Visitor) (site.Visitor, error) { return v, nil })
}

// visitorAdd adds the visitor's holder and card and its record, one
// change.
func (a *api) visitorAdd(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeVisitorAdd)
	if !ok || (req.EnrollDoor != "" && !a.visitorTap(w, r, &req)) {
		return
	}
	var code []byte
	if req.Code != 0 {
		var err error
		if code, req.uid, err = a.freeCode(req.Code); err != nil {
			a.failErr(w, r, err)
			return
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cred := fmt.Sprintf("card %X", req.uid)
	if code != nil {
		cred = fmt.Sprintf("keypad code of %d digits", len(code))
	}
	a.describe(r, "visitor "+req.Holder, visitorState(req.Holder),
		fmt.Sprintf("%s, host %s, %s to %s", cred, req.Host, req.From.UTC().Format(time.RFC3339), req.Until.UTC().Format(time.RFC3339)))
	if !req.Until.After(a.now()) {
		a.failErr(w, r, badRequest(fmt.Errorf("until %s: the window is over", req.Until.Format(time.RFC3339))))
		return
	}
	if _, err := a.db.Holder(req.Holder); err == nil {
		a.failErr(w, r, fmt.Errorf("holder %q: %w", req.Holder, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, err)
		return
	}
	if err := a.cardFree(req.uid); err != nil {
		a.failErr(w, r, err)
		return
	}
	who, _, _ := changeSource(r)
	v := site.Visitor{Holder: req.Holder, Name: req.Name, Host: req.Host, From: req.From.UTC(), Until: req.Until.UTC(),
		Doors: req.Doors, Uses: req.Uses, Code: code != nil, Added: a.now().UTC(), AddedBy: who}
	rec := a.recording(r)
	if rec == nil {
		a.failErr(w, r, errors.New("visitor add: no change-log entry to record it"))
		return
	}
	if err := rec.PuttingVisitor(v); err != nil {
		a.failErr(w, r, err)
		return
	}
	res, err := a.commitOps(r,
		store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: req.Holder, Name: req.Name}},
		store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: req.uid, HolderID: req.Holder, Doors: req.Doors,
			ValidFrom: v.From, ValidUntil: v.Until, Flags: store.Flags{CardOnly: code == nil}}})
	if err == nil && code != nil {
		res.Warning = joinWarnings(res.Warning, a.codeModeWarning(req.Doors))
	}
	var card []byte
	if code == nil {
		card = req.uid
	}
	a.answerVisitor(w, r, http.StatusCreated, req.Holder, card, res, err, string(code))
}

// codeModeWarning names the doors a keypad code is meant to open whose
// last status reports a mode other than card-or-pin, where no code is
// typed without a card; "" when there are none.
func (a *api) codeModeWarning(opens []string) string {
	ds, err := a.db.ListDoors()
	if err != nil {
		return "the doors' modes could not be read: " + err.Error()
	}
	var off []string
	for _, d := range ds {
		if !slices.ContainsFunc(opens, func(o string) bool { return o == "*" || o == d.ID || slices.Contains(d.Groups, o) }) {
			continue
		}
		var st mqtt.Status
		if json.Unmarshal(d.Status, &st) == nil && st.Mode != "" && st.Mode != store.ModeCardOrPIN {
			off = append(off, fmt.Sprintf("%s (%s)", d.ID, st.Mode))
		}
	}
	if len(off) == 0 {
		return ""
	}
	return "a keypad code opens only doors in card-or-pin mode, and these report another: " + strings.Join(off, ", ")
}

// joinWarnings joins two warnings of an answer, either of them "".
func joinWarnings(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// freeCode makes a keypad code of n digits whose key no card or code at
// the site has, and returns it with its key. A code's key takes one
// derivation of 32 MiB, so it runs before the caller takes a.mu.
func (a *api) freeCode(n int) (code, key []byte, err error) {
	for range 8 {
		if code, err = newCode(n); err != nil {
			return nil, nil, err
		}
		if key, err = store.CodeKey(code); err != nil {
			return nil, nil, err
		}
		if err = a.cardFree(key); !errors.Is(err, errExists) {
			return code, key, err
		}
	}
	return nil, nil, fmt.Errorf("no free keypad code of %d digits in 8 tries: %w", n, errExists)
}

// visitorEnd ends a visit now: its credential is revoked.
func (a *api) visitorEnd(w http.ResponseWriter, r *http.Request) {
	holder := r.PathValue("holder")
	a.mu.Lock()
	defer a.mu.Unlock()
	who, _, _ := changeSource(r)
	reason := "visit ended by " + who
	a.describe(r, "visitor "+holder, visitorState(holder), reason)
	ops, err := a.visitEndOps(holder, reason)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	rec := a.recording(r)
	if rec == nil {
		a.failErr(w, r, errors.New("visitor end: no change-log entry to record it"))
		return
	}
	rec.EndingVisitor(holder, reason, a.now().UTC())
	res, err := a.commitOps(r, ops...)
	a.answerVisitor(w, r, http.StatusOK, holder, nil, res, err, "")
}

// answerVisitor answers a visitor's change with its record and, for a
// new card, its UID, or, for a new keypad code, the code.
func (a *api) answerVisitor(w http.ResponseWriter, r *http.Request, code int, holder string, uid []byte, res changeResult, err error, keypad string) {
	var v site.Visitor
	if err == nil {
		v, err = a.db.Visitor(holder)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	vr := visitorResult{changeResult: res, Visitor: v, Code: keypad}
	if uid != nil {
		vr.UID = fmt.Sprintf("%X", uid)
	}
	writeJSON(w, code, vr)
}

// visitEndOps are the operations that end holder's visit: the
// revocation of each of the visitor's cards (of the holder, if it has
// none left), for reason. It refuses a visit that is not there or is
// over. The caller holds a.mu.
func (a *api) visitEndOps(holder, reason string) ([]store.Op, error) {
	v, err := a.db.Visitor(holder)
	if err != nil {
		return nil, err
	}
	if !v.Ended.IsZero() {
		return nil, fmt.Errorf("visitor %q: %w (%s)", holder, site.ErrConflict, v.EndReason)
	}
	uids, err := a.db.CardsOf(holder)
	if err != nil {
		return nil, err
	}
	var ops []store.Op
	for _, uid := range uids {
		ops = append(ops, store.Op{Kind: store.OpRevokeCard, UID: uid, Reason: reason})
	}
	if len(ops) == 0 {
		ops = append(ops, store.Op{Kind: store.OpRevokeHolder, HolderID: holder, Reason: reason})
	}
	return ops, nil
}

// --- in latch serve ---

// visitedEvent is the notification rules' event of a visitor's first
// badge-in.
const visitedEvent = "visitor_arrived"

// siteActor is who the change log names for what latch serve does on
// its own.
const siteActor = "latch serve"

// reasonUsesSpent is why latch serve ends a visit whose uses are spent.
const reasonUsesSpent = "uses spent"

// visitWatch counts visitors' uses from the events latch serve stores:
// it logs and notifies a first badge-in and ends a visit whose uses are
// spent.
type visitWatch struct {
	a      *api
	log    *slog.Logger
	notify func(site.Visitor) // a first badge-in; nil: no notification rules
	retry  bool               // an end failed: look for spent visits at the next pass
}

func newVisitWatch(a *api, log *slog.Logger, notify func(site.Visitor)) *visitWatch {
	return &visitWatch{a: a, log: log.With("part", "visitors"), notify: notify}
}

// visitRetryEvery is how often a visit whose end failed is tried again.
const visitRetryEvery = 5 * time.Second

// run counts each time events are stored (a signal on stored), and
// every visitRetryEvery, until ctx ends.
func (vw *visitWatch) run(ctx context.Context, stored func() <-chan struct{}) {
	t := time.NewTicker(visitRetryEvery)
	defer t.Stop()
	for {
		wake := stored()
		vw.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// pass counts the events stored since the last pass, then ends every
// visit whose uses are spent and that is not ended yet.
func (vw *visitWatch) pass(ctx context.Context) {
	news, err := vw.a.db.TallyVisits()
	if err != nil {
		vw.log.Error("count visits", "err", err)
		return
	}
	spent := vw.retry
	vw.retry = false
	for _, n := range news {
		v := n.Visitor
		if n.First {
			vw.log.Info("visitor arrived", "visitor", v.Holder, "name", v.Name, "host", v.Host, "door", v.FirstDoor, "at", v.FirstSeen)
			if vw.notify != nil {
				vw.notify(v)
			}
		}
		spent = spent || n.Spent
	}
	if !spent {
		return
	}
	vs, err := vw.a.db.Visitors()
	if err != nil {
		vw.log.Error("read visitors", "err", err)
		return
	}
	for _, v := range vs {
		if v.Uses > 0 && v.Used >= v.Uses && v.Ended.IsZero() {
			vw.end(ctx, v)
		}
	}
}

// end revokes a spent visitor's credential, one change of latch serve's.
func (vw *visitWatch) end(ctx context.Context, v site.Visitor) {
	a := vw.a
	a.mu.Lock()
	defer a.mu.Unlock()
	ops, err := a.visitEndOps(v.Holder, reasonUsesSpent)
	if err != nil {
		vw.log.Error("end a spent visit", "visitor", v.Holder, "err", err)
		vw.retry = !errors.Is(err, site.ErrConflict) && !errors.Is(err, site.ErrNotFound)
		return
	}
	now := a.now().UTC()
	st := visitorState(v.Holder)
	rec := &site.ChangeRecord{Entry: site.ChangeEntry{Time: now, Who: siteActor, From: "site", Op: "visitor end",
		Target: "visitor " + v.Holder, Detail: reasonUsesSpent, Result: "ok"}}
	rec.Before = func(r *site.Reader) (json.RawMessage, error) { return marshalState(st, r) }
	rec.After = rec.Before
	rec.EndingVisitor(v.Holder, reasonUsesSpent, now)
	var seq uint64
	if a.online {
		seq, err = a.site.Recording(rec).Publish(ctx, siteActor, ops...)
	} else {
		seq, err = a.site.Recording(rec).Commit(siteActor, ops...)
	}
	switch {
	case seq == 0:
		vw.log.Error("end a spent visit", "visitor", v.Holder, "err", err)
		vw.retry = true
	case err != nil:
		vw.log.Warn("visit ended, its revocation not sent to every door yet", "visitor", v.Holder, "seq", seq, "err", err)
	default:
		vw.log.Info("visit ended", "visitor", v.Holder, "reason", reasonUsesSpent, "uses", v.Uses, "seq", seq)
	}
}

// visitorNotify is what notifies a visitor's first badge-in: nil
// without a notifier.
func (e *alarmEngine) visitorNotify() func(site.Visitor) {
	if e.notifier == nil {
		return nil
	}
	return e.notifier.visitor
}

// visitor notifies the rules on the event visitor_arrived of a
// visitor's first badge-in, at its door.
func (n *notifier) visitor(v site.Visitor) {
	now, rules := n.now(), n.current()
	for ri := range rules {
		r := &rules[ri]
		if slices.Contains(r.Events, visitedEvent) && r.door(v.FirstDoor) && r.at(now) {
			n.enqueue(r, &notification{What: "visitor arrived", Door: v.FirstDoor, Visitor: &v,
				Message: fmt.Sprintf("visitor %s (%s) for host %s arrived at door %s at %s", v.Holder, v.Name, v.Host, v.FirstDoor,
					v.FirstSeen.UTC().Format(time.RFC3339))})
		}
	}
}

// --- the CLI ---

func cmdVisitorAdd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "visitor add")
	host := c.fs.String("host", "", "who the visitor visits: an account or a holder id (required); the visitor_arrived notification names it")
	from := c.fs.String("from", "", "the window's start: RFC 3339 time or YYYY-MM-DD (default: now)")
	until := c.fs.String("until", "", "the window's end: RFC 3339 time or YYYY-MM-DD (required)")
	doors := c.fs.String("doors", "", "the doors or groups the card opens, comma-separated (required)")
	uses := c.fs.Int("uses", 0, "granted uses allowed; once the site has collected them, the card is revoked (0: any within the window)")
	uid := c.fs.String("uid", "", "the visitor's card UID in hex (or --enroll-door, or --pin)")
	tap := visitorTapFlags(c.fs)
	pin := c.fs.Bool("pin", false, "give the visitor a keypad code instead of a card: the site makes it and prints it once; it opens doors in card-or-pin mode")
	pinDigits := c.fs.Int("pin-digits", defaultCodeDigits, fmt.Sprintf("with --pin: the code's digits (%d to %d)", minCodeDigits, maxCodeDigits))
	name := c.fs.String("name", "", "the visitor's full name (default: NAME)")
	pos, err := c.parse(args, 1, "NAME")
	if err != nil {
		return err
	}
	if *host == "" || *until == "" || *doors == "" {
		return usagef("--host, --until and --doors are required")
	}
	req := visitorAddReq{Holder: pos[0], Name: *name, Host: *host, Doors: strings.Split(*doors, ","), Uses: *uses}
	switch {
	case *pin && (*uid != "" || *tap.door != ""):
		return usagef("--pin with --uid or --enroll-door: a visitor has a card or a keypad code, not both")
	case *pin:
		req.Code = *pinDigits
	default:
		if err := tap.card(&req, *uid); err != nil {
			return err
		}
	}
	if req.Name == "" {
		req.Name = pos[0]
	}
	if req.From, err = parseWhen("--from", *from); err != nil {
		return err
	}
	if req.From.IsZero() {
		req.From = time.Now()
	}
	if req.Until, err = parseWhen("--until", *until); err != nil {
		return err
	}
	tap.waiting(e, req)
	raw, err := c.client().call(ctx, "POST", "/v1/visitors", req)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, r visitorResult) {
		cred := "card " + r.UID
		if r.Code != "" {
			cred = "keypad code " + r.Code + " (shown this once: give it to the visitor; it opens doors in card-or-pin mode)"
		}
		fmt.Fprintf(w, "visitor %s added for %s, %s, %s to %s (change %d)\n", r.Visitor.Holder, r.Visitor.Host, cred,
			when(r.Visitor.From), when(r.Visitor.Until), r.Seq)
	})
}

func cmdVisitorList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "visitor list", "/v1/visitors", func(w io.Writer, vs []site.Visitor) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VISITOR\tNAME\tHOST\tCREDENTIAL\tFROM\tUNTIL\tDOORS\tUSED\tFIRST SEEN\tENDED")
		for _, v := range vs {
			used := fmt.Sprint(v.Used)
			if v.Uses > 0 {
				used += fmt.Sprintf("/%d", v.Uses)
			}
			first := when(v.FirstSeen)
			if v.FirstDoor != "" {
				first += " at " + v.FirstDoor
			}
			ended := when(v.Ended)
			if v.EndReason != "" {
				ended += " (" + v.EndReason + ")"
			}
			cred := "card"
			if v.Code {
				cred = "keypad code"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Holder, dash(v.Name), v.Host, cred, when(v.From), when(v.Until),
				strings.Join(v.Doors, ","), used, first, ended)
		}
		tw.Flush()
	})
}

func cmdVisitorEnd(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "visitor end", "NAME", "POST", func(id string) string { return "/v1/visitors/" + id + "/end" }, func(w io.Writer, r visitorResult) {
		cred := "card"
		if r.Visitor.Code {
			cred = "keypad code"
		}
		fmt.Fprintf(w, "visit of %s ended: %s revoked (change %d)\n", r.Visitor.Holder, cred, r.Seq)
	})
}
