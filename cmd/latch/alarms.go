package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store/site"
)

// Alarms: latch serve raises them from the door events it stores and from
// doors it does not hear from (store/site's AlarmsFromEvents and
// CheckOffline); operators acknowledge, assign, note and resolve them
// through the API, the CLI and the console. Each step is a change-log
// entry.
//
//	GET  /v1/alarms?open=1              []site.Alarm, newest first
//	GET  /v1/alarms/{id}                site.Alarm
//	POST /v1/alarms/{id}/ack            → site.Alarm
//	POST /v1/alarms/{id}/assign         alarmReq{account} → site.Alarm
//	POST /v1/alarms/{id}/notes          alarmReq{text} → site.Alarm
//	POST /v1/alarms/{id}/resolve        alarmReq{text} (optional) → site.Alarm
//	POST /v1/alarms/{id}/snooze         snoozeReq{for_s, text} → site.Alarm (alarms_snooze.go)

// alarmConfig is the [alarms] section of latch serve's configuration:
//
//	[alarms]
//	offline_after = "2m"   # a door offline (its will, its stop) this long raises offline
//	silent_after  = "15m"  # a door heard from this long ago, online, too
//	[alarms.priority]      # per kind: critical, high, normal or low
//	door_held = "high"
//	[alarms.doors.loading-dock]   # per door, over the above
//	door_held = "low"
type alarmConfig struct {
	OfflineAfter duration                     `toml:"offline_after"`
	SilentAfter  duration                     `toml:"silent_after"`
	Priority     map[string]string            `toml:"priority"`
	Doors        map[string]map[string]string `toml:"doors"`

	prio map[string]site.Priority // "door/kind" or "/kind" → priority, made by check
}

// Alarm defaults: a door's will reaches the site within about 25 s, and
// a door republishes its status every 5 minutes.
const (
	defaultOfflineAfter = 2 * time.Minute
	defaultSilentAfter  = 15 * time.Minute
)

// check checks the section and fills in the defaults.
func (c *alarmConfig) check() error {
	if c.OfflineAfter.Duration == 0 {
		c.OfflineAfter.Duration = defaultOfflineAfter
	}
	if c.SilentAfter.Duration == 0 {
		c.SilentAfter.Duration = max(defaultSilentAfter, c.OfflineAfter.Duration)
	}
	if c.OfflineAfter.Duration < time.Second || c.SilentAfter.Duration < c.OfflineAfter.Duration {
		return fmt.Errorf("alarms.offline_after %v, silent_after %v: want at least 1s, and silent_after at least offline_after",
			c.OfflineAfter.Duration, c.SilentAfter.Duration)
	}
	c.prio = make(map[string]site.Priority)
	add := func(where, door string, m map[string]string) error {
		for k, v := range m {
			kind, err := site.ParseAlarmKind(k)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			p, err := site.ParsePriority(v)
			if err != nil {
				return fmt.Errorf("%s.%s: %w", where, k, err)
			}
			c.prio[door+"/"+string(kind)] = p
		}
		return nil
	}
	if err := add("alarms.priority", "", c.Priority); err != nil {
		return err
	}
	for door, m := range c.Doors {
		if err := add("alarms.doors."+door, door, m); err != nil {
			return err
		}
	}
	return nil
}

// priority is the priority of kind k at door: the door's, else the
// kind's, else the default.
func (c *alarmConfig) priority(door string, k site.AlarmKind) site.Priority {
	if p, ok := c.prio[door+"/"+string(k)]; ok {
		return p
	}
	if p, ok := c.prio["/"+string(k)]; ok {
		return p
	}
	return site.DefaultPriority(k)
}

// alarmEngine raises and clears alarms as events are stored and as doors
// go and come back, and hands what it did and read to its watchers.
type alarmEngine struct {
	db  *site.DB
	log *slog.Logger
	now func() time.Time // the site's clock: the offline threshold
	cfg alarmConfig
	// onChange, onEvents and onTick, if set, are given each alarm
	// change, the events read, and a call at each periodic check (the
	// notifications).
	onChange func(site.AlarmChange)
	onEvents func([]site.Arrival)
	onTick   func()
	// alongside, if set, runs as long as run (the notifier's deliveries).
	alongside func(ctx context.Context)
	// notifier, if set, delivers the notification rules (visitors.go).
	notifier *notifier

	mu      sync.Mutex
	changed chan struct{} // closed at the next alarm change (the console's live pages)
}

func newAlarmEngine(db *site.DB, log *slog.Logger, now func() time.Time, cfg alarmConfig) *alarmEngine {
	return &alarmEngine{db: db, log: log.With("part", "alarms"), now: now, cfg: cfg, changed: make(chan struct{})}
}

// Changed returns a channel closed at the next raise, repeat or close.
func (e *alarmEngine) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

func (e *alarmEngine) signal() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// alarmCheckEvery is how often doors are checked for the offline rule.
const alarmCheckEvery = time.Second

