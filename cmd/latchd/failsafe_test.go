package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
	"github.com/latchdoor/latch/store"
)

// A panic in a goroutine is logged with its stack, halts the relay at once
// and becomes the goroutine's error.
func TestFailsafeGoroutinePanic(t *testing.T) {
	// A maglock that its site wants released on shutdown: Halt is the only
	// thing that de-energises it, so the pin shows whether Halt ran.
	pin := &gpiotest.Pin{N: "RELAY"}
	relay, err := door.NewRelay(pin, &door.RelayOpts{Lock: door.FailSafe, ShutdownUnlocked: true})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.High {
		t.Fatal("fail-safe lock not energised at start")
	}
	var logs lockedBuffer
	f := newFailsafe(slog.New(slog.NewTextHandler(&logs, nil)), relay)
	err = f.goroutine("card reader", func() error { panic("index out of range") })()
	if err == nil || !strings.Contains(err.Error(), "card reader: panic: index out of range") {
		t.Fatalf("error %v, want the panic", err)
	}
	if pin.Read() != gpio.Low {
		t.Error("the relay was not halted")
	}
	l := logs.String()
	for _, want := range []string{"level=ERROR", "part=\"card reader\"", "TestFailsafeGoroutinePanic"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q: %s", want, l)
		}
	}
	if f.err() != err {
		t.Errorf("first error %v, want %v", f.err(), err)
	}
	if got := f.wait(context.Background()); got != err {
		t.Errorf("wait = %v, want %v", got, err)
	}
	// A goroutine that does not panic is left alone.
	if err := f.goroutine("keypad", func() error { return nil })(); err != nil {
		t.Errorf("quiet goroutine: %v", err)
	}
}

// A panic in the reader tracker's goroutine stops the daemon with an error.
func TestPanicInReaderStopsDaemon(t *testing.T) {
	td := newTestDoor(t, func(d *daemon) {
		d.onTrack = func(ev pn532.TrackEvent) {
			if _, ok := ev.(pn532.Presented); ok {
				panic("tracker callback broke")
			}
		}
	})
	td.start()
	if err := td.sim.chip.Present(pn532test.Card{UID: []byte{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	err := td.wait()
	if err == nil || !strings.Contains(err.Error(), "card reader: panic: tracker callback broke") {
		t.Fatalf("run returned %v, want the reader's panic", err)
	}
	if td.d.relay.Unlocked() || td.sim.relay.Read() != gpio.Low {
		t.Error("relay not locked after the panic")
	}
	if !strings.Contains(td.logs.String(), "goroutine ") {
		t.Error("no stack in the log")
	}
}

// A panic printing an event, whoever appended it, stops the daemon; the
// event itself stays stored.
func TestPanicInPrinterStopsDaemon(t *testing.T) {
	td := newTestDoor(t, func(d *daemon) {
		d.onEvent = func(e store.Event) {
			if e.Reason == store.ReasonUnknownCard {
				panic("printer broke")
			}
		}
	})
	td.start()
	if err := td.sim.chip.Present(pn532test.Card{UID: []byte{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	err := td.wait()
	if err == nil || !strings.Contains(err.Error(), "printer: panic: printer broke") {
		t.Fatalf("run returned %v, want the printer's panic", err)
	}
	evs, err := td.d.st.EventsAfter(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || e.Reason == store.ReasonUnknownCard
	}
	if !found {
		t.Error("the event that could not be printed is not in the audit log")
	}
}

// A panic in the daemon's code that the MQTT client calls on its own
// goroutines stops the daemon.
func TestPanicInMQTTHandlerStopsDaemon(t *testing.T) {
	td := newTestDoor(t, nil)
	td.start()
	m := td.d.mqttDoor()
	m.ctrl = nil // SetStale on a missing controller panics
	err := m.SetStale(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "mqtt stale: panic") {
		t.Fatalf("SetStale returned %v, want the panic", err)
	}
	if err := td.wait(); err == nil || !strings.Contains(err.Error(), "mqtt stale: panic") {
		t.Fatalf("run returned %v, want the panic", err)
	}
}
