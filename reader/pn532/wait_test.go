package pn532_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// rfTime is the emulated RF time of a card's activation.
const rfTime = 3 * time.Millisecond

// tracked runs a tracker on d until the test ends and hands its events
// over a channel.
func tracked(t *testing.T, d *pn532.Dev, opts *pn532.TrackerOpts) <-chan pn532.TrackEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan pn532.TrackEvent)
	done := make(chan error)
	go func() {
		done <- pn532.NewTracker(d, opts).Run(ctx, func(e pn532.TrackEvent) {
			select {
			case events <- e:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		// Halt ends the chip's wait and the driver's watch of the IRQ line.
		if err := d.Halt(); err != nil {
			t.Error(err)
		}
	})
	return events
}

// trackedIRQ is tracked on an emulated chip with its IRQ line and rfTime,
// polled every 100 ms while a card is present.
func trackedIRQ(t *testing.T) (*pn532.Dev, *pn532test.Chip, <-chan pn532.TrackEvent) {
	t.Helper()
	chip := pn532test.New(&pn532test.Opts{RFTime: rfTime})
	d := newDev(t, chip, func(o *pn532.Opts) {
		o.IRQ = chip.IRQ()
		o.PollPeriod = 100 * time.Millisecond
	})
	return d, chip, tracked(t, d, nil)
}

// next returns the next event, of type E, and how long it took.
func next[E pn532.TrackEvent](t *testing.T, events <-chan pn532.TrackEvent) (E, time.Duration) {
	t.Helper()
	start := time.Now()
	e := <-events
	got, ok := e.(E)
	if !ok {
		t.Fatalf("event %#v, want %T", e, got)
	}
	return got, time.Since(start)
}

// In IRQ mode a card is seen once the RF has activated it; nothing crosses
// the bus while the field is empty; a card left on the reader is
// reported once; a card taken away is reported within RemoveAfter
// periods and the first look's window. Fake clock (synctest).
func TestTrackerIRQ(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, chip, events := trackedIRQ(t)
		time.Sleep(time.Second)
		idle := chip.Stats()
		time.Sleep(time.Minute)
		if s := chip.Stats(); s.Tx != idle.Tx {
			t.Fatalf("%d transactions in a minute without a card", s.Tx-idle.Tx)
		}
		if got := chip.Commands(); !bytes.Equal(got[len(got)-2:], []byte{0x32, 0x4A}) {
			t.Fatalf("commands % X: want MaxRetries 0xFF, then the wait", got)
		}
		if _, retries := chip.Configured(); retries != 0xFF {
			t.Fatalf("MxRtyPassiveActivation %02X", retries)
		}

		if err := chip.Present(ntag); err != nil {
			t.Fatal(err)
		}
		p, took := next[pn532.Presented](t, events)
		if took != rfTime || !bytes.Equal(p.Target.UID, ntag.UID) {
			t.Fatalf("%v after %s, want the card after %s", p.Target, took, rfTime)
		}
		// The card stays: no more events; it is looked for every period.
		s0 := chip.Stats()
		select {
		case e := <-events:
			t.Fatalf("event %#v for a card left on the reader", e)
		case <-time.After(10 * time.Second):
		}
		if n := chip.Stats().Commands - s0.Commands; n < 150 || n > 200 {
			t.Fatalf("%d commands in 10 s with a card on the reader, want 2 per period", n)
		}

		// Taken away at a moment between two looks.
		time.Sleep(37 * time.Millisecond)
		chip.Remove()
		_, took = next[pn532.Removed](t, events)
		if limit := 3*100*time.Millisecond + 20*time.Millisecond; took > limit {
			t.Fatalf("removal seen after %s, want at most %s", took, limit)
		}
		idle = chip.Stats()
		time.Sleep(time.Minute)
		if s := chip.Stats(); s.Tx != idle.Tx {
			t.Fatalf("%d transactions in a minute after the card left", s.Tx-idle.Tx)
		}
		// Another card, then a swap without an empty look.
		if err := chip.Present(classic); err != nil {
			t.Fatal(err)
		}
		if _, took = next[pn532.Presented](t, events); took != rfTime {
			t.Fatalf("seen after %s", took)
		}
		if err := chip.Present(triple); err != nil {
			t.Fatal(err)
		}
		next[pn532.Removed](t, events)
		p, _ = next[pn532.Presented](t, events)
		if !bytes.Equal(p.Target.UID, triple.UID) {
			t.Fatalf("%v", p.Target)
		}
	})
}

