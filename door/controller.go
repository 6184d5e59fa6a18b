package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchdoor/latch/store"
)

// Allowlist decides whether a credential opens the door. *store.Store
// satisfies it.
type Allowlist interface {
	Decide(store.Request) (store.Decision, error)
}

// Journal writes the door's audit events and state changes (the lockdown
// flag, the record of an unlock in progress), in order, off the
// controller's loop; it is the only place that retries a failed write.
// *store.Journal satisfies it. Add must not block.
type Journal interface {
	Add(store.JournalEntry)
}

// StateStore reads, at start, what must survive a restart: the lockdown
// flag and the record of an unlock in progress (written through the
// Journal). *store.Store satisfies it.
type StateStore interface {
	Lockdown(door string) (bool, error)
	State(key string) ([]byte, error)
}

// Default timings.
const (
	DefaultUnlock          = 5 * time.Second
	DefaultExtendedUnlock  = 15 * time.Second
	DefaultHeld            = 30 * time.Second
	DefaultPreAlarm        = 5 * time.Second
	DefaultPINTimeout      = 10 * time.Second
	DefaultInterKey        = 5 * time.Second
	DefaultMaxRemoteUnlock = 12 * time.Hour
)

// Limits on Config timings and inputs.
const (
	maxUIDLen     = 16  // ISO 14443 UIDs are 4, 7 or 10 bytes
	maxTextLen    = 256 // who/why/detail strings
	inputQueueLen = 64
	shutdownWait  = 5 * time.Second // for an allowlist question in flight
)

// Config is the door's behaviour. Zero durations take the defaults.
type Config struct {
	// Door is this door's id (required); it goes into every request and event.
	Door string
	// Groups are the door groups a card may list instead of the door id.
	Groups []string
	// Mode is card, card+pin or card-or-pin. Default card+pin.
	Mode store.Mode
	// Lockdown starts the door in lockdown. A lockdown recorded in the
	// StateStore survives restarts whatever this says.
	Lockdown bool
	// UnlockSchedule, if set, holds the door unlocked during its windows
	// (free access), in Location's time, while the clock is trusted and the
	// door is not in lockdown. It must have at least one window.
	UnlockSchedule *store.Schedule
	// FirstCardGroup, if set, makes UnlockSchedule first-card: inside a
	// window the door stays locked until a card whose door list names this
	// group (itself: "*" does not count) is granted and opens it; from then
	// on it stays unlocked until the window ends. Other granted cards open
	// it once, as outside the window. Lockdown ends a started window, which
	// then waits for another card that counts. The start is recorded in
	// the StateStore (through the Journal, with its schedule_first_card
	// event), so a restart inside the window keeps the door unlocked only
	// when that record was written. It needs UnlockSchedule.
	FirstCardGroup string
	// Location is the door's time zone for UnlockSchedule. Default UTC, as
	// for store.Options.Location: give both the same zone.
	Location *time.Location
	// Unlock is how long a grant or the exit button releases the door.
	// Default 5 s; from 500 ms to 1 min.
	Unlock time.Duration
	// ExtendedUnlock is the release time for cards flagged for accessibility.
	// Default 15 s; from Unlock to 5 min.
	ExtendedUnlock time.Duration
	// Held is how long the door may stand open before door_held. Default 30 s;
	// from 5 s to 1 h.
	Held time.Duration
	// PreAlarm is how long before door_held the reader beeps. Default 5 s;
	// less than Held.
	PreAlarm time.Duration
	// PINTimeout is how long to wait for the first PIN digit after a card.
	// Default 10 s; from 1 s to 1 min.
	PINTimeout time.Duration
	// InterKey is the longest pause between PIN digits. Default 5 s; from
	// 1 s to 1 min.
	InterKey time.Duration
	// MaxRemoteUnlock bounds a signed unlock. Default 12 h; from Unlock to 24 h.
	MaxRemoteUnlock time.Duration
	// StalePolicy is what decisions do while the allowlist is stale (see
	// AllowlistStale). Default StaleKeepGoing.
	StalePolicy StalePolicy
	// OpenUnrecorded chooses availability over the audit trail: when the
	// journal cannot make a grant's record durable (disk full, I/O error,
	// read-only), the door opens anyway and the grant is recorded late, or
	// counted as lost. By default the door refuses such a grant with the
	// reason journal_fault; the exit button works either way.
	OpenUnrecorded bool
}

