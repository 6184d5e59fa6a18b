package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// jt0 is the time of the first test event.
var jt0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// hangJournal only fails a test that hangs.
const hangJournal = 60 * time.Second

// journalRig is a store with a journal, a switch that fails its writes,
// and the events it reported stored.
type journalRig struct {
	t    *testing.T
	dir  string
	st   *Store
	j    *Journal
	fail atomic.Pointer[error]
	hook atomic.Pointer[func() error] // runs before each journal write

	mu     sync.Mutex
	stored []Event
}

func newJournalRig(t *testing.T, dir string, edit func(*JournalOptions)) *journalRig {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	r := &journalRig{t: t, dir: dir}
	st, err := Open(filepath.Join(dir, "latch.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	st.journalHook = func() error {
		if h := r.hook.Load(); h != nil {
			if err := (*h)(); err != nil {
				return err
			}
		}
		if p := r.fail.Load(); p != nil {
			return *p
		}
		return nil
	}
	o := JournalOptions{Door: "front", BootID: "b1", RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnStored: func(evs []Event) {
			r.mu.Lock()
			r.stored = append(r.stored, evs...)
			r.mu.Unlock()
		}}
	if edit != nil {
		edit(&o)
	}
	if r.j, err = OpenJournal(st, &o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.j != nil {
			r.j.Close()
		}
		r.st.Close()
	})
	return r
}

// failWith makes every journal write fail with err (nil: succeed).
func (r *journalRig) failWith(err error) {
	if err == nil {
		r.fail.Store(nil)
		return
	}
	r.fail.Store(&err)
}

// waitHealth waits until ok holds for the journal's health.
func (r *journalRig) waitHealth(what string, ok func(JournalHealth) bool) JournalHealth {
	r.t.Helper()
	deadline := time.NewTimer(hangJournal)
	defer deadline.Stop()
	for {
		if h := r.j.Health(); ok(h) {
			return h
		}
		select {
		case <-r.j.HealthChanges():
		case <-deadline.C:
			r.t.Fatalf("journal: %s: health %+v", what, r.j.Health())
		}
	}
}

// flush adds an entry the caller waits for and returns its result.
func (r *journalRig) flush(ev Event) ([]Event, error) {
	type res struct {
		evs []Event
		err error
	}
	ch := make(chan res, 1)
	r.j.Add(JournalEntry{Events: []Event{ev}, Done: func(evs []Event, err error) { ch <- res{evs, err} }})
	select {
	case x := <-ch:
		return x.evs, x.err
	case <-time.After(hangJournal):
		r.t.Fatal("journal: Done never called")
	}
	return nil, nil
}

func (r *journalRig) all() []Event {
	r.t.Helper()
	evs, err := r.st.EventsAfter(0, 10000)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

func (r *journalRig) verify() {
	r.t.Helper()
	rep, err := r.st.Verify()
	if err != nil || !rep.OK {
		r.t.Fatalf("verify: %+v %v", rep, err)
	}
}

func jev(reason Reason, i int) Event {
	return Event{Time: jt0.Add(time.Duration(i) * time.Second), Door: "front", Type: TypeDoor, Reason: reason, Detail: fmt.Sprint(i)}
}

func reasonsOf(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Reason))
	}
	return out
}

