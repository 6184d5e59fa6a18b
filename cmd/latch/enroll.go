package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/latchdoor/latch/store"
)

// Enrolment: an admin taps a new badge at a door instead of typing its
// UID. The door refuses the unknown card and its event reaches the site
// with the UID; the service hands the first such UID after the request
// began to the waiting CLI.
//
//	GET  /v1/doors/{id}/enroll?after=CURSOR&wait_s=N   enrollResult, or 408 when nothing was tapped
//	POST /v1/cards/{uid}/replace                       replaceReq → changeResult
const (
	// enrollPoll is how often a waiting enrolment reads the collected
	// events.
	enrollPoll = 200 * time.Millisecond
	// maxEnrollWait bounds one enrolment request.
	maxEnrollWait = 10 * time.Minute
)

// enrollResult is the unknown card tapped at the door.
type enrollResult struct {
	Door   string    `json:"door"`
	UID    string    `json:"uid"`
	At     time.Time `json:"at"`     // the door's time of the tap
	Cursor uint64    `json:"cursor"` // to wait for the next one after it
}

// replaceReq replaces a lost card with a new one for the same holder.
type replaceReq struct {
	NewUID string `json:"new_uid"`
	Reason string `json:"reason"`
}

func decodeReplace(b []byte) (replaceReq, error) {
	var r replaceReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if _, err := parseUID(r.NewUID); err != nil {
		return r, err
	}
	if strings.TrimSpace(r.Reason) == "" {
		return r, errors.New("reason is missing")
	}
	return r, checkText("reason", r.Reason, 255)
}

// enrollQuery reads an enrolment's query: the cursor to start after (none:
// the last event stored now) and how long to wait.
func enrollQuery(q url.Values) (after uint64, fromEnd bool, wait time.Duration, err error) {
	for k, v := range q {
		if k != "after" && k != "wait_s" {
			return 0, false, 0, fmt.Errorf("unknown query parameter %q", k)
		}
		if len(v) != 1 {
			return 0, false, 0, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
	}
	fromEnd = true
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, false, 0, fmt.Errorf("after %q is not a cursor", s)
		}
		fromEnd = false
	}
	wait = time.Minute
	if s := q.Get("wait_s"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || time.Duration(n)*time.Second > maxEnrollWait {
			return 0, false, 0, fmt.Errorf("wait_s %q: want 1 to %d", s, int(maxEnrollWait/time.Second))
		}
		wait = time.Duration(n) * time.Second
	}
	return after, fromEnd, wait, nil
}

func (a *api) doorEnroll(w http.ResponseWriter, r *http.Request) {
	after, fromEnd, wait, err := enrollQuery(r.URL.Query())
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	d, ok := a.door(w, r)
	if !ok {
		return
	}
	if fromEnd {
		if after, err = a.db.ArrivalEnd(); err != nil {
			a.failErr(w, r, err)
			return
		}
	}
	got, code, err := a.waitTap(r, d.ID, after, wait)
	if err != nil {
		a.fail(w, r, code, err)
		return
	}
	writeJSON(w, http.StatusOK, got)
}

// waitTap waits, for request r, up to wait for the first unknown card
// tapped at door after the arrival cursor after. It fails with the
// answer's status: 408 when nothing was tapped in time, 503 when the
// service stops.
func (a *api) waitTap(r *http.Request, door string, after uint64, wait time.Duration) (enrollResult, int, error) {
	// A waiting enrolment ends when the service stops, like a stream.
	fctx, stop := a.streams.follow(r)
	defer stop()
	ctx, cancel := context.WithTimeout(fctx, wait)
	defer cancel()
	t := time.NewTicker(enrollPoll)
	defer t.Stop()
	for {
		evs, next, err := a.db.EventsSince(after, 0, door)
		if err != nil {
			return enrollResult{}, status(err), err
		}
		for _, ev := range evs {
			if ev.Event.Reason == store.ReasonUnknownCard && ev.Event.UID != "" {
				return enrollResult{Door: door, UID: ev.Event.UID, At: ev.Event.Time, Cursor: ev.Cursor}, http.StatusOK, nil
			}
		}
		if next != after {
			after = next
			continue // more to read before waiting
		}
		select {
		case <-ctx.Done():
			if fctx.Err() != nil {
				return enrollResult{}, http.StatusServiceUnavailable, fmt.Errorf("enrolment at door %s: %w", door, context.Cause(fctx))
			}
			return enrollResult{}, http.StatusRequestTimeout, fmt.Errorf("no unknown card was tapped at door %s within %v", door, wait)
		case <-t.C:
		}
	}
}