// Deps are the controller's collaborators.
type Deps struct {
	Allowlist Allowlist  // required
	Journal   Journal    // required: every event and state write goes through it
	State     StateStore // required: read at start
	Relay     *Relay     // required
	Feedback  *Feedback  // optional: LEDs and buzzer
	Display   Display    // optional: a small text display at the door
	// Clock defaults to SystemClock.
	Clock Clock
	// ClockTrusted reports whether the clock has been synchronised; it fills
	// Event.Clock and Request.ClockTrusted and gates the unlock schedule.
	// Default: always trusted.
	ClockTrusted func() bool
	// TimeFloor returns the latest signed site time (zero: none), a lower
	// bound on the real time: the unlock schedule is judged at the later
	// of it and the clock, so that a clock set back cannot reopen a
	// window. Optional.
	TimeFloor func() time.Time
	// BootID identifies this run of the service in every event.
	BootID string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Ready, if set, is called once from Run when the door is ready: the
	// relay has been set to its locked level and the state read.
	Ready func()
	// Alive, if set, is called from Run's own loop after Ready and then
	// every AliveEvery, between events: a loop stuck in a step stops
	// calling it, which a watchdog (systemd's) can turn into a restart.
	Alive func()
	// AliveEvery is the time between calls of Alive (default 5 s).
	AliveEvery time.Duration
	// Meter, if set, is told of every decision and allowlist answer.
	Meter Meter
}

// Display is a small text display at the door, such as a 16×2 character
// LCD or a 128×32 OLED. The controller calls Show from one goroutine of its
// own, never from its decision loop (a slow bus never delays the relay),
// with the two lines the door should show (each at most DisplayWidth
// characters, printable ASCII), and only when they change; an error is
// logged and the door carries on.
type Display interface {
	Show(lines [2]string) error
}

// DisplayWidth is the most characters a line passed to Display.Show holds.
const DisplayWidth = 16

// ErrStopped is returned by the input methods once Run has returned.
var ErrStopped = errors.New("door: controller stopped")

// Controller is the door: one goroutine (Run) owns the state machine, the
// relay, the feedback outputs and the journal writes; the input methods hand
// it events from any goroutine.
type Controller struct {
	p           *params
	cfgLockdown bool
	allow       Allowlist
	journal     Journal
	store       StateStore
	relay       *Relay
	fb          *Feedback
	display     Display
	clock       Clock
	trusted     func() bool
	floor       func() time.Time
	bootID      string
	log         *slog.Logger
	ready       func()
	alive       func()
	aliveEvery  time.Duration
	unlockKey   string
	firstKey    string
	meter       Meter
	mt          meterState // owned by Run

	in       chan event
	decided  chan evDecided
	recorded chan evRecorded
	quit     chan struct{} // closed when Run starts shutting down
	done     chan struct{} // closed when Run has returned
	running  atomic.Bool
	workers  sync.WaitGroup

	mu      sync.Mutex
	status  Status
	changes chan struct{}

	// screens carries the latest screen to the display's goroutine: one
	// slot, a newer screen replaces one not yet shown.
	screens chan [2]string

	// Owned by Run.
	st       state
	fbNext   time.Time
	shown    [2]string // the last screen handed to the display
	anyShown bool
}