// Entries are written in order with their state changes, the waiting
// caller gets the stored events, and OnStored sees every event once.
func TestJournalWrites(t *testing.T) {
	r := newJournalRig(t, "", nil)
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, 1)}, Changes: []StateChange{LockdownChange("front", true)}})
	r.j.Add(JournalEntry{Changes: []StateChange{PutStateChange("door/front/unlock", []byte("until"))}})
	commits := r.st.Commits()
	evs, err := r.flush(jev(ReasonGranted, 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Reason != ReasonGranted || evs[0].Seq == 0 || evs[0].Hash == "" {
		t.Fatalf("Done got %+v", evs)
	}
	if got := r.st.Commits() - commits; got > 2 {
		t.Errorf("%d commits for 3 entries, want at most 2", got)
	}
	if on, err := r.st.Lockdown("front"); err != nil || !on {
		t.Errorf("lockdown %v %v, want on", on, err)
	}
	if v, err := r.st.State("door/front/unlock"); err != nil || string(v) != "until" {
		t.Errorf("state %q %v", v, err)
	}
	// Close writes everything that waits, past one batch.
	for i := range 2500 {
		r.j.Add(JournalEntry{Events: []Event{jev(ReasonDoorClosed, i)}})
	}
	if err := r.j.Close(); err != nil {
		t.Fatal(err)
	}
	r.j = nil
	all := r.all()
	if len(all) != 2502 {
		t.Fatalf("%d events after Close, want 2502", len(all))
	}
	if got := strings.Join(reasonsOf(all[:2]), ","); got != "exit_request,granted" {
		t.Errorf("chain %s", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := strings.Join(reasonsOf(r.stored[:2]), ","); got != "exit_request,granted" || len(r.stored) != 2502 {
		t.Errorf("OnStored saw %s", got)
	}
	r.verify()
}

// While writes fail, an entry whose caller waits fails at once and is not
// kept; the others wait in order, the loss record counts them, and they are
// written after a journal_fault event once writes work again.
func TestJournalFailingDisk(t *testing.T) {
	r := newJournalRig(t, "", nil)
	r.failWith(syscall.EIO)
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, 1), jev(ReasonTamper, 2)}})
	if _, err := r.flush(jev(ReasonGranted, 3)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("waited entry: %v, want EIO", err)
	}
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonDoorForced, 4)}})
	h := r.waitHealth("fault with 3 counted", func(h JournalHealth) bool { return !h.OK && h.Recorded == 3 })
	if h.Pending != 3 || !strings.Contains(h.Detail(), "fault") {
		t.Fatalf("health %+v (%s)", h, h.Detail())
	}
	if len(r.all()) != 0 {
		t.Fatal("written while failing")
	}
	r.failWith(nil)
	r.waitHealth("writing again", func(h JournalHealth) bool { return h.OK && h.Pending == 0 && h.Recorded == 0 })
	got := r.all()
	if s := strings.Join(reasonsOf(got), ","); s != "journal_fault,exit_request,tamper,door_forced" {
		t.Fatalf("chain %s", s)
	}
	if !strings.Contains(got[0].Detail, "3 events held in memory") {
		t.Errorf("journal_fault detail %q", got[0].Detail)
	}
	r.verify()
}

// Past MaxPending, events that are not alarms are shed first, and an
// events_lost event with the count and span is the first thing written.
func TestJournalShedsOrdinaryEventsFirst(t *testing.T) {
	r := newJournalRig(t, "", func(o *JournalOptions) { o.MaxPending = 4 })
	r.failWith(syscall.EIO)
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonTamper, 1)}})
	for i := 2; i <= 6; i++ {
		r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, i)}})
	}
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonDoorForced, 7)}})
	// 7 events, room for 4: exit requests 2, 3 and 4 are shed.
	r.waitHealth("counted", func(h JournalHealth) bool { return !h.OK && h.Recorded == 7 })
	r.failWith(nil)
	r.waitHealth("written", func(h JournalHealth) bool { return h.OK && h.Pending == 0 && h.Recorded == 0 })
	got := r.all()
	if s := strings.Join(reasonsOf(got), ","); s != "events_lost,journal_fault,tamper,exit_request,exit_request,door_forced" {
		t.Fatalf("chain %s", s)
	}
	var n int
	if _, err := fmt.Sscanf(got[0].Detail, "%d events lost", &n); err != nil || n != 3 {
		t.Fatalf("events_lost detail %q: count %d %v, want 3", got[0].Detail, n, err)
	}
	if !strings.Contains(got[0].Detail, jt0.Add(2*time.Second).Format(time.RFC3339)) || !strings.Contains(got[0].Detail, jt0.Add(4*time.Second).Format(time.RFC3339)) {
		t.Errorf("events_lost span %q, want the times of events 2 to 4", got[0].Detail)
	}
	if got[4].Detail != "6" {
		t.Errorf("kept %q, want the newest exit request", got[5].Detail)
	}
	r.verify()
}

