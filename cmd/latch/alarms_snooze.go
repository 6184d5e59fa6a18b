package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// Snoozing an alarm: an operator quiets an open alarm for a while (at
// most maxSnooze), on the alarms' clock. While it is snoozed its repeats
// count on it but notify no one (loud), the console's badge leaves it
// out, and open_for rules wait; when the snooze ends (the engine's
// periodic check, store/site's EndSnoozes) it is an ordinary open alarm
// again, and if it repeated meanwhile the rules of its kind are notified
// then (notifier.alarm). An ack or a resolve ends a snooze with no
// notification; a snooze of 0 ends it at the engine's next check, with
// one.
//
//	POST /v1/alarms/{id}/snooze   snoozeReq → site.Alarm

// maxSnooze is the longest snooze.
const maxSnooze = 24 * time.Hour

// snoozeReq is POST /v1/alarms/{id}/snooze.
type snoozeReq struct {
	ForS *int64 `json:"for_s"`          // how long, in seconds; 0 ends the snooze
	Text string `json:"text,omitempty"` // a note on the alarm
}

func decodeSnooze(b []byte) (snoozeReq, error) {
	var r snoozeReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	switch {
	case r.ForS == nil:
		return r, errors.New("for_s is missing: how long to snooze, in seconds (0 ends a snooze)")
	case *r.ForS < 0 || *r.ForS > int64(maxSnooze/time.Second):
		return r, fmt.Errorf("for_s %d: want 0 to %d (24 hours)", *r.ForS, int64(maxSnooze/time.Second))
	}
	return r, checkText("text", r.Text, 2048)
}

// detail is the change-log entry's detail of a snooze.
func (r snoozeReq) detail() string {
	var d string
	switch {
	case r.ForS == nil:
	case *r.ForS == 0:
		d = "end the snooze"
	default:
		d = "for " + (time.Duration(*r.ForS) * time.Second).String()
	}
	if r.Text != "" {
		d = strings.TrimPrefix(d+": "+r.Text, ": ")
	}
	return d
}

// alarmNow is the alarms' clock: the engine's, which ends the snoozes.
func (a *api) alarmNow() time.Time {
	if a.alarms != nil {
		return a.alarms.now()
	}
	return a.now()
}

// alarmSnooze snoozes an open alarm, or ends its snooze, as the
// request's operator.
func (a *api) alarmSnooze(w http.ResponseWriter, r *http.Request) {
	id, err := alarmID(r)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	req, ok := decodeBody(a, w, r, decodeSnooze)
	a.describe(r, fmt.Sprintf("alarm %d", id), alarmState(id), req.detail())
	if !ok {
		return
	}
	who, _, _ := changeSource(r)
	now := a.alarmNow()
	a.changeAlarm(w, r, id, func(al *site.Alarm) error {
		if !al.IsOpen() {
			return fmt.Errorf("alarm %d is %s: %w", al.ID, al.State, site.ErrConflict)
		}
		if *req.ForS == 0 {
			if !al.Snoozed(now) {
				return fmt.Errorf("alarm %d is not snoozed: %w", al.ID, site.ErrConflict)
			}
			// Back at once; the engine's next check ends the snooze
			// and notifies its repeats.
			al.SnoozedUntil = now
		} else {
			al.SnoozedUntil, al.SnoozedBy = now.Add(time.Duration(*req.ForS)*time.Second), who
		}
		if req.Text != "" {
			al.Notes = append(al.Notes, site.AlarmNote{Time: now, Who: who, Text: req.Text})
		}
		return nil
	})
}

// --- in latch serve ---

// endSnoozes ends the snoozes due on the engine's clock.
func (e *alarmEngine) endSnoozes() {
	cs, err := e.db.EndSnoozes(e.now())
	if err != nil {
		e.log.Error("end alarm snoozes", "err", err)
		return
	}
	e.changes(cs)
}

// loud is arr without the events that repeated an alarm snoozed at now
// (cs: the alarm changes arr made): those notify no one.
func loud(arr []site.Arrival, cs []site.AlarmChange, now time.Time) []site.Arrival {
	type key struct {
		door string
		seq  uint64
	}
	quiet := map[key]bool{}
	for _, c := range cs {
		if c.What == site.AlarmRepeated && c.Alarm.Snoozed(now) {
			quiet[key{c.Alarm.Door, c.Alarm.LastSeq}] = true
		}
	}
	if len(quiet) == 0 {
		return arr
	}
	return slices.DeleteFunc(slices.Clone(arr), func(a site.Arrival) bool { return quiet[key{a.Door, a.Event.Seq}] })
}

// snoozeEnded notifies the rules of an alarm's kind (those without
// open_for) of an alarm whose snooze ended after it repeated.
func (n *notifier) snoozeEnded(c site.AlarmChange) {
	if c.Repeats == 0 {
		return
	}
	a := c.Alarm
	n.atOnce(&a, &notification{What: "alarm repeated while snoozed", Door: a.Door, Alarm: &a,
		Message: fmt.Sprintf("alarm %d (%s at door %s) is open again after its snooze; repeats during it: %d", a.ID, a.Kind, a.Door, c.Repeats)})
}

// --- the CLI ---

func cmdAlarmSnooze(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "alarm snooze")
	d := c.fs.Duration("for", 0, "how long, at most 24h (required; 0 ends the snooze)")
	note := c.fs.String("note", "", "a note on the alarm: why")
	pos, err := c.parse(args, 1, "ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || id == 0 {
		return usagef("ID %q: want an alarm's number", pos[0])
	}
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == "for" })
	switch {
	case !set:
		return usagef("--for is required: how long to snooze, e.g. 15m (0 ends a snooze)")
	case *d < 0 || *d > maxSnooze || *d%time.Second != 0:
		return usagef("--for %v: want 0 to 24h, in whole seconds", *d)
	}
	secs := int64(*d / time.Second)
	raw, err := c.client().call(ctx, "POST", fmt.Sprintf("/v1/alarms/%d/snooze", id), snoozeReq{ForS: &secs, Text: *note})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, x site.Alarm) {
		if secs == 0 {
			fmt.Fprintf(w, "alarm %d (%s at %s): snooze ended\n", x.ID, x.Kind, x.Door)
			return
		}
		fmt.Fprintf(w, "alarm %d (%s at %s): snoozed until %s\n", x.ID, x.Kind, x.Door, when(x.SnoozedUntil))
	})
}