// New checks cfg and deps and returns a controller whose door is locked.
// Nothing moves until Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	p, err := cfg.params()
	if err != nil {
		return nil, err
	}
	switch {
	case deps.Allowlist == nil:
		return nil, errors.New("door: no Allowlist")
	case deps.Journal == nil:
		return nil, errors.New("door: no Journal")
	case deps.State == nil:
		return nil, errors.New("door: no StateStore")
	case deps.Relay == nil:
		return nil, errors.New("door: no Relay")
	}
	c := &Controller{
		p:           p,
		cfgLockdown: cfg.Lockdown,
		allow:       deps.Allowlist,
		journal:     deps.Journal,
		store:       deps.State,
		relay:       deps.Relay,
		fb:          deps.Feedback,
		display:     deps.Display,
		clock:       deps.Clock,
		trusted:     deps.ClockTrusted,
		floor:       deps.TimeFloor,
		bootID:      deps.BootID,
		log:         deps.Logger,
		ready:       deps.Ready,
		alive:       deps.Alive,
		aliveEvery:  deps.AliveEvery,
		meter:       deps.Meter,
		unlockKey:   "door/" + p.door + "/unlock",
		firstKey:    "door/" + p.door + "/first_card",
		in:          make(chan event, inputQueueLen),
		decided:     make(chan evDecided, 1),
		recorded:    make(chan evRecorded, 4),
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
		changes:     make(chan struct{}, 1),
		screens:     make(chan [2]string, 1),
	}
	if c.clock == nil {
		c.clock = SystemClock{}
	}
	if c.trusted == nil {
		c.trusted = func() bool { return true }
	}
	if c.floor == nil {
		c.floor = func() time.Time { return time.Time{} }
	}
	if c.aliveEvery < 0 {
		return nil, fmt.Errorf("door: AliveEvery %s is negative", c.aliveEvery)
	}
	if c.aliveEvery == 0 {
		c.aliveEvery = 5 * time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("door", p.door)
	if err := c.relay.set(false); err != nil {
		return nil, err
	}
	c.st = newState(p, cfg.Lockdown, c.trusted())
	c.status = c.st.status(c.clock.Now())
	return c, nil
}

// ConfigError is a Config field New refuses.
type ConfigError struct {
	Field string // the Config field, e.g. "Unlock"
	Msg   string // what is wrong with it, e.g. "100ms: want 500ms to 1m0s"
}

// Error names the field and what is wrong.
func (e *ConfigError) Error() string { return "door: config: " + e.Field + " " + e.Msg }

// Check validates cfg as New does, without building a controller. Its
// error, if any, is a *ConfigError.
func (cfg Config) Check() error {
	_, err := cfg.params()
	return err
}

