package door

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/store"
)

// meterLog is a Meter that keeps what it is told.
type meterLog struct {
	mu        sync.Mutex
	decisions []store.Reason
	answers   []answer
}

type answer struct {
	took time.Duration
	pin  bool
}

func (m *meterLog) Decision(r store.Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decisions = append(m.decisions, r)
}

func (m *meterLog) Answered(took time.Duration, pin bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answers = append(m.answers, answer{took, pin})
}

func (m *meterLog) get() ([]store.Reason, []answer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.decisions), slices.Clone(m.answers)
}

// newMeteredRig is a controller with a Meter, a relay and no feedback,
// on a manual clock, inside a synctest bubble.
func newMeteredRig(t *testing.T, cfg Config, st *memStore, m Meter) *rig {
	t.Helper()
	cfg.Door = "front"
	r := &rig{t: t, clock: NewManualClock(t0), store: st, relay: newOutPin("GPIO17")}
	relay, err := NewRelay(r.relay, &RelayOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	r.c, err = New(cfg, Deps{Allowlist: st, Journal: st, State: st, Relay: relay, Clock: r.clock, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	return r
}

// The meter hears of each decision once, with the reason the audit event
// carries, and of each allowlist answer with the time it took on the
// controller's clock and its stage.
func TestMeterDecisions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := newMeteredRig(t, Config{Mode: store.ModeCardPIN}, st, &meterLog{})
		m := r.c.meter.(*meterLog)
		ctx := t.Context()
		// The allowlist takes 40 ms on the card and 300 ms on the PIN (an
		// argon2 hash on a Pi), on the controller's clock.
		st.setDecide(func(req store.Request) (store.Decision, error) {
			if req.PIN == nil {
				r.clock.Advance(40 * time.Millisecond)
				return store.Decision{Outcome: store.NeedPIN, HolderID: "h1"}, nil
			}
			r.clock.Advance(300 * time.Millisecond)
			if string(req.PIN) == "1234" {
				return grantAll(req)
			}
			return store.Decision{Outcome: store.Denied, Reason: store.ReasonBadPIN}, nil
		})
		r.must(r.c.CardPresented(ctx, uidA, false))
		for _, k := range "1234#" {
			r.must(r.c.KeyPressed(ctx, k))
		}
		r.wantRelay("granted", unlockedLevel)
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		for _, k := range "9999#" {
			r.must(r.c.KeyPressed(ctx, k))
		}
		r.must(r.c.CardRemoved(ctx))
		// A PIN that never comes: pin_timeout, decided without a question.
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.advance(DefaultPINTimeout)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		r.wantReasons("three decisions", store.ReasonGranted, store.ReasonBadPIN, store.ReasonGrantedNotOpened, store.ReasonPINTimeout)
		decisions, answers := m.get()
		if want := []store.Reason{store.ReasonGranted, store.ReasonBadPIN, store.ReasonPINTimeout}; !slices.Equal(decisions, want) {
			t.Errorf("decisions %v, want %v", decisions, want)
		}
		card, pin := answer{40 * time.Millisecond, false}, answer{300 * time.Millisecond, true}
		if want := []answer{card, pin, card, pin, card}; !slices.Equal(answers, want) {
			t.Errorf("answers %v, want %v", answers, want)
		}
	})
}

// A grant whose record cannot be written is counted as what the door
// records instead: a refusal with journal_fault, not a grant.
func TestMeterGrantNotRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.setDecide(grantAll)
		m := &meterLog{}
		r := newMeteredRig(t, Config{Mode: store.ModeCardOnly}, st, m)
		ctx := t.Context()
		st.setAppendErr(errors.New("no space left on device"))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("refused without a record", lockedLevel)
		st.setAppendErr(nil)
		r.must(r.c.CardRemoved(ctx))
		r.must(r.c.CardPresented(ctx, uidA, false))
		r.wantRelay("granted with a record", unlockedLevel)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		decisions, answers := m.get()
		if want := []store.Reason{store.ReasonJournalFault, store.ReasonGranted}; !slices.Equal(decisions, want) {
			t.Errorf("decisions %v, want %v", decisions, want)
		}
		if len(answers) != 2 {
			t.Errorf("answers %v, want two", answers)
		}
	})
}
