package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Recertification campaigns (docs/access.md): an admin starts the review
// of a door group for its owner, a console account; the owner (or an
// admin) keeps or removes each holder who could open a door of the group,
// with a comment; a removal withdraws the holder's cards from the group
// at once, a normal committed change the doors get as deltas; completing
// the review freezes it. Each of these is one change-log entry.
//
//	GET  /v1/reviews                              []reviewView
//	POST /v1/reviews                              reviewStartReq → reviewView
//	GET  /v1/reviews/{id}                         reviewView
//	POST /v1/reviews/{id}/decisions               decideReq → decideResult
//	POST /v1/reviews/{id}/complete                reviewView
//	GET  /v1/reviews/{id}/evidence?format=json|csv   the signed evidence file (evidence.go)
func (a *api) reviewRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/reviews", a.reviewList)
	m.HandleFunc("POST /v1/reviews", a.reviewStart)
	m.HandleFunc("GET /v1/reviews/{id}", a.reviewShow)
	m.HandleFunc("POST /v1/reviews/{id}/decisions", a.reviewDecide)
	m.HandleFunc("POST /v1/reviews/{id}/complete", a.reviewComplete)
	m.HandleFunc("GET /v1/reviews/{id}/evidence", a.reviewEvidence)
}

// reviewView is a review as the API shows it.
type reviewView struct {
	site.Review
	Undecided int  `json:"undecided"`
	Overdue   bool `json:"overdue,omitempty"` // past its due date and not completed
}

func (a *api) reviewView(rv site.Review) reviewView {
	return reviewView{Review: rv, Undecided: rv.Undecided(), Overdue: !rv.Done() && !rv.Due.IsZero() && a.now().After(rv.Due)}
}

// reviewStartReq starts a review.
type reviewStartReq struct {
	Group string    `json:"group"`
	Owner string    `json:"owner"`
	Due   time.Time `json:"due,omitzero"`
}

// decideReq keeps or removes one holder.
type decideReq struct {
	Holder   string        `json:"holder"`
	Decision site.Decision `json:"decision"`
	Comment  string        `json:"comment"`
}

// decideResult is the holder's entry after a decision, and the change a
// removal committed (Seq 0: there was nothing left to change).
type decideResult struct {
	Holder site.ReviewHolder `json:"holder"`
	changeResult
}

func decodeReviewStart(b []byte) (reviewStartReq, error) {
	var r reviewStartReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := mqtt.CheckID("group", r.Group); err != nil {
		return r, err
	}
	if err := site.CheckUserName(r.Owner); err != nil {
		return r, unprefix(err, site.ErrInvalid.Error()+": ")
	}
	return r, nil
}

func decodeDecide(b []byte) (decideReq, error) {
	var r decideReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	switch {
	case r.Holder == "":
		return r, errors.New("holder is missing")
	case r.Decision != site.DecisionKeep && r.Decision != site.DecisionRemove:
		return r, fmt.Errorf("decision %q: want keep or remove", r.Decision)
	case strings.TrimSpace(r.Comment) == "":
		return r, errors.New("comment is missing: say why")
	}
	if err := checkText("holder", r.Holder, 256); err != nil {
		return r, err
	}
	return r, checkText("comment", r.Comment, 2048)
}

// reviewRecords reads a review, from the database or a change's own
// transaction.
type reviewRecords interface {
	Review(id uint64) (site.Review, error)
}

var _, _ reviewRecords = (*site.DB)(nil), (*site.Reader)(nil)

// reviewState is the whole review, for its start and its completion.
func reviewState(id uint64) recordState {
	return func(src records) (any, error) {
		rv, err := src.(reviewRecords).Review(id)
		return absent(rv, err)
	}
}

