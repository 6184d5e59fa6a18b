package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/physic"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
	"github.com/latchdoor/latch/store"
)

// testDoor is a daemon on the simulator's emulated hardware, without MQTT.
type testDoor struct {
	t      testing.TB
	d      *daemon
	sim    *simHW
	logs   *lockedBuffer
	events chan store.Event

	cancel context.CancelFunc
	done   chan error
}

// newTestDoor builds a daemon in a fresh data directory; edit, if set, may
// change it before the controller is built.
func newTestDoor(t testing.TB, edit func(*daemon)) *testDoor {
	t.Helper()
	cfg := simConfig(t.TempDir())
	sim, hw, err := newSimHW(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	relay, err := newRelay(cfg, hw, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(cfg, door.SystemClock{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	td := &testDoor{t: t, sim: sim, logs: logs, events: make(chan store.Event, 1024)}
	td.d = &daemon{cfg: cfg, hw: hw, relay: relay, st: st, log: log, boot: "test",
		onEvent: func(e store.Event) { td.events <- e }}
	if edit != nil {
		edit(td.d)
	}
	if err := td.d.build(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return td
}

// start runs the daemon until stop or the end of the test.
func (td *testDoor) start() {
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	td.done = make(chan error, 1)
	go func() { td.done <- td.d.run(ctx) }()
	td.t.Cleanup(func() {
		cancel()
		<-td.done
	})
}

// stop asks the daemon to stop and returns what run returned.
func (td *testDoor) stop() error {
	td.t.Helper()
	td.cancel()
	return td.wait()
}

// wait returns what run returned, once it has.
func (td *testDoor) wait() error {
	td.t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	select {
	case err := <-td.done:
		td.done <- err // for the cleanup
		return err
	case <-guard.C:
		td.t.Fatal("the daemon did not stop")
		return nil
	}
}

// event waits for the next audit event with reason r.
func (td *testDoor) event(r store.Reason) store.Event {
	td.t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		select {
		case e := <-td.events:
			if e.Reason == r {
				return e
			}
		case <-guard.C:
			td.t.Fatalf("no %s event", r)
		}
	}
}

// status waits until the door's status satisfies ok and returns the MQTT
// status the daemon would publish then.
func (td *testDoor) status(what string, ok func(mqtt.DoorStatus) bool) mqtt.DoorStatus {
	td.t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	m := td.d.mqttDoor()
	for {
		changed := td.d.ctrl.StatusChanges()
		if s := m.Status(); ok(s) {
			return s
		}
		select {
		case <-changed:
		case <-guard.C:
			td.t.Fatalf("the status never showed %s", what)
		}
	}
}

func checkOneLine(t *testing.T, what, s string, n int) {
	t.Helper()
	if len(s) > n {
		t.Errorf("%s is %d bytes, want at most %d: %q", what, len(s), n, s)
	}
	if !utf8.ValidString(s) {
		t.Errorf("%s is not UTF-8: %q", what, s)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		t.Errorf("%s has a control character: %q", what, s)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 10, ""},
		{"short", 10, "short"},
		{" two\nlines\t", 20, "two lines"},
		{"bad \xff byte", 20, "bad \uFFFD byte"},
		{"0123456789", 10, "0123456789"},
		{"0123456789x", 10, "0123456…"},
		{"ééééé", 8, "éé…"}, // never cuts a character in two
	} {
		got := oneLine(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("oneLine(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		checkOneLine(t, "oneLine", got, tc.n)
	}
}

// A driver error of any length or content reaches the audit log and the
// MQTT status as one line that fits.
func TestReaderFaultDetailFits(t *testing.T) {
	td := newTestDoor(t, nil)
	td.start()
	ctx := context.Background()
	long := errors.New("pn532: spi transfer failed:\n" + strings.Repeat("é\x00 noise ", 80) + "\xff")
	if err := td.d.readerHealth(ctx, false, long); err != nil {
		t.Fatalf("fault refused: %v", err)
	}
	ev := td.event(store.ReasonReaderFault)
	checkOneLine(t, "event detail", ev.Detail, maxDetail)
	if !strings.HasPrefix(ev.Detail, "pn532: spi transfer failed: é") {
		t.Errorf("event detail %q, want the driver's error", ev.Detail)
	}
	st := td.status("the fault", func(s mqtt.DoorStatus) bool { return !s.Reader.OK })
	checkOneLine(t, "status reader", st.Reader.String(), maxDetail)
	if !strings.HasPrefix(st.Reader.String(), "fault: pn532: spi transfer failed:") {
		t.Errorf("status reader %q, want the fault and its detail", st.Reader.String())
	}

	if err := td.d.readerHealth(ctx, true, nil); err != nil {
		t.Fatal(err)
	}
	td.event(store.ReasonReaderOK)
	td.status("the reader ok", func(s mqtt.DoorStatus) bool { return s.Reader.OK })

	// A fault without an error still says something.
	if err := td.d.readerHealth(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	if ev := td.event(store.ReasonReaderFault); ev.Detail != "reader fault" {
		t.Errorf("detail %q, want %q", ev.Detail, "reader fault")
	}
	td.status("the bare fault", func(s mqtt.DoorStatus) bool { return s.Reader.Detail == "fault: reader fault" })
	if err := td.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestReaderStatus(t *testing.T) {
	if got := readerStatus(""); got != "fault" {
		t.Errorf("readerStatus(\"\") = %q", got)
	}
	got := readerStatus(strings.Repeat("x", maxDetail))
	checkOneLine(t, "readerStatus", got, maxDetail)
	if !strings.HasPrefix(got, "fault: xxx") || !strings.HasSuffix(got, "…") {
		t.Errorf("readerStatus(long) = %q", got)
	}
}

// The reader starts from the driver's defaults: without an IRQ line the
// chip is told to retry a card's activation as DefaultOpts says, not zero
// times; with one (TestReaderWaitsOnIRQ) the chip waits for a card.
func TestReaderOptsDefaults(t *testing.T) {
	td := newTestDoor(t, func(d *daemon) {
		d.cfg.Reader.SpeedHz = 400_000
		d.hw.readerIRQ = nil
	})
	o := td.d.readerOpts()
	want := pn532.DefaultOpts
	if o.MaxRetries != want.MaxRetries || o.ResponseTimeout != want.ResponseTimeout || o.PollPeriod != want.PollPeriod {
		t.Errorf("options %+v, want the defaults %+v", o, want)
	}
	if o.Clock != 400*physic.KiloHertz {
		t.Errorf("clock %v, want reader.speed_hz", o.Clock)
	}

	startAndPresent(t, td)
	if sam, retries := td.sim.chip.Configured(); !sam || retries != want.MaxRetries {
		t.Errorf("chip configured: SAM %t, MaxRetries %d; want true, %d", sam, retries, want.MaxRetries)
	}
	if err := td.stop(); err != nil {
		t.Fatal(err)
	}
}

// startAndPresent starts td, presents a card to the emulated reader and
// waits until the reader reports it.
func startAndPresent(t *testing.T, td *testDoor) {
	t.Helper()
	seen := make(chan pn532.TrackEvent, 16)
	td.d.onTrack = func(ev pn532.TrackEvent) { seen <- ev }
	td.start()
	if err := td.sim.chip.Present(pn532test.Card{UID: []byte{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	select {
	case ev := <-seen:
		if _, ok := ev.(pn532.Presented); !ok {
			t.Fatalf("first reader event %T, want Presented", ev)
		}
	case <-guard.C:
		t.Fatal("the reader never saw the card")
	}
}

// TestReaderWaitsOnIRQ: with the chip's IRQ line wired, as the simulator
// wires it, the reader hands the wait for a card to the chip (unlimited
// activation retries) and still sees a card presented.
func TestReaderWaitsOnIRQ(t *testing.T) {
	td := newTestDoor(t, nil)
	if td.d.hw.readerIRQ == nil {
		t.Fatal("the simulator's reader has no IRQ line")
	}
	startAndPresent(t, td)
	if _, retries := td.sim.chip.Configured(); retries != 0xFF {
		t.Errorf("chip configured with MaxRetries %d; want 0xFF, waiting for a card", retries)
	}
	if err := td.stop(); err != nil {
		t.Fatal(err)
	}
}

// failingPin is an output that fails once told to.
type failingPin struct {
	*gpiotest.Pin
	fail atomic.Bool
}

// Out implements gpio.PinOut.
func (p *failingPin) Out(l gpio.Level) error {
	if p.fail.Load() {
		return errors.New("gpio: write failed")
	}
	return p.Pin.Out(l)
}

// A relay that cannot be put in its safe state when the daemon is asked to
// stop is a failure of the run, not a clean stop.
func TestRunReportsRelayHaltFailure(t *testing.T) {
	pin := &failingPin{Pin: &gpiotest.Pin{N: "RELAY"}}
	td := newTestDoor(t, func(d *daemon) {
		r, err := newRelay(d.cfg, &hardware{relay: pin}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.relay = r
	})
	td.start()
	pin.fail.Store(true)
	err := td.stop()
	if err == nil || !strings.Contains(err.Error(), "gpio: write failed") {
		t.Fatalf("run returned %v, want the relay's halt failure", err)
	}
}

func TestHaltRelayFailure(t *testing.T) {
	pin := &failingPin{Pin: &gpiotest.Pin{N: "RELAY"}}
	relay, err := door.NewRelay(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := haltRelay(relay, log); err != nil {
		t.Fatalf("halt: %v", err)
	}
	pin.fail.Store(true)
	err = haltRelay(relay, log)
	if err == nil || !strings.Contains(err.Error(), "relay not in its safe state") || !strings.Contains(err.Error(), "gpio: write failed") {
		t.Fatalf("error %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "relay: not in its safe state") {
		t.Errorf("log %q, want an error naming the relay", l)
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestCloseStoreFailure(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := closeStore(closerFunc(func() error { return nil }), log); err != nil {
		t.Fatal(err)
	}
	err := closeStore(closerFunc(func() error { return errors.New("store: close x: disk gone") }), log)
	if err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("error %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "disk gone") {
		t.Errorf("log %q", l)
	}
}

// A relay config the door refuses names its keys, and the pin is still
// driven to its locked level first.
func TestNewRelayErrorNamesKeys(t *testing.T) {
	c := simConfig(t.TempDir())
	c.Relay.Lock, c.Relay.FailSafeHalt = "fail-secure", "unlocked" // validate refuses this
	pin := &gpiotest.Pin{N: "RELAY", L: gpio.High}
	_, err := newRelay(c, &hardware{relay: pin}, nil)
	if err == nil || !strings.Contains(err.Error(), "relay.fail_safe_halt") || !strings.Contains(err.Error(), "relay.lock") {
		t.Fatalf("error %v, want one naming relay.fail_safe_halt and relay.lock", err)
	}
	if pin.Read() != gpio.Low {
		t.Error("the relay pin was not driven locked")
	}
	_, err = newRelay(c, &hardware{}, nil)
	if err == nil || !strings.Contains(err.Error(), "relay.pin RELAY") {
		t.Fatalf("error %v, want one naming relay.pin", err)
	}
}

// The door's own config errors are reported under the config's keys.
func TestDoorConfigErrorNamesKeys(t *testing.T) {
	for _, tc := range []struct {
		cfg  door.Config
		want string
	}{
		{door.Config{Door: "front", Unlock: 100 * time.Millisecond}, "timing.unlock 100ms: want 500ms to 1m0s"},
		{door.Config{Door: "front", Unlock: 20 * time.Second, ExtendedUnlock: 10 * time.Second}, "timing.extended_unlock 10s: want 20s"},
		{door.Config{Door: "front", Held: time.Second}, "timing.held 1s: "},
		{door.Config{Door: "front", PINTimeout: time.Hour}, "timing.pin 1h0m0s: "},
		{door.Config{Door: "front", InterKey: time.Hour}, "timing.inter_key 1h0m0s: "},
		{door.Config{Door: "front", Mode: "fingerprint"}, "mode \"fingerprint\": "},
		{door.Config{}, "door required"},
		{door.Config{Door: "front\n"}, "door id: control character"},
	} {
		_, err := door.New(tc.cfg, door.Deps{})
		if err == nil {
			t.Fatalf("door.New(%+v) accepted it", tc.cfg)
		}
		if got := doorConfigError(err); !strings.HasPrefix(got.Error(), tc.want) {
			t.Errorf("doorConfigError(%v) = %v, want it under %q", err, got, tc.want)
		}
	}
}
