package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/latchdoor/latch/store/site"
)

// The Alarms page in a real browser: a door forced open at an emulated
// door shows in the nav's count on a page already open, without a
// reload, with a beep once the page was clicked; an operator
// acknowledges, assigns, notes, snoozes (the badge leaves it out until
// the snooze ends) and resolves it on the Alarms page, each
// step a change-log entry in the operator's name; an auditor sees the
// alarms and no controls, and the server refuses the steps with 403.
func TestAlarmsPageInBrowser(t *testing.T) {
	c := startChrome(t)
	bs := startBrowserSite(t)
	s, front, base := bs.s, bs.front, bs.base
	s.ok(t, opPW+"\n", "user", "add", "otto", "--role", "operator")

	c.login(base, "otto", opPW)
	c.run("the People page", chromedp.Navigate(base+"/people"), chromedp.WaitVisible(chromedp.CSS("#alarm-count")))
	if got := c.text("#alarm-count"); got != "0" {
		t.Fatalf("the badge before any alarm: %q", got)
	}
	// A click lets the page play sound.
	c.run("click the page", chromedp.Click(chromedp.CSS("h1")))
	c.waitJS("the sound is on", `document.getElementById("alarm-count").dataset.sound === "on"`)
	eval[chromedp.Void](c, "mark the page", `window.notReloaded = true`)

	front.send("open")
	front.event("door_forced")
	forced := time.Now()
	c.waitJS("the badge shows the alarm", `document.getElementById("alarm-count").textContent === "1"`)
	t.Logf("a forced door showed in the badge of an open page %v after the door's event line (test's view, polling every 20 ms)", time.Since(forced).Round(time.Millisecond))
	c.waitJS("the page beeped", `document.getElementById("alarm-count").dataset.beeps === "1"`)
	if !eval[bool](c, "the page was not reloaded", `window.notReloaded === true`) {
		t.Fatal("the People page was reloaded")
	}
	c.shot("alarm-badge")
	front.send("close")
	front.event("door_closed")

	c.run("the Alarms page", chromedp.Navigate(base+"/alarms"), chromedp.WaitVisible(chromedp.CSS(`#open-alarms tr[id^="alarm-"]`)))
	id := eval[string](c, "the alarm's id", `document.querySelector('#open-alarms tr[id^="alarm-"]').id.slice(6)`)
	row := "#alarm-" + id
	if got := c.text(row); !strings.Contains(got, "door_forced") || !strings.Contains(got, "front") || !strings.Contains(got, "critical") || !strings.Contains(got, "new") {
		t.Fatalf("the alarm's row: %q", got)
	}
	c.shot("alarms-open")
	// Without the CSRF token, or a step there is not, the page refuses.
	for _, p := range []struct {
		path, csrf string
		want       int
	}{
		{"/alarms/" + id + "/ack", `"stale"`, 403},
		{"/alarms/" + id + "/close", `document.getElementById("main").dataset.csrf`, 404},
	} {
		code := eval[int](c, "post "+p.path, `fetch("`+p.path+`", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=" + encodeURIComponent(`+p.csrf+`)}).then(r => r.status)`)
		if code != p.want {
			t.Fatalf("POST %s: %d, want %d", p.path, code, p.want)
		}
	}

	// step clicks a step's button, then waits for the next page's message.
	step := func(what, word string, do ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		eval[chromedp.Void](c, "clear the message", `document.querySelector(".flash")?.remove()`)
		c.run(what, append(do, chromedp.WaitVisible(chromedp.CSS(".flash")))...)
		if got, want := c.text(".flash"), "Alarm "+id+" "+word+"."; got != want {
			t.Fatalf("%s: the page says %q, want %q", what, got, want)
		}
	}
	step("acknowledge", "acknowledged", chromedp.Click(chromedp.CSS("#ack-"+id)))
	if got := c.text(row + " .state"); !strings.Contains(got, "acknowledged by otto") {
		t.Fatalf("the state after ack: %q", got)
	}
	step("assign to ada", "assigned", chromedp.SetValue(chromedp.CSS("#assign-to-"+id), "ada"), chromedp.Click(chromedp.CSS("#assign-"+id)))
	step("add a note", "noted", chromedp.SendKeys(chromedp.CSS("#note-text-"+id), "walked over, <nobody> there"), chromedp.Click(chromedp.CSS("#note-"+id)))
	if got := c.text(row); !strings.Contains(got, "assigned to ada") || !strings.Contains(got, "walked over, <nobody> there") {
		t.Fatalf("the row after assign and note: %q", got)
	}
	c.shot("alarms-acknowledged")
	// Snoozed for 15 minutes: the badge leaves it out; the page says
	// until when. Its snooze ended, it counts again.
	step("snooze", "snoozed for 15m", chromedp.SetValue(chromedp.CSS("#snooze-for-"+id), "15m"),
		chromedp.SendKeys(chromedp.CSS("#snooze-text-"+id), "guard on the way"), chromedp.Click(chromedp.CSS("#snooze-"+id)))
	if got := c.text(row + " .state"); !strings.Contains(got, "snoozed until "+time.Now().Add(15*time.Minute).Format("15:04")) &&
		!strings.Contains(got, "snoozed until "+time.Now().Add(14*time.Minute).Format("15:04")) {
		t.Fatalf("the state after snooze: %q", got)
	}
	if got := c.text("#alarm-count"); got != "0" {
		t.Fatalf("the badge of a snoozed alarm: %q", got)
	}
	c.shot("alarms-snoozed")
	step("end the snooze", "is back: its snooze ended", chromedp.Click(chromedp.CSS("#unsnooze-"+id)))
	if got := c.text("#alarm-count"); got != "1" {
		t.Fatalf("the badge after the snooze: %q", got)
	}
	eventually(t, "latch serve logged the snooze's end", func() bool {
		es, _, err := bs.sv.db.Changes(site.ChangeFilter{Target: "alarm " + id})
		return err == nil && len(es) > 0 && es[len(es)-1].Op == "alarm snooze ended"
	})
	step("resolve", "resolved", chromedp.Click(chromedp.CSS("#resolve-"+id)))
	if got := c.text("#closed-alarms " + row); !strings.Contains(got, "resolved") || !strings.Contains(got, "by otto") {
		t.Fatalf("the closed row: %q", got)
	}
	if got := c.text("#alarm-count"); got != "0" {
		t.Fatalf("the badge after resolve: %q", got)
	}
	c.shot("alarms-resolved")

	// The change log: the site's raise and the operator's four steps.
	es, _, err := bs.sv.db.Changes(site.ChangeFilter{Target: "alarm " + id})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		if e.Op != "alarm raised" && e.Op != "alarm snooze ended" && !strings.HasPrefix(e.Who, "otto") {
			t.Errorf("entry %d (%s) by %q, want otto", e.Seq, e.Op, e.Who)
		}
		ops = append(ops, e.Op+":"+e.Result)
	}
	if want := "alarm raised:ok alarm ack:ok alarm assign:ok alarm note:ok alarm snooze:ok alarm snooze:ok alarm snooze ended:ok alarm resolve:ok"; strings.Join(ops, " ") != want {
		t.Fatalf("the change log of alarm %s: %q, want %q", id, ops, want)
	}
	c.run("the change log", chromedp.Navigate(base+"/changelog?target=alarm+"+id), chromedp.WaitVisible(chromedp.CSS("#changes")))
	if got := c.text("#changes"); !strings.Contains(got, "alarm ack") || !strings.Contains(got, "alarm note") || !strings.Contains(got, "alarm resolve") {
		t.Fatalf("the change log page: %q", got)
	}

	// Forced again: a new alarm, which the auditor sees without controls.
	front.send("open")
	front.event("door_forced")
	front.send("close")
	c.run("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS("#password")))
	c.login(base, "aud", audPW)
	c.run("the auditor's Alarms page", chromedp.Navigate(base+"/alarms"), chromedp.WaitVisible(chromedp.CSS("#open-alarms")))
	c.waitJS("the new alarm is listed", `document.querySelectorAll('#open-alarms tr[id^="alarm-"]').length === 1 && document.getElementById("alarm-count").textContent === "1"`)
	if n := eval[int](c, "count change controls", `document.querySelectorAll("form[method=post]:not([action='/logout']), #open-alarms button").length`); n != 0 {
		t.Fatalf("the auditor's Alarms page has %d controls that change things", n)
	}
	c.shot("alarms-auditor")
	id2 := eval[string](c, "the new alarm's id", `document.querySelector('#open-alarms tr[id^="alarm-"]').id.slice(6)`)
	csrf := `document.getElementById("main").dataset.csrf`
	form := eval[int](c, "the auditor posts the form", `fetch("/alarms/`+id2+`/ack", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=" + encodeURIComponent(`+csrf+`)}).then(r => r.status)`)
	api := eval[int](c, "the auditor calls the API", `fetch("/api/v1/alarms/`+id2+`/ack", {method: "POST", headers: {"X-CSRF-Token": `+csrf+`}}).then(r => r.status)`)
	if form != 403 || api != 403 {
		t.Fatalf("the auditor's ack: form %d, API %d, want 403 and 403", form, api)
	}
	if as := s.alarmList(t, true); len(as) != 1 || as[0].State != site.AlarmOpen {
		t.Fatalf("open alarms after the auditor's tries: %+v", as)
	}
}
