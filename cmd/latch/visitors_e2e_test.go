package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt/brokertest"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// visitorList is latch visitor list --json, by holder.
func (s *testSite) visitorList(t testing.TB) map[string]site.Visitor {
	t.Helper()
	var vs []site.Visitor
	if err := json.Unmarshal([]byte(s.ok(t, "", "visitor", "list", "--json")), &vs); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]site.Visitor)
	for _, v := range vs {
		out[v.Holder] = v
	}
	return out
}

// Visitors at two doors: a visitor's card opens both within its window;
// its first badge-in reaches the host's webhook, once. A visitor allowed
// two uses is revoked by latch serve once the site collected them, and
// both doors refuse it. The back door loses its link while a short window
// ends, and refuses the card by its own clock; its grants of the window
// are counted once it is back. An operator ends a visit by the CLI.
func TestVisitorsEndToEnd(t *testing.T) {
	hookURL, hooks := hookRecorder(t)
	hooksOf := func(holder string) []notification {
		var out []notification
		for _, n := range hooks() {
			if n.Visitor != nil && n.Visitor.Holder == holder {
				out = append(out, n)
			}
		}
		return out
	}
	cfg, err := parseNotify(fmt.Appendf(nil, `
[[notify.rule]]
name = "visitor-host"
events = ["visitor_arrived"]
channel = "webhook:host"

[notify.webhook.host]
url = %q
secret = "host hook secret"
`, hookURL))
	if err != nil {
		t.Fatal(err)
	}
	s, sv, front, back := startE2EWith(t, serveOptions{notify: cfg})

	// The back door reaches the broker through a proxy the test can cut.
	proxy := brokertest.NewProxy(t, strings.TrimPrefix(s.brokerURL(t), "tcp://"))
	var j joinFile
	b, err := os.ReadFile(back.join)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	j.Broker = "tcp://" + proxy.Addr()
	b, _ = json.Marshal(j)
	back.join = filepath.Join(s.dir, "join-back.json")
	if err := os.WriteFile(back.join, b, 0o600); err != nil {
		t.Fatal(err)
	}
	back.quit()
	back.start()
	s.current(t, "front", "back")

	// vera's window ends shortly; uma may come in twice within hers.
	const vera, uma = "0E0E0E01", "0E0E0E02"
	now := time.Now()
	until := now.Add(8 * time.Second)
	s.ok(t, "", "visitor", "add", "vera", "--name", "Vera Visitor", "--host", "alice", "--from", now.Add(-time.Minute).Format(time.RFC3339),
		"--until", until.Format(time.RFC3339Nano), "--doors", "front,back", "--uid", vera)
	s.ok(t, "", "visitor", "add", "uma", "--host", "bob", "--until", now.Add(time.Hour).Format(time.RFC3339), "--doors", "front,back",
		"--uses", "2", "--uid", uma)
	s.current(t, "front", "back")
	for _, d := range []*simDoor{front, back} {
		d.tapPIN(vera, "", "granted")
		d.tapPIN(uma, "", "granted")
	}

	// uma's two uses collected: latch serve revokes her card, once.
	eventually(t, "uma's visit ended", func() bool { return !s.visitorList(t)["uma"].Ended.IsZero() })
	if v := s.visitorList(t)["uma"]; v.EndReason != reasonUsesSpent || v.Used != 2 || v.FirstSeen.IsZero() {
		t.Fatalf("uma after two uses: %+v", v)
	}
	s.current(t, "front", "back")
	front.tapPIN(uma, "", "revoked")
	back.tapPIN(uma, "", "revoked")
	es, _, err := sv.db.Changes(site.ChangeFilter{Target: "visitor uma"})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range es {
		ops = append(ops, e.Op+" by "+e.Who+": "+e.Detail)
	}
	if len(es) != 2 || es[0].Op != "visitor add" || es[1].Op != "visitor end" || es[1].Who != siteActor || es[1].Detail != reasonUsesSpent ||
		!strings.Contains(string(es[1].After), `"end_reason":"uses spent"`) {
		t.Fatalf("uma's change-log entries: %q", ops)
	}
	if rev, err := sv.db.Revoked([]byte{0x0E, 0x0E, 0x0E, 0x02}); err != nil || rev.Reason != reasonUsesSpent {
		t.Fatalf("uma's card: %+v, %v", rev, err)
	}

	// The back door goes offline; vera's window ends; the back door
	// refuses her card by its own clock, polled by taps.
	proxy.BlackHole()
	proxy.Cut()
	eventually(t, "the back door offline", func() bool { return !s.doorList(t)["back"].Online })
	grants := 1 // the one above
	deadline := time.Now().Add(hangGuard)
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		back.send("tap " + vera)
		ev := back.next("a decision on vera's card", func(m map[string]any) bool { _, ok := m["seq"]; return ok && m["uid"] == vera })
		back.send("remove")
		if ev["reason"] == string(store.ReasonExpired) {
			break
		}
		if ev["reason"] != string(store.ReasonGranted) {
			t.Fatalf("vera at the back door: %v", ev)
		}
		grants++
		if time.Now().After(deadline) {
			t.Fatalf("vera still granted at the back door %v after her window", time.Since(until))
		}
		<-poll.C
	}
	if time.Now().Before(until) {
		t.Fatalf("vera refused before her window ended (%v)", until)
	}
	t.Logf("vera: %d grants at the back door offline, refused %v after her window's end", grants-1, time.Since(until).Round(time.Millisecond))
	front.tapPIN(vera, "", "expired")
	proxy.Heal()
	s.current(t, "back")
	collected(t, sv.db, "back")
	collected(t, sv.db, "front")
	eventually(t, "vera's uses counted", func() bool { return s.visitorList(t)["vera"].Used == grants+1 })

	// Each host was told once, at the first badge-in, with the host
	// named.
	for _, c := range []struct{ holder, host string }{{"vera", "alice"}, {"uma", "bob"}} {
		eventually(t, c.holder+"'s host notified", func() bool { return len(hooksOf(c.holder)) > 0 })
		ds, err := sv.db.Deliveries(0)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range ds {
			if d.Rule == "visitor-host" && strings.Contains(d.Subject, "visitor "+c.holder+" ") {
				n++
			}
		}
		hs := hooksOf(c.holder)
		if n != 1 || len(hs) != 1 || hs[0].What != "visitor arrived" || !strings.Contains(hs[0].Message, "host "+c.host) || hs[0].Door != "front" {
			t.Errorf("%s: %d deliveries, webhook %+v", c.holder, n, hs)
		}
	}

	// An operator ends vera's visit: her card is revoked; again is refused.
	if out := s.ok(t, "", "visitor", "end", "vera"); !strings.Contains(out, "visit of vera ended") {
		t.Fatalf("visitor end: %s", out)
	}
	if v := s.visitorList(t)["vera"]; !strings.HasPrefix(v.EndReason, "visit ended by ") {
		t.Fatalf("vera after end: %+v", v)
	}
	if code, _, errs := s.cli(t, "", "visitor", "end", "vera"); code == 0 || !strings.Contains(errs, "conflict") {
		t.Fatalf("second end: exit %d: %s", code, errs)
	}
	if out := s.ok(t, "", "visitor", "list"); !strings.Contains(out, "2/2") || !strings.Contains(out, "uses spent") {
		t.Fatalf("visitor list:\n%s", out)
	}
}

