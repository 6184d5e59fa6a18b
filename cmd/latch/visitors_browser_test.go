package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/latchdoor/latch/store/site"
)

// The Visitors page in a real browser: an operator registers a visitor
// whose card is tapped at the front door (the enrolment page waits for
// it), sees the visit listed, the visitor's badge-in as its arrival, and
// ends the visit, after which the door refuses the card; each change is
// the operator's change-log entry. An auditor sees the lists without
// controls, and the server refuses the auditor's registration.
func TestVisitorsPageInBrowser(t *testing.T) {
	c := startChrome(t)
	bs := startBrowserSite(t)
	s, front, base := bs.s, bs.front, bs.base
	s.ok(t, opPW+"\n", "user", "add", "otto", "--role", "operator")
	const uid = "04D1E2F3A4B5C6"

	c.login(base, "otto", opPW)
	c.run("the Visitors page", chromedp.Click(chromedp.CSS(`nav a[href="/visitors"]`)), chromedp.WaitVisible(chromedp.CSS("#visitor-form")))
	if got := c.text("#visitors-current"); !strings.Contains(got, "None.") {
		t.Fatalf("the visits before any: %q", got)
	}
	c.run("fill in the registration",
		chromedp.SendKeys(chromedp.CSS("#v-holder"), "vera"),
		chromedp.SendKeys(chromedp.CSS("#v-name"), "Vera <Visitor>"),
		chromedp.SendKeys(chromedp.CSS("#v-host"), "alice"),
		chromedp.SetValue(chromedp.CSS("#v-tap"), "front"),
	)
	eval[chromedp.Void](c, "choose the front door", `[...document.getElementById("v-doors").options].forEach(o => { o.selected = o.text === "front" })`)
	c.shot("visitor-form")
	c.run("register with a tap at front", chromedp.Click(chromedp.CSS("#visitor-add")), chromedp.WaitVisible(chromedp.CSS("#enroll-state")))
	if got := c.text("h1"); !strings.Contains(got, "Register visitor vera") {
		t.Fatalf("the enrolment page's title: %q", got)
	}
	if cur := c.text(`nav a[aria-current="page"]`); cur != "Visitors" {
		t.Fatalf("the nav marks %q, want Visitors", cur)
	}
	c.shot("visitor-enrol-waiting")
	front.tapPIN(uid, "", "unknown_card")
	c.run("the tapped UID shows", chromedp.WaitVisible(chromedp.CSS("#enroll-form")))
	if got := eval[string](c, "the UID", `document.getElementById("euid").value`); got != uid {
		t.Fatalf("the enrolment page shows UID %q, want %s", got, uid)
	}
	c.run("register the visitor", chromedp.Click(chromedp.CSS("#enroll-add")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got, want := c.text(".flash"), "Visitor vera registered for alice, card "+uid+"."; got != want {
		t.Fatalf("the page says %q, want %q", got, want)
	}
	row := `#visitors-current tr[data-holder="vera"]`
	if got := c.text(row); !strings.Contains(got, "Vera <Visitor>") || !strings.Contains(got, "alice") || !strings.Contains(got, "front") ||
		!strings.Contains(got, "expected") || !strings.Contains(got, "not yet") || !strings.Contains(got, "any") {
		t.Fatalf("the visit's row: %q", got)
	}
	v := s.visitorList(t)["vera"]
	if v.Host != "alice" || len(v.Doors) != 1 || v.Doors[0] != "front" || !v.Until.After(v.From) {
		t.Fatalf("the visitor: %+v", v)
	}

	// The visitor badges in: the page shows the arrival.
	s.current(t, "front")
	front.tapPIN(uid, "", "granted")
	eventually(t, "vera's arrival counted", func() bool { return !s.visitorList(t)["vera"].FirstSeen.IsZero() })
	c.run("reload the Visitors page", chromedp.Navigate(base+"/visitors"), chromedp.WaitVisible(chromedp.CSS(row)))
	if got := c.text(row); !strings.Contains(got, "on site") || !strings.Contains(got, " at front") {
		t.Fatalf("the row after the badge-in: %q", got)
	}
	c.shot("visitor-on-site")

	// The operator ends the visit; the door refuses the card.
	c.run("end the visit", chromedp.Click(chromedp.CSS(row+" button")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got := c.text(".flash"); got != "Visit of vera ended: the card is revoked." {
		t.Fatalf("the page says %q", got)
	}
	if got := c.text(`#visitors-ended tr[data-holder="vera"]`); !strings.Contains(got, "ended: visit ended by otto") {
		t.Fatalf("the ended row: %q", got)
	}
	if n := eval[int](c, "End buttons left", `document.querySelectorAll('tr[data-holder="vera"] button').length`); n != 0 {
		t.Fatalf("%d End buttons on an ended visit", n)
	}
	c.shot("visitor-ended")
	s.current(t, "front")
	front.tapPIN(uid, "", "revoked")
	es, _, err := bs.sv.db.Changes(site.ChangeFilter{Target: "visitor vera"})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		if !strings.HasPrefix(e.Who, "otto") {
			t.Errorf("entry %d (%s) by %q, want otto", e.Seq, e.Op, e.Who)
		}
		ops = append(ops, e.Op+":"+e.Result)
	}
	if want := "visitor add:ok visitor end:ok"; strings.Join(ops, " ") != want {
		t.Fatalf("the change log of vera: %q, want %q", ops, want)
	}

	// An auditor sees the lists, no controls, and may not register.
	c.run("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS("#password")))
	c.login(base, "aud", audPW)
	c.run("the auditor's Visitors page", chromedp.Navigate(base+"/visitors"), chromedp.WaitVisible(chromedp.CSS(`#visitors-ended tr[data-holder="vera"]`)))
	if n := eval[int](c, "count change controls", `document.querySelectorAll("form[method=post]:not([action='/logout'])").length`); n != 0 {
		t.Fatalf("the auditor's Visitors page has %d forms that change things", n)
	}
	code := eval[int](c, "the auditor posts a registration", `fetch("/visitors", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "csrf=" + encodeURIComponent(document.getElementById("main").dataset.csrf) + "&holder=val&host=aud&until=2099-01-01T00:00&doors=front&uid=04AABBCC"}).then(r => r.status)`)
	if code != 403 {
		t.Fatalf("the auditor's registration: %d, want 403", code)
	}
	if _, ok := s.visitorList(t)["val"]; ok {
		t.Fatal("the auditor's visitor was registered")
	}
}
