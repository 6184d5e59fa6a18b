package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	bolt "go.etcd.io/bbolt"
)

// The console in a real browser: Debian's chromium, headless, driven with
// chromedp, on a real latch serve with a real mosquitto and two emulated
// doors. hack/test.sh installs chromium and sets LATCH_REQUIRE_BROWSER, so
// that CI fails rather than skips when it is missing.

// chromiumPath finds the browser, or skips the test when it is missing
// and not required.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LATCH_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH, and LATCH_REQUIRE_BROWSER is set: install Debian's chromium package")
	}
	t.Skip("no chromium on PATH (apt-get install chromium): the console's browser tests need it")
	return ""
}

// chrome is a headless browser for one test.
type chrome struct {
	t     testing.TB
	ctx   context.Context
	shots string // where screenshots go
	n     *int   // screenshots taken, over every tab
}

// startChrome starts chromium; it stops when the test ends.
func startChrome(t testing.TB) *chrome {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox cannot start
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	// A hang guard for the whole browser session, not a speed check.
	ctx, cancelGuard := context.WithTimeout(ctx, 10*hangGuard)
	t.Cleanup(func() { cancelGuard(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shots := os.Getenv("LATCH_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &chrome{t: t, ctx: ctx, shots: shots, n: new(int)}
}

// tab opens another tab of the same browser (the same cookies).
func (c *chrome) tab() *chrome {
	ctx, cancel := chromedp.NewContext(c.ctx)
	c.t.Cleanup(cancel)
	return &chrome{t: c.t, ctx: ctx, shots: c.shots, n: c.n}
}

// run runs actions, failing the test on an error.
func (c *chrome) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.fail(what, err)
	}
}

// fail fails the test with where the browser was.
func (c *chrome) fail(what string, err error) {
	c.t.Helper()
	url, _ := chromedp.Run(c.ctx, chromedp.Location())
	c.t.Fatalf("browser: %s: %v (at %s)", what, err, url)
}

// waitJS waits until a JavaScript expression is true.
func (c *chrome) waitJS(what, expr string) {
	c.t.Helper()
	c.run(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(hangGuard)))
}

// text returns an element's text.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		c.fail("text of "+sel, err)
	}
	return s
}

// eval runs JavaScript, awaiting a promise, and returns its value.
func eval[T any](c *chrome, what, expr string) T {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		c.fail(what, err)
	}
	return v
}

// shot writes a screenshot of the whole page for review.
func (c *chrome) shot(name string) {
	c.t.Helper()
	b, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.fail("screenshot "+name, err)
	}
	*c.n++
	path := filepath.Join(c.shots, fmt.Sprintf("%02d-%s.png", *c.n, name))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// login logs in on the login page.
func (c *chrome) login(base, name, password string) {
	c.t.Helper()
	c.run("log in as "+name,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#password")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS(`nav a[href="/doors"]`)),
	)
}

// browserSite is the end-to-end site with its console, for the browser.
type browserSite struct {
	s           *testSite
	sv          *served
	front, back *simDoor
	base        string
	listen      string
}

func startBrowserSite(t testing.TB) *browserSite {
	t.Helper()
	bs := &browserSite{}
	o := serveOptions{web: webConfig{Listen: "127.0.0.1:0"}}
	o.webReady = func(addr string) { bs.listen, bs.base = addr, "http://"+addr }
	bs.s, bs.sv, bs.front, bs.back = startE2EWith(t, o)
	bs.s.ok(t, adminPW+"\n", "user", "add", "ada", "--role", "admin")
	bs.s.ok(t, audPW+"\n", "user", "add", "aud", "--role", "auditor")
	return bs
}