// reviewHolderState is one holder's entry and their cards, for a
// decision.
func reviewHolderState(id uint64, holder string) recordState {
	return func(src records) (any, error) {
		rv, err := src.(reviewRecords).Review(id)
		if err != nil {
			return absent(rv, err)
		}
		h := rv.Holder(holder)
		if h == nil {
			return nil, nil
		}
		var cards []any
		for _, c := range h.Cards {
			uid, err := parseUID(c.UID)
			if err != nil {
				return nil, err
			}
			v, err := cardState(uid)(src)
			if err != nil {
				return nil, err
			}
			cards = append(cards, v)
		}
		return map[string]any{"review": id, "group": rv.Group, "holder": h, "cards": cards}, nil
	}
}

// reviewID reads the path's review id, or answers 400.
func (a *api) reviewID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		a.failErr(w, r, badRequest(fmt.Errorf("review %q: want a review's number", r.PathValue("id"))))
		return 0, false
	}
	return id, true
}

// reviewAllowed says whether r's maker may decide on, or complete, rv:
// its owner, an admin account, or an admin on the socket.
func reviewAllowed(r *http.Request, rv *site.Review) error {
	who, role, from := changeSource(r)
	if from == "socket" || role == string(site.RoleAdmin) || who == rv.Owner {
		return nil
	}
	return fmt.Errorf("review %d is %s's to decide: your account (%s) is neither its owner nor an admin", rv.ID, rv.Owner, who)
}

// reviewToDecide returns review id if r's maker may decide on it, or
// answers why not.
func (a *api) reviewToDecide(w http.ResponseWriter, r *http.Request, id uint64) (site.Review, bool) {
	rv, err := a.db.Review(id)
	if err != nil {
		a.failErr(w, r, err)
		return rv, false
	}
	if err := reviewAllowed(r, &rv); err != nil {
		a.fail(w, r, http.StatusForbidden, err)
		return rv, false
	}
	return rv, true
}

func (a *api) reviewList(w http.ResponseWriter, r *http.Request) {
	rs, err := a.db.ListReviews()
	listViews(a, w, r, rs, err, func(rv site.Review) (reviewView, error) { return a.reviewView(rv), nil })
}

func (a *api) reviewShow(w http.ResponseWriter, r *http.Request) {
	id, ok := a.reviewID(w, r)
	if !ok {
		return
	}
	rv, err := a.db.Review(id)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.reviewView(rv))
}

func (a *api) reviewStart(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeReviewStart)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	id, err := a.db.NextReviewID()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.describe(r, fmt.Sprintf("review %d", id), reviewState(id), fmt.Sprintf("group %s, owner %s", req.Group, req.Owner))
	u, err := a.db.User(req.Owner)
	switch {
	case errors.Is(err, site.ErrNotFound):
		err = badRequest(fmt.Errorf("owner %q is not a console account", req.Owner))
	case err == nil && u.Disabled:
		err = badRequest(fmt.Errorf("owner %q is a disabled account", req.Owner))
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	q, err := a.accessQuery(url.Values{})
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	holders, doors, seq, err := a.site.GroupHolders(req.Group, q)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	who, _, _ := changeSource(r)
	rv := site.Review{ID: id, Group: req.Group, Owner: req.Owner, Doors: doors, Due: req.Due.UTC(), Started: a.now().UTC(),
		StartedBy: who, Seq: seq, Holders: holders}
	if err := a.dbFor(r).AddReview(rv); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("review started", "review", id, "group", req.Group, "owner", req.Owner, "holders", len(holders), "by", who)
	writeJSON(w, http.StatusCreated, a.reviewView(rv))
}

