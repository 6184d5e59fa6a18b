package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store/site"
)

// A visitor's card enrolled by a tap: instead of its UID, a visitor add
// names the door where the visitor taps the card (enroll_door). The
// service checks the request, then waits, as an enrolment does
// (waitTap), for the first unknown card tapped at that door after the
// request, and adds the visitor with it, in one change as with a UID.

// defaultVisitorTapWait is how long a visitor add waits for the tap
// unless it says (enroll_wait_s).
const defaultVisitorTapWait = time.Minute

// visitorTapReq is the part of visitorAddReq that enrols by a tap.
type visitorTapReq struct {
	EnrollDoor  string `json:"enroll_door,omitempty"`   // instead of uid: the door the visitor's card is tapped at
	EnrollWaitS int    `json:"enroll_wait_s,omitempty"` // with enroll_door: how long to wait for the tap (default 60 s)
}

// card checks the request's card: a UID, or a door to tap it at, not
// both.
func (r *visitorAdd) card() error {
	if r.EnrollDoor == "" {
		if r.EnrollWaitS != 0 {
			return errors.New("enroll_wait_s: only with enroll_door")
		}
		uid, err := parseUID(r.UID)
		if err != nil {
			return err
		}
		r.uid = uid
		return nil
	}
	if r.UID != "" {
		return errors.New("uid and enroll_door: give one, the card's UID or the door it is tapped at")
	}
	if err := mqtt.CheckID("enroll_door", r.EnrollDoor); err != nil {
		return err
	}
	if r.EnrollWaitS < 0 || time.Duration(r.EnrollWaitS)*time.Second > maxEnrollWait {
		return fmt.Errorf("enroll_wait_s %d: want 1 to %d (0: %d)", r.EnrollWaitS, int(maxEnrollWait/time.Second), int(defaultVisitorTapWait/time.Second))
	}
	return nil
}

// visitorTap checks what it can of a visitor add that enrols by a tap,
// then waits for the tap and sets the request's card to the UID tapped.
// It answers the request itself and reports false when the add is
// refused or nothing was tapped.
func (a *api) visitorTap(w http.ResponseWriter, r *http.Request, req *visitorAdd) bool {
	target, detail := "visitor "+req.Holder, "card by a tap at door "+req.EnrollDoor
	refuse := func(code int, err error) bool {
		a.describe(r, target, visitorState(req.Holder), detail)
		a.fail(w, r, code, err)
		return false
	}
	after, err := a.visitorTapFrom(req)
	if err != nil {
		return refuse(status(err), err)
	}
	wait := defaultVisitorTapWait
	if req.EnrollWaitS > 0 {
		wait = time.Duration(req.EnrollWaitS) * time.Second
	}
	got, code, err := a.waitTap(r, req.EnrollDoor, after, wait)
	if err != nil {
		return refuse(code, err)
	}
	if req.uid, err = parseUID(got.UID); err != nil {
		return refuse(http.StatusInternalServerError, fmt.Errorf("the card tapped at door %s: %w", req.EnrollDoor, err))
	}
	req.UID = got.UID
	return true
}

// visitorTapFrom checks, before the tap, that the visitor can be added
// (the window not over, the holder id free, the door there), and returns
// the arrival cursor the tap is looked for after.
func (a *api) visitorTapFrom(req *visitorAdd) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !req.Until.After(a.now()) {
		return 0, badRequest(fmt.Errorf("until %s: the window is over", req.Until.Format(time.RFC3339)))
	}
	if _, err := a.db.Holder(req.Holder); err == nil {
		return 0, fmt.Errorf("holder %q: %w", req.Holder, errExists)
	} else if !errors.Is(err, site.ErrNotFound) {
		return 0, err
	}
	if _, err := a.db.Door(req.EnrollDoor); errors.Is(err, site.ErrNotFound) {
		return 0, fmt.Errorf("enroll_door %q: %w: no such door has announced itself or been set up", req.EnrollDoor, site.ErrNotFound)
	} else if err != nil {
		return 0, err
	}
	return a.db.ArrivalEnd()
}

// --- the CLI ---

// visitorTapOptions are latch visitor add's options of an enrolment by
// a tap.
type visitorTapOptions struct {
	door    *string
	timeout *time.Duration
}

func visitorTapFlags(fs *flag.FlagSet) visitorTapOptions {
	return visitorTapOptions{
		door:    fs.String("enroll-door", "", "instead of --uid: wait for the visitor's card to be tapped at this door, and use it"),
		timeout: fs.Duration("enroll-timeout", 2*time.Minute, "with --enroll-door, how long to wait for the tap"),
	}
}

// card sets req's card: the UID given, or the door to tap it at.
func (o visitorTapOptions) card(req *visitorAddReq, uid string) error {
	switch {
	case *o.door == "" && uid == "":
		return usagef("--uid or --enroll-door is required")
	case *o.door != "" && uid != "":
		return usagef("--uid and --enroll-door: give one, the card's UID or the door it is tapped at")
	case *o.door == "":
		card, err := cmdUID(uid)
		if err != nil {
			return err
		}
		req.UID = fmt.Sprintf("%X", card)
		return nil
	}
	if *o.timeout < time.Second || *o.timeout > maxEnrollWait {
		return usagef("--enroll-timeout %v: want 1s to %v", *o.timeout, maxEnrollWait)
	}
	req.EnrollDoor, req.EnrollWaitS = *o.door, int(o.timeout.Seconds())
	return nil
}

// waiting tells the user to tap the card, when the add waits for one.
func (o visitorTapOptions) waiting(e *env, req visitorAddReq) {
	if req.EnrollDoor != "" {
		fmt.Fprintf(e.stderr, "latch: tap the visitor's card at door %s (waiting up to %v)\n", req.EnrollDoor, *o.timeout)
	}
}
