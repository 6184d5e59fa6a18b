package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// provision records door in the site database before the service opens
// it, approved with a new identity (or pending with it), and returns the
// identity.
func (s *testSite) provision(t testing.TB, door string, approved bool, groups ...string) *mqtt.Identity {
	t.Helper()
	db, err := site.Open(s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	p := id.Public()
	if approved {
		err = mqttsite.Provision(db, door, &p, groups)
	} else {
		err = db.Announce(door, site.Identity{SignKey: p.SignKey, SealKey: p.SealKey, Fingerprint: p.Fingerprint()}, time.Now())
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tapUntil runs cmd, a command that waits for a card tapped at door, and
// stores an unknown_card event of uid at the door every few enrolment
// polls until cmd returns: the service starts from the events stored
// when the request came, so taps keep coming until it has seen one.
func tapUntil(t testing.TB, db *site.DB, door, uid string, cmd func() (int, string, string)) (int, string, string) {
	t.Helper()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := cmd()
		done <- result{code, out, errs}
	}()
	last, _ := db.Contiguous(door)
	prev := strings.Repeat("0", 64)
	if last > 0 {
		e, err := db.Event(door, last)
		if err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	for {
		ev := doorEvents(t, door, last+1, last+1, prev, time.Now())
		ev[0].Reason, ev[0].UID, ev[0].Holder, ev[0].HolderName = store.ReasonUnknownCard, uid, "", ""
		rehash(t, ev, prev)
		if _, _, _, err := db.AddEvents(door, ev, time.Now()); err != nil {
			t.Fatal(err)
		}
		last, prev = last+1, ev[0].Hash
		select {
		case r := <-done:
			return r.code, r.out, r.err
		case <-time.After(3 * enrollPoll):
		}
	}
}

// Enrolment takes the next unknown card tapped at the door; --replace
// gives a lost card's holder the new one and revokes the old, in one
// change.
func TestEnrollAndReplace(t *testing.T) {
	s := initSite(t)
	s.provision(t, "front", true)
	db := s.serve(t)
	s.ok(t, "", "holder", "add", "alice")

	tap := func(uid string, args ...string) (int, string, string) {
		t.Helper()
		return tapUntil(t, db, "front", uid, func() (int, string, string) {
			return s.cli(t, "", append([]string{"enroll", "--door", "front", "--yes", "--timeout", "1m"}, args...)...)
		})
	}
	code, out, errs := tap("0A0B0C0D", "--holder", "alice")
	if code != 0 || !strings.Contains(out, "card 0A0B0C0D added for alice") {
		t.Fatalf("enroll: exit %d\n%s%s", code, out, errs)
	}
	c, err := db.Card([]byte{0x0a, 0x0b, 0x0c, 0x0d})
	if err != nil || c.HolderID != "alice" || len(c.Doors) != 1 || c.Doors[0] != "front" {
		t.Fatalf("enrolled card %+v %v", c, err)
	}

	code, out, errs = tap("0A0B0C0E", "--replace", "0a0b0c0d")
	if code != 0 || !strings.Contains(out, "replaced by 0A0B0C0E") {
		t.Fatalf("replace: exit %d\n%s%s", code, out, errs)
	}
	if r, err := db.Revoked([]byte{0x0a, 0x0b, 0x0c, 0x0d}); err != nil || r.Reason != "lost card replaced" {
		t.Fatalf("old card's revocation %+v %v", r, err)
	}
	if c, err := db.Card([]byte{0x0a, 0x0b, 0x0c, 0x0e}); err != nil || c.HolderID != "alice" || c.Doors[0] != "front" || c.PINHash != "" {
		t.Fatalf("new card %+v %v", c, err)
	}
	// Both in one change.
	seq, _ := db.ACLSeq()
	ch, err := db.DeltasAfter(seq-1, 0)
	if err != nil || len(ch) != 1 || len(ch[0].Ops) != 2 {
		t.Fatalf("the replacement's change: %+v %v", ch, err)
	}

	// Refused: no door, no tty without --holder, a replaced card that
	// does not exist, a door nobody knows.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"enroll", "--yes"}, 2, "--door"},
		{[]string{"enroll", "--door", "front", "--yes"}, 2, "--holder"},
		{[]string{"enroll", "--door", "front", "--holder", "alice"}, 2, "--yes"},
		{[]string{"enroll", "--door", "nowhere", "--holder", "alice", "--yes"}, 1, "no such door"},
		{[]string{"enroll", "--door", "front", "--replace", "0a0b0c0d", "--holder", "alice", "--yes"}, 2, "--replace"},
	} {
		code, _, errs := s.cli(t, "", tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errs)
		}
		oneLine(t, errs, tc.want)
	}
}

// An admin approves a door by the fingerprint it announced, puts it in
// groups, and sees it in door list; commands and key rotation need a
// broker.
func TestDoorApproveAndGroups(t *testing.T) {
	s := initSite(t)
	id := s.provision(t, "lab", false)
	db := s.serve(t)
	fp := id.Public().Fingerprint()
	if out := s.ok(t, "", "door", "list"); !strings.Contains(out, "pending "+fp) {
		t.Fatalf("door list:\n%s", out)
	}
	code, _, errs := s.cli(t, "", "door", "approve", "lab", "--fingerprint", "AAAA-BBBB")
	if code != 1 {
		t.Errorf("approve with another fingerprint: exit %d", code)
	}
	oneLine(t, errs, "not AAAA-BBBB")
	code, _, errs = s.cli(t, "", "door", "approve", "lab")
	if code != 2 {
		t.Errorf("approve without a fingerprint off a terminal: exit %d", code)
	}
	oneLine(t, errs, "--fingerprint")
	if out := s.ok(t, "", "door", "approve", "lab", "--fingerprint", fp); !strings.Contains(out, "door lab approved: "+fp) {
		t.Fatalf("approve:\n%s", out)
	}
	if d, err := db.Door("lab"); err != nil || d.Approved == nil || d.Approved.Fingerprint != fp || d.Pending != nil {
		t.Fatalf("door after approval %+v %v", d, err)
	}

	s.ok(t, "", "holder", "add", "bob")
	s.ok(t, "", "card", "add", "04010203", "--holder", "bob", "--doors", "staff")
	out := s.ok(t, "", "door", "groups", "lab", "staff,night", "--json")
	var gr groupsResult
	if err := json.Unmarshal([]byte(out), &gr); err != nil || gr.ViewSeq == 0 {
		t.Fatalf("door groups: %s %v", out, err)
	}
	out = s.ok(t, "", "door", "show", "lab", "--json")
	var dv doorView
	if err := json.Unmarshal([]byte(out), &dv); err != nil || strings.Join(dv.Groups, ",") != "night,staff" || dv.ViewSeq != gr.ViewSeq || dv.Current {
		t.Fatalf("door show: %s %v", out, err)
	}
	// A change's answer says which view seq each door reaches with it.
	out = s.ok(t, "", "revoke", "--uid", "04010203", "--reason", "lost", "--json")
	var cr changeResult
	if err := json.Unmarshal([]byte(out), &cr); err != nil || cr.Doors["lab"] != gr.ViewSeq+1 {
		t.Fatalf("revoke: %s %v", out, err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"audit", "findings", "--limit", "0"}, 2, "--limit"},
		{[]string{"door", "unlock", "lab"}, 1, "without a broker"},
		{[]string{"door", "lockdown", "lab", "on"}, 1, "without a broker"},
		{[]string{"door", "lockdown", "lab", "maybe"}, 2, "want on or off"},
		{[]string{"door", "lockdown", "on"}, 2, "DOOR|--all"},
		{[]string{"door", "unlock", "lab", "--for", "2m"}, 2, "at most 1m"},
		{[]string{"door", "groups", "lab", "Bad Group"}, 1, "group"},
		{[]string{"door", "show", "nowhere"}, 1, "no such door"},
		{[]string{"keys", "rotate"}, 1, "without a broker"},
		{[]string{"revoke", "--uid", "04010203", "--reason", "x", "--wait", "--timeout", "0s"}, 2, "--timeout"},
	} {
		code, _, errs := s.cli(t, "", tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errs)
		}
		oneLine(t, errs, tc.want)
	}

	// Withdrawn: the door has no identity any more, and no view.
	if out := s.ok(t, "", "door", "unapprove", "lab"); !strings.Contains(out, "approval withdrawn") {
		t.Fatalf("unapprove:\n%s", out)
	}
	if d, err := db.Door("lab"); err != nil || d.Approved != nil || d.ViewSeq != 0 {
		t.Fatalf("door after unapprove %+v %v", d, err)
	}
	code, _, errs = s.cli(t, "", "door", "unapprove", "lab")
	if code != 1 {
		t.Errorf("unapprove twice: exit %d", code)
	}
	oneLine(t, errs, "not approved")
	if out := s.ok(t, "", "audit", "findings"); !strings.Contains(out, "no findings") {
		t.Fatalf("audit findings:\n%s", out)
	}
}