// reviewDecide keeps or removes a holder. A removal and its decision are
// one transaction with the change-log entry: the cards' new door lists
// (mqttsite.WithdrawGroup) are committed, and sent to the doors, with the
// review's update.
func (a *api) reviewDecide(w http.ResponseWriter, r *http.Request) {
	id, ok := a.reviewID(w, r)
	if !ok {
		return
	}
	req, ok := decodeBody(a, w, r, decodeDecide)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, fmt.Sprintf("review %d", id), reviewHolderState(id, req.Holder), fmt.Sprintf("%s holder %s: %s", req.Decision, req.Holder, req.Comment))
	rv, ok := a.reviewToDecide(w, r, id)
	if !ok {
		return
	}
	if _, err := rv.CheckDecision(req.Holder); err != nil {
		a.failErr(w, r, err)
		return
	}
	who, _, _ := changeSource(r)
	at := a.now()
	decide := func(x *site.Review, seq uint64) error {
		return x.Decide(req.Holder, req.Decision, req.Comment, who, at, seq)
	}
	var res decideResult
	var ops []store.Op
	var err error
	if req.Decision == site.DecisionRemove {
		if ops, err = a.site.WithdrawGroup(req.Holder, rv.Group); err != nil {
			a.failErr(w, r, err)
			return
		}
	}
	rec := a.recording(r)
	switch {
	case len(ops) == 0:
		err = a.dbFor(r).UpdateReview(id, func(x *site.Review, _ uint64) error { return decide(x, 0) })
	case rec == nil:
		err = errors.New("review decide: no change-log record")
	default:
		rec.UpdatingReview(id, decide)
		res.changeResult, err = a.commitOps(r, ops...)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if rv, err = a.db.Review(id); err != nil {
		a.failErr(w, r, err)
		return
	}
	res.Holder = *rv.Holder(req.Holder)
	a.log.Info("review decision", "review", id, "holder", req.Holder, "decision", req.Decision, "change", res.Seq, "by", who)
	writeJSON(w, http.StatusOK, res)
}

func (a *api) reviewComplete(w http.ResponseWriter, r *http.Request) {
	id, ok := a.reviewID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, fmt.Sprintf("review %d", id), reviewState(id), "complete")
	if _, ok := a.reviewToDecide(w, r, id); !ok {
		return
	}
	who, _, _ := changeSource(r)
	at := a.now()
	if err := a.dbFor(r).UpdateReview(id, func(x *site.Review, _ uint64) error { return x.Complete(who, at) }); err != nil {
		a.failErr(w, r, err)
		return
	}
	rv, err := a.db.Review(id)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("review completed", "review", id, "by", who)
	writeJSON(w, http.StatusOK, a.reviewView(rv))
}

// --- the CLI ---

func cmdReviewStart(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "review start")
	group := c.fs.String("group", "", "the door group to review")
	owner := c.fs.String("owner", "", "the console account that decides")
	due := c.fs.String("due", "", "due date: RFC 3339 time or YYYY-MM-DD (local midnight)")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *group == "" || *owner == "" {
		return usagef("--group and --owner are required")
	}
	t, err := parseWhen("--due", *due)
	if err != nil {
		return err
	}
	raw, err := c.client().call(ctx, "POST", "/v1/reviews", reviewStartReq{Group: *group, Owner: *owner, Due: t})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, v reviewView) {
		fmt.Fprintf(w, "review %d of group %s started: %d holders for %s to decide\n", v.ID, v.Group, len(v.Holders), v.Owner)
	})
}

func cmdReviewList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "review list", "/v1/reviews", func(w io.Writer, vs []reviewView) {
		fmt.Fprintln(w, "ID\tGROUP\tOWNER\tSTARTED\tDUE\tHOLDERS\tUNDECIDED\tCOMPLETED")
		for _, v := range vs {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", v.ID, v.Group, v.Owner, when(v.Started), reviewDue(v), len(v.Holders), v.Undecided, when(v.Completed))
		}
	})
}

func reviewDue(v reviewView) string {
	if v.Overdue {
		return when(v.Due) + " (overdue)"
	}
	return when(v.Due)
}

// reviewArg parses args for a command whose one argument is a review id.
func reviewArg(c *clientCmd, args []string) (uint64, error) {
	pos, err := c.parse(args, 1, "ID")
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("ID %q: want a review's number", pos[0])
	}
	return id, nil
}

// reviewCall runs a command whose one argument is a review id: method on
// the review's path plus suffix, no body.
func reviewCall(ctx context.Context, e *env, name, method, suffix string, args []string) (*clientCmd, json.RawMessage, error) {
	c := newClientCmd(e, name)
	id, err := reviewArg(c, args)
	if err != nil {
		return nil, nil, err
	}
	raw, err := c.client().call(ctx, method, fmt.Sprintf("/v1/reviews/%d%s", id, suffix), nil)
	return c, raw, err
}

