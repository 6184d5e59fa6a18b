package main

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on any host

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// A report takes the mode and zone given, else those the door reported,
// else card+pin and UTC, and says which.
func TestDoorSettings(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	reported := &mqtt.Status{Mode: store.ModeCardOrPIN, TZ: "Europe/Berlin"}
	for _, c := range []struct {
		what  string
		st    *mqtt.Status
		mode  store.Mode
		loc   *time.Location
		want  store.Mode
		zone  string
		notes string
	}{
		{"given", reported, store.ModeCardOnly, time.UTC, store.ModeCardOnly, "UTC", "door mode card given; time zone UTC given"},
		{"reported", reported, "", nil, store.ModeCardOrPIN, "Europe/Berlin",
			"door mode card-or-pin reported by the door; time zone Europe/Berlin reported by the door"},
		{"not reported", &mqtt.Status{}, "", nil, store.ModeCardPIN, "UTC",
			"door mode card+pin assumed: door d1 has not reported it; time zone UTC assumed: door d1 has not reported it"},
		{"a zone unknown here", &mqtt.Status{TZ: "Mars/Olympus"}, "", berlin, store.ModeCardPIN, "Europe/Berlin",
			"door mode card+pin assumed: door d1 has not reported it; time zone Europe/Berlin given"},
		{"a zone unknown here, none given", &mqtt.Status{TZ: "Mars/Olympus"}, "", nil, store.ModeCardPIN, "UTC",
			`time zone UTC assumed: door d1 reports "Mars/Olympus", unknown here`},
	} {
		mode, loc, notes := doorSettings("d1", c.st, c.mode, c.loc)
		if mode != c.want || loc.String() != c.zone || !strings.Contains(strings.Join(notes, "; "), c.notes) {
			t.Errorf("%s: %s, %s, %q", c.what, mode, loc, notes)
		}
	}
}