// cardOrPINConfig writes a door config in card-or-PIN mode for latchd
// -sim -config: the example config with that mode (its [mqtt] table, with
// its placeholder key, gives way to the join file's).
func cardOrPINConfig(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/latchd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(b), `mode = "card+pin"`, `mode = "card-or-pin"`, 1)
	path := filepath.Join(t.TempDir(), "card-or-pin.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keyCode types code and # at the door's keypad and returns the decision
// it logged.
func (d *simDoor) keyCode(code string) map[string]any {
	d.t.Helper()
	d.send("key " + code + "#")
	return d.next("a decision on a keypad code", func(m map[string]any) bool {
		_, ok := m["seq"]
		return ok && m["type"] == string(store.TypeAccess) && m["uid"] == nil
	})
}

// A visitor's keypad code: the site makes it and shows it once, with a
// warning when a door it opens reports another mode; the front door, in
// card-or-PIN mode, grants it within the window, and refuses it after the
// window (with no message from the site) and once the visit is ended.
// Guessed codes are refused.
func TestVisitorCodeEndToEnd(t *testing.T) {
	s, sv, front, _ := startE2EWith(t, serveOptions{})
	front.quit()
	front.extra = []string{"-config", cardOrPINConfig(t)}
	front.start()
	s.current(t, "front", "back")

	until := time.Now().Add(6 * time.Second)
	out := s.ok(t, "", "visitor", "add", "vic", "--name", "Vic Visitor", "--host", "alice", "--until", until.Format(time.RFC3339Nano),
		"--doors", "front", "--pin", "--json")
	var res visitorResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	code := res.Code
	if len(code) != defaultCodeDigits || !res.Visitor.Code || guessable([]byte(code)) {
		t.Fatalf("visitor add --pin: %s", out)
	}
	// The code is never stored or shown again.
	for _, args := range [][]string{{"visitor", "list", "--json"}, {"audit", "changes", "--json"}} {
		if o := s.ok(t, "", args...); strings.Contains(o, code) || (args[0] == "audit" && !strings.Contains(o, "keypad code of 8 digits")) {
			t.Fatalf("latch %s:\n%s", strings.Join(args, " "), o)
		}
	}
	s.current(t, "front", "back")
	applied := s.doorList(t)["front"].AppliedSeq

	ev := front.keyCode(code)
	if ev["reason"] != string(store.ReasonGranted) || ev["holder"] != "vic" || !strings.Contains(fmt.Sprint(ev["detail"]), "keypad code") {
		t.Fatalf("the code at the front door: %v", ev)
	}
	wrong := []byte(code)
	wrong[0] = '0' + (wrong[0]-'0'+1)%10
	if ev := front.keyCode(string(wrong)); ev["reason"] != string(store.ReasonUnknownCard) {
		t.Fatalf("a guessed code: %v", ev)
	}

	// The window ends: the front door refuses the code by its own clock,
	// polled by typing it, with no change from the site.
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		ev := front.keyCode(code)
		if ev["reason"] == string(store.ReasonExpired) {
			break
		}
		if ev["reason"] != string(store.ReasonGranted) || time.Now().After(until.Add(hangGuard)) {
			t.Fatalf("the code at the front door, %v after its window: %v", time.Since(until), ev)
		}
		<-poll.C
	}
	if time.Now().Before(until) {
		t.Fatalf("the code refused before its window ended (%v)", until)
	}
	if got := s.doorList(t)["front"].AppliedSeq; got != applied {
		t.Fatalf("the front door applied seq %d, then %d: the window's end needed no change", applied, got)
	}

	// A second code, for a door in card+PIN mode too, ended by an
	// operator: revoked at the door.
	exit, out, errs := s.cli(t, "", "visitor", "add", "wes", "--host", "bob", "--until", time.Now().Add(time.Hour).Format(time.RFC3339),
		"--doors", "front,back", "--pin", "--pin-digits", "8", "--uses", "3")
	if exit != 0 || !strings.Contains(errs, "latch: warning: a keypad code opens only doors in card-or-pin mode, and these report another: back (card+pin)") {
		t.Fatalf("visitor add --pin for a card+PIN door: exit %d: %s", exit, errs)
	}
	i := strings.Index(out, "keypad code ")
	if i < 0 || len(out) < i+20 {
		t.Fatalf("visitor add --pin: %s", out)
	}
	code = out[i+len("keypad code ") : i+len("keypad code ")+8]
	s.current(t, "front", "back")
	if ev := front.keyCode(code); ev["reason"] != string(store.ReasonGranted) || ev["holder"] != "wes" {
		t.Fatalf("wes's code at the front door: %v", ev)
	}
	collected(t, sv.db, "front")
	eventually(t, "wes's use counted", func() bool { return s.visitorList(t)["wes"].Used == 1 })
	// The access report says what each door does with the code, by the
	// mode it reported.
	for door, want := range map[string]string{"front": "opens", "back": "denied"} {
		var xs []mqttsite.Explanation
		if err := json.Unmarshal([]byte(s.ok(t, "", "access", "explain", "--holder", "wes", "--door", door, "--json")), &xs); err != nil || len(xs) != 1 {
			t.Fatalf("explain wes at %s: %+v, %v", door, xs, err)
		}
		if xs[0].Decision != want || (door == "back" && !strings.Contains(xs[0].Note, "only at a door in card-or-pin mode")) {
			t.Errorf("explain wes at %s: %+v, want %s", door, xs[0], want)
		}
	}
	s.ok(t, "", "visitor", "end", "wes")
	s.current(t, "front", "back")
	if ev := front.keyCode(code); ev["reason"] != string(store.ReasonRevoked) {
		t.Fatalf("wes's code after the end of the visit: %v", ev)
	}
	if code, _, errs := s.cli(t, "", "visitor", "add", "xan", "--host", "bob", "--until", "2099-01-01", "--doors", "front", "--pin", "--uid", "0E0E0E03"); code != 2 ||
		!strings.Contains(errs, "--pin with --uid or --enroll-door") {
		t.Fatalf("--pin with --uid: exit %d: %s", code, errs)
	}
}
