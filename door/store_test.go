package door

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/store"
)

// The real store satisfies the controller's interfaces.
var (
	_ Allowlist  = (*store.Store)(nil)
	_ Journal    = (*store.Journal)(nil)
	_ StateStore = (*store.Store)(nil)
)

// cheapPIN keeps PIN hashing fast in tests.
var cheapPIN = store.PINParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path, &store.Options{PINParams: cheapPIN})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// storeRig is a controller on gpiotest pins and a manual clock over a real
// store. Use it inside a synctest bubble.
type storeRig struct {
	t      *testing.T
	c      *Controller
	j      *store.Journal
	clock  *ManualClock
	relay  *outPin
	cancel context.CancelFunc
	done   chan error
}

func newStoreRig(t *testing.T, st *store.Store, cfg Config, clock *ManualClock) *storeRig {
	t.Helper()
	r := &storeRig{t: t, clock: clock, relay: newOutPin("GPIO17")}
	relay, err := NewRelay(r.relay, &RelayOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Door = "front"
	// No linger: synctest's clock stands still while a test checks what
	// was written.
	if r.j, err = store.OpenJournal(st, &store.JournalOptions{Door: "front", BootID: "b1", Now: clock.Now, Linger: -1}); err != nil {
		t.Fatal(err)
	}
	r.c, err = New(cfg, Deps{Allowlist: st, Journal: r.j, State: st, Relay: relay, Clock: clock, BootID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.c.Run(ctx) }()
	synctest.Wait()
	return r
}

func (r *storeRig) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Fatal(err)
	}
	if err := r.j.Close(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *storeRig) do(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	synctest.Wait()
}

// auditReasons reads back the audit log.
func auditReasons(t *testing.T, st *store.Store) []store.Reason {
	t.Helper()
	evs, err := st.EventsAfter(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Reason
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return out
}

// TestWithStore runs the controller against the real store: card and PIN,
// a bad PIN, an unknown card, lockdown across a restart and an interrupted
// unlock, and checks the audit chain.
func TestWithStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "latch.db")
		st := openStore(t, path)
		defer st.Close()
		ada := []byte{0x04, 0xA1, 0xB2, 0xC3}
		hash, err := store.HashPIN([]byte("2468"), ada, cheapPIN)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutHolder(store.Holder{ID: "h-ada", Name: "Ada"}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutCard(store.Card{UID: ada, HolderID: "h-ada", HolderName: "Ada", PINHash: hash, Doors: []string{"staff"}}); err != nil {
			t.Fatal(err)
		}
		clock := NewManualClock(t0)
		r := newStoreRig(t, st, Config{Mode: store.ModeCardPIN, Groups: []string{"staff"}}, clock)
		ctx := t.Context()

		// Card, then the PIN.
		r.do(r.c.CardPresented(ctx, ada, false))
		if !r.c.Status().AwaitingPIN {
			t.Fatal("not awaiting the PIN")
		}
		for _, k := range "2468#" {
			r.do(r.c.KeyPressed(ctx, k))
		}
		if r.relay.level() != unlockedLevel {
			t.Fatal("right PIN did not open")
		}
		clock.Advance(5 * time.Second)
		synctest.Wait()
		if r.relay.level() != lockedLevel {
			t.Fatal("no relock after the pulse")
		}
		if _, err := st.State(unlockKey); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}

		// A wrong PIN, then an unknown card.
		r.do(r.c.CardRemoved(ctx))
		r.do(r.c.CardPresented(ctx, ada, false))
		for _, k := range "1111#" {
			r.do(r.c.KeyPressed(ctx, k))
		}
		r.do(r.c.CardPresented(ctx, []byte{1, 2, 3, 4}, false))

		// Lockdown survives a restart.
		r.do(r.c.RemoteLockdown(ctx, true, "bob", "drill"))
		r.stop()
		if on, err := st.Lockdown("front"); err != nil || !on {
			t.Fatalf("lockdown in the store: %t %v", on, err)
		}
		r = newStoreRig(t, st, Config{Mode: store.ModeCardPIN, Groups: []string{"staff"}}, clock)
		if !r.c.Status().Lockdown {
			t.Fatal("lockdown lost in a restart")
		}
		r.do(r.c.CardPresented(ctx, ada, false))
		r.stop()

		// An unlock the service did not finish.
		if err := st.PutState(unlockKey, []byte("2025-03-03T09:01:00Z grant")); err != nil {
			t.Fatal(err)
		}
		r = newStoreRig(t, st, Config{Mode: store.ModeCardPIN}, clock)
		if rec, err := st.State(unlockKey); err == nil && len(rec) > 0 {
			t.Fatalf("unlock record left: %q", rec)
		}
		r.stop()

		// Three runs, each logging its start and its stop; the last found
		// the record of an unfinished unlock.
		want := []store.Reason{
			store.ReasonStarted, store.ReasonGranted, store.ReasonGrantedNotOpened,
			store.ReasonBadPIN, store.ReasonUnknownCard, store.ReasonLockdown, store.ReasonStopped,
			store.ReasonStarted, store.ReasonLockdown, store.ReasonStopped,
			store.ReasonStarted, store.ReasonUnlockInterrupt, store.ReasonStopped,
		}
		if got := auditReasons(t, st); !slices.Equal(got, want) {
			t.Fatalf("audit log %v, want %v", got, want)
		}
		evs, err := st.EventsAfter(0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if e := evs[1]; e.UID != "04A1B2C3" || e.Holder != "h-ada" || e.BootID != "b1" || e.Door != "front" || e.Clock != store.TimeSynced {
			t.Errorf("first grant %+v", e)
		}
		rep, err := st.Verify()
		if err != nil || !rep.OK || rep.Entries != uint64(len(want)) {
			t.Fatalf("audit chain: %+v %v", rep, err)
		}
	})
}