func TestConsoleInBrowser(t *testing.T) {
	c := startChrome(t)
	bs := startBrowserSite(t)
	s, front, back, base := bs.s, bs.front, bs.back, bs.base
	const uid, pin = "04C1D2E3F4A5B6", "2468"

	c.run("the login page", chromedp.Navigate(base+"/doors"), chromedp.WaitVisible(chromedp.CSS("#password")))
	c.shot("login")
	c.login(base, "ada", adminPW)
	c.waitJS("both doors listed", `document.querySelectorAll("#doors tbody tr").length === 2`)
	c.shot("doors")

	// A holder added on the People page.
	c.run("add a holder",
		chromedp.Navigate(base+"/people"),
		chromedp.SendKeys(chromedp.CSS("#hid"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#hname"), "Alice <Example>"),
		chromedp.Submit(chromedp.CSS("#hname")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/people/alice/enroll"]`)),
	)
	if got := c.text("p.lead"); !strings.Contains(got, "Alice <Example>") {
		t.Fatalf("the holder's name shows as %q", got)
	}

	// Enrolment by a tap at the front door: the page waits and shows the UID.
	c.run("start an enrolment at front",
		chromedp.SetValue(chromedp.CSS("#edoor"), "front"),
		chromedp.Click(chromedp.CSS(`form[action="/people/alice/enroll"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#enroll-state")),
	)
	c.shot("enrol-waiting")
	front.tapPIN(uid, "", "unknown_card")
	c.run("the tapped UID shows", chromedp.WaitVisible(chromedp.CSS("#enroll-form")))
	got, err := chromedp.Run(c.ctx, chromedp.Value(chromedp.CSS("#euid")))
	if err != nil {
		c.fail("read the UID", err)
	}
	if got != uid {
		t.Fatalf("the enrolment page shows UID %q, want %s", got, uid)
	}
	c.shot("enrol-tapped")
	c.run("add the tapped card",
		chromedp.SetValue(chromedp.CSS("#edoors"), "staff"),
		chromedp.Click(chromedp.CSS("#enroll-add")),
		chromedp.WaitVisible(chromedp.CSS("#progress")),
	)
	c.waitJS("both doors applied the new card", `["front","back"].every(d => document.querySelector("#progress-" + d + " .applied").textContent.includes("applied"))`)

	// The PIN, with its policy explained on the form.
	c.run("the holder's page", chromedp.Navigate(base+"/people/alice"), chromedp.WaitVisible(chromedp.CSS("#card-"+uid)))
	if help := c.text("#pinhelp-" + uid); !strings.Contains(help, "4 to 12 digits") {
		t.Fatalf("the PIN policy reads %q", help)
	}
	c.run("set the PIN",
		chromedp.Click(chromedp.CSS(`#card-`+uid+` details summary`)),
		chromedp.SendKeys(chromedp.CSS("#pin-"+uid), pin),
		chromedp.SendKeys(chromedp.CSS("#pin2-"+uid), pin),
		chromedp.Submit(chromedp.CSS("#pin2-"+uid)),
		chromedp.WaitVisible(chromedp.CSS("#progress")),
	)
	c.waitJS("both doors applied the PIN", `["front","back"].every(d => document.querySelector("#progress-" + d + " .latest").textContent.includes("has the latest change"))`)
	c.run("the holder's page", chromedp.Navigate(base+"/people/alice"), chromedp.WaitVisible(chromedp.CSS("#card-"+uid)))
	c.shot("holder")

	// Activity, open in its own tab: the grant shows up live.
	act := c.tab()
	act.run("the Activity page", chromedp.Navigate(base+"/activity"), chromedp.WaitVisible(chromedp.CSS("#events")))
	act.waitJS("the live stream is open", `document.getElementById("live-note") !== null`)
	start := time.Now()
	front.tapPIN(uid, pin, "granted")
	act.waitJS("the grant shows live", `(() => { const r = document.querySelector("#events tbody tr"); return r && r.textContent.includes("granted") && r.textContent.includes("`+uid+`"); })()`)
	t.Logf("a grant at the door showed on the open Activity page %v after the PIN was typed (test's view, polling every 20 ms)", time.Since(start).Round(time.Millisecond))
	act.shot("activity-live")

	// Revocation, live door by door, then the doors refuse the card. The
	// back door is stopped first: the page shows it waiting, then, without
	// a reload, applied once it is back.
	back.quit()
	c.run("revoke the card",
		chromedp.SendKeys(chromedp.CSS("#reason-"+uid), "lost on the train"),
		chromedp.Click(chromedp.CSS(`#card-`+uid+` form.revoke button`)),
		chromedp.WaitVisible(chromedp.CSS("#progress")),
	)
	eval[chromedp.Void](c, "mark the page", `window.notReloaded = true`)
	c.waitJS("front applied the revocation", `document.querySelector("#progress-front .applied").textContent.includes("applied")`)
	if got := c.text("#progress-back .applied"); !strings.Contains(got, "waiting") {
		t.Fatalf("the stopped back door shows %q", got)
	}
	c.shot("revoked-waiting")
	back.start()
	c.waitJS("both doors have the latest change", `["front","back"].every(d => document.querySelector("#progress-" + d + " .latest").textContent.includes("has the latest change") && document.querySelector("#progress-" + d + " .applied").textContent.includes("applied"))`)
	if !eval[bool](c, "the page was not reloaded", `window.notReloaded === true`) {
		t.Fatal("the progress page was reloaded")
	}
	c.shot("revoked-progress")
	front.tapPIN(uid, pin, "revoked")
	back.tapPIN(uid, pin, "revoked")
	act.waitJS("the refusal shows live", `document.querySelector("#events tbody tr").textContent.includes("revoked")`)
	c.run("the doors page", chromedp.Navigate(base+"/doors"), chromedp.WaitVisible(chromedp.CSS("#doors")))
	for _, d := range []string{"front", "back"} {
		if got := c.text("#door-" + d + " .latest"); !strings.Contains(got, "has the latest change") {
			t.Fatalf("door %s on the Doors page: %q", d, got)
		}
	}

	// The export the page offers is the CLI's export, once every event the
	// doors wrote is collected (so that none arrives between the two).
	collected(t, bs.sv.db, "front")
	collected(t, bs.sv.db, "back")
	c.run("the Activity page for alice", chromedp.Navigate(base+"/activity?holder=alice"), chromedp.WaitVisible(chromedp.CSS("#export-csv")))
	csv := eval[string](c, "export CSV", `fetch(document.getElementById("export-csv").href).then(r => r.text())`)
	cli := s.ok(t, "", "audit", "export", "--format", "csv", "--holder", "alice")
	if csv != cli || strings.Count(cli, "\n") < 4 {
		t.Fatalf("the console's CSV export differs from latch audit export:\n%s\n---\n%s", csv, cli)
	}
	c.shot("activity-alice")

	// The auditor: no revoke control, and the API refuses with 403.
	c.run("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS("#password")))
	c.login(base, "aud", audPW)
	c.run("the auditor's holder page", chromedp.Navigate(base+"/people/alice"), chromedp.WaitVisible(chromedp.CSS("#card-"+uid)))
	controls := eval[int](c, "count change controls", `document.querySelectorAll("form[method=post]:not([action='/logout'])").length`)
	if controls != 0 {
		t.Fatalf("the auditor's page has %d forms that change things", controls)
	}
	code := eval[int](c, "reinstate through the API", `fetch("/api/v1/reinstate", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": document.getElementById("main").dataset.csrf}, body: JSON.stringify({uid: "`+uid+`"})}).then(r => r.status)`)
	if code != 403 {
		t.Fatalf("the auditor's API reinstatement: %d, want 403", code)
	}
	c.shot("holder-auditor")

	// On a phone.
	c.run("a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+"/people/alice"), chromedp.WaitVisible(chromedp.CSS("#card-"+uid)))
	c.shot("holder-phone")
	c.run("the doors on a phone", chromedp.Navigate(base+"/doors"), chromedp.WaitVisible(chromedp.CSS("#doors")))
	c.shot("doors-phone")
	c.run("a desktop's screen", chromedp.EmulateViewport(1280, 900))

	// Integrity: an event edited in the database is named, door and seq,
	// once every event is collected.
	collected(t, bs.sv.db, "front")
	collected(t, bs.sv.db, "back")
	front.quit()
	back.quit()
	bs.sv.stop(t)
	db, err := bolt.Open(s.db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The second event of front's stored chain is edited.
	prefix := append([]byte{byte(len("front"))}, "front"...)
	var edited uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("events")).Cursor()
		c.Seek(prefix)
		k, _ := c.Next()
		if k == nil || !bytes.HasPrefix(k, prefix) {
			t.Fatal("front has fewer than two events stored")
		}
		edited = binary.BigEndian.Uint64(k[len(prefix):])
		editRecord(t, tx.Bucket([]byte("events")), bytes.Clone(k))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	sv := s.start(t, serveOptions{web: webConfig{Listen: bs.listen}})
	defer sv.stop(t)
	c.login(base, "aud", audPW)
	c.run("verify", chromedp.Navigate(base+"/integrity"), chromedp.Click(chromedp.CSS("#verify")), chromedp.WaitVisible(chromedp.CSS("#verdict")))
	if v := c.text("#verdict"); !strings.Contains(v, "1 of 3 chains (the doors' and the change log's) do not verify") {
		t.Fatalf("the verdict: %q\n%s", v, c.text("#verify-result"))
	}
	if row := c.text("#verify-front"); !strings.Contains(row, "broken") || !strings.Contains(row, fmt.Sprintf("front #%d", edited)) {
		t.Fatalf("front's row: %q", row)
	}
	if row := c.text("#verify-back"); !strings.Contains(row, "intact") {
		t.Fatalf("back's row: %q", row)
	}
	c.shot("integrity")
	c.run("site actions", chromedp.Navigate(base+"/actions"), chromedp.WaitVisible(chromedp.CSS("#actions")))
	if got := c.text("#actions"); !strings.Contains(got, "revoke") || !strings.Contains(got, "verify") || !strings.Contains(got, "lost on the train") {
		t.Fatalf("the site's actions do not show the revocation and the verification:\n%s", got)
	}
	c.shot("actions")
	t.Logf("screenshots in %s", c.shots)
}

// BenchmarkConsoleLiveDelay measures the delay from a decision at an
// emulated door (its event line, written once the door journaled it) to
// the event's row on an open Activity page in chromium, by the same
// clock: the door publishes, the site collects and stores, the page's
// stream sends it and the script inserts the row. Each iteration is one
// grant at the front door. from_typing is from the start of typing the
// PIN instead (the emulated keypad presses each of its 5 keys as a finger
// would, about 100 ms each), which adds the door's PIN check.
func BenchmarkConsoleLiveDelay(b *testing.B) {
	c := startChrome(b)
	bs := startBrowserSite(b)
	s, front := bs.s, bs.front
	const uid, pin = "04B1C2D3E4F5A6", "1357"
	s.ok(b, "", "holder", "add", "bob")
	s.ok(b, "", "card", "add", uid, "--holder", "bob", "--doors", "staff")
	s.ok(b, pin+"\n", "pin", "set", "bob", "--uid", uid)
	s.current(b, "front", "back")
	c.login(bs.base, "ada", adminPW)
	c.run("the Activity page", chromedp.Navigate(bs.base+"/activity"), chromedp.WaitVisible(chromedp.CSS("#live-note")))
	// The page notes when each row arrives, by the machine's clock.
	eval[chromedp.Void](c, "watch the rows", `(() => { window.seen = {};
		new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes)
			if (n.tagName === "TR") window.seen[n.children[1].textContent.trim()] = Date.now(); })
		.observe(document.querySelector("#events tbody"), {childList: true}); })()`)
	var delays, fromKey []time.Duration
	for b.Loop() {
		front.send("tap " + uid)
		keyed := time.Now()
		front.send("key " + pin + "#")
		ev := front.event("granted")
		decided := time.Now()
		front.send("remove")
		key := fmt.Sprintf("front #%v", ev["seq"])
		c.waitJS("the row of "+key, `window.seen[`+jsonString(key)+`] !== undefined`)
		at := eval[int64](c, "its time", `window.seen[`+jsonString(key)+`]`)
		delays = append(delays, time.UnixMilli(at).Sub(decided))
		fromKey = append(fromKey, time.UnixMilli(at).Sub(keyed))
	}
	b.ReportMetric(ms(median(fromKey)), "from_typing_p50_ms")
	slices.Sort(delays)
	b.ReportMetric(ms(delays[len(delays)/2]), "p50_ms")
	b.ReportMetric(ms(delays[len(delays)*99/100]), "p99_ms")
	b.ReportMetric(ms(delays[len(delays)-1]), "max_ms")
}
