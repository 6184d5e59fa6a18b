package main

import (
	"strings"
	"testing"
	"time"
)

// The three rules docs/alarms.md shows parse, and match the moments they
// are meant for and no others.
func TestNotifyRulesOfTheDocs(t *testing.T) {
	c, err := parseNotify([]byte(`
[[notify.rule]]
name = "weekend-unlock"
events = ["granted", "granted_duress"]
days = ["sat", "sun"]
tz = "UTC"
channel = "email:ops"

[[notify.rule]]
name = "admin-login"
actions = ["login"]
roles = ["admin"]
channel = "webhook:siem"

[[notify.rule]]
name = "controller-offline"
alarms = ["offline"]
open_for = "5m"
hours = "18:00-07:00"
tz = "UTC"
channel = "mqtt"

[notify.webhook.siem]
url = "https://siem.example/latch"
secret_file = "/etc/latch/siem.secret"

[notify.email.ops]
addr = "mail.example:587"
from = "latch@example"
to = ["ops@example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	weekend, offline := &c.Rules[0], &c.Rules[2]
	sat := time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC) // a Saturday
	if !weekend.at(sat) || weekend.at(sat.Add(48*time.Hour)) {
		t.Error("weekend rule: want Saturday, not Monday")
	}
	if !offline.at(sat.Add(9*time.Hour)) || !offline.at(sat.Add(-4*time.Hour)) || offline.at(sat) {
		t.Error("18:00-07:00: want 19:00 and 06:00, not 10:00")
	}
	if offline.OpenFor.Duration != 5*time.Minute {
		t.Errorf("open_for %v", offline.OpenFor.Duration)
	}
	for _, bad := range []string{
		`[[notify.rule]]` + "\nname = \"x\"\nchannel = \"mqtt\"",
		`[[notify.rule]]` + "\nname = \"x\"\nalarms = [\"fire\"]\nchannel = \"mqtt\"",
		`[[notify.rule]]` + "\nname = \"x\"\nevents = [\"granted\"]\nchannel = \"webhook:none\"",
		`[[notify.rule]]` + "\nname = \"x\"\nevents = [\"granted\"]\nhours = \"25:00-01:00\"\nchannel = \"mqtt\"",
		`[[notify.rule]]` + "\nname = \"x\"\nevents = [\"granted\"]\nchanel = \"mqtt\"",
	} {
		if _, err := parseNotify([]byte(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

// FuzzParseNotify: a notification configuration either is refused or
// gives rules that each name a channel that exists.
func FuzzParseNotify(f *testing.F) {
	f.Add([]byte("[[notify.rule]]\nname = \"a\"\nalarms = [\"offline\"]\nhours = \"18:00-07:00\"\nchannel = \"mqtt\"\n"))
	f.Add([]byte("[[notify.rule]]\nname = \"b\"\nevents = [\"granted\"]\ndays = [\"sat\"]\nchannel = \"webhook:h\"\n[notify.webhook.h]\nurl = \"http://127.0.0.1:1/\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseNotify(b)
		if err != nil {
			return
		}
		for _, r := range c.Rules {
			kind, name, _ := strings.Cut(r.Channel, ":")
			if r.Channel != "mqtt" && c.Webhook[name] == nil && c.Email[name] == nil || (kind != "mqtt" && kind != "webhook" && kind != "email") {
				t.Fatalf("rule %q with channel %q accepted", r.Name, r.Channel)
			}
			_ = r.at(time.Unix(0, 0))
		}
	})
}
