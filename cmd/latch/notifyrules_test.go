package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Rules added, disabled, enabled and removed with the CLI are in force at
// once, beside the configuration file's, which stay read-only; a bad rule
// is refused naming its field; a stored rule whose channel the file lost
// is listed as such, not in force, and logged once.
func TestNotifyRulesThroughTheCLI(t *testing.T) {
	hooks := make(chan string, 8)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var x notification
		if err := json.NewDecoder(r.Body).Decode(&x); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		hooks <- x.Rule
	}))
	t.Cleanup(recv.Close)
	cfg, err := parseNotify([]byte(`
[[notify.rule]]
name = "cfg-forced"
alarms = ["door_forced"]
channel = "webhook:siem"

[notify.webhook.siem]
url = "` + recv.URL + `"
secret = "s"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := initSite(t)
	var eng *alarmEngine
	sv := s.start(t, serveOptions{notify: cfg, alarmsReady: func(e *alarmEngine) { eng = e }})
	defer sv.stop(t)
	inForce := func() []string {
		var names []string
		for _, r := range eng.notifier.current() {
			names = append(names, r.Name)
		}
		return names
	}

	if out := s.ok(t, "", "notify", "rule", "add", "--name", "granted-hook", "--events", "granted", "--doors", "front", "--channel", "webhook:siem"); !strings.Contains(out, "granted-hook added: active") {
		t.Fatalf("add:\n%s", out)
	}
	s.ok(t, "", "notify", "rule", "add", "--name", "night", "--alarms", "door_forced,offline", "--days", "sat,sun", "--hours", "18:00-07:00", "--tz", "Europe/Berlin", "--open-for", "5m", "--channel", "mqtt")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "x", "--events", "granted", "--hours", "25:00-01:00", "--channel", "mqtt"}, `hours "25:00-01:00"`},
		{[]string{"--name", "x", "--events", "granted", "--channel", "webhook:nope"}, `channel "webhook:nope"`},
		{[]string{"--name", "x", "--events", "granted", "--channel", "email:ops"}, `channel "email:ops"`},
		{[]string{"--name", "x", "--events", "granted", "--days", "someday", "--channel", "mqtt"}, `day "someday"`},
		{[]string{"--name", "x", "--events", "granted", "--tz", "Mars/Olympus", "--channel", "mqtt"}, `tz "Mars/Olympus"`},
		{[]string{"--name", "x", "--alarms", "door_forced", "--open-for", "soon", "--channel", "mqtt"}, `open_for "soon"`},
		{[]string{"--name", "x", "--alarms", "fire", "--channel", "mqtt"}, `fire`},
		{[]string{"--name", "x", "--channel", "mqtt"}, "give events, alarms or actions"},
		{[]string{"--name", "cfg-forced", "--events", "granted", "--channel", "mqtt"}, "in the configuration file"},
		{[]string{"--name", "night", "--events", "granted", "--channel", "mqtt"}, "exists"},
		{[]string{"--events", "granted", "--channel", "mqtt"}, "--name and --channel are required"},
	} {
		code, _, errs := s.cli(t, "", append([]string{"notify", "rule", "add"}, c.args...)...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("add %v: exit %d, %q; want an error naming %q", c.args, code, errs, c.want)
		}
	}
	out := s.ok(t, "", "notify", "rules")
	for _, want := range []string{"cfg-forced    config  active", "granted-hook  api     active", "night         api     active", "sat,sun 18:00-07:00 Europe/Berlin", "open for 5m"} {
		if !strings.Contains(out, want) {
			t.Errorf("notify rules lacks %q:\n%s", want, out)
		}
	}
	if got := strings.Join(inForce(), " "); got != "cfg-forced granted-hook night" {
		t.Fatalf("in force: %s", got)
	}
	// In force at once: a granted event at the front door is notified.
	eng.notifier.events([]site.Arrival{{Door: "front", Event: store.Event{Seq: 1, Door: "front", Reason: "granted"}}})
	select {
	case r := <-hooks:
		if r != "granted-hook" {
			t.Fatalf("webhook of rule %q", r)
		}
	case <-time.After(hangGuard):
		t.Fatal("no webhook for the added rule")
	}

	if out := s.ok(t, "", "notify", "rule", "disable", "granted-hook"); !strings.Contains(out, "disabled: disabled") {
		t.Fatalf("disable:\n%s", out)
	}
	if got := strings.Join(inForce(), " "); got != "cfg-forced night" {
		t.Fatalf("in force after disable: %s", got)
	}
	for _, c := range []struct{ args, want string }{
		{"disable granted-hook", "already disabled"},
		{"disable cfg-forced", "in the configuration file"},
		{"remove cfg-forced", "in the configuration file"},
		{"enable nothing", "does not exist"},
	} {
		if code, _, errs := s.cli(t, "", append([]string{"notify", "rule"}, strings.Fields(c.args)...)...); code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, %q; want %q", c.args, code, errs, c.want)
		}
	}
	s.ok(t, "", "notify", "rule", "enable", "granted-hook")
	s.ok(t, "", "notify", "rule", "remove", "night")
	if got := strings.Join(inForce(), " "); got != "cfg-forced granted-hook" {
		t.Fatalf("in force after enable and remove: %s", got)
	}
	es, _, err := sv.db.Changes(site.ChangeFilter{Target: "notify rule "})
	var ops []string
	for _, e := range es {
		if e.Result == "ok" {
			ops = append(ops, e.Op+" "+e.Target)
		}
	}
	if want := "notify rule add notify rule granted-hook,notify rule add notify rule night,notify rule disable notify rule granted-hook," +
		"notify rule enable notify rule granted-hook,notify rule remove notify rule night"; err != nil || strings.Join(ops, ",") != want {
		t.Errorf("change log: %v %v", ops, err)
	}
	sv.stop(t)

	// The configuration loses the webhook (and so its rule).
	sv = s.start(t, serveOptions{alarmsReady: func(e *alarmEngine) { eng = e }})
	if out := s.ok(t, "", "notify", "rules"); !strings.Contains(out, "granted-hook  api     channel missing  webhook:siem") || strings.Contains(out, "cfg-forced") {
		t.Errorf("notify rules without the channel:\n%s", out)
	}
	if got := inForce(); len(got) != 0 {
		t.Errorf("in force without the channel: %v", got)
	}
	sv.stop(t)
	db, err := site.Open(s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logged bytes.Buffer
	n, err := newNotifier(notifyConfig{}, "hq", db, slog.New(slog.NewTextHandler(&logged, nil)), time.Now, time.After, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.reload(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logged.String(), `level=WARN msg="stored notification rule not in force" part=notify rule=granted-hook channel=webhook:siem state="channel missing"`); got != 1 {
		t.Errorf("logged %d times, want once:\n%s", got, logged.String())
	}
	if need := apiNeed("POST /v1/notify/rules"); need != site.RoleAdmin {
		t.Errorf("adding a rule needs %s", need)
	}
}

// The console's rules page lists the file's rules and the stored ones;
// an admin adds, disables and removes a stored rule with its forms, a bad
// one is refused naming its field, and an auditor only reads.
func TestNotifyRulesPage(t *testing.T) {
	cfg, err := parseNotify([]byte("[[notify.rule]]\nname = \"cfg-forced\"\nalarms = [\"door_forced\"]\nchannel = \"mqtt\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs := startConsoleSite(t, serveOptions{notify: cfg}, nil)
	cs.addUser(t, "ada", "admin", adminPW)
	cs.addUser(t, "aud", "auditor", audPW)
	br := cs.browser(t)
	csrf := br.mustLogin("ada", adminPW)
	form := url.Values{"csrf": {csrf}, "name": {"night"}, "events": {"granted, granted_duress"}, "days": {"sat,sun"}, "hours": {"18:00-07:00"}, "tz": {"UTC"}, "channel": {"mqtt"}}
	if p := br.post("/alarms/rules", form); p.code != http.StatusSeeOther {
		t.Fatalf("add on the page: %d %s", p.code, p.body)
	}
	p := br.get("/alarms/rules")
	if p.code != 200 || !strings.Contains(p.body, `id="rule-cfg-forced"`) || !strings.Contains(p.body, `id="rule-night"`) ||
		!strings.Contains(p.body, "events granted, granted_duress") || !strings.Contains(p.body, `aria-label="Disable rule night"`) ||
		strings.Contains(p.body, `aria-label="Disable rule cfg-forced"`) {
		t.Fatalf("rules page: %d\n%s", p.code, p.body)
	}
	form.Set("name", "bad")
	form.Set("hours", "7-9")
	br.post("/alarms/rules", form)
	if p := br.get("/alarms/rules"); !strings.Contains(p.body, `hours &#34;7-9&#34;`) || strings.Contains(p.body, `id="rule-bad"`) {
		t.Fatalf("a bad rule on the page:\n%s", p.body)
	}
	if p := br.post("/alarms/rules/night/disable", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("disable on the page: %d", p.code)
	}
	if p := br.get("/alarms/rules"); !strings.Contains(p.body, `<strong class="bad">disabled</strong>`) || !strings.Contains(p.body, `aria-label="Enable rule night"`) {
		t.Fatalf("after disable:\n%s", p.body)
	}
	if p := br.post("/alarms/rules/night/remove", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("remove on the page: %d", p.code)
	}
	if rs, err := cs.sv.db.NotifyRules(); err != nil || len(rs) != 0 {
		t.Fatalf("stored after remove: %+v %v", rs, err)
	}
	ab := cs.browser(t)
	acsrf := ab.mustLogin("aud", audPW)
	if p := ab.get("/alarms/rules"); p.code != 200 || !strings.Contains(p.body, `id="rule-cfg-forced"`) || strings.Contains(p.body, "Add a rule") {
		t.Errorf("the auditor's page: %d", p.code)
	}
	form.Set("csrf", acsrf)
	if p := ab.post("/alarms/rules", form); p.code != http.StatusForbidden {
		t.Errorf("an auditor adds a rule: %d", p.code)
	}
}