// run raises alarms from the events stored, each time stored (a
// signal on stored) and at least every alarmCheckEvery, when it also
// checks the offline rule; until ctx ends.
func (e *alarmEngine) run(ctx context.Context, stored func() <-chan struct{}) {
	if e.alongside != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { e.alongside(ctx) })
	}
	t := time.NewTicker(alarmCheckEvery)
	defer t.Stop()
	for {
		wake := stored()
		e.fromEvents()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
			e.offline()
		}
	}
}

// fromEvents raises and clears alarms from what was stored since the last
// call.
func (e *alarmEngine) fromEvents() {
	for {
		now := e.now()
		cs, arr, more, err := e.db.AlarmsFromEvents(1024, e.cfg.priority, now)
		if err != nil {
			e.log.Error("raise alarms from events", "err", err)
			return
		}
		e.changes(cs)
		if arr = loud(arr, cs, now); e.onEvents != nil && len(arr) > 0 {
			e.onEvents(arr)
		}
		if !more {
			return
		}
	}
}

// offline applies the offline rule and ends the snoozes due.
func (e *alarmEngine) offline() {
	rule := site.OfflineRule{OfflineAfter: e.cfg.OfflineAfter.Duration, SilentAfter: e.cfg.SilentAfter.Duration}
	cs, err := e.db.CheckOffline(rule, e.cfg.priority, e.now())
	if err != nil {
		e.log.Error("check offline doors", "err", err)
		return
	}
	e.changes(cs)
	e.endSnoozes()
	if e.onTick != nil {
		e.onTick()
	}
}

func (e *alarmEngine) changes(cs []site.AlarmChange) {
	if len(cs) == 0 {
		return
	}
	for _, c := range cs {
		e.log.Warn("alarm "+c.What, "id", c.Alarm.ID, "kind", c.Alarm.Kind, "door", c.Alarm.Door, "priority", c.Alarm.Priority, "count", c.Alarm.Count)
		if e.onChange != nil {
			e.onChange(c)
		}
	}
	e.signal()
}

// --- the API ---

// alarmReq is the body of an alarm step.
type alarmReq struct {
	Account string `json:"account,omitempty"` // assign: to whom
	Text    string `json:"text,omitempty"`    // a note; resolve: a closing note
}

func decodeAlarmReq(b []byte) (alarmReq, error) {
	var r alarmReq
	if len(b) == 0 {
		return r, nil
	}
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.Account != "" {
		if err := site.CheckUserName(r.Account); err != nil {
			return r, err
		}
	}
	return r, checkText("text", r.Text, 2048)
}

func (a *api) alarmRoutes(m *http.ServeMux) {
	a.notifyRoutes(m)
	a.notifyRuleRoutes(m)
	m.HandleFunc("GET /v1/alarms", a.alarmList)
	m.HandleFunc("GET /v1/alarms/{id}", a.alarmShow)
	m.HandleFunc("POST /v1/alarms/{id}/ack", a.alarmStep(func(al *site.Alarm, _ alarmReq, who string, now time.Time) error {
		if al.State != site.AlarmOpen {
			return fmt.Errorf("alarm %d is %s: %w", al.ID, al.State, site.ErrConflict)
		}
		al.State, al.AckBy, al.AckAt = site.AlarmAcknowledged, who, now
		al.Unsnooze()
		return nil
	}))
	m.HandleFunc("POST /v1/alarms/{id}/assign", a.alarmStep(func(al *site.Alarm, req alarmReq, _ string, _ time.Time) error {
		if req.Account == "" {
			return badRequest(errors.New("account is missing"))
		}
		al.Assignee = req.Account
		return nil
	}))
	m.HandleFunc("POST /v1/alarms/{id}/notes", a.alarmStep(func(al *site.Alarm, req alarmReq, who string, now time.Time) error {
		if strings.TrimSpace(req.Text) == "" {
			return badRequest(errors.New("text is missing"))
		}
		al.Notes = append(al.Notes, site.AlarmNote{Time: now, Who: who, Text: req.Text})
		return nil
	}))
	m.HandleFunc("POST /v1/alarms/{id}/resolve", a.alarmStep(func(al *site.Alarm, req alarmReq, who string, now time.Time) error {
		if !al.IsOpen() {
			return fmt.Errorf("alarm %d is %s: %w", al.ID, al.State, site.ErrConflict)
		}
		if req.Text != "" {
			al.Notes = append(al.Notes, site.AlarmNote{Time: now, Who: who, Text: req.Text})
		}
		al.State, al.Closed, al.ClosedBy = site.AlarmResolved, now, who
		al.Unsnooze()
		return nil
	}))
	m.HandleFunc("POST /v1/alarms/{id}/snooze", a.alarmSnooze)
}

func (a *api) alarmList(w http.ResponseWriter, r *http.Request) {
	get, err := queryValues(r.URL.Query(), "open", "limit")
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	n := 0
	if s := get("limit"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			a.failErr(w, r, badRequest(fmt.Errorf("limit %q: want a positive number", s)))
			return
		}
	}
	as, err := a.db.Alarms(get("open") == "1" || get("open") == "true", n)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if as == nil {
		as = []site.Alarm{}
	}
	writeJSON(w, http.StatusOK, as)
}

