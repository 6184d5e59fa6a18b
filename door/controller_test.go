package door

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/store"
)

// memStore is an in-memory Allowlist, Journal and StateStore.
type memStore struct {
	mu        sync.Mutex
	decide    func(store.Request) (store.Decision, error)
	requests  []store.Request
	events    []store.Event
	appendErr error
	held      []store.JournalEntry // entries waiting for appendErr to clear

	holdRecords bool                 // keep entries whose caller waits until releaseRecords
	records     []store.JournalEntry // entries kept by holdRecords
	lockdown    map[string]bool
	lockSets    int // lockdown flags written
	state       map[string][]byte
	stateErr    error
}

func newMemStore() *memStore {
	return &memStore{
		lockdown: map[string]bool{},
		state:    map[string][]byte{},
		decide: func(r store.Request) (store.Decision, error) {
			return store.Decision{Outcome: store.Denied, Reason: store.ReasonUnknownCard}, nil
		},
	}
}

func (m *memStore) Decide(r store.Request) (store.Decision, error) {
	m.mu.Lock()
	r.PIN = slices.Clone(r.PIN) // the controller wipes its copy afterwards
	m.requests = append(m.requests, r)
	f := m.decide
	m.mu.Unlock()
	return f(r)
}

// Add writes the entry at once, as a journal whose disk never waits; while
// appendErr is set it fails an entry whose caller waits and holds the rest
// until the error clears (the next Add after it writes them).
func (m *memStore) Add(e store.JournalEntry) {
	m.mu.Lock()
	if m.holdRecords && e.Done != nil {
		m.records = append(m.records, e)
		m.mu.Unlock()
		return
	}
	if m.appendErr != nil {
		err := m.appendErr
		if e.Done == nil {
			m.held = append(m.held, e)
		}
		m.mu.Unlock()
		if e.Done != nil {
			e.Done(nil, err)
		}
		return
	}
	held := m.held
	m.held = nil
	var out []store.Event
	for _, en := range append(held, e) {
		for _, c := range en.Changes {
			if door, on, ok := c.Lockdown(); ok {
				m.lockSets++
				m.lockdown[door] = on
			}
			if key, val, ok := c.State(); ok {
				m.state[key] = slices.Clone(val)
			}
		}
		for _, ev := range en.Events {
			ev.Seq = uint64(len(m.events) + 1)
			m.events = append(m.events, ev)
			out = append(out, ev)
		}
	}
	m.mu.Unlock()
	if e.Done != nil {
		e.Done(out[len(out)-len(e.Events):], nil)
	}
}

// heldRecords returns the entries holdRecords keeps.
func (m *memStore) heldRecords() []store.JournalEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.records)
}

// releaseRecords writes the entries holdRecords kept, and stops keeping.
func (m *memStore) releaseRecords() {
	m.mu.Lock()
	w := m.records
	m.holdRecords, m.records = false, nil
	m.mu.Unlock()
	for _, e := range w {
		m.Add(e)
	}
}

func (m *memStore) Lockdown(door string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lockdown[door], m.stateErr
}

func (m *memStore) State(key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stateErr != nil {
		return nil, m.stateErr
	}
	v, ok := m.state[key]
	if !ok {
		return nil, store.ErrNotFound // as the real store says
	}
	return slices.Clone(v), nil
}

func (m *memStore) setDecide(f func(store.Request) (store.Decision, error)) {
	m.mu.Lock()
	m.decide = f
	m.mu.Unlock()
}

func (m *memStore) setAppendErr(err error) {
	m.mu.Lock()
	m.appendErr = err
	m.mu.Unlock()
}

// reasons lists the reasons of the events appended so far, without the
// controller's start and stop.
func (m *memStore) reasons() []store.Reason {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Reason
	for _, e := range m.events {
		if e.Reason != store.ReasonStarted && e.Reason != store.ReasonStopped {
			out = append(out, e.Reason)
		}
	}
	return out
}

// allReasons lists the reasons of every event appended so far.
func (m *memStore) allReasons() []store.Reason {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Reason
	for _, e := range m.events {
		out = append(out, e.Reason)
	}
	return out
}

// eventList lists the events appended so far, without the controller's
// start and stop.
func (m *memStore) eventList() []store.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(m.events), func(e store.Event) bool {
		return e.Reason == store.ReasonStarted || e.Reason == store.ReasonStopped
	})
}

func (m *memStore) requestList() []store.Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.requests)
}

func (m *memStore) stateOf(key string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state[key]
}

func grantAll(r store.Request) (store.Decision, error) {
	return store.Decision{Outcome: store.Granted, Reason: store.ReasonGranted, HolderID: "h1", HolderName: "Ada"}, nil
}