// params validates cfg and fills the defaults. Its errors are *ConfigError.
func (cfg Config) params() (*params, error) {
	p := &params{
		door:           cfg.Door,
		groups:         slices.Clone(cfg.Groups),
		openUnrecorded: cfg.OpenUnrecorded,
		mode:           cfg.Mode,
		unlock:         cfg.Unlock,
		extended:       cfg.ExtendedUnlock,
		held:           cfg.Held,
		preAlarm:       cfg.PreAlarm,
		pinFirst:       cfg.PINTimeout,
		interKey:       cfg.InterKey,
		maxRemote:      cfg.MaxRemoteUnlock,
		stalePolicy:    cfg.StalePolicy,
	}
	if p.door == "" {
		return nil, &ConfigError{"Door", "required"}
	}
	if err := checkText("id", p.door); err != nil {
		return nil, &ConfigError{"Door", err.Error()}
	}
	switch p.stalePolicy {
	case "":
		p.stalePolicy = StaleKeepGoing
	case StaleKeepGoing, StaleCardAndPIN, StaleOverrideOnly:
	default:
		return nil, &ConfigError{"StalePolicy", fmt.Sprintf("%q: want %q, %q or %q", p.stalePolicy, StaleKeepGoing, StaleCardAndPIN, StaleOverrideOnly)}
	}
	switch p.mode {
	case "":
		p.mode = store.ModeCardPIN
	case store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN:
	default:
		return nil, &ConfigError{"Mode", fmt.Sprintf("%q: want %q, %q or %q", p.mode, store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN)}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&p.unlock, DefaultUnlock)
	def(&p.extended, max(DefaultExtendedUnlock, p.unlock))
	def(&p.held, DefaultHeld)
	def(&p.preAlarm, min(DefaultPreAlarm, p.held/2))
	def(&p.pinFirst, DefaultPINTimeout)
	def(&p.interKey, DefaultInterKey)
	def(&p.maxRemote, DefaultMaxRemoteUnlock)
	for _, r := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"Unlock", p.unlock, 500 * time.Millisecond, time.Minute},
		{"ExtendedUnlock", p.extended, p.unlock, 5 * time.Minute},
		{"Held", p.held, 5 * time.Second, time.Hour},
		{"PreAlarm", p.preAlarm, time.Millisecond, p.held - time.Millisecond},
		{"PINTimeout", p.pinFirst, time.Second, time.Minute},
		{"InterKey", p.interKey, time.Second, time.Minute},
		{"MaxRemoteUnlock", p.maxRemote, p.unlock, 24 * time.Hour},
	} {
		if r.v < r.min || r.v > r.max {
			return nil, &ConfigError{r.name, fmt.Sprintf("%v: want %v to %v", r.v, r.min, r.max)}
		}
	}
	if cfg.UnlockSchedule != nil {
		loc := cfg.Location
		if loc == nil {
			loc = time.UTC
		}
		u, err := compileSchedule(cfg.UnlockSchedule, loc)
		if err != nil {
			return nil, &ConfigError{"UnlockSchedule", err.Error()}
		}
		p.schedule = u
	}
	if cfg.FirstCardGroup != "" {
		if err := checkText("first card group", cfg.FirstCardGroup); err != nil || cfg.FirstCardGroup == "*" {
			return nil, &ConfigError{"FirstCardGroup", fmt.Sprintf("%q: want a door group name", cfg.FirstCardGroup)}
		}
		if p.schedule == nil {
			return nil, &ConfigError{"FirstCardGroup", "set without an UnlockSchedule"}
		}
		p.firstCard = cfg.FirstCardGroup
	}
	return p, nil
}

// checkText refuses strings that would garble a log line.
func checkText(what, s string) error {
	if len(s) > maxTextLen {
		return fmt.Errorf("%s: longer than %d bytes", what, maxTextLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s: control character %U", what, r)
		}
	}
	return nil
}

// Run drives the door until ctx is done. On the way out, whatever the
// reason (including a panic), it halts the relay into its shutdown state and
// turns the feedback off. It returns nil after ctx is done, or an error if
// the relay could not be halted. Run may be called once.
func (c *Controller) Run(ctx context.Context) (err error) {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("door: Run called twice")
	}
	defer close(c.done)
	defer func() { err = errors.Join(err, c.shutdown()) }()
	if c.display != nil {
		c.workers.Add(1)
		go c.runDisplay()
	}
	c.startup()
	timer := c.clock.NewTimer(time.Hour)
	defer timer.Stop()
	if c.ready != nil {
		c.ready()
	}
	var alive Timer
	var aliveC <-chan time.Time // nil without Alive: never ready
	if c.alive != nil {
		c.alive()
		alive = c.clock.NewTimer(c.aliveEvery)
		defer alive.Stop()
		aliveC = alive.C()
	}
	for {
		c.arm(timer)
		select {
		case <-ctx.Done():
			return nil
		case e := <-c.in:
			c.step(e)
		case e := <-c.decided:
			c.step(e)
		case e := <-c.recorded:
			c.step(e)
		case <-timer.C():
			c.step(evTick{})
		case <-aliveC:
			c.alive()
			alive.ResetAt(c.clock.Now().Add(c.aliveEvery))
		}
	}
}