func alarmID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		return 0, badRequest(fmt.Errorf("alarm %q: want an alarm's number", r.PathValue("id")))
	}
	return id, nil
}

func (a *api) alarmShow(w http.ResponseWriter, r *http.Request) {
	id, err := alarmID(r)
	if err == nil {
		var al site.Alarm
		if al, err = a.db.Alarm(id); err == nil {
			writeJSON(w, http.StatusOK, al)
			return
		}
	}
	a.failErr(w, r, err)
}

// alarmReader reads an alarm: the database, or a change's transaction.
type alarmReader interface {
	Alarm(id uint64) (site.Alarm, error)
}

func alarmState(id uint64) recordState {
	return func(src records) (any, error) {
		ar, ok := src.(alarmReader)
		if !ok {
			return nil, nil
		}
		return absent(ar.Alarm(id))
	}
}

// alarmStep is a handler that changes an alarm by step, as the request's
// operator, with its change-log entry in the same transaction.
func (a *api) alarmStep(step func(al *site.Alarm, req alarmReq, who string, now time.Time) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := alarmID(r)
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		req, ok := decodeBody(a, w, r, decodeAlarmReq)
		detail := req.Text
		if req.Account != "" {
			detail = "to " + req.Account
		}
		a.describe(r, fmt.Sprintf("alarm %d", id), alarmState(id), detail)
		if !ok {
			return
		}
		who, _, _ := changeSource(r)
		a.changeAlarm(w, r, id, func(al *site.Alarm) error { return step(al, req, who, a.now()) })
	}
}

// changeAlarm changes alarm id by fn, with the request's change-log
// entry in the same transaction, and answers with the alarm after it.
func (a *api) changeAlarm(w http.ResponseWriter, r *http.Request, id uint64, fn func(*site.Alarm) error) {
	al, err := a.dbFor(r).UpdateAlarm(id, fn)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if a.alarms != nil {
		a.alarms.signal()
	}
	writeJSON(w, http.StatusOK, al)
}

// --- the CLI ---

func cmdAlarmList(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "alarm list")
	open := c.fs.Bool("open", false, "only the open alarms (open or acknowledged)")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	path := "/v1/alarms"
	if *open {
		path += "?open=1"
	}
	raw, err := c.client().call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, as []site.Alarm) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tDOOR\tPRIORITY\tSTATE\tOPENED\tCOUNT\tLAST\tASSIGNEE\tDETAIL")
		for _, x := range as {
			detail := x.Detail
			if x.Away > 0 {
				detail += fmt.Sprintf(" (away %v)", x.Away)
			}
			state := string(x.State)
			if !x.SnoozedUntil.IsZero() {
				state += " (snoozed until " + when(x.SnoozedUntil) + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", x.ID, x.Kind, x.Door, x.Priority, state,
				when(x.Opened), x.Count, when(x.Last), dash(x.Assignee), dash(detail))
		}
		tw.Flush()
	})
}

// alarmCmd is an alarm step: ID and the positional arguments names, sent
// as body.
func alarmCmd(name, step string, names []string, body func(pos []string, text string) alarmReq) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		c := newClientCmd(e, "alarm "+name)
		var note *string
		if name == "resolve" {
			note = c.fs.String("note", "", "a closing note")
		}
		pos, err := c.parse(args, 1+len(names), append([]string{"ID"}, names...)...)
		if err != nil {
			return err
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || id == 0 {
			return usagef("ID %q: want an alarm's number", pos[0])
		}
		text := ""
		if note != nil {
			text = *note
		}
		raw, err := c.client().call(ctx, "POST", fmt.Sprintf("/v1/alarms/%d/%s", id, step), body(pos[1:], text))
		if err != nil {
			return err
		}
		return show(c, raw, func(w io.Writer, x site.Alarm) {
			fmt.Fprintf(w, "alarm %d (%s at %s): %s\n", x.ID, x.Kind, x.Door, name)
		})
	}
}

// startAlarms makes the alarm engine of latch serve, with the notifier
// of the configured and stored rules.
func startAlarms(o serveOptions, db *site.DB, siteID string, ms *mqttsite.Site, log *slog.Logger) (*alarmEngine, error) {
	cfg := o.alarms
	if cfg.prio == nil {
		if err := cfg.check(); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	now := o.alarmClock
	if now == nil {
		now = time.Now
	}
	e := newAlarmEngine(db, log, now, cfg)
	publish := func(ctx context.Context, topic string, b []byte) error { return ms.PublishRaw(ctx, topic, b, false) }
	n, err := newNotifier(o.notify, siteID, db, log, now, time.After, publish)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	e.onChange, e.onEvents, e.onTick, e.alongside = n.alarm, n.events, n.tick, n.run
	e.notifier = n
	if o.alarmsReady != nil {
		o.alarmsReady(e)
	}
	return e, nil
}