func TestNextKid(t *testing.T) {
	for in, want := range map[string]string{"hq-1": "hq-2", "hq-9": "hq-10", "lab": "lab-2", "site-2026": "site-2027", "7": "7-2"} {
		if got := nextKid(in); got != want {
			t.Errorf("nextKid(%q) = %q, want %q", in, got, want)
		}
	}
}

// latch serve reaches a TLS broker that asks for a client certificate,
// with --broker-ca, --broker-cert and --broker-cert-key.
func TestServeTLSBroker(t *testing.T) {
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Skip(err)
	}
	b := brokertest.Start(t, brokertest.Config{TLS: true})
	cert, key := b.PKI.ClientCert("site")
	env := &env{getenv: func(string) string { return "" }}
	bo, err := brokerFlags(env, brokerFlagValues{url: b.URL(), caFile: b.PKI.CAFile, certFile: cert, certKey: key, heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := initSite(t)
	sv := s.start(t, serveOptions{broker: bo})
	defer sv.stop(t)
	eventually(t, "the site connected over TLS", func() bool { return sv.site.Stats().Connected })

	for _, f := range []brokerFlagValues{
		{url: b.URL(), certFile: cert, heartbeat: time.Second},
		{url: "tcp://127.0.0.1:1", caFile: b.PKI.CAFile, heartbeat: time.Second},
		{url: b.URL(), caFile: cert + ".missing", heartbeat: time.Second},
		{url: "http://x", heartbeat: time.Second},
		{caFile: b.PKI.CAFile},
	} {
		if _, err := brokerFlags(env, f); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
}

// latch serve --dev makes a site in its directory on first use, runs an
// embedded broker, writes the join file a simulated door reads, and
// prints the next steps; a second start reuses the site.
func TestServeDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		// Files, so that the test reads what serve writes while it runs.
		out, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"serve", "--dev", dir, "--dev-broker", "127.0.0.1:0", "--dev-web", "127.0.0.1:0", "--log-level", "warn"}, strings.NewReader(""), out, out)
		}()
		printed := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
		eventually(t, "serve --dev printing its next steps", func() bool { return strings.Contains(printed(), "latch door approve front") })
		if !regexp.MustCompile(`the web console is at http://127\.0\.0\.1:[1-9][0-9]*,`).MatchString(printed()) {
			t.Fatalf("serve --dev does not say where its console is:\n%s", printed())
		}
		var j joinFile
		b, err := os.ReadFile(filepath.Join(dir, "join.json"))
		if err != nil || json.Unmarshal(b, &j) != nil || j.Site != devSite || len(j.TrustedKeys) != 1 || !strings.HasPrefix(j.Broker, "tcp://127.0.0.1:") {
			t.Fatalf("join file %s: %v", b, err)
		}
		sock := filepath.Join(dir, "latch.sock")
		if code, _, errs := latch(t, "", "holder", "add", fmt.Sprint("h", round), "--socket", sock); code != 0 {
			t.Fatalf("holder add: %s", errs)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("serve --dev: exit %d: %s", code, printed())
		}
	}
	// Both holders are in the one site.
	db, err := site.Open(filepath.Join(dir, "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if hs, err := db.ListHolders("", 0); err != nil || len(hs) != 2 {
		t.Fatalf("holders %+v %v", hs, err)
	}
	code, _, errs := latch(t, "", "serve", "--dev", dir, "--broker", "tcp://127.0.0.1:1")
	if code != 2 {
		t.Errorf("--dev with --broker: exit %d", code)
	}
	oneLine(t, errs, "--dev makes its own")
}