// rig is a controller on gpiotest pins with a manual clock. It must be used
// inside a synctest bubble: settle waits for every goroutine to block.
type rig struct {
	t      *testing.T
	c      *Controller
	clock  *ManualClock
	store  *memStore
	relay  *outPin
	green  *outPin
	red    *outPin
	buzzer *outPin
	cancel context.CancelFunc
	done   chan error
	inputs sync.WaitGroup
	inCtx  context.Context
	stopIn context.CancelFunc
}

const unlockKey = "door/front/unlock"

// Active-low strike: the relay pin is high when locked, low when released.
const (
	lockedLevel   = gpio.High
	unlockedLevel = gpio.Low
)

func newRig(t *testing.T, cfg Config, st *memStore, relayOpts *RelayOpts) *rig {
	t.Helper()
	if cfg.Door == "" {
		cfg.Door = "front"
	}
	if st == nil {
		st = newMemStore()
	}
	if relayOpts == nil {
		relayOpts = &RelayOpts{ActiveLow: true}
	}
	r := &rig{t: t, clock: NewManualClock(t0), store: st,
		relay: newOutPin("GPIO17"), green: newOutPin("GPIO5"), red: newOutPin("GPIO6"), buzzer: newOutPin("GPIO13")}
	relay, err := NewRelay(r.relay, relayOpts)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := NewFeedback(r.green, r.red, r.buzzer, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.c, err = New(cfg, Deps{Allowlist: st, Journal: st, State: st, Relay: relay, Feedback: fb, Clock: r.clock, BootID: "boot-1"})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(r.t.Context())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.c.Run(ctx) }()
	synctest.Wait()
}

// runInput runs in until stop, calling fn with its changes.
func (r *rig) runInput(in *Input, fn func(ctx context.Context, active bool) error) {
	if r.stopIn == nil {
		var ctx context.Context
		ctx, r.stopIn = context.WithCancel(r.t.Context())
		r.inCtx = ctx
	}
	ctx := r.inCtx
	r.inputs.Go(func() {
		if err := in.Run(ctx, func(v bool, _ time.Time) { _ = fn(ctx, v) }); err != nil {
			r.t.Error(err)
		}
	})
}

// stop ends the inputs and Run and returns Run's error.
func (r *rig) stop() error {
	if r.stopIn != nil {
		r.stopIn()
		r.inputs.Wait()
	}
	r.cancel()
	return <-r.done
}

func (r *rig) settle() { synctest.Wait() }

// advance moves the manual clock and lets the loop catch up.
func (r *rig) advance(d time.Duration) {
	r.clock.Advance(d)
	synctest.Wait()
}

func (r *rig) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	synctest.Wait()
}

func (r *rig) wantRelay(step string, l gpio.Level) {
	r.t.Helper()
	if got := r.relay.level(); got != l {
		r.t.Fatalf("%s: relay pin %v, want %v", step, got, l)
	}
}

func (r *rig) wantReasons(step string, want ...store.Reason) {
	r.t.Helper()
	if got := r.store.reasons(); !slices.Equal(got, want) {
		r.t.Fatalf("%s: events %v, want %v", step, got, want)
	}
}

func TestControllerGrantCardOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly, Groups: []string{"staff"}}, st, nil)
		ctx := t.Context()
		r.wantRelay("start", lockedLevel)

		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("granted", unlockedLevel)
		if r.green.level() != gpio.High {
			t.Error("green LED off during a grant")
		}
		r.wantReasons("granted", store.ReasonGranted)
		ev := st.eventList()[0]
		if ev.UID != "04A1B2C3" || ev.Holder != "h1" || ev.HolderName != "Ada" || ev.BootID != "boot-1" || ev.Clock != store.TimeSynced || ev.Door != "front" || !ev.Time.Equal(t0) || ev.Type != store.TypeAccess {
			t.Errorf("event %+v", ev)
		}
		req := st.requestList()[0]
		if !slices.Equal(req.UID, uidA) || req.PIN != nil || req.Door != "front" || !slices.Equal(req.DoorGroups, []string{"staff"}) || req.Mode != store.ModeCardOnly || req.Lockdown || !req.ClockTrusted || !req.Now.Equal(t0) {
			t.Errorf("request %+v", req)
		}
		if rec := st.stateOf(unlockKey); !strings.HasPrefix(string(rec), "2025-03-03T09:00:05Z grant") {
			t.Errorf("unlock record %q", rec)
		}
		if s := r.c.Status(); s.Locked || !s.UnlockedUntil.Equal(t0.Add(5*time.Second)) {
			t.Errorf("status %+v", s)
		}

		r.advance(5*time.Second - time.Millisecond)
		r.wantRelay("just before the end", unlockedLevel)
		r.advance(time.Millisecond)
		r.wantRelay("pulse over", lockedLevel)
		r.wantReasons("pulse over", store.ReasonGranted, store.ReasonGrantedNotOpened)
		if rec := st.stateOf(unlockKey); len(rec) != 0 {
			t.Errorf("unlock record left: %q", rec)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestControllerCardHeldInField(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		for range 3 {
			r.must(r.c.CardPresented(ctx, uidA, false)) // the reader polls
		}
		if n := len(st.requestList()); n != 1 {
			t.Fatalf("%d decisions for one presentation", n)
		}
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		if n := len(st.requestList()); n != 2 {
			t.Fatalf("%d decisions after presenting again, want 2", n)
		}
		r.wantReasons("two denials", store.ReasonUnknownCard, store.ReasonUnknownCard)
		r.wantRelay("denied", lockedLevel)
		if r.red.level() != gpio.High {
			t.Error("red LED off after a denial")
		}
		r.stop()
	})
}