func cmdReviewShow(ctx context.Context, e *env, args []string) error {
	c, raw, err := reviewCall(ctx, e, "review show", "GET", "", args)
	if err != nil {
		return err
	}
	return show(c, raw, reviewTable)
}

func reviewTable(w io.Writer, v reviewView) {
	state := "open"
	if v.Done() {
		state = fmt.Sprintf("completed %s by %s", when(v.Completed), v.CompletedBy)
	}
	fmt.Fprintf(w, "review %d of group %s (doors %s), owner %s: %s\n", v.ID, v.Group, strings.Join(v.Doors, ","), v.Owner, state)
	fmt.Fprintf(w, "started %s by %s at change %d; due %s; %d of %d undecided\n", when(v.Started), v.StartedBy, v.Seq, reviewDue(v), v.Undecided, len(v.Holders))
	fmt.Fprintln(w, "HOLDER\tNAME\tCARDS\tDECISION\tCOMMENT\tBY\tAT\tCHANGE")
	for _, h := range v.Holders {
		var cards []string
		for _, c := range h.Cards {
			cards = append(cards, c.UID)
		}
		change := "-"
		if h.Change != 0 {
			change = strconv.FormatUint(h.Change, 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Holder, dash(h.Name), strings.Join(cards, ","), dash(string(h.Decision)),
			dash(h.Comment), dash(h.DecidedBy), when(h.DecidedAt), change)
	}
}

func cmdReviewDecide(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "review decide")
	holder := c.fs.String("holder", "", "the holder")
	keep := c.fs.Bool("keep", false, "keep the holder's access")
	remove := c.fs.Bool("remove", false, "remove the holder's access through the group")
	comment := c.fs.String("comment", "", "why (required)")
	id, err := reviewArg(c, args)
	if err != nil {
		return err
	}
	if *holder == "" || *keep == *remove {
		return usagef("want --holder and one of --keep and --remove")
	}
	d := site.DecisionKeep
	if *remove {
		d = site.DecisionRemove
	}
	raw, err := c.client().call(ctx, "POST", fmt.Sprintf("/v1/reviews/%d/decisions", id), decideReq{Holder: *holder, Decision: d, Comment: *comment})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, res decideResult) {
		fmt.Fprintf(w, "review %d: %s %s", id, res.Holder.Decision, res.Holder.Holder)
		if res.Seq != 0 {
			fmt.Fprintf(w, " (change %d)", res.Seq)
		}
		fmt.Fprintln(w)
		if res.Warning != "" {
			fmt.Fprintln(w, "warning:", res.Warning)
		}
	})
}

func cmdReviewComplete(ctx context.Context, e *env, args []string) error {
	c, raw, err := reviewCall(ctx, e, "review complete", "POST", "/complete", args)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, v reviewView) {
		fmt.Fprintf(w, "review %d completed: no further decision is accepted\n", v.ID)
	})
}

func cmdReviewExport(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "review export")
	format := c.fs.String("format", "json", "json or csv")
	out := c.fs.String("o", "", "the evidence file to write (required)")
	id, err := reviewArg(c, args)
	if err != nil {
		return err
	}
	if *format != "json" && *format != "csv" {
		return usagef("--format %q: want json or csv", *format)
	}
	if *out == "" {
		return usagef("-o FILE is required")
	}
	resp, err := c.client().request(ctx, "GET", fmt.Sprintf("/v1/reviews/%d/evidence?format=%s", id, *format), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxEvidence+1))
	if err != nil {
		return fmt.Errorf("latch service: read the evidence: %w", err)
	}
	if err := os.WriteFile(*out, b, 0o600); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	fmt.Fprintf(e.stdout, "review %d: evidence written to %s (%d bytes)\n", id, *out, len(b))
	return nil
}