// A crash while events are held in memory is recorded as events_lost with
// their count at the next start; a stop (Close) too.
func TestJournalLossSurvivesCrashAndStop(t *testing.T) {
	for _, stop := range []string{"crash", "close"} {
		t.Run(stop, func(t *testing.T) {
			dir := t.TempDir()
			r := newJournalRig(t, dir, nil)
			r.j.Add(JournalEntry{Events: []Event{jev(ReasonStarted, 0)}})
			r.waitHealth("started written", func(h JournalHealth) bool { return h.Pending == 0 })
			r.failWith(syscall.ENOSPC)
			for i := 1; i <= 5; i++ {
				r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, i)}})
			}
			r.waitHealth("5 counted", func(h JournalHealth) bool { return h.Recorded == 5 })
			next := t.TempDir()
			if stop == "close" {
				if err := r.j.Close(); err == nil || !strings.Contains(err.Error(), "5 events not written") {
					t.Fatalf("Close: %v", err)
				}
				r.j = nil
			}
			// A copy of the files as they are now is what a power cut or a
			// kill -9 leaves.
			for _, name := range []string{"latch.db", lossFileName} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(next, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r2 := newJournalRig(t, next, nil)
			r2.waitHealth("recorded", func(h JournalHealth) bool { return h.Lost == 0 && h.Recorded == 0 })
			got := r2.all()
			if s := strings.Join(reasonsOf(got), ","); s != "started,events_lost" {
				t.Fatalf("chain %s", s)
			}
			var n int
			if _, err := fmt.Sscanf(got[1].Detail, "%d events lost", &n); err != nil || n != 5 {
				t.Fatalf("events_lost %q", got[1].Detail)
			}
			if !strings.Contains(got[1].Detail, jt0.Add(time.Second).Format(time.RFC3339)) || !strings.Contains(got[1].Detail, jt0.Add(5*time.Second).Format(time.RFC3339)) {
				t.Errorf("span %q", got[1].Detail)
			}
			r2.verify()
		})
	}
}

// A damaged loss record is not trusted to say nothing was lost.
func TestJournalDamagedLossRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, lossFileName), []byte("garbage that is not a loss record"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newJournalRig(t, dir, nil)
	if _, err := r.flush(jev(ReasonStarted, 0)); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	if len(got) != 2 || got[0].Reason != ReasonEventsLost || !strings.Contains(got[0].Detail, "unreadable") {
		t.Fatalf("chain %+v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, lossFileName))
	if err != nil || len(b) != lossFileSize || strings.Trim(string(b), "\x00") != "" {
		t.Fatalf("loss record after the notice: %q %v, want %d zero bytes", b, err, lossFileSize)
	}
}

func TestLossRecordRoundTrip(t *testing.T) {
	for _, rec := range []lossRecord{
		{n: 1, first: jt0, last: jt0},
		{n: 12345, first: jt0, last: jt0.Add(time.Hour + 7)},
		{n: 2},
	} {
		got, err := decodeLossRecord(encodeLossRecord(rec))
		if err != nil || got != rec {
			t.Errorf("%+v: got %+v %v", rec, got, err)
		}
	}
	b := encodeLossRecord(lossRecord{n: 3, first: jt0, last: jt0})
	b[10] ^= 1
	if _, err := decodeLossRecord(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped bit: %v", err)
	}
}

func FuzzDecodeLossRecord(f *testing.F) {
	f.Add(encodeLossRecord(lossRecord{n: 3, first: jt0, last: jt0.Add(time.Minute)}))
	f.Add(make([]byte, lossRecordLen))
	f.Add([]byte(lossMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeLossRecord(b)
		if err != nil {
			return
		}
		if rec.n == 0 {
			return
		}
		again, err := decodeLossRecord(encodeLossRecord(rec))
		if err != nil || again != rec {
			t.Fatalf("round trip of %+v: %+v %v", rec, again, err)
		}
	})
}

// An entry nobody waits for lingers, so that a grant that follows shares
// its commit; alone, it is written once Linger has passed.
func TestJournalLinger(t *testing.T) {
	r := newJournalRig(t, "", func(o *JournalOptions) { o.Linger = time.Hour })
	before := r.st.Commits()
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonTamper, 1)}})
	if _, err := r.flush(jev(ReasonGranted, 2)); err != nil {
		t.Fatal(err)
	}
	if n := r.st.Commits() - before; n != 1 {
		t.Fatalf("%d commits for an event and the grant after it, want 1", n)
	}
	if got := strings.Join(reasonsOf(r.all()), ","); got != "tamper,granted" {
		t.Fatalf("chain %s", got)
	}

	stored := make(chan []Event, 1)
	r2 := newJournalRig(t, "", func(o *JournalOptions) {
		o.Linger = time.Millisecond
		o.OnStored = func(evs []Event) { stored <- evs }
	})
	r2.j.Add(JournalEntry{Events: []Event{jev(ReasonTamper, 1)}})
	select {
	case evs := <-stored:
		if len(evs) != 1 || evs[0].Reason != ReasonTamper {
			t.Fatalf("stored %+v", evs)
		}
	case <-time.After(hangJournal):
		t.Fatal("a lone entry was never written")
	}
}

