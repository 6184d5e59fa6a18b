package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// An operator snoozes a forced door's alarm for 15 minutes on the alarms'
// clock: the door forced again counts on it but notifies no rule, neither
// the alarm's nor the events'. When the clock passes the snooze, the
// alarm is open again and, as it repeated, its alarm rule is notified
// then. --for 0 ends a snooze at once; an ack ends one too; each step is
// a change-log entry.
func TestAlarmSnoozeEndToEnd(t *testing.T) {
	hookURL, hooks := hookRecorder(t)
	cfg, err := parseNotify(fmt.Appendf(nil, `
[[notify.rule]]
name = "forced-alarm"
alarms = ["door_forced"]
channel = "webhook:ops"

[[notify.rule]]
name = "forced-event"
events = ["door_forced"]
channel = "webhook:ops"

[[notify.rule]]
name = "closed-event"
events = ["door_closed"]
channel = "webhook:ops"

[notify.webhook.ops]
url = %q
secret = "ops hook secret"
`, hookURL))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	var eng *alarmEngine
	o := serveOptions{notify: cfg, alarmClock: clock.now, alarmsReady: func(e *alarmEngine) { eng = e }}
	// The doors are not counted offline as the clock moves on.
	o.alarms.OfflineAfter.Duration, o.alarms.SilentAfter.Duration = 2*time.Hour, 2*time.Hour
	s, sv, front, _ := startE2EWith(t, o)
	// sent counts the deliveries of each rule.
	sent := func() map[string]int {
		t.Helper()
		ds, err := sv.db.Deliveries(0)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, d := range ds {
			n[d.Rule]++
		}
		return n
	}
	// forced opens and closes the front door: door_forced, then
	// door_closed, whose rule's delivery says both were handled.
	forced := func(closed int) {
		t.Helper()
		front.send("open")
		front.event("door_forced")
		front.send("close")
		front.event("door_closed")
		eventually(t, fmt.Sprintf("door_closed notified %d times", closed), func() bool { return sent()["closed-event"] == closed })
	}

	forced(1)
	al := waitAlarm(t, eng, sv.db, "door_forced at front", func(a *site.Alarm) bool { return a.Kind == site.AlarmDoorForced })
	id := strconv.FormatUint(al.ID, 10)
	if n := sent(); n["forced-alarm"] != 1 || n["forced-event"] != 1 {
		t.Fatalf("deliveries after the first forced opening: %v", n)
	}

	// Snoozed: the repeat counts and notifies no one.
	out := s.ok(t, "", "alarm", "snooze", id, "--for", "15m", "--note", "contractor propping the door")
	if !strings.Contains(out, "alarm "+id+" (door_forced at front): snoozed until") {
		t.Fatalf("alarm snooze: %s", out)
	}
	snoozed := s.alarmList(t, true)[0]
	if len(s.alarmList(t, true)) != 1 {
		t.Fatalf("open alarms: %+v", s.alarmList(t, true))
	}
	if d := snoozed.SnoozedUntil.Sub(clock.now()); d < 14*time.Minute || d > 15*time.Minute || snoozed.SnoozedBy == "" ||
		len(snoozed.Notes) != 1 || snoozed.Notes[0].Text != "contractor propping the door" {
		t.Fatalf("the snoozed alarm: %+v", snoozed)
	}
	forced(2)
	al = waitAlarm(t, eng, sv.db, "the repeat counted", func(a *site.Alarm) bool { return a.ID == al.ID && a.Count == 2 })
	if al.SnoozeRepeats != 1 || !al.Snoozed(clock.now()) {
		t.Fatalf("the alarm after its repeat: %+v", al)
	}
	if n := sent(); n["forced-alarm"] != 1 || n["forced-event"] != 1 {
		t.Fatalf("a snoozed alarm's repeat notified: %v", n)
	}
	if out := s.ok(t, "", "alarm", "list", "--open"); !strings.Contains(out, "(snoozed until ") {
		t.Fatalf("alarm list:\n%s", out)
	}

	// The alarms' clock passes the snooze: the alarm is back, and its
	// rule is told of the repeat.
	clock.add(15*time.Minute + time.Second)
	al = waitAlarm(t, eng, sv.db, "the snooze ended", func(a *site.Alarm) bool { return a.ID == al.ID && a.SnoozedUntil.IsZero() })
	if al.State != site.AlarmOpen || al.Count != 2 || al.SnoozeRepeats != 0 {
		t.Fatalf("the alarm after its snooze: %+v", al)
	}
	eventually(t, "the repeat during the snooze notified", func() bool {
		for _, h := range hooks() {
			if h.What == "alarm repeated while snoozed" {
				if h.Rule != "forced-alarm" || h.Alarm == nil || h.Alarm.ID != al.ID || !strings.Contains(h.Message, "repeats during it: 1") {
					t.Fatalf("the notification: %+v", h)
				}
				return true
			}
		}
		return false
	})

	// --for 0 ends a snooze at once; a repeat after it notifies as usual,
	// and the snooze, with no repeat, notified nothing.
	s.ok(t, "", "alarm", "snooze", id, "--for", "1h")
	if out := s.ok(t, "", "alarm", "snooze", id, "--for", "0"); !strings.Contains(out, "snooze ended") {
		t.Fatalf("alarm snooze --for 0: %s", out)
	}
	endedTwice := func() bool {
		es, _, err := sv.db.Changes(site.ChangeFilter{Target: "alarm " + id})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Op == "alarm snooze ended" {
				n++
			}
		}
		return n == 2
	}
	eventually(t, "the second snooze ended", endedTwice)
	forced(3)
	if n := sent(); n["forced-alarm"] != 2 || n["forced-event"] != 2 {
		t.Fatalf("deliveries after the snooze ended by --for 0: %v", n)
	}

	// An ack ends a snooze; a closed alarm is not snoozed; limits.
	s.ok(t, "", "alarm", "snooze", id, "--for", "30m")
	s.ok(t, "", "alarm", "ack", id)
	if a := s.alarmList(t, true)[0]; !a.SnoozedUntil.IsZero() || a.State != site.AlarmAcknowledged {
		t.Fatalf("the alarm after ack: %+v", a)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"alarm", "snooze", id}, 2, "--for is required"},
		{[]string{"alarm", "snooze", id, "--for", "25h"}, 2, "want 0 to 24h"},
		{[]string{"alarm", "snooze", id, "--for", "-1m"}, 2, "want 0 to 24h"},
		{[]string{"alarm", "snooze", id, "--for", "0"}, 1, "not snoozed"},
	} {
		if code, _, errs := s.cli(t, "", c.args...); code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d: %s", c.args, code, errs)
		}
	}
	s.ok(t, "", "alarm", "resolve", id)
	if code, _, errs := s.cli(t, "", "alarm", "snooze", id, "--for", "15m"); code != 1 || !strings.Contains(errs, "resolved") {
		t.Fatalf("snoozing a resolved alarm: exit %d: %s", code, errs)
	}
	want := "alarm raised:ok alarm snooze:ok alarm snooze ended:ok alarm snooze:ok alarm snooze:ok alarm snooze ended:ok " +
		"alarm snooze:ok alarm ack:ok alarm snooze:refused alarm resolve:ok alarm snooze:refused"
	if got := logOps(t, sv.db, "alarm "+id); got != want {
		t.Fatalf("change log of alarm %s:\n%q\nwant %q", id, got, want)
	}
	if v, err := sv.db.VerifyChanges(); err != nil || v.Bad != 0 {
		t.Fatalf("change log: %+v, %v", v, err)
	}
}
