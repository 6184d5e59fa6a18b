package door

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/store"
)

// firstCardParams is a card-only door whose unlock schedule, Monday
// 09:30-10:00 UTC (t0 is Monday 09:00), is first-card for "managers".
func firstCardParams(t *testing.T) *params {
	t.Helper()
	var sc store.Schedule
	sc.Weekly[time.Monday] = []store.Window{{From: 9*60 + 30, To: 10 * 60}}
	u, err := compileSchedule(&sc, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	p := testParams(store.ModeCardOnly)
	p.schedule, p.firstCard = u, "managers"
	return p
}

// grantedFirst is a grant for a card that counts for the first-card
// schedule (reason granted, or r).
func grantedFirst(id uint64, r store.Reason) evDecided {
	if r == "" {
		r = store.ReasonGranted
	}
	return evDecided{id: id, d: store.Decision{Outcome: store.Granted, Reason: r, HolderID: "m1", HolderName: "Mia", FirstCard: true}}
}

func TestNextFirstCard(t *testing.T) {
	const (
		before = 10 * time.Minute // 09:10, before the window
		in     = 40 * time.Minute // 09:40, inside it
		end    = time.Hour        // 10:00, its end
	)
	member := func(at time.Duration) []timed {
		// The manager walks in: the door opens and closes again.
		return []timed{{at, card(uidA)}, {at, grantedFirst(1, "")}, {at, evCardGone{}},
			{at + time.Second, evContact{true}}, {at + 3*time.Second, evContact{false}}}
	}
	nonMember := []timed{{in, card(uidB)}, {in, granted(1)}, {in, evCardGone{}}}
	tests := []struct {
		name    string
		plain   bool     // an ordinary unlock schedule, not first-card
		evs     []timed  // the last one is under test
		want    []string // its actions, when set
		relay   bool     // the relay after it
		started bool     // the window started after it
	}{
		{name: "a window nobody badges into stays locked (snow day)",
			evs: []timed{{in, evTick{}}, {end - time.Second, evTick{}}}, want: []string{}},
		{name: "an ordinary schedule opens without a card", plain: true,
			evs: []timed{{in, evTick{}}}, relay: true},
		{name: "the question carries the group",
			evs: []timed{{in, card(uidA)}}, want: []string{"decide uid=04A1B2C3 pin=nil lockdown=false"}},
		{name: "a member's grant starts the window",
			evs:   member(in)[:2],
			want:  []string{"record access/granted uid=04A1B2C3", "first card until 10:00", "log door/schedule_first_card uid=04A1B2C3", "fb granted", "relay unlock", "record grant,schedule"},
			relay: true, started: true},
		{name: "the started window holds the door past the grant",
			evs: append(member(in), timed{in + time.Minute, evTick{}}), relay: true, started: true},
		{name: "the window's end relocks",
			evs:  append(member(in), timed{end, evTick{}}),
			want: []string{"first card clear", "relay lock", "clear record"}},
		{name: "a non-member's grant opens once",
			evs: nonMember, relay: true},
		{name: "and the door locks again after it",
			evs: append(slices.Clone(nonMember), timed{in + 5*time.Second, evTick{}}), want: []string{"log door/granted_not_opened uid=04112233445566", "relay lock", "clear record"}},
		{name: "a member's grant before the window does not start it",
			evs: append(member(before), timed{in, evTick{}})},
		{name: "a duress grant does not start it",
			evs: []timed{{in, card(uidA)}, {in, grantedFirst(1, store.ReasonGrantedDuress)}, {in, evCardGone{}}, {in + 5*time.Second, evTick{}}}},
		{name: "a granted member with an ordinary schedule changes nothing", plain: true,
			evs: append(member(in), timed{in + time.Minute, evTick{}}), relay: true},
		{name: "lockdown ends a started window",
			evs:  append(member(in), timed{in + time.Minute, evLockdown{on: true}}),
			want: []string{"first card clear", "lockdown true", "log door/lockdown", "relay lock", "clear record"}},
		{name: "and it does not restart when lockdown ends",
			evs: append(member(in), timed{in + time.Minute, evLockdown{on: true}}, timed{in + 2*time.Minute, evLockdown{on: false}})},
		{name: "another member restarts it after lockdown",
			evs: append(append(member(in), timed{in + time.Minute, evLockdown{on: true}}, timed{in + 2*time.Minute, evLockdown{on: false}}),
				timed{in + 3*time.Minute, card(uidA)}, timed{in + 3*time.Minute, grantedFirst(2, "")}),
			relay: true, started: true},
		{name: "the next window waits for a card again",
			evs: append(member(in), timed{end, evTick{}}, timed{7*24*time.Hour + in, evTick{}}), want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := firstCardParams(t)
			if tc.plain {
				p.firstCard = ""
			}
			s, acts := run(t, p, nil, tc.evs)
			if tc.want != nil && !slices.Equal(describe(acts), tc.want) {
				t.Errorf("actions %q, want %q", describe(acts), tc.want)
			}
			if s.relay != tc.relay || s.schedStarted != tc.started {
				t.Errorf("relay %t started %t, want %t %t", s.relay, s.schedStarted, tc.relay, tc.started)
			}
			for _, a := range acts {
				if d, ok := a.(actDecide); ok && d.req.FirstCardGroup != p.firstCard {
					t.Errorf("question asks for first-card group %q, want %q", d.req.FirstCardGroup, p.firstCard)
				}
			}
		})
	}
}