// TestControllerDoorCycle runs a grant, the door opening and closing
// through a debounced normally-closed contact on a gpiotest pin.
func TestControllerDoorCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		contactPin := newInPin("GPIO27")
		contact, err := NewInput(contactPin, &InputOpts{NormallyClosed: true})
		if err != nil {
			t.Fatal(err)
		}
		setLevel(contactPin, gpio.Low) // door closed
		r.runInput(contact, r.c.DoorContact)
		time.Sleep(DefaultDebounce)
		r.settle()
		if s := r.c.Status(); !s.ContactKnown || s.Open {
			t.Fatalf("status %+v", s)
		}

		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("granted", unlockedLevel)
		contactPin.EdgesChan <- gpio.High // door opens
		time.Sleep(DefaultDebounce)
		r.settle()
		if s := r.c.Status(); !s.Open || len(s.Alarms) != 0 {
			t.Fatalf("open within a grant: %+v", s)
		}
		contactPin.EdgesChan <- gpio.Low // and closes, a second later
		time.Sleep(DefaultDebounce)
		r.settle()
		r.wantRelay("closed: relock at once", lockedLevel)
		r.advance(10 * time.Second)
		r.wantReasons("used grant", store.ReasonGranted)
		r.stop()
	})
}

func TestControllerForcedAndHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Mode: store.ModeCardOnly}, nil, nil)
		ctx := t.Context()
		r.must(r.c.DoorContact(ctx, false))
		r.must(r.c.DoorContact(ctx, true))
		r.wantReasons("forced", store.ReasonDoorForced)
		r.wantRelay("forced", lockedLevel)
		if s := r.c.Status(); !slices.Equal(s.Alarms, []store.Reason{store.ReasonDoorForced}) {
			t.Fatalf("alarms %v", s.Alarms)
		}
		if r.buzzer.level() != gpio.High || r.red.level() != gpio.High {
			t.Fatal("no alarm at the door")
		}
		r.advance(400 * time.Millisecond)
		if r.buzzer.level() != gpio.Low {
			t.Fatal("alarm pattern does not pulse")
		}
		r.advance(30 * time.Second)
		r.wantReasons("held", store.ReasonDoorForced, store.ReasonDoorHeld)
		r.must(r.c.DoorContact(ctx, false))
		r.wantReasons("closed", store.ReasonDoorForced, store.ReasonDoorHeld, store.ReasonDoorClosed)
		if s := r.c.Status(); len(s.Alarms) != 0 || r.buzzer.level() != gpio.Low || r.red.level() != gpio.Low {
			t.Fatalf("alarm not cleared: %+v", s)
		}
		r.stop()
	})
}

func TestControllerHeldPreAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		r.must(r.c.DoorContact(ctx, false))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.must(r.c.DoorContact(ctx, true))
		r.advance(24 * time.Second)
		if r.buzzer.level() != gpio.Low {
			t.Fatal("buzzer on before the pre-alarm")
		}
		r.advance(time.Second)
		if r.buzzer.level() != gpio.High {
			t.Fatal("no pre-alarm beep 5 s before door_held")
		}
		r.advance(5 * time.Second)
		r.wantReasons("held", store.ReasonGranted, store.ReasonDoorHeld)
		r.stop()
	})
}

func TestControllerPINEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(func(r store.Request) (store.Decision, error) {
			switch {
			case r.PIN == nil:
				return store.Decision{Outcome: store.NeedPIN, HolderID: "h1"}, nil
			case string(r.PIN) == "1234":
				return store.Decision{Outcome: store.Granted, Reason: store.ReasonGranted, HolderID: "h1"}, nil
			}
			return store.Decision{Outcome: store.Denied, Reason: store.ReasonBadPIN, HolderID: "h1"}, nil
		})
		r := newRig(t, Config{}, st, nil) // card+PIN by default
		ctx := t.Context()

		// A wrong PIN.
		r.must(r.c.CardPresented(ctx, uidA, false))
		if !r.c.Status().AwaitingPIN {
			t.Fatal("not awaiting the PIN")
		}
		for _, k := range "9999#" {
			r.must(r.c.KeyPressed(ctx, k))
		}
		r.wantReasons("bad PIN", store.ReasonBadPIN)
		r.wantRelay("bad PIN", lockedLevel)

		// The right one, after a correction.
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		for _, k := range "12*1234#" {
			r.must(r.c.KeyPressed(ctx, k))
			if k != '#' && r.buzzer.level() != gpio.High {
				t.Fatalf("key %c did not beep", k)
			}
			r.advance(time.Second)
		}
		r.wantReasons("good PIN", store.ReasonBadPIN, store.ReasonGranted)
		reqs := st.requestList()
		if last := reqs[len(reqs)-1]; string(last.PIN) != "1234" || !slices.Equal(last.UID, uidA) {
			t.Fatalf("PIN request %+v", last)
		}
		r.wantRelay("granted", unlockedLevel)
		r.advance(5 * time.Second)

		// No PIN at all.
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.advance(10 * time.Second)
		r.wantReasons("timeout", store.ReasonBadPIN, store.ReasonGranted, store.ReasonGrantedNotOpened, store.ReasonPINTimeout)
		if r.c.Status().AwaitingPIN {
			t.Fatal("still awaiting the PIN after the timeout")
		}
		r.stop()
	})
}

func TestControllerCodeAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOrPIN}, st, nil)
		ctx := t.Context()
		for _, k := range "4711#" {
			r.must(r.c.KeyPressed(ctx, k))
		}
		reqs := st.requestList()
		if len(reqs) != 1 || reqs[0].UID != nil || string(reqs[0].PIN) != "4711" {
			t.Fatalf("requests %+v", reqs)
		}
		r.wantRelay("code accepted", unlockedLevel)
		r.stop()
	})
}

func TestControllerExitButton(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Mode: store.ModeCardOnly}, nil, nil)
		ctx := t.Context()
		rexPin := newInPin("GPIO22")
		rex, err := NewInput(rexPin, nil) // normally open, to ground
		if err != nil {
			t.Fatal(err)
		}
		r.runInput(rex, r.c.ExitButton)
		time.Sleep(DefaultDebounce)
		rexPin.EdgesChan <- gpio.Low
		time.Sleep(DefaultDebounce)
		r.settle()
		r.wantRelay("exit pressed", unlockedLevel)
		r.wantReasons("exit", store.ReasonExitRequest)
		r.must(r.c.DoorContact(ctx, false))
		r.must(r.c.DoorContact(ctx, true))
		r.wantReasons("not forced", store.ReasonExitRequest)
		r.advance(5 * time.Second)
		r.wantRelay("window over", lockedLevel)
		r.stop()
	})
}

func TestControllerTamperAndReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Mode: store.ModeCardOnly}, nil, nil)
		ctx := t.Context()
		r.must(r.c.Tamper(ctx, true))
		r.must(r.c.ReaderHealth(ctx, false, "no answer to GetFirmwareVersion"))
		s := r.c.Status()
		if s.ReaderOK || !slices.Equal(s.Alarms, []store.Reason{store.ReasonTamper}) {
			t.Fatalf("status %+v", s)
		}
		r.must(r.c.ReaderHealth(ctx, true, ""))
		r.must(r.c.Tamper(ctx, false))
		r.wantReasons("events", store.ReasonTamper, store.ReasonReaderFault, store.ReasonReaderOK, store.ReasonTamper)
		if d := r.store.eventList()[1].Detail; d != "no answer to GetFirmwareVersion" {
			t.Errorf("reader fault detail %q", d)
		}
		r.stop()
	})
}

func TestControllerRemoteCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		r.must(r.c.DoorContact(ctx, false))
		r.must(r.c.RemoteUnlock(ctx, 10*time.Minute, "alice", "delivery"))
		r.wantRelay("remote unlock", unlockedLevel)
		r.must(r.c.DoorContact(ctx, true))
		r.must(r.c.DoorContact(ctx, false))
		r.wantRelay("held open across a close", unlockedLevel)
		r.advance(10 * time.Minute)
		r.wantRelay("remote unlock over", lockedLevel)

		r.must(r.c.RemoteLockdown(ctx, true, "bob", "incident"))
		if !r.c.Status().Lockdown || !st.lockdown["front"] {
			t.Fatal("lockdown not on or not persisted")
		}
		if r.red.level() != gpio.High {
			t.Error("red LED off in lockdown")
		}
		r.must(r.c.RemoteUnlock(ctx, time.Minute, "alice", "delivery"))
		r.wantRelay("refused in lockdown", lockedLevel)
		r.must(r.c.CardPresented(ctx, uidA, false))
		if reqs := st.requestList(); !reqs[len(reqs)-1].Lockdown {
			t.Error("request in lockdown without the flag")
		}
		r.must(r.c.RemoteLockdown(ctx, false, "bob", "all clear"))
		r.wantReasons("commands", store.ReasonCommandApplied, store.ReasonLockdown, store.ReasonCommandRejected, store.ReasonUnknownCard, store.ReasonLockdown)
		evs := st.eventList()
		if evs[0].Detail != "unlock for 10m0s by alice: delivery" || evs[1].Detail != "lockdown on by bob: incident" {
			t.Errorf("details %q, %q", evs[0].Detail, evs[1].Detail)
		}
		r.stop()
	})
}

func TestControllerLockdownSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.must(r.c.RemoteLockdown(t.Context(), true, "bob", ""))
		r.stop()

		r2 := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		if !r2.c.Status().Lockdown {
			t.Fatal("lockdown lost in a restart")
		}
		r2.stop()

		// Lockdown from the config is persisted and logged.
		st3 := newMemStore()
		r3 := newRig(t, Config{Mode: store.ModeCardOnly, Lockdown: true}, st3, nil)
		if !r3.c.Status().Lockdown || !st3.lockdown["front"] {
			t.Fatal("configured lockdown not applied")
		}
		if ev := st3.eventList(); len(ev) != 1 || ev[0].Reason != store.ReasonLockdown || ev[0].Detail != "lockdown on by config" {
			t.Fatalf("events %+v", ev)
		}
		r3.stop()
	})
}

func TestControllerUnlockInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.state[unlockKey] = []byte("2025-03-03T08:59:58Z grant")
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.wantRelay("start", lockedLevel)
		r.wantReasons("start", store.ReasonUnlockInterrupt)
		if ev := st.eventList()[0]; ev.Type != store.TypeDoor || !strings.Contains(ev.Detail, "2025-03-03T08:59:58Z grant") {
			t.Errorf("event %+v", ev)
		}
		if rec := st.stateOf(unlockKey); len(rec) != 0 {
			t.Errorf("record not cleared: %q", rec)
		}
		r.stop()
	})
}

func TestControllerShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("granted", unlockedLevel)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		r.wantRelay("stopped mid-grant", lockedLevel)
		if rec := st.stateOf(unlockKey); len(rec) != 0 {
			t.Errorf("a clean stop left the unlock record %q", rec)
		}
		if r.green.level() != gpio.Low || r.buzzer.level() != gpio.Low {
			t.Error("feedback left on")
		}
		if err := r.c.CardPresented(ctx, uidA, false); !errors.Is(err, ErrStopped) {
			t.Errorf("input after stop: %v", err)
		}
		if err := r.c.Run(ctx); err == nil {
			t.Error("second Run accepted")
		}
		if !r.c.Status().Locked {
			t.Error("status not locked after stop")
		}
	})
}

func TestControllerShutdownFailSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Maglock on an active-low board, released on shutdown.
		r := newRig(t, Config{Mode: store.ModeCardOnly}, nil, &RelayOpts{Lock: FailSafe, ActiveLow: true, ShutdownUnlocked: true})
		if r.relay.level() != gpio.Low {
			t.Fatal("maglock not energised (locked) while running")
		}
		r.stop()
		if r.relay.level() != gpio.High {
			t.Fatal("maglock not released on shutdown")
		}
		if r.c.Status().Locked {
			t.Error("status says locked")
		}
	})
}

// While the journal cannot write, a grant whose record fails is refused
// with journal_fault and the door stays locked; the exit button still
// opens; the status and the LEDs show the fault.
func TestControllerJournalFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		st.setAppendErr(errors.New("no space left on device"))
		r.must(r.c.JournalHealth(ctx, false, "fault: no space left on device"))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("refused without a record", lockedLevel)
		if s := r.c.Status(); s.JournalOK || !strings.Contains(s.Journal, "no space") {
			t.Errorf("status %+v", s)
		}
		if b := r.c.st.base(); b != patFault {
			t.Errorf("feedback %v, want fault", b)
		}
		r.must(r.c.ExitButton(ctx, true))
		r.wantRelay("exit button", unlockedLevel)
		r.advance(5 * time.Second)
		r.wantRelay("relocked", lockedLevel)
		r.wantReasons("nothing written yet")
		st.setAppendErr(nil)
		r.must(r.c.JournalHealth(ctx, true, "ok"))
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("granted with a record", unlockedLevel)
		r.wantReasons("written in order after recovery", store.ReasonJournalFault, store.ReasonExitRequest, store.ReasonGranted)
		evs := st.eventList()
		if evs[0].UID != "04A1B2C3" || evs[0].Type != store.TypeAccess || !strings.Contains(evs[0].Detail, "stayed locked") {
			t.Errorf("refusal %+v", evs[0])
		}
		if s := r.c.Status(); !s.JournalOK || s.Journal != "ok" {
			t.Errorf("status after recovery %+v", s)
		}
		r.stop()
	})
}

// With OpenUnrecorded the door chooses availability: it opens, and the
// grant is recorded late, saying so.
func TestControllerJournalFailureOpenUnrecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		r := newRig(t, Config{Mode: store.ModeCardOnly, OpenUnrecorded: true}, st, nil)
		ctx := t.Context()
		st.setAppendErr(errors.New("no space left on device"))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("opened without a record", unlockedLevel)
		r.advance(5 * time.Second)
		r.wantRelay("relocked", lockedLevel)
		st.setAppendErr(nil)
		r.must(r.c.ExitButton(ctx, true))
		r.wantReasons("recorded late", store.ReasonGranted, store.ReasonGrantedNotOpened, store.ReasonExitRequest)
		if evs := st.eventList(); !strings.Contains(evs[0].Detail, "recorded late") {
			t.Errorf("grant %+v", evs[0])
		}
		r.stop()
	})
}

