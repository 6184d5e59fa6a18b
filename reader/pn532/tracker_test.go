package pn532_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// script runs a tracker for a number of polls. after[n] runs once poll n
// (counting from 1) is done; no time passes between polls.
type script struct {
	polls int
	after map[int]func()
	opts  pn532.TrackerOpts
}

// run returns the events, each written "poll N: event".
func (s script) run(t *testing.T, d *pn532.Dev) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	o := s.opts
	o.Wait = func(ctx context.Context, period time.Duration) error {
		if period != 100*time.Millisecond {
			t.Errorf("waits %s between polls", period)
		}
		n++
		if f := s.after[n]; f != nil {
			f()
		}
		if n == s.polls {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	var events []string
	err := pn532.NewTracker(d, &o).Run(ctx, func(e pn532.TrackEvent) {
		var s string
		switch e := e.(type) {
		case pn532.Presented:
			s = "presented " + e.Target.String()
		case pn532.Removed:
			s = "removed " + e.Target.String()
		case pn532.Fault:
			s = "fault"
			if !errors.Is(e.Err, pn532.ErrNoDevice) {
				t.Errorf("fault: %v", e.Err)
			}
		case pn532.Recovered:
			s = "recovered"
		}
		events = append(events, fmt.Sprintf("poll %d: %s", n+1, s))
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if n != s.polls {
		t.Fatalf("%d polls, want %d", n, s.polls)
	}
	return events
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func present(t *testing.T, chip *pn532test.Chip, c pn532test.Card) func() {
	return func() {
		if err := chip.Present(c); err != nil {
			t.Error(err)
		}
	}
}

// A card left on the reader is one event; it is removed after three
// empty polls.
func TestTrackerCardStays(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	got := script{polls: 80, after: map[int]func(){
		2: present(t, chip, classic),
		30: func() {
			if chip.Field() {
				t.Error("field left on between polls of a card")
			}
		},
		60: chip.Remove,
	}}.run(t, d)
	expect(t, got,
		"poll 3: presented uid=deadbeef atqa=0004 sak=08",
		"poll 63: removed uid=deadbeef atqa=0004 sak=08")
}

// A card that misses fewer polls than RemoveAfter never left.
func TestTrackerFlicker(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	got := script{polls: 20, after: map[int]func(){
		1: present(t, chip, ntag),
		5: chip.Remove,
		7: present(t, chip, ntag), // polls 6 and 7 were empty
		9: chip.Remove,
	}, opts: pn532.TrackerOpts{RemoveAfter: 3}}.run(t, d)
	expect(t, got,
		"poll 2: presented uid=04c63a63110189 atqa=0044 sak=00",
		"poll 12: removed uid=04c63a63110189 atqa=0044 sak=00")
}

// Another card without an empty poll between: Removed, then Presented.
func TestTrackerSwap(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	got := script{polls: 10, after: map[int]func(){
		1: present(t, chip, classic),
		4: present(t, chip, triple),
	}}.run(t, d)
	expect(t, got,
		"poll 2: presented uid=deadbeef atqa=0004 sak=08",
		"poll 5: removed uid=deadbeef atqa=0004 sak=08",
		"poll 5: presented uid=04010203040506070809 atqa=0084 sak=00")
}

// A phone makes up a new UID on every activation: still one presence.
func TestTrackerRandomUID(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polls := 0
	var events []pn532.TrackEvent
	err := pn532.NewTracker(d, &pn532.TrackerOpts{Wait: func(ctx context.Context, _ time.Duration) error {
		polls++
		switch polls {
		case 1:
			if err := chip.Present(pn532test.Card{RandomUID: true}); err != nil {
				t.Error(err)
			}
		case 20:
			chip.Remove()
		case 30:
			cancel()
			return ctx.Err()
		}
		return nil
	}}).Run(ctx, func(e pn532.TrackEvent) { events = append(events, e) })
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("%d events: %v", len(events), events)
	}
	p, ok := events[0].(pn532.Presented)
	if !ok || !p.Target.RandomUID {
		t.Fatalf("%#v", events[0])
	}
	if _, ok := events[1].(pn532.Removed); !ok {
		t.Fatalf("%#v", events[1])
	}
}

// The reader is unplugged with a card on it, then plugged back: the card
// is removed and one Fault reported once re-initialising failed; then one
// Recovered, and the card is seen again.
func TestTrackerFaultAndRecovery(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, func(o *pn532.Opts) { o.Reset = chip.Reset() })
	got := script{polls: 30, after: map[int]func(){
		1:  present(t, chip, classic),
		5:  func() { chip.Unplug(0xFF) },
		20: chip.Plug,
	}}.run(t, d)
	expect(t, got,
		"poll 2: presented uid=deadbeef atqa=0004 sak=08",
		"poll 8: removed uid=deadbeef atqa=0004 sak=08",
		"poll 8: fault",
		"poll 21: recovered",
		"poll 21: presented uid=deadbeef atqa=0004 sak=08")
}

// A brown-out resets the chip: the driver configures it again within the
// polls a fault takes, so nothing is reported.
func TestTrackerSurvivesAReset(t *testing.T) {
	chip := pn532test.New(&pn532test.Opts{LoseFirstCommand: true})
	d := newDev(t, chip, nil)
	got := script{polls: 20, after: map[int]func(){
		3:  chip.PowerCycle,
		10: present(t, chip, classic),
	}}.run(t, d)
	expect(t, got, "poll 11: presented uid=deadbeef atqa=0004 sak=08")
}

// A Presented handler may talk to the card before it is released.
func TestTrackerHandlerTalksToTheCard(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	if err := chip.Present(pn532test.Card{
		UID: hx("04 11 22 33 44 55 66"), ATS: hx("06 75 77 81 02 80"),
		APDU: func(req []byte) ([]byte, byte) { return []byte{0x91, 0x00}, 0 },
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var answer []byte
	err := pn532.NewTracker(d, &pn532.TrackerOpts{Wait: func(ctx context.Context, _ time.Duration) error {
		cancel()
		return ctx.Err()
	}}).Run(ctx, func(e pn532.TrackEvent) {
		if p, ok := e.(pn532.Presented); ok {
			var err error
			answer, err = d.DataExchange(ctx, p.Target.Tg, []byte{0x90, 0x60, 0x00, 0x00, 0x00})
			if err != nil {
				t.Error(err)
			}
		}
	})
	if !errors.Is(err, context.Canceled) || string(answer) != "\x91\x00" {
		t.Fatalf("% X, %v", answer, err)
	}
	if chip.Field() {
		t.Fatal("card not released after the handler")
	}
}

// Cards come and go from another goroutine while the tracker runs with a
// real timer: events always alternate and nothing races. Each change waits
// for the tracker to have polled since the last one.
func TestTrackerConcurrentCards(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, func(o *pn532.Opts) { o.PollPeriod = 50 * time.Microsecond })
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for i := range 60 {
			for seen := chip.Stats().Commands; chip.Stats().Commands < seen+3; {
				select {
				case <-runDone: // the tracker stopped early: its error is reported below
					return
				default:
					runtime.Gosched()
				}
			}
			if i%2 == 1 {
				chip.Remove()
			} else {
				_ = chip.Present(pn532test.Card{UID: []byte{0x04, 0x00, 0x00, byte(i % 5)}})
			}
		}
	}()
	var last string
	events := 0
	err := pn532.NewTracker(d, &pn532.TrackerOpts{RemoveAfter: 1}).Run(ctx, func(e pn532.TrackEvent) {
		var kind string
		switch e.(type) {
		case pn532.Presented:
			kind = "presented"
		case pn532.Removed:
			kind = "removed"
		default:
			t.Errorf("event %#v", e)
		}
		if kind == last {
			t.Errorf("%s twice", kind)
		}
		last = kind
		events++
	})
	close(runDone)
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if events < 20 {
		t.Fatalf("%d events for 60 changes", events)
	}
}
