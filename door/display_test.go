package door_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/door/display"
	"github.com/latchdoor/latch/door/display/displaytest"
	"github.com/latchdoor/latch/store"
)

// seenDisplay passes each screen to the LCD, then sends what the emulated
// LCD reads, so that the test waits for the controller's display
// goroutine instead of sleeping.
type seenDisplay struct {
	*display.LCD
	emu  *displaytest.LCD
	seen chan [2]string
}

func (d seenDisplay) Show(lines [2]string) error {
	err := d.LCD.Show(lines)
	t := d.emu.Text()
	d.seen <- [2]string{strings.TrimRight(t[0], " "), strings.TrimRight(t[1], " ")}
	return err
}

// TestControllerDisplay runs a controller with an HD44780 LCD on an
// emulated I²C backpack and reads back what the LCD shows: the idle
// prompt, a grant, the prompt again when the message's time is over,
// "Offline" while the site link is down, and "Out of service" once the
// controller stops.
func TestControllerDisplay(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "latch.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	uid := []byte{0x04, 0xA1, 0xB2, 0xC3}
	if err := st.PutCard(store.Card{UID: uid, HolderID: "h-ada", HolderName: "Ada", Doors: []string{"front"}}); err != nil {
		t.Fatal(err)
	}
	relay, err := door.NewRelay(&gpiotest.Pin{N: "GPIO17"}, &door.RelayOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	emu := displaytest.NewLCD(0x27)
	lcd, err := display.NewLCD(emu, 0x27, &display.LCDOpts{Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	screens := seenDisplay{LCD: lcd, emu: emu, seen: make(chan [2]string, 16)}
	clock := door.NewManualClock(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC))
	journal, err := store.OpenJournal(st, &store.JournalOptions{Door: "front", BootID: "test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer journal.Close()
	ctrl, err := door.New(door.Config{Door: "front", Mode: store.ModeCardOnly},
		door.Deps{Allowlist: st, Journal: journal, State: st, Relay: relay, Display: screens, Clock: clock, BootID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- ctrl.Run(ctx) }()
	want := func(l1, l2 string) {
		t.Helper()
		w := [2]string{l1, l2}
		for {
			select {
			case got := <-screens.seen:
				if got == w {
					return
				}
			case <-time.After(time.Minute): // only turns a hang into a failure
				t.Fatalf("the LCD never showed %q", w)
			}
		}
	}
	want("Present card", "")
	if err := ctrl.CardPresented(ctx, uid, false); err != nil {
		t.Fatal(err)
	}
	want("Access granted", "")
	clock.Advance(3 * time.Second)
	want("Door unlocked", "")
	clock.Advance(door.DefaultUnlock)
	want("Present card", "")
	if err := ctrl.SiteLink(ctx, false); err != nil {
		t.Fatal(err)
	}
	want("Present card", "Offline")
	if err := ctrl.SiteLink(ctx, true); err != nil {
		t.Fatal(err)
	}
	want("Present card", "")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want("Out of service", "")
	if errs := emu.Errors(); len(errs) > 0 {
		t.Errorf("the LCD saw malformed input: %v", errs)
	}
}