// A grant waits for its record: until the journal answers the relay does
// not move and other cards wait; the record carries the unlock record.
func TestControllerGrantWaitsForRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		st.holdRecords = true
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		ctx := t.Context()
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidB, false)) // waits: one question at a time
		w := st.heldRecords()
		r.wantRelay("before the record", lockedLevel)
		if len(w) != 1 || w[0].Events[0].Reason != store.ReasonGranted || len(w[0].Changes) != 1 {
			t.Fatalf("entries waiting: %+v", w)
		}
		if n := len(st.requestList()); n != 1 {
			t.Fatalf("%d questions asked while the grant is recorded, want 1", n)
		}
		st.releaseRecords()
		synctest.Wait()
		r.wantRelay("after the record", unlockedLevel)
		if v := st.stateOf(unlockKey); !strings.HasSuffix(string(v), " grant") {
			t.Errorf("unlock record %q", v)
		}
		r.stop()
	})
}

// The journal records the controller's start and orderly stop.
func TestControllerStartStopEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.must(r.c.ExitButton(t.Context(), true))
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		want := []store.Reason{store.ReasonStarted, store.ReasonExitRequest, store.ReasonStopped}
		if got := st.allReasons(); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, e := range st.events {
			if e.BootID != "boot-1" || e.Door != "front" {
				t.Errorf("%s: boot %q door %q", e.Reason, e.BootID, e.Door)
			}
		}
	})
}

func TestControllerDecisionError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(func(store.Request) (store.Decision, error) { return store.Decision{}, errors.New("bbolt: read failed") })
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.must(r.c.CardPresented(t.Context(), uidA, false))
		r.wantRelay("error", lockedLevel)
		r.wantReasons("error", ReasonDecisionError)
		r.stop()
	})
}

func TestControllerUntrustedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		relay, _ := NewRelay(newOutPin("GPIO17"), nil)
		var trusted sync.Mutex
		isTrusted := false
		clk := NewManualClock(time.Unix(0, 0)) // a Pi before NTP
		c, err := New(Config{Door: "front", Mode: store.ModeCardOnly}, Deps{Allowlist: st, Journal: st, State: st, Relay: relay, Clock: clk,
			ClockTrusted: func() bool { trusted.Lock(); defer trusted.Unlock(); return isTrusted }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		c.CardPresented(ctx, uidA, false)
		synctest.Wait()
		trusted.Lock()
		isTrusted = true
		trusted.Unlock()
		clk.Set(t0)
		c.CardRemoved(ctx)
		c.CardPresented(ctx, uidA, false)
		synctest.Wait()
		cancel()
		<-done
		reqs, evs := st.requestList(), st.eventList()
		if reqs[0].ClockTrusted || !reqs[1].ClockTrusted {
			t.Errorf("ClockTrusted %t, %t", reqs[0].ClockTrusted, reqs[1].ClockTrusted)
		}
		if evs[0].Clock != store.TimeUnsynced || evs[1].Clock != store.TimeSynced {
			t.Errorf("event clocks %s, %s", evs[0].Clock, evs[1].Clock)
		}
	})
}

func TestControllerStatusChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Mode: store.ModeCardOnly}, nil, nil)
		ch := r.c.StatusChanges()
		select { // the start itself (contact unknown → nothing) may or may not notify; drain
		case <-ch:
		default:
		}
		r.must(r.c.Tamper(t.Context(), true))
		select {
		case <-ch:
		default:
			t.Fatal("no notice of a status change")
		}
		r.must(r.c.Tamper(t.Context(), true))
		select {
		case <-ch:
			t.Fatal("notice without a change")
		default:
		}
		r.stop()
	})
}

func TestControllerInputErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Mode: store.ModeCardOnly, MaxRemoteUnlock: time.Hour}, nil, nil)
		ctx := t.Context()
		for name, err := range map[string]error{
			"empty UID":          r.c.CardPresented(ctx, nil, false),
			"long UID":           r.c.CardPresented(ctx, make([]byte, 17), false),
			"bad key":            r.c.KeyPressed(ctx, 'A'),
			"negative unlock":    r.c.RemoteUnlock(ctx, -time.Second, "a", ""),
			"too long unlock":    r.c.RemoteUnlock(ctx, 2*time.Hour, "a", ""),
			"control characters": r.c.RemoteLockdown(ctx, true, "a\nb", ""),
			"long why":           r.c.RemoteUnlock(ctx, time.Second, "a", strings.Repeat("x", 300)),
			"bad UTF-8":          r.c.ReaderHealth(ctx, false, "\xff"),
		} {
			if err == nil {
				t.Errorf("%s accepted", name)
			}
		}
		r.stop()
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		c2, err := New(Config{Door: "x"}, Deps{Allowlist: r.store, Journal: r.store, State: r.store, Relay: r.c.relay})
		if err != nil {
			t.Fatal(err)
		}
		for range inputQueueLen {
			if err := c2.CardRemoved(ctx); err != nil {
				t.Fatal("the queue should take events before Run:", err)
			}
		}
		if err := c2.CardRemoved(canceled); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled context: %v", err)
		}
		short, cancel2 := context.WithTimeout(ctx, time.Second)
		defer cancel2()
		if err := c2.CardRemoved(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("full queue: %v", err)
		}
	})
}

