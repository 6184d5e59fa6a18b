package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// timerClock is a clock that moves only when the test moves it, with the
// timers the notifier waits on; each timer asked for is announced on
// waits.
type timerClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []clockTimer
	waits  chan time.Duration
}

type clockTimer struct {
	at time.Time
	c  chan time.Time
}

func newTimerClock(t0 time.Time) *timerClock {
	return &timerClock{t: t0, waits: make(chan time.Duration, 64)}
}

func (c *timerClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *timerClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.t
	} else {
		c.timers = append(c.timers, clockTimer{at: c.t.Add(d), c: ch})
	}
	c.mu.Unlock()
	c.waits <- d
	return ch
}

// advance moves the clock on by d and fires the timers due.
func (c *timerClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.t) {
			kept = append(kept, tm)
			continue
		}
		tm.c <- c.t
	}
	c.timers = kept
}

// waitTimer waits until the notifier waits on a timer of d.
func (c *timerClock) waitTimer(t *testing.T, d time.Duration) {
	t.Helper()
	for {
		select {
		case got := <-c.waits:
			if got == d {
				return
			}
		case <-time.After(hangGuard):
			t.Fatalf("the notifier never waited %v", d)
		}
	}
}

// A webhook that fails while latch serve stops is tried again after it
// starts on the same database file, at the back-off's time on the
// notifier's clock, and arrives once, signed; a pending delivery whose
// channel the configuration lost is failed, saying so.
func TestNotifyRetrySurvivesRestart(t *testing.T) {
	const secret = "restart secret"
	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
		ids    []string
		up     atomic.Bool
	)
	got := make(chan int, 8)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get(signatureHeader))
		ids = append(ids, r.Header.Get(deliveryHeader))
		n := len(bodies)
		mu.Unlock()
		if !up.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
		}
		got <- n
	}))
	t.Cleanup(recv.Close)
	cfg, err := parseNotify([]byte(`
[notify.webhook.siem]
url = "` + recv.URL + `"
secret = "` + secret + `"
`))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := site.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutNotifyRule(site.NotifyRule{Name: "granted-hook", Events: []string{"granted"}, Channel: "webhook:siem"}); err != nil {
		t.Fatal(err)
	}
	clock := newTimerClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(db *site.DB, cfg notifyConfig) (*notifier, func()) {
		n, err := newNotifier(cfg, "hq", db, log, clock.now, clock.after, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); n.run(ctx) }()
		return n, func() { cancel(); <-done }
	}
	waitGot := func(want int) {
		t.Helper()
		select {
		case n := <-got:
			if n != want {
				t.Fatalf("request %d, want %d", n, want)
			}
		case <-time.After(hangGuard):
			t.Fatalf("no request %d", want)
		}
	}

	n, stop := start(db, cfg)
	n.events([]site.Arrival{{Door: "front", Event: store.Event{Seq: 7, Door: "front", Reason: "granted", Holder: "alice"}}})
	waitGot(1)
	clock.waitTimer(t, notifyFirstRetry) // the failure is logged and the retry scheduled
	stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = site.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := db.QueuedDeliveries()
	if err != nil || len(q) != 1 || q[0].Attempts != 1 || q[0].Status != site.DeliveryPending ||
		!q[0].Next.Equal(clock.now().Add(notifyFirstRetry)) || !strings.Contains(q[0].Error, "500") {
		t.Fatalf("queue after the stop: %+v, %v", q, err)
	}
	// A pending delivery of a channel the configuration no longer has.
	gone, err := db.QueueDelivery(site.Delivery{Time: clock.now(), Rule: "old", Channel: "webhook:gone", Status: site.DeliveryPending}, []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	up.Store(true)
	_, stop = start(db, cfg)
	defer stop()
	clock.waitTimer(t, notifyFirstRetry) // not sent before its time
	select {
	case n := <-got:
		t.Fatalf("request %d before the retry's time", n)
	default:
	}
	clock.advance(notifyFirstRetry)
	waitGot(2)
	eventually(t, "the delivery logged as delivered", func() bool {
		ds, err := db.Deliveries(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.ID == q[0].ID {
				return d.Status == site.DeliveryDelivered
			}
		}
		return false
	})
	stop()
	ds, err := db.Deliveries(0)
	if err != nil || len(ds) != 2 {
		t.Fatalf("delivery log: %+v, %v", ds, err)
	}
	if d := ds[1]; d.ID != q[0].ID || d.Attempts != 2 || d.Error != "" || !d.Last.Equal(clock.now()) || !d.Next.IsZero() {
		t.Errorf("the resumed delivery: %+v", d)
	}
	if d := ds[0]; d.ID != gone.ID || d.Status != site.DeliveryFailed || !strings.Contains(d.Error, "channel webhook:gone is no longer in the configuration") {
		t.Errorf("the delivery of a lost channel: %+v", d)
	}
	if q, err := db.QueuedDeliveries(); err != nil || len(q) != 0 {
		t.Errorf("queue at the end: %+v, %v", q, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) {
		t.Fatalf("%d requests, want the same body twice", len(bodies))
	}
	if want := sign(secret, bodies[1]); !hmac.Equal([]byte(sigs[1]), []byte(want)) {
		t.Fatalf("signature %q, want %q", sigs[1], want)
	}
	// Both attempts name the one delivery, so a receiver can drop a repeat.
	if ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("%s: %q", deliveryHeader, ids)
	}
	var x notification
	if err := json.Unmarshal(bodies[1], &x); err != nil || x.Rule != "granted-hook" || x.Event == nil || x.Event.Seq != 7 || x.Door != "front" {
		t.Fatalf("body %s: %v", bodies[1], err)
	}
}