// latch serve --syslog sends each event collected while it runs to
// syslog, as RFC 5424.
func TestServeSyslog(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fw, err := newSyslogForwarder("udp://"+pc.LocalAddr().String(), "site-host", "latch", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := initSite(t)
	sv := s.start(t, serveOptions{syslog: fw})
	defer sv.stop(t)
	code, _, errs := latch(t, "", "serve", "--db", s.db, "--key", s.key, "--syslog", "http://127.0.0.1:1")
	if code != 2 {
		t.Errorf("serve --syslog http://: exit %d", code)
	}
	oneLine(t, errs, "--syslog")
	evs := doorEvents(t, "front", 1, 2, strings.Repeat("0", 64), time.Now())
	// The forwarder starts from the end when it starts: events keep
	// coming until one is read.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 8192)
		n, _, err := pc.ReadFrom(buf)
		if err == nil {
			got <- string(buf[:n])
		}
	}()
	for i := 0; ; i++ {
		if _, _, _, err := sv.db.AddEvents("front", evs[i%2:i%2+1], time.Now()); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if !strings.HasPrefix(m, "<") || !strings.Contains(m, " site-host latch ") || !strings.Contains(m, "front") {
				t.Fatalf("syslog message %q", m)
			}
			return
		case <-time.After(2 * syslogPoll):
		}
		if i > 30 {
			t.Fatal("no syslog message")
		}
	}
}