// TestControllerFirstCard runs a first-card schedule (Monday 09:30-10:00
// UTC, cards of "managers") on the real store and a manual clock: a staff
// card in the window opens once, a manager's starts the window, a restart
// keeps it started from its record, lockdown ends it and lifting lockdown
// does not restart it, and the window's end relocks.
func TestControllerFirstCard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t, filepath.Join(t.TempDir(), "latch.db"))
		defer st.Close()
		manager, staff := []byte{0x04, 0xA1, 0xB2, 0xC3}, []byte{0x04, 0x11, 0x22, 0x33}
		for _, c := range []store.Card{
			{UID: manager, HolderID: "h-mia", HolderName: "Mia", Doors: []string{"front", "managers"}, Flags: store.Flags{CardOnly: true}},
			{UID: staff, HolderID: "h-sam", HolderName: "Sam", Doors: []string{"front"}, Flags: store.Flags{CardOnly: true}},
		} {
			if err := st.PutCard(c); err != nil {
				t.Fatal(err)
			}
		}
		var sched store.Schedule
		sched.Weekly[time.Monday] = []store.Window{{From: 9*60 + 30, To: 10 * 60}}
		cfg := Config{Mode: store.ModeCardOnly, UnlockSchedule: &sched, Location: time.UTC, FirstCardGroup: "managers"}
		clock := NewManualClock(t0)
		r := newStoreRig(t, st, cfg, clock)
		ctx := t.Context()
		firstKey := "door/front/first_card"
		relay := func(step string, want gpio.Level) {
			t.Helper()
			if got := r.relay.level(); got != want {
				t.Fatalf("%s: relay %v, want %v", step, got, want)
			}
		}
		tap := func(uid []byte) {
			t.Helper()
			r.do(r.c.CardPresented(ctx, uid, false))
			r.do(r.c.CardRemoved(ctx))
		}

		clock.Advance(40 * time.Minute) // 09:40
		synctest.Wait()
		relay("09:40, nobody in", lockedLevel)
		tap(staff)
		relay("staff card in the window", unlockedLevel)
		clock.Advance(5 * time.Second)
		synctest.Wait()
		relay("after the staff card's unlock time", lockedLevel)

		tap(manager)
		clock.Advance(time.Minute)
		synctest.Wait()
		relay("a minute after the manager's card", unlockedLevel)
		if rec, err := st.State(firstKey); err != nil || string(rec) != "2025-03-03T10:00:00Z" {
			t.Fatalf("first-card record %q %v", rec, err)
		}

		// A restart in the window keeps it started from the record.
		r.stop()
		r = newStoreRig(t, st, cfg, clock)
		relay("after a restart", unlockedLevel)

		// Lockdown wins, and lifting it does not restart the window.
		r.do(r.c.RemoteLockdown(ctx, true, "bob", "drill"))
		relay("lockdown", lockedLevel)
		r.do(r.c.RemoteLockdown(ctx, false, "bob", "drill over"))
		relay("lockdown lifted", lockedLevel)
		cleared := func(step string) {
			t.Helper()
			if rec, err := st.State(firstKey); len(rec) > 0 || (err != nil && !errors.Is(err, store.ErrNotFound)) {
				t.Fatalf("first-card record %s: %q %v", step, rec, err)
			}
		}
		cleared("after lockdown")
		tap(manager)
		clock.Advance(time.Minute)
		synctest.Wait()
		relay("a manager again", unlockedLevel)

		// A restart whose record was not written (the power went before
		// the journal did) waits for a card that counts again.
		r.stop()
		if err := st.PutState(firstKey, nil); err != nil {
			t.Fatal(err)
		}
		r = newStoreRig(t, st, cfg, clock)
		relay("after a restart without the record", lockedLevel)
		tap(manager)
		relay("a manager after that restart", unlockedLevel)

		clock.Set(t0.Add(time.Hour)) // 10:00
		synctest.Wait()
		relay("the window's end", lockedLevel)
		cleared("after the window")
		r.stop()

		var firsts []string
		evs, err := st.EventsAfter(0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Reason == store.ReasonScheduleFirstCard {
				firsts = append(firsts, e.Holder+" "+e.Time.Format("15:04"))
			}
		}
		if want := []string{"h-mia 09:40", "h-mia 09:41", "h-mia 09:42"}; !slices.Equal(firsts, want) {
			t.Fatalf("schedule_first_card events %q, want %q", firsts, want)
		}
	})
}
