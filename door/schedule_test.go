package door

import (
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func TestCompileSchedule(t *testing.T) {
	bad := []store.Schedule{
		{}, // no windows: would mean always open
		{Weekly: [7][]store.Window{{{From: 600, To: 600}}}}, // empty window
		{Weekly: [7][]store.Window{{{From: 700, To: 600}}}}, // backwards
		{Weekly: [7][]store.Window{{{From: 0, To: 1441}}}},  // past midnight
		{Weekly: [7][]store.Window{{{From: 0, To: 60}}}, Holidays: []string{"25/12/2025"}},
	}
	for i, s := range bad {
		if _, err := compileSchedule(&s, time.UTC); err == nil {
			t.Errorf("schedule %d accepted: %+v", i, s)
		}
	}
	if _, err := compileSchedule(&store.Schedule{Weekly: [7][]store.Window{{{From: 0, To: 1440}}}}, nil); err == nil {
		t.Error("no time zone accepted")
	}
}

func TestScheduleDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	var s store.Schedule
	// Sundays 01:00-04:00 local: on 30 March 2025 02:00-03:00 does not exist.
	s.Weekly[time.Sunday] = []store.Window{{From: 60, To: 240}}
	u, err := compileSchedule(&s, berlin)
	if err != nil {
		t.Fatal(err)
	}
	// Saturday 29 March 2025, 12:00 Berlin (CET, UTC+1).
	sat := time.Date(2025, 3, 29, 11, 0, 0, 0, time.UTC)
	open := u.nextChange(sat)
	if want := time.Date(2025, 3, 30, 0, 0, 0, 0, time.UTC); !open.Equal(want) {
		t.Errorf("opens %v, want %v (01:00 CET)", open, want)
	}
	closeAt := u.nextChange(open)
	// 04:00 CEST is 02:00 UTC: the window lasted two real hours.
	if want := time.Date(2025, 3, 30, 2, 0, 0, 0, time.UTC); !closeAt.Equal(want) {
		t.Errorf("closes %v, want %v (04:00 CEST)", closeAt, want)
	}
	if !u.openAt(open) || u.openAt(closeAt) || !u.openAt(closeAt.Add(-time.Second)) {
		t.Error("openAt disagrees with nextChange")
	}
}

func TestScheduleNoChangeWithinAWeek(t *testing.T) {
	var s store.Schedule
	s.Weekly[time.Monday] = []store.Window{{From: 0, To: 1440}}
	// Every Monday for the next weeks is a holiday: nothing changes in the
	// horizon, and nextChange still moves forward.
	s.Holidays = []string{"2025-03-10", "2025-03-17"}
	u, err := compileSchedule(&s, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC) // Tuesday
	n := u.nextChange(from)
	if !n.After(from.Add(7*24*time.Hour)) || u.openAt(n) {
		t.Errorf("nextChange %v", n)
	}
}