// startup locks the relay, restores the lockdown flag and reports an
// unlock that a stop interrupted.
func (c *Controller) startup() {
	if err := c.relay.set(false); err != nil {
		c.log.Error("relay: lock at start", "err", err)
	}
	now := c.clock.Now()
	lockdown, err := c.store.Lockdown(c.p.door)
	if err != nil {
		c.log.Error("state: reading lockdown flag; using the configured value", "err", err, "lockdown", c.cfgLockdown)
		lockdown = c.cfgLockdown
	}
	c.st = newState(c.p, lockdown, c.trusted())
	c.st.schedStarted = c.firstCardRecorded(now)
	entry := store.JournalEntry{Events: []store.Event{c.stamp(store.Event{Time: now, Door: c.p.door, Type: store.TypeSystem, Reason: store.ReasonStarted,
		Detail: fmt.Sprintf("door controller started, relay locked, lockdown %s", onOff(lockdown))})}}
	rec, err := c.store.State(c.unlockKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		c.log.Error("state: reading the unlock record", "err", err)
	case len(rec) > 0:
		detail := fmt.Sprintf("an unlock was in progress (until %s) when the service stopped", rec)
		if len(detail) > maxTextLen {
			detail = "an unlock was in progress when the service stopped"
		}
		entry.Events = append(entry.Events, c.stamp(store.Event{Time: now, Door: c.p.door, Type: store.TypeDoor, Reason: store.ReasonUnlockInterrupt, Detail: detail}))
		entry.Changes = append(entry.Changes, store.PutStateChange(c.unlockKey, nil))
	}
	c.journal.Add(entry)
	if c.cfgLockdown && !lockdown {
		c.step(evLockdown{on: true, by: "config"})
		return
	}
	c.step(evTick{})
}

// shutdown puts the outputs in their safe state and flushes what it can.
func (c *Controller) shutdown() error {
	close(c.quit)
	err := c.relay.Halt()
	if err != nil {
		c.log.Error("relay: halt", "err", err)
		// Try the plain lock as a last resort.
		_ = c.relay.set(false)
	}
	if c.fb != nil {
		if ferr := c.fb.Halt(); ferr != nil {
			c.log.Warn("feedback: halt", "err", ferr)
		}
	}
	if c.display != nil {
		c.show(stoppedScreen)
		close(c.screens)
	}
	c.waitWorkers()
	now := c.clock.Now()
	var entry store.JournalEntry
	if p := c.st.pending; p.active && p.recording {
		// A grant whose record is still being written: whatever the
		// journal makes of it, the door did not open for it.
		entry.Events = append(entry.Events, c.stamp(store.Event{Time: now, Door: c.p.door, Type: store.TypeDoor, Reason: store.ReasonGrantedNotOpened,
			UID: uidHex(p.uid), Holder: p.holder, HolderName: p.holderName, Detail: "the service stopped before the grant's record was confirmed; the door stayed locked"}))
	}
	entry.Events = append(entry.Events, c.stamp(store.Event{Time: now, Door: c.p.door, Type: store.TypeSystem, Reason: store.ReasonStopped,
		Detail: "door controller stopped, relay in its safe state"}))
	// Cleared whether or not an unlock is recorded: a grant's record in
	// flight carries one, written before this entry.
	entry.Changes = append(entry.Changes, store.PutStateChange(c.unlockKey, nil))
	c.journal.Add(entry)
	c.st.relay = c.relay.Unlocked()
	c.publish(now)
	return err
}

// waitWorkers waits a bounded time for an allowlist question in flight.
func (c *Controller) waitWorkers() {
	finished := make(chan struct{})
	go func() {
		c.workers.Wait()
		close(finished)
	}()
	t := c.clock.NewTimer(shutdownWait)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C():
		c.log.Error("allowlist question still running at shutdown", "waited", shutdownWait)
	}
}

// arm sets the timer for the earliest deadline.
func (c *Controller) arm(t Timer) {
	d := c.st.deadline()
	consider := func(x time.Time) {
		if !x.IsZero() && (d.IsZero() || x.Before(d)) {
			d = x
		}
	}
	if c.fb != nil {
		consider(c.fbNext)
	}
	if d.IsZero() {
		t.Stop()
		return
	}
	t.ResetAt(d)
}