func TestNewValidation(t *testing.T) {
	st := newMemStore()
	relay, err := NewRelay(newOutPin("GPIO17"), nil)
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{Allowlist: st, Journal: st, State: st, Relay: relay}
	bad := map[string]Config{
		"no door":               {},
		"bad mode":              {Door: "d", Mode: "face"},
		"short unlock":          {Door: "d", Unlock: time.Millisecond},
		"long unlock":           {Door: "d", Unlock: time.Hour},
		"extended below unlock": {Door: "d", Unlock: 10 * time.Second, ExtendedUnlock: 5 * time.Second},
		"pre-alarm past held":   {Door: "d", Held: 10 * time.Second, PreAlarm: 10 * time.Second},
		"short PIN timeout":     {Door: "d", PINTimeout: time.Millisecond},
		"long remote":           {Door: "d", MaxRemoteUnlock: 48 * time.Hour},
		"unknown stale policy":  {Door: "d", StalePolicy: "open-all"},
		"empty schedule":        {Door: "d", UnlockSchedule: &store.Schedule{}},
	}
	for name, cfg := range bad {
		if _, err := New(cfg, deps); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	for name, d := range map[string]Deps{
		"no allowlist": {Journal: st, State: st, Relay: relay},
		"no journal":   {Allowlist: st, State: st, Relay: relay},
		"no state":     {Allowlist: st, Journal: st, Relay: relay},
		"no relay":     {Allowlist: st, Journal: st, State: st},
	} {
		if _, err := New(Config{Door: "d"}, d); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	c, err := New(Config{Door: "d"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	p := c.p
	if p.mode != store.ModeCardPIN || p.unlock != DefaultUnlock || p.extended != DefaultExtendedUnlock || p.held != DefaultHeld ||
		p.preAlarm != DefaultPreAlarm || p.pinFirst != DefaultPINTimeout || p.interKey != DefaultInterKey || p.maxRemote != DefaultMaxRemoteUnlock || p.stalePolicy != StaleKeepGoing {
		t.Errorf("defaults %+v", p)
	}
}

// A state store that cannot be read at start leaves the configured
// lockdown in force; decisions go on, and the lockdown flag is written
// through the journal.
func TestControllerStateStoreFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		st.stateErr = errors.New("EIO")
		r := newRig(t, Config{Mode: store.ModeCardOnly, Lockdown: true}, st, nil)
		ctx := t.Context()
		if !r.c.Status().Lockdown {
			t.Fatal("the configured lockdown is the fallback when the flag cannot be read")
		}
		r.must(r.c.RemoteLockdown(ctx, false, "bob", ""))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("grant without a state store", unlockedLevel)
		r.advance(5 * time.Second)
		r.wantRelay("relock without a state store", lockedLevel)
		st.mu.Lock()
		on, sets := st.lockdown["front"], st.lockSets
		st.mu.Unlock()
		if on || sets != 1 {
			t.Fatalf("lockdown flag %t after %d writes; want off, written once", on, sets)
		}
		r.stop()
	})
}

func TestControllerUnlockSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sched store.Schedule
		sched.Weekly[time.Monday] = []store.Window{{From: 9*60 + 30, To: 10 * 60}} // 09:30-10:00 UTC
		r := newRig(t, Config{Mode: store.ModeCardOnly, UnlockSchedule: &sched, Location: time.UTC}, nil, nil)
		r.wantRelay("09:00", lockedLevel)
		r.advance(30*time.Minute - time.Millisecond)
		r.wantRelay("09:29:59.999", lockedLevel)
		r.advance(time.Millisecond)
		r.wantRelay("09:30", unlockedLevel)
		if s := r.c.Status(); s.Locked || !s.UnlockedUntil.Equal(t0.Add(time.Hour)) {
			t.Fatalf("status %+v", s)
		}
		r.must(r.c.DoorContact(t.Context(), false))
		r.must(r.c.DoorContact(t.Context(), true))
		r.advance(20 * time.Minute)
		r.wantReasons("free access: no alarm")
		r.advance(10 * time.Minute)
		r.wantRelay("10:00", lockedLevel)
		r.advance(30 * time.Second)
		r.wantReasons("left open after the window", store.ReasonDoorHeld)
		r.stop()
	})
}

