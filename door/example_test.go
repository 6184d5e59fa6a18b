package door_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// Example wires a card-only door to a store and presents a card. On a
// Raspberry Pi the pins come from periph's gpioreg (gpioreg.ByName("GPIO17")
// after host.Init) and the clock is door.SystemClock{}; here they are
// gpiotest pins and a manual clock.
func Example() {
	dir, err := os.MkdirTemp("", "latch-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(filepath.Join(dir, "latch.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	uid := []byte{0x04, 0xA1, 0xB2, 0xC3}
	if err := st.PutCard(store.Card{UID: uid, HolderID: "h-ada", HolderName: "Ada", Doors: []string{"front"}}); err != nil {
		log.Fatal(err)
	}

	// An active-low relay board driving a strike: the pin is high while
	// locked.
	relayPin := &gpiotest.Pin{N: "GPIO17"}
	changed := make(chan bool)
	relay, err := door.NewRelay(relayPin, &door.RelayOpts{ActiveLow: true, OnChange: func(unlocked bool) { changed <- unlocked }})
	if err != nil {
		log.Fatal(err)
	}
	clock := door.NewManualClock(time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC))
	// The journal writes the door's events off its loop; close it after
	// the controller, before the store.
	journal, err := store.OpenJournal(st, &store.JournalOptions{Door: "front", BootID: "example", Now: clock.Now})
	if err != nil {
		log.Fatal(err)
	}
	ctrl, err := door.New(door.Config{Door: "front", Mode: store.ModeCardOnly},
		door.Deps{Allowlist: st, Journal: journal, State: st, Relay: relay, Clock: clock, BootID: "example"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ctrl.Run(ctx) }()

	if err := ctrl.CardPresented(ctx, uid, false); err != nil {
		log.Fatal(err)
	}
	fmt.Println("unlocked:", <-changed, "pin:", relayPin.Read())
	clock.Advance(door.DefaultUnlock)
	fmt.Println("unlocked:", <-changed, "pin:", relayPin.Read())

	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	if err := journal.Close(); err != nil {
		log.Fatal(err)
	}
	events, err := st.EventsAfter(0, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events {
		if e.Type == store.TypeSystem {
			fmt.Println(e.Reason)
			continue
		}
		fmt.Println(e.Reason, e.UID, e.Holder)
	}
	// Output:
	// unlocked: true pin: Low
	// unlocked: false pin: High
	// started
	// granted 04A1B2C3 h-ada
	// granted_not_opened 04A1B2C3 h-ada
	// stopped
}