// step runs one event through the machine and carries out its actions.
func (c *Controller) step(e event) {
	c.meterEvent(e)
	now := c.clock.Now()
	if t := c.trusted(); t != c.st.trusted {
		c.apply(evTrust{trusted: t}, now)
	}
	if f := c.floor(); f.After(c.st.floor) { // a lower bound only rises: a failed read (zero) changes nothing
		c.apply(evFloor{t: f}, now)
	}
	c.apply(e, now)
	if c.fb != nil {
		c.fb.setBase(c.st.base(), now)
		next, err := c.fb.update(now)
		if err != nil {
			c.log.Warn("feedback", "err", err)
		}
		c.fbNext = next
	}
	if c.display != nil {
		c.show(c.st.screen())
	}
	c.publish(now)
}

// show hands screen to the display's goroutine if it differs from the last
// one. Only Run's goroutine calls it.
func (c *Controller) show(screen [2]string) {
	if c.anyShown && screen == c.shown {
		return
	}
	c.shown, c.anyShown = screen, true
	select {
	case <-c.screens: // not shown yet: the newer one replaces it
	default:
	}
	c.screens <- screen
}

// runDisplay shows each screen handed to it until the channel closes. A
// failing display is logged when it starts and stops failing, not at every
// screen.
func (c *Controller) runDisplay() {
	defer c.workers.Done()
	failing := false
	for screen := range c.screens {
		err := c.display.Show(screen)
		switch {
		case err != nil && !failing:
			c.log.Warn("display: show", "err", err)
		case err == nil && failing:
			c.log.Info("display: showing again")
		}
		failing = err != nil
	}
}

// apply runs next and its actions: first the relay, the feedback and the
// allowlist question, then the journal entries, which never wait for the
// disk. A step's state changes and events go in one entry, so that an
// event that reports an unlock is never durable without the unlock record
// an interrupted unlock is reported from; a grant's record is an entry of
// its own, whose answer comes back as evRecorded.
func (c *Controller) apply(e event, now time.Time) {
	st, acts := next(c.st, e, now)
	c.st = st
	var entry store.JournalEntry
	flush := func() {
		if len(entry.Events) > 0 || len(entry.Changes) > 0 {
			c.journal.Add(entry)
		}
		entry = store.JournalEntry{}
	}
	for _, a := range acts {
		switch a := a.(type) {
		case actRelay:
			if err := c.relay.set(a.unlock); err != nil {
				c.log.Error("relay", "unlock", a.unlock, "err", err)
			}
		case actFeedback:
			if c.fb != nil {
				c.fb.play(a.p, now)
			}
		case actDecide:
			c.ask(a)
		case actRecordUnlock:
			entry.Changes = append(entry.Changes, store.PutStateChange(c.unlockKey, unlockRecord(a.until, a.cause)))
		case actClearUnlock:
			entry.Changes = append(entry.Changes, store.PutStateChange(c.unlockKey, nil))
		case actLockdown:
			entry.Changes = append(entry.Changes, store.LockdownChange(c.p.door, a.on))
		case actFirstCard:
			entry.Changes = append(entry.Changes, store.PutStateChange(c.firstKey, firstCardRecord(a.until)))
		case actLog:
			c.log.Debug("door event", "type", a.ev.Type, "reason", a.ev.Reason, "uid", a.ev.UID, "holder", a.ev.Holder, "detail", a.ev.Detail)
			c.meterLogged(a.ev)
			entry.Events = append(entry.Events, c.stamp(a.ev))
		case actRecordGrant:
			flush()
			c.recordGrant(a)
		}
	}
	flush()
}

// unlockRecord is the value of the unlock record: when the unlock ends and
// what opened it.
func unlockRecord(until time.Time, cause string) []byte {
	return []byte(until.UTC().Format(time.RFC3339Nano) + " " + cause)
}

// recordGrant hands a grant's record and its unlock record to the journal
// as one entry whose answer comes back to the loop.
func (c *Controller) recordGrant(a actRecordGrant) {
	c.log.Debug("door event", "type", a.ev.Type, "reason", a.ev.Reason, "uid", a.ev.UID, "holder", a.ev.Holder, "detail", a.ev.Detail)
	id := a.id
	c.meterGranting(a)
	c.journal.Add(store.JournalEntry{
		Events:  []store.Event{c.stamp(a.ev)},
		Changes: []store.StateChange{store.PutStateChange(c.unlockKey, unlockRecord(a.until, "grant"))},
		Done: func(_ []store.Event, err error) {
			select {
			case c.recorded <- evRecorded{id: id, err: err}:
			case <-c.quit:
			}
		},
	})
}