// TestControllerShutdownWithHungAllowlist checks that a question that never
// returns delays neither the relock nor, beyond a bound, the shutdown.
func TestControllerShutdownWithHungAllowlist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		release := make(chan struct{})
		st.setDecide(func(store.Request) (store.Decision, error) {
			<-release
			return grantAll(store.Request{})
		})
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.must(r.c.CardPresented(t.Context(), uidA, false))
		r.advance(decideTimeout)
		r.wantReasons("timed out", ReasonDecisionError)
		r.cancel()
		synctest.Wait()
		r.wantRelay("stopping", lockedLevel)
		select {
		case <-r.done:
			t.Fatal("Run returned without waiting for the question")
		default:
		}
		r.clock.Advance(shutdownWait)
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
		close(release) // the late answer goes nowhere
		synctest.Wait()
		r.wantRelay("stopped", lockedLevel)
	})
}

// Check refuses what New refuses, naming the field.
func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "Door"},
		{Config{Door: "front\n"}, "Door"},
		{Config{Door: "front", Mode: "fingerprint"}, "Mode"},
		{Config{Door: "front", Unlock: 100 * time.Millisecond}, "Unlock"},
		{Config{Door: "front", Unlock: 20 * time.Second, ExtendedUnlock: 10 * time.Second}, "ExtendedUnlock"},
		{Config{Door: "front", UnlockSchedule: &store.Schedule{}}, "UnlockSchedule"},
	} {
		err := tc.cfg.Check()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Check(%+v) = %v, want a ConfigError for %s", tc.cfg, err, tc.field)
		}
		if _, nerr := New(tc.cfg, Deps{}); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("New: %v; Check: %v", nerr, err)
		}
	}
	if err := (Config{Door: "front"}).Check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// A stop while a grant's record is being written says that the door did
// not open for it, and clears the unlock record that the grant carries.
func TestControllerStopWhileRecording(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		st.holdRecords = true
		r := newRig(t, Config{Mode: store.ModeCardOnly}, st, nil)
		r.must(r.c.CardPresented(t.Context(), uidA, false))
		if len(st.heldRecords()) != 1 {
			t.Fatal("no grant's record in flight")
		}
		r.stop()
		evs := st.eventList()
		got := st.allReasons()
		if len(evs) != 1 || evs[0].Reason != store.ReasonGrantedNotOpened || evs[0].UID != "04A1B2C3" || got[len(got)-1] != store.ReasonStopped {
			t.Fatalf("events %v", got)
		}
		if v, ok := st.state[unlockKey]; !ok || len(v) != 0 {
			t.Fatalf("unlock record %q (written %t), want cleared", v, ok)
		}
	})
}

// TestReadyAndAlive: Ready comes once, with the relay at its locked level;
// Alive comes from the loop every AliveEvery, and stops while the loop is
// stuck in a step (here, driving a relay pin that does not return).
func TestReadyAndAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		clock := NewManualClock(t0)
		pin := newOutPin("GPIO17")
		relay, err := NewRelay(pin, &RelayOpts{ActiveLow: true})
		if err != nil {
			t.Fatal(err)
		}
		var readyLevels []gpio.Level
		var alives atomic.Int32
		c, err := New(Config{Door: "front"}, Deps{Allowlist: st, Journal: st, State: st, Relay: relay, Clock: clock, BootID: "boot-1",
			Ready:      func() { readyLevels = append(readyLevels, pin.level()) },
			Alive:      func() { alives.Add(1) },
			AliveEvery: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		synctest.Wait()
		if len(readyLevels) != 1 || readyLevels[0] != lockedLevel {
			t.Fatalf("Ready calls with the relay at %v, want one at the locked level %v", readyLevels, lockedLevel)
		}
		if n := alives.Load(); n != 1 {
			t.Fatalf("Alive called %d times at start, want 1", n)
		}
		for i := 2; i <= 4; i++ {
			clock.Advance(5 * time.Second)
			synctest.Wait()
			if n := alives.Load(); n != int32(i) {
				t.Fatalf("after %d s: Alive called %d times, want %d", 5*(i-1), n, i)
			}
		}
		// The loop gets stuck driving the relay for the exit button.
		pin.mu.Lock()
		pin.hold = make(chan struct{})
		pin.mu.Unlock()
		if err := c.ExitButton(ctx, true); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		clock.Advance(30 * time.Second)
		synctest.Wait()
		if n := alives.Load(); n != 4 {
			t.Errorf("Alive called while the loop was stuck: %d times, want 4", n)
		}
		pin.mu.Lock()
		close(pin.hold)
		pin.hold = nil
		pin.mu.Unlock()
		synctest.Wait()
		if n := alives.Load(); n != 5 {
			t.Errorf("Alive after the loop got going again: %d times, want 5", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
