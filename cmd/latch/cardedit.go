package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
)

// Schedules and per-card switches, on card add and card set.
//
//	PATCH  /v1/cards/{uid}   cardSetReq → changeResult: only the fields given change

// cardSetReq changes a card's doors, validity, schedule or switches; a
// field left out stays as it is. The holder and the PIN stay.
type cardSetReq struct {
	Doors      *[]string       `json:"doors,omitempty"`
	ValidFrom  *time.Time      `json:"valid_from,omitempty"`  // the zero time: no limit
	ValidUntil *time.Time      `json:"valid_until,omitempty"` // the zero time: no limit
	Schedule   *store.Schedule `json:"schedule,omitempty"`    // an empty one: always
	// The switches, each changed only when given.
	CardOnly         *bool `json:"card_only,omitempty"`
	ExtendedUnlock   *bool `json:"extended_unlock,omitempty"`
	LockdownOverride *bool `json:"lockdown_override,omitempty"`
}

func decodeCardSet(b []byte) (cardSetReq, error) {
	var r cardSetReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r == (cardSetReq{}) {
		return r, errors.New("nothing to change: give doors, valid_from, valid_until, schedule or a switch")
	}
	return r, nil
}

func (a *api) cardSet(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeCardSet)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.describe(r, fmt.Sprintf("card %X", c.UID), cardState(c.UID), "")
	if req.Doors != nil {
		c.Doors = *req.Doors
	}
	if req.ValidFrom != nil {
		c.ValidFrom = req.ValidFrom.UTC()
	}
	if req.ValidUntil != nil {
		c.ValidUntil = req.ValidUntil.UTC()
	}
	if req.Schedule != nil {
		c.Schedule = *req.Schedule
	}
	for _, f := range []struct {
		v *bool
		p *bool
	}{{req.CardOnly, &c.Flags.CardOnly}, {req.ExtendedUnlock, &c.Flags.ExtendedUnlock}, {req.LockdownOverride, &c.Flags.LockdownOverride}} {
		if f.v != nil {
			*f.p = *f.v
		}
	}
	a.commit(w, r, http.StatusOK, store.Op{Kind: store.OpUpsertCard, Card: &c})
}

// days are the weekday names a schedule is written with, in time.Weekday
// order.
var days = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseSchedule reads a weekly schedule written as comma-separated
// entries "DAYS HH:MM-HH:MM", DAYS a day (mon), a range of days (mon-fri,
// fri-mon) or daily; "24:00" ends a day. "" is no schedule (always).
func parseSchedule(s string) (store.Schedule, error) {
	var sc store.Schedule
	if strings.TrimSpace(s) == "" {
		return sc, nil
	}
	for entry := range strings.SplitSeq(s, ",") {
		f := strings.Fields(entry)
		if len(f) != 2 {
			return sc, fmt.Errorf("schedule entry %q: want DAYS HH:MM-HH:MM (like mon-fri 08:00-18:00)", strings.TrimSpace(entry))
		}
		ds, err := parseDays(f[0])
		if err != nil {
			return sc, err
		}
		from, to, ok := strings.Cut(f[1], "-")
		if !ok {
			return sc, fmt.Errorf("schedule entry %q: want HH:MM-HH:MM", strings.TrimSpace(entry))
		}
		a, err := parseClock(from)
		if err != nil {
			return sc, err
		}
		b, err := parseClock(to)
		if err != nil {
			return sc, err
		}
		if a >= b {
			return sc, fmt.Errorf("schedule entry %q: the window ends before it starts (a night shift is two entries)", strings.TrimSpace(entry))
		}
		for _, d := range ds {
			sc.Weekly[d] = append(sc.Weekly[d], store.Window{From: a, To: b})
		}
	}
	return sc, nil
}

// parseDays reads mon, mon-fri (wrapping: fri-mon) or daily.
func parseDays(s string) ([]time.Weekday, error) {
	s = strings.ToLower(s)
	if s == "daily" {
		return []time.Weekday{0, 1, 2, 3, 4, 5, 6}, nil
	}
	first, last, isRange := strings.Cut(s, "-")
	a, b := slices.Index(days, first), slices.Index(days, last)
	if !isRange {
		b = a
	}
	if a < 0 || b < 0 {
		return nil, fmt.Errorf("schedule days %q: want a day (mon … sun), a range (mon-fri) or daily", s)
	}
	var out []time.Weekday
	for d := a; ; d = (d + 1) % 7 {
		out = append(out, time.Weekday(d))
		if d == b {
			return out, nil
		}
	}
}

// parseClock reads HH:MM (00:00 to 24:00) as minutes since midnight.
func parseClock(s string) (uint16, error) {
	if s == "24:00" {
		return 24 * 60, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("time %q: want HH:MM, 00:00 to 24:00", s)
	}
	return uint16(t.Hour()*60 + t.Minute()), nil
}