// ask runs the allowlist question off the loop, so that a slow PIN hash never
// delays a relock or an alarm.
func (c *Controller) ask(a actDecide) {
	c.meterAsked(a)
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		d, err := c.allow.Decide(a.req)
		clear(a.req.PIN)
		select {
		case c.decided <- evDecided{id: a.id, d: d, err: err}:
		case <-c.quit:
		}
	}()
}

// stamp fills what the loop knows of every event: the clock's quality
// and the boot id.
func (c *Controller) stamp(ev store.Event) store.Event {
	ev.Clock = c.clockQuality()
	ev.BootID = c.bootID
	return ev
}

// clockQuality is the time quality the journal records now.
func (c *Controller) clockQuality() store.TimeQuality {
	if c.st.trusted {
		return store.TimeSynced
	}
	return store.TimeUnsynced
}

// publish makes the door's status visible to Status and StatusChanges.
func (c *Controller) publish(now time.Time) {
	st := c.st.status(now)
	c.mu.Lock()
	changed := !st.equal(c.status)
	if changed {
		c.status = st
	}
	c.mu.Unlock()
	if changed {
		select {
		case c.changes <- struct{}{}:
		default:
		}
	}
}

func (s Status) equal(o Status) bool {
	return s.Door == o.Door && s.Mode == o.Mode && s.Locked == o.Locked &&
		s.UnlockedUntil.Equal(o.UnlockedUntil) && s.ContactKnown == o.ContactKnown &&
		s.Open == o.Open && s.Lockdown == o.Lockdown && slices.Equal(s.Alarms, o.Alarms) &&
		s.ReaderOK == o.ReaderOK && s.AwaitingPIN == o.AwaitingPIN && s.ClockTrusted == o.ClockTrusted &&
		s.JournalOK == o.JournalOK && s.Journal == o.Journal && s.Stale == o.Stale && s.StalePolicy == o.StalePolicy
}

// Status returns the door's state. It is safe to call from any goroutine.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Alarms = slices.Clone(st.Alarms)
	return st
}

// StatusChanges delivers a value whenever Status changes (coalesced: one
// pending notice at most). It is meant for one consumer, such as the MQTT
// status publisher.
func (c *Controller) StatusChanges() <-chan struct{} { return c.changes }

// submit hands an event to the loop.
func (c *Controller) submit(ctx context.Context, e event) error {
	select {
	case <-c.done:
		return ErrStopped
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("door: %w", err)
	}
	select {
	case c.in <- e:
		return nil
	case <-c.done:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("door: %w", ctx.Err())
	}
}

// CardPresented reports a card entering the reader's field. random is true
// when the reader recognised a random (privacy) UID, which is never a
// credential. A card that stays in the field is decided once; it counts again
// after CardRemoved.
func (c *Controller) CardPresented(ctx context.Context, uid []byte, random bool) error {
	if len(uid) == 0 || len(uid) > maxUIDLen {
		return fmt.Errorf("door: card UID of %d bytes: want 1 to %d", len(uid), maxUIDLen)
	}
	return c.submit(ctx, evCard{uid: slices.Clone(uid), random: random})
}

// CardRemoved reports that the card left the reader's field.
func (c *Controller) CardRemoved(ctx context.Context) error {
	return c.submit(ctx, evCardGone{})
}

// KeyPressed reports a keypad key: '0' to '9', '*' (clear) or '#' (enter).
// During PIN entry a thirteenth digit is ignored; '#' submits the twelve
// collected.
func (c *Controller) KeyPressed(ctx context.Context, key rune) error {
	if !isDigit(key) && key != '*' && key != '#' {
		return fmt.Errorf("door: key %q: want 0-9, * or #", key)
	}
	return c.submit(ctx, evKey{key: key})
}