// BenchmarkJournal measures the journal's throughput: events added one at
// a time, as the door's parts add them, and group-committed by its writer.
func BenchmarkJournal(b *testing.B) {
	st, err := Open(filepath.Join(b.TempDir(), "latch.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	j, err := OpenJournal(st, &JournalOptions{Door: "front"})
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Time: jt0, Door: "front", Type: TypeDoor, Reason: ReasonExitRequest, Detail: "bench"}
	before := st.Commits()
	start := time.Now()
	n := 0
	for b.Loop() {
		j.Add(JournalEntry{Events: []Event{ev}})
		n++
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "events/s")
	b.ReportMetric(float64(st.Commits()-before)/float64(n)*1000, "commits/1000-events")
}

// Events shed while a batch is being committed are never from that batch:
// what is written is counted as written, and what is shed as lost.
func TestJournalShedDuringCommit(t *testing.T) {
	r := newJournalRig(t, "", func(o *JournalOptions) { o.MaxPending = 3; o.Linger = -1 })
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}
	r.hook.Store(&hold)
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, 1)}}) // A, being committed
	<-entered
	for i := 2; i <= 4; i++ { // B, C, D: with A, one too many
		r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, i)}})
	}
	close(release)
	r.waitHealth("written", func(h JournalHealth) bool { return h.Pending == 0 && h.Lost == 0 })
	got := r.all()
	var details []string
	for _, e := range got {
		details = append(details, string(e.Reason)+":"+e.Detail)
	}
	if len(got) != 4 || got[0].Detail != "1" || got[1].Reason != ReasonEventsLost || got[2].Detail != "3" || got[3].Detail != "4" {
		t.Fatalf("chain %q; want A, events_lost (B), C, D", details)
	}
	if !strings.HasPrefix(got[1].Detail, "1 events lost") || !strings.Contains(got[1].Detail, jt0.Add(2*time.Second).Format(time.RFC3339)) {
		t.Fatalf("events_lost %q, want B's", got[1].Detail)
	}
	if h := r.j.Health(); h.Pending != 0 {
		t.Fatalf("pending %d after all was written", h.Pending)
	}
}

// While writes fail, every entry whose caller waits fails at once, even
// one queued behind more than a batch of others.
func TestJournalFailsWaitingEntriesBehindABatch(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(filepath.Join(dir, "latch.db"), &Options{MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var fail atomic.Bool
	fail.Store(true)
	st.journalHook = func() error {
		if fail.Load() {
			return syscall.EIO
		}
		return nil
	}
	j, err := OpenJournal(st, &JournalOptions{RetryMin: time.Hour, RetryMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, i)}})
	}
	done := make(chan error, 1)
	j.Add(JournalEntry{Events: []Event{jev(ReasonGranted, 9)}, Done: func(_ []Event, err error) { done <- err }})
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("Done: %v", err)
		}
	case <-time.After(hangJournal):
		t.Fatal("the waiting entry behind a batch was neither written nor failed")
	}
	fail.Store(false)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	evs, _ := st.EventsAfter(0, 100)
	if got := strings.Join(reasonsOf(evs), ","); got != "journal_fault,exit_request,exit_request,exit_request,exit_request,exit_request" {
		t.Fatalf("chain %s", got)
	}
}

// A commit that hangs without failing leaves a count of what waits in the
// loss record, so that a power cut during the stall is reported; once it
// completes the count goes back to zero.
func TestJournalHungCommitCounted(t *testing.T) {
	r := newJournalRig(t, "", func(o *JournalOptions) { o.HangCheck = time.Millisecond; o.Linger = -1 })
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hang := func() error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}
	r.hook.Store(&hang)
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonExitRequest, 1)}}) // its commit hangs
	<-entered
	r.j.Add(JournalEntry{Events: []Event{jev(ReasonTamper, 2)}})
	h := r.waitHealth("counted during the hang", func(h JournalHealth) bool { return h.Recorded == 2 })
	if !h.OK {
		t.Fatalf("a hang is not a failure: %+v", h)
	}
	if loss, err := ReadJournalLoss(r.dir); err != nil || loss.Count != 2 {
		t.Fatalf("loss record during the hang: %+v %v", loss, err)
	}
	close(release)
	r.waitHealth("written", func(h JournalHealth) bool { return h.Pending == 0 && h.Recorded == 0 })
	if got := strings.Join(reasonsOf(r.all()), ","); got != "exit_request,tamper" {
		t.Fatalf("chain %s", got)
	}
}