// A card at the edge of the field misses a look: still one presence.
func TestTrackerIRQFlicker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, chip, events := trackedIRQ(t)
		if err := chip.Present(ntag); err != nil {
			t.Fatal(err)
		}
		next[pn532.Presented](t, events)
		chip.Remove()
		time.Sleep(150 * time.Millisecond) // one look missed it
		if err := chip.Present(ntag); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-events:
			t.Fatalf("event %#v for a card that came back", e)
		case <-time.After(time.Second):
		}
	})
}

// Another goroutine uses the bus while the chip waits for a card: its
// call aborts the wait with an ACK frame, and the tracker starts the wait
// again afterwards. When the chip had selected a card just before the
// abort, the field goes off first so that the card answers again.
func TestWaitAbortedForTheBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, chip, events := trackedIRQ(t)
		ctx := context.Background()
		time.Sleep(time.Second)
		s0 := chip.Stats()
		if err := d.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		s1 := chip.Stats()
		if s1.Aborts != s0.Aborts+1 {
			t.Fatalf("%d aborts, want 1", s1.Aborts-s0.Aborts)
		}
		// Ping, then field off (the chip may have selected a card), then
		// the wait again.
		if got := chip.Commands(); !bytes.Equal(got[len(got)-3:], []byte{0x00, 0x32, 0x4A}) {
			t.Fatalf("commands % X", got)
		}
		time.Sleep(time.Second)
		if chip.Stats().Tx != s1.Tx {
			t.Fatal("traffic after the wait was started again")
		}

		// The card comes; within its RF time the door takes the bus.
		if err := chip.Present(classic); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rfTime / 2)
		if err := d.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		p, _ := next[pn532.Presented](t, events)
		if !bytes.Equal(p.Target.UID, classic.UID) {
			t.Fatalf("%v", p.Target)
		}
	})
}

func TestWaitCard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		chip := pn532test.New(nil)
		d := newDev(t, chip, nil)
		if _, err := d.WaitCard(ctx, time.Second); !errors.Is(err, pn532.ErrNoIRQ) {
			t.Fatalf("without IRQ: %v", err)
		}
		d = newDev(t, chip, func(o *pn532.Opts) { o.IRQ = chip.IRQ() })
		if _, err := d.WaitCard(ctx, time.Second); err != pn532.ErrNoTarget {
			t.Fatalf("empty field: %v", err)
		}
		// The wait goes on in the chip: the next call says nothing.
		tx := chip.Stats().Tx
		if _, err := d.WaitCard(ctx, time.Second); err != pn532.ErrNoTarget || chip.Stats().Tx != tx {
			t.Fatalf("resumed wait: %v, %d transactions", err, chip.Stats().Tx-tx)
		}
		if err := chip.Present(classic); err != nil {
			t.Fatal(err)
		}
		tg, err := d.WaitCard(ctx, time.Second)
		if err != nil || !bytes.Equal(tg.UID, classic.UID) {
			t.Fatalf("%v, %v", tg, err)
		}
		// Poll after WaitCard sets the finite retries again.
		mustCard(t, d, classic.UID)
		if _, retries := chip.Configured(); retries != fastOpts.MaxRetries {
			t.Fatalf("MxRtyPassiveActivation %02X after Poll", retries)
		}
		chip.Remove()
		// Halt ends a wait.
		go func() {
			time.Sleep(time.Second)
			if err := d.Halt(); err != nil {
				t.Error(err)
			}
		}()
		if _, err := d.WaitCard(ctx, time.Hour); !errors.Is(err, pn532.ErrHalted) {
			t.Fatalf("halted: %v", err)
		}
		if chip.Field() {
			t.Fatal("field on after Halt")
		}
		// A context that ends leaves the wait to the chip.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := d.WaitCard(cctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("context: %v", err)
		}
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
	})
}

// tapFigures are tap → Presented latencies, on synctest's fake clock.
type tapFigures struct {
	Mode      string
	P50, P99  time.Duration
	IdleTx    int // SPI transactions per second with no card
	TapsTaken int
}