// cardReplace revokes a card and gives its holder a new one with the same
// doors, validity, schedule and flags, in one change. The PIN is not
// carried over: a PIN hash is bound to its card's UID.
func (a *api) cardReplace(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeReplace)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old, err := a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	uid, _ := parseUID(req.NewUID)
	a.describe(r, fmt.Sprintf("card %X, card %X", old.UID, uid), bothStates(cardState(old.UID), cardState(uid)), req.Reason)
	if err := a.cardFree(uid); err != nil {
		a.failErr(w, r, err)
		return
	}
	nc := old
	nc.UID, nc.PINHash = uid, ""
	a.commit(w, r, http.StatusOK,
		store.Op{Kind: store.OpRevokeCard, UID: old.UID, Reason: req.Reason},
		store.Op{Kind: store.OpUpsertCard, Card: &nc})
}

// cmdEnroll waits for an unknown card tapped at a door and adds it for a
// holder, or with --replace gives it to the holder of a lost card and
// revokes that one.
func cmdEnroll(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "enroll")
	door := c.fs.String("door", "", "the door the card will be tapped at")
	holder := c.fs.String("holder", "", "the holder the new card is for (asked for on a terminal)")
	doors := c.fs.String("doors", "", "door ids or groups it opens, comma-separated (default: the door it was tapped at)")
	replace := c.fs.String("replace", "", "UID of a lost card: revoke it and give its holder the new one, with its doors")
	reason := c.fs.String("reason", "lost card replaced", "with --replace, why, for the audit log")
	timeout := c.fs.Duration("timeout", 2*time.Minute, "how long to wait for the tap")
	yes := c.fs.Bool("yes", false, "add the card without asking")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *door == "" {
		return usagef("--door D is required: the door the card is tapped at")
	}
	if *timeout < time.Second || *timeout > maxEnrollWait {
		return usagef("--timeout %v: want 1s to %v", *timeout, maxEnrollWait)
	}
	if *replace != "" && (*holder != "" || *doors != "") {
		return usagef("--replace takes the holder and doors of the card it replaces; drop --holder and --doors")
	}
	var old []byte
	if *replace != "" {
		var err error
		if old, err = cmdUID(*replace); err != nil {
			return err
		}
	}
	tty := isTerminal(e.stdin)
	if *replace == "" && *holder == "" && !tty {
		return usagef("--holder H is required when not on a terminal")
	}
	if !*yes && !tty {
		return usagef("--yes is required when not on a terminal")
	}
	cl := c.client()
	if _, err := cl.call(ctx, "GET", "/v1/doors/"+url.PathEscape(*door), nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "latch: tap the new card at door %s (waiting up to %v)\n", *door, *timeout)
	q := url.Values{"wait_s": {strconv.Itoa(int(timeout.Seconds()))}}
	raw, err := cl.call(ctx, "GET", "/v1/doors/"+url.PathEscape(*door)+"/enroll?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	var got enrollResult
	if err := json.Unmarshal(raw, &got); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	in := bufio.NewReader(e.stdin)
	ask := func(prompt string) string {
		fmt.Fprint(e.stdout, prompt)
		line, _ := in.ReadString('\n')
		return strings.TrimSpace(line)
	}
	if *replace == "" && *holder == "" {
		*holder = ask(fmt.Sprintf("card %s tapped at door %s. Holder id: ", got.UID, *door))
		if *holder == "" {
			return errors.New("no holder given; nothing added")
		}
	}
	what := fmt.Sprintf("add card %s for holder %s", got.UID, *holder)
	if *replace != "" {
		what = fmt.Sprintf("give card %s to the holder of card %X and revoke %X", got.UID, old, old)
	}
	if !*yes && ask(what+"? Type yes: ") != "yes" {
		return errors.New("nothing added")
	}
	if *replace != "" {
		return c.change(ctx, "POST", "/v1/cards/"+hex.EncodeToString(old)+"/replace", replaceReq{NewUID: got.UID, Reason: *reason},
			fmt.Sprintf("card %X revoked and replaced by %s (set its PIN with latch pin set)", old, got.UID))
	}
	ds := []string{*door}
	if *doors != "" {
		ds = strings.Split(*doors, ",")
	}
	return c.change(ctx, "POST", "/v1/cards", cardAddReq{UID: got.UID, Holder: *holder, Doors: ds}, "card "+got.UID+" added for "+*holder)
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