// A damaged site database is refused at start, with one line naming it,
// and the file is left as it was.
func TestServeDamagedDatabase(t *testing.T) {
	s := initSite(t)
	junk := []byte("this is not a bbolt file, and never was one: it is damaged")
	if err := os.WriteFile(s.db, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := latch(t, "", "serve", "--db", s.db, "--key", s.key, "--socket", s.sock)
	if code != 1 {
		t.Errorf("serve on a damaged database: exit %d, want 1", code)
	}
	oneLine(t, errs, "damaged site database")
	if b, err := os.ReadFile(s.db); err != nil || string(b) != string(junk) {
		t.Errorf("the damaged file was changed: %q %v", b, err)
	}
}

// A card's schedule, holidays and switches, given at card add and changed
// with card set; what a door's store would refuse is refused.
func TestCardScheduleAndSet(t *testing.T) {
	s := initSite(t)
	db := s.serve(t)
	s.ok(t, "", "holder", "add", "carol")
	s.ok(t, "", "card", "add", "04C0C0C0", "--holder", "carol", "--doors", "front",
		"--schedule", "mon-fri 07:00-19:00,sat 09:00-13:00", "--holidays", "2026-12-25", "--card-only")
	c, err := db.Card([]byte{4, 0xc0, 0xc0, 0xc0})
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Schedule.Weekly[time.Monday]; len(w) != 1 || w[0] != (store.Window{From: 420, To: 1140}) || len(c.Schedule.Weekly[time.Sunday]) != 0 ||
		len(c.Schedule.Weekly[time.Saturday]) != 1 || c.Schedule.Holidays[0] != "2026-12-25" || !c.Flags.CardOnly {
		t.Fatalf("card %+v", c)
	}
	out := s.ok(t, "", "card", "show", "04C0C0C0")
	if !strings.Contains(out, "mon 07:00-19:00") || !strings.Contains(out, "closed 2026-12-25") || !strings.Contains(out, "card-only") {
		t.Fatalf("card show:\n%s", out)
	}
	// Set: only what is given changes; the PIN and holder stay.
	s.ok(t, "8461\n", "pin", "set", "carol", "--uid", "04C0C0C0")
	s.ok(t, "", "card", "set", "04C0C0C0", "--schedule", "fri-mon 22:00-24:00", "--until", "2030-01-01")
	c, err = db.Card([]byte{4, 0xc0, 0xc0, 0xc0})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Schedule.Weekly[time.Sunday]) != 1 || len(c.Schedule.Weekly[time.Tuesday]) != 0 || len(c.Schedule.Holidays) != 0 ||
		c.PINHash == "" || c.HolderID != "carol" || !c.Flags.CardOnly || c.ValidUntil.IsZero() || c.Doors[0] != "front" {
		t.Fatalf("card after set %+v", c)
	}
	s.ok(t, "", "card", "set", "04C0C0C0", "--lockdown-override")
	s.ok(t, "", "card", "set", "04C0C0C0", "--until", "none", "--card-only=false")
	if c, _ = db.Card([]byte{4, 0xc0, 0xc0, 0xc0}); !c.ValidUntil.IsZero() || c.Flags.CardOnly || !c.Flags.LockdownOverride {
		t.Fatalf("card after set %+v", c)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"card", "set", "04C0C0C0"}, 2, "nothing to change"},
		{[]string{"card", "set", "04C0C0C0", "--schedule", "mon 19:00-07:00"}, 2, "two entries"},
		{[]string{"card", "set", "04C0C0C0", "--schedule", "someday 08:00-09:00"}, 2, "schedule days"},
		{[]string{"card", "set", "04C0C0C0", "--schedule", "mon 8-9"}, 2, "HH:MM"},
		{[]string{"card", "set", "04C0C0C0", "--holidays", "25/12/2026"}, 2, "YYYY-MM-DD"},
		{[]string{"card", "set", "04C0C0C0", "--schedule", strings.TrimSuffix(strings.Repeat("mon 08:00-09:00,", 49), ",")}, 1, "windows, limit 48"},
		{[]string{"card", "set", "04FFFFFF", "--card-only"}, 1, "does not exist"},
	} {
		code, _, errs := s.cli(t, "", tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errs)
		}
		oneLine(t, errs, tc.want)
	}
}