// measureTaps taps a card n times at a random moment (a fixed seed) and
// takes it away once seen, and returns how long each tap took to be
// Presented on the fake clock. The chip needs rfTime to activate a card;
// the driver has its default options but period (and the IRQ pin).
func measureTaps(t *testing.T, mode string, irq bool, period time.Duration, n int) tapFigures {
	var f tapFigures
	synctest.Test(t, func(t *testing.T) {
		chip := pn532test.New(&pn532test.Opts{RFTime: rfTime})
		o := pn532.DefaultOpts
		o.PollPeriod = period
		if irq {
			o.IRQ = chip.IRQ()
		}
		d, err := pn532.NewSPI(chip, &o)
		if err != nil {
			t.Fatal(err)
		}
		events := tracked(t, d, nil)
		// Ten seconds with no card, after the first second.
		time.Sleep(time.Second)
		s0 := chip.Stats()
		time.Sleep(10 * time.Second)
		idleTx := (chip.Stats().Tx - s0.Tx) / 10
		rnd := rand.New(rand.NewPCG(1, 2))
		var lat []time.Duration
		for range n {
			time.Sleep(time.Duration(rnd.Int64N(int64(2 * period))))
			if err := chip.Present(ntag); err != nil {
				t.Fatal(err)
			}
			_, took := next[pn532.Presented](t, events)
			lat = append(lat, took)
			chip.Remove()
			next[pn532.Removed](t, events)
		}
		slices.Sort(lat)
		f = tapFigures{
			Mode: mode, TapsTaken: n,
			P50:    lat[len(lat)/2],
			P99:    lat[len(lat)*99/100],
			IdleTx: idleTx,
		}
	})
	return f
}

var tapModes = []struct {
	mode   string
	irq    bool
	period time.Duration
}{
	{"timer-100ms", false, 100 * time.Millisecond},
	{"timer-20ms", false, 20 * time.Millisecond},
	{"irq", true, 100 * time.Millisecond},
}

// With the IRQ pin a tap is seen within 5 ms (median) and 10 ms (99th
// percentile) when the RF takes 3 ms, and the bus is silent while no card
// is there; the poll timer makes a card wait. Fake clock (synctest), so
// the figures are exact. With PN532_TAP_FIGURES set to a file name it
// writes them there, for BenchmarkTapLatency.
func TestTapLatency(t *testing.T) {
	var all []tapFigures
	for _, m := range tapModes {
		f := measureTaps(t, m.mode, m.irq, m.period, 200)
		t.Logf("%s: p50 %s, p99 %s, %d transactions/s idle", f.Mode, f.P50, f.P99, f.IdleTx)
		all = append(all, f)
		switch {
		case m.irq && (f.P50 >= 5*time.Millisecond || f.P99 >= 10*time.Millisecond || f.IdleTx != 0):
			t.Errorf("IRQ mode: p50 %s, p99 %s, %d transactions/s idle; want under 5 ms, 10 ms, none", f.P50, f.P99, f.IdleTx)
		case !m.irq && (f.P99 > m.period+10*time.Millisecond || f.P50 < rfTime):
			t.Errorf("%s: p50 %s, p99 %s", f.Mode, f.P50, f.P99)
		}
	}
	if out := os.Getenv("PN532_TAP_FIGURES"); out != "" {
		b, err := json.Marshal(all)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkTapLatency reports tap → Presented on the fake clock of
// testing/synctest, as TestTapLatency measures it: 200 taps at random
// moments, p50 and p99, in timer mode (100 ms and 20 ms periods) and IRQ
// mode, with 3 ms of emulated RF time; and the SPI transactions per
// second while no card is there. A synctest bubble needs a *testing.T, so
// the benchmark runs that test in a child process of the test binary.
// The figures do not depend on the machine.
func BenchmarkTapLatency(b *testing.B) {
	out := filepath.Join(b.TempDir(), "figures.json")
	var figs []tapFigures
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTapLatency$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PN532_TAP_FIGURES="+out)
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, msg)
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(raw, &figs); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range figs {
		b.ReportMetric(float64(f.P50.Microseconds())/1e3, f.Mode+"-p50-ms")
		b.ReportMetric(float64(f.P99.Microseconds())/1e3, f.Mode+"-p99-ms")
		b.ReportMetric(float64(f.IdleTx), f.Mode+"-idle-tx/s")
	}
}