// DoorContact reports the debounced door position switch.
func (c *Controller) DoorContact(ctx context.Context, open bool) error {
	return c.submit(ctx, evContact{open: open})
}

// ExitButton reports the debounced exit button (request to exit). A press
// releases the door for the unlock time, even in lockdown.
func (c *Controller) ExitButton(ctx context.Context, pressed bool) error {
	return c.submit(ctx, evExit{pressed: pressed})
}

// Tamper reports the debounced tamper switch.
func (c *Controller) Tamper(ctx context.Context, active bool) error {
	return c.submit(ctx, evTamper{active: active})
}

// ReaderHealth reports the card reader failing (ok false) or recovering.
// detail says what happened, for the log.
func (c *Controller) ReaderHealth(ctx context.Context, ok bool, detail string) error {
	if err := checkText("door: reader detail", detail); err != nil {
		return err
	}
	return c.submit(ctx, evReader{ok: ok, detail: detail})
}

// JournalHealth reports the journal failing to write (ok false) or
// writing again; detail is its state in words, for the status. While the
// journal fails the door shows a fault and, unless Config.OpenUnrecorded,
// refuses grants (each grant's own record decides: a grant whose record is
// written opens).
func (c *Controller) JournalHealth(ctx context.Context, ok bool, detail string) error {
	if err := checkText("door: journal detail", detail); err != nil {
		return err
	}
	return c.submit(ctx, evJournal{ok: ok, detail: detail})
}

// SiteLink reports the link to the site coming up (online) or going down.
// It changes only what the display shows ("Offline"): the door decides the
// same either way, from its own allowlist.
func (c *Controller) SiteLink(ctx context.Context, online bool) error {
	return c.submit(ctx, evLink{online: online})
}

// StalePolicy is what the door does while its allowlist is stale: no
// fresh signed word from the site for the configured time.
type StalePolicy string

// Stale policies.
const (
	StaleKeepGoing    StalePolicy = "keep-going"    // decide as usual
	StaleCardAndPIN   StalePolicy = "card+pin"      // every card needs its PIN, whatever the door's mode
	StaleOverrideOnly StalePolicy = "override-only" // only cards with the lockdown override open
)

// StalePolicy returns what the door does while its allowlist is stale, as
// configured (Status shows it only while it applies).
func (c *Controller) StalePolicy() StalePolicy { return c.p.stalePolicy }

// AllowlistStale reports that the allowlist went stale (true: no fresh
// signed word from the site for the configured time) or is fresh again.
// While stale, decisions follow Config.StalePolicy, and each decision
// notes the policy in its event.
func (c *Controller) AllowlistStale(ctx context.Context, stale bool) error {
	return c.submit(ctx, evStale{stale: stale, policy: c.p.stalePolicy})
}

// RemoteUnlock releases the door for d (0 means the unlock time) on a
// verified signed command; by and why are logged. d may not exceed
// Config.MaxRemoteUnlock. During d the door may stand open without
// door_held. It is refused, with an audit event, in lockdown.
func (c *Controller) RemoteUnlock(ctx context.Context, d time.Duration, by, why string) error {
	if d < 0 || d > c.p.maxRemote {
		return fmt.Errorf("door: remote unlock for %v: want 0 (the unlock time) up to %v", d, c.p.maxRemote)
	}
	if err := errors.Join(checkText("door: unlock by", by), checkText("door: unlock why", why)); err != nil {
		return err
	}
	return c.submit(ctx, evRemoteUnlock{d: d, by: by, why: why})
}

// RemoteLockdown turns lockdown on or off on a verified signed command; by
// and why are logged. Lockdown denies every card without the lockdown
// override flag, ends any unlock schedule, signed unlock and grant in
// progress, and survives restarts.
func (c *Controller) RemoteLockdown(ctx context.Context, on bool, by, why string) error {
	if err := errors.Join(checkText("door: lockdown by", by), checkText("door: lockdown why", why)); err != nil {
		return err
	}
	return c.submit(ctx, evLockdown{on: on, by: by, why: why})
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