// formatSchedule writes a schedule back as parseSchedule reads it, one
// entry per day and window, and the holidays after.
func formatSchedule(sc store.Schedule) string {
	var out []string
	for d, ws := range sc.Weekly {
		for _, w := range ws {
			out = append(out, fmt.Sprintf("%s %02d:%02d-%02d:%02d", days[d], w.From/60, w.From%60, w.To/60, w.To%60))
		}
	}
	s := strings.Join(out, ",")
	if len(sc.Holidays) > 0 {
		s += " (closed " + strings.Join(sc.Holidays, ",") + ")"
	}
	if s == "" {
		return "always"
	}
	return s
}

// cardFlags are the flags of card add and card set for a card's doors,
// validity, schedule and switches.
type cardFlags struct {
	doors, from, until, schedule, holidays     *string
	cardOnly, extendedUnlock, lockdownOverride *bool
}

// addCardFlags defines the card flags on c; none is added to the help of
// --from and --until.
func addCardFlags(c *clientCmd, none string) cardFlags {
	return cardFlags{
		doors:            c.fs.String("doors", "", "comma-separated door ids or group names it opens"),
		from:             c.fs.String("from", "", "valid from: RFC 3339 time or YYYY-MM-DD (local midnight)"+none),
		until:            c.fs.String("until", "", "valid until (exclusive): RFC 3339 time or YYYY-MM-DD (local midnight)"+none),
		schedule:         c.fs.String("schedule", "", `when it opens, e.g. "mon-fri 07:00-19:00,sat 09:00-13:00" (none: always)`),
		holidays:         c.fs.String("holidays", "", "days it does not open, YYYY-MM-DD,YYYY-MM-DD"),
		cardOnly:         c.fs.Bool("card-only", false, "opens a card+PIN door without a PIN"),
		extendedUnlock:   c.fs.Bool("extended-unlock", false, "a longer unlock (accessibility)"),
		lockdownOverride: c.fs.Bool("lockdown-override", false, "still opens during a lockdown"),
	}
}

// scheduleOf returns the schedule the flags give.
func (f cardFlags) scheduleOf() (store.Schedule, error) {
	sc, err := parseSchedule(*f.schedule)
	if err != nil {
		return sc, &usageError{msg: "--schedule: " + err.Error()}
	}
	if sc.Holidays, err = parseHolidays(*f.holidays); err != nil {
		return sc, usagef("--holidays: %v", err)
	}
	return sc, nil
}

// parseHolidays reads YYYY-MM-DD dates separated by commas (and spaces).
func parseHolidays(s string) ([]string, error) {
	var out []string
	for _, h := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if t, err := time.Parse(time.DateOnly, h); err != nil || t.Format(time.DateOnly) != h {
			return nil, fmt.Errorf("%q is not a YYYY-MM-DD date", h)
		}
		out = append(out, h)
	}
	return out, nil
}

// weeklySpec is a schedule's windows as parseSchedule reads them, "" for
// always.
func weeklySpec(sc store.Schedule) string {
	if s := formatSchedule(store.Schedule{Weekly: sc.Weekly}); s != "always" {
		return s
	}
	return ""
}

func (f cardFlags) flags() store.Flags {
	return store.Flags{CardOnly: *f.cardOnly, ExtendedUnlock: *f.extendedUnlock, LockdownOverride: *f.lockdownOverride}
}

func cmdCardSet(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "card set")
	cf := addCardFlags(c, `; "none": no limit`)
	doors, from, until := cf.doors, cf.from, cf.until
	uid, err := c.uidArg(args)
	if err != nil {
		return err
	}
	var req cardSetReq
	if flagGiven(c.fs, "doors") {
		ds := strings.Split(*doors, ",")
		req.Doors = &ds
	}
	for _, t := range []struct {
		flag string
		v    string
		p    **time.Time
	}{{"from", *from, &req.ValidFrom}, {"until", *until, &req.ValidUntil}} {
		if !flagGiven(c.fs, t.flag) {
			continue
		}
		var at time.Time
		if t.v != "none" {
			if at, err = parseWhen("--"+t.flag, t.v); err != nil {
				return err
			}
		}
		*t.p = &at
	}
	if flagGiven(c.fs, "schedule") || flagGiven(c.fs, "holidays") {
		sc, err := cf.scheduleOf()
		if err != nil {
			return err
		}
		req.Schedule = &sc
	}
	for _, f := range []struct {
		name string
		v    *bool
		p    **bool
	}{{"card-only", cf.cardOnly, &req.CardOnly}, {"extended-unlock", cf.extendedUnlock, &req.ExtendedUnlock}, {"lockdown-override", cf.lockdownOverride, &req.LockdownOverride}} {
		if flagGiven(c.fs, f.name) {
			*f.p = f.v
		}
	}
	if req == (cardSetReq{}) {
		return usagef("nothing to change: give --doors, --from, --until, --schedule, --holidays or a switch")
	}
	return c.change(ctx, "PATCH", fmt.Sprintf("/v1/cards/%X", uid), req, fmt.Sprintf("card %X changed", uid))
}
