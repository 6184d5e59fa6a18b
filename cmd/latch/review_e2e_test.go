package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchdoor/latch/store/site"
)

// A recertification of group staff, end to end: two doors running latchd
// in staff, a holder kept and a holder removed by the review's owner; the
// removal reaches both doors, which then refuse the removed holder's card
// when it is tapped; the completed review refuses further decisions; the
// change log has its start, each decision and its completion; the
// evidence file verifies offline with the doors' trusted key, and a
// one-byte change to it does not.
func TestReviewRemovesHolderAtDoors(t *testing.T) {
	s, sv, front, back := startE2E(t)
	s.ok(t, "a long enough password\n", "user", "add", "ada", "--role", "auditor")
	s.ok(t, "", "holder", "add", "alice")
	s.ok(t, "", "holder", "add", "bob")
	s.ok(t, "", "card", "add", "04A1B2C3", "--holder", "alice", "--doors", "staff", "--card-only")
	s.ok(t, "", "card", "add", "04D1E2F3", "--holder", "bob", "--doors", "staff,elsewhere", "--card-only")
	s.current(t, "front", "back")
	for _, d := range []*simDoor{front, back} {
		d.tapPIN("04D1E2F3", "", "granted")
	}

	out := s.ok(t, "", "review", "start", "--group", "staff", "--owner", "ada", "--due", "2099-01-31")
	if !strings.Contains(out, "review 1 of group staff started: 2 holders") {
		t.Fatalf("review start: %s", out)
	}
	s.ok(t, "", "review", "decide", "1", "--holder", "alice", "--keep", "--comment", "still on the team")
	if code, _, errs := s.cli(t, "", "review", "complete", "1"); code == 0 || !strings.Contains(errs, "1 of 2 holders have no decision") {
		t.Fatalf("complete with bob undecided: exit %d, %s", code, errs)
	}
	out = s.ok(t, "", "review", "decide", "1", "--holder", "bob", "--remove", "--comment", "left in May")
	if !strings.Contains(out, "remove bob (change") {
		t.Fatalf("review decide: %s", out)
	}
	s.current(t, "front", "back")
	for _, d := range []*simDoor{front, back} {
		d.tapPIN("04D1E2F3", "", "unknown_card")
		d.tapPIN("04A1B2C3", "", "granted")
	}
	if c, err := sv.db.Card([]byte{0x04, 0xD1, 0xE2, 0xF3}); err != nil || strings.Join(c.Doors, ",") != "elsewhere" {
		t.Errorf("bob's card after the removal: %v, %v; want doors elsewhere", c.Doors, err)
	}

	s.ok(t, "", "review", "complete", "1")
	if code, _, errs := s.cli(t, "", "review", "decide", "1", "--holder", "alice", "--remove", "--comment", "too late"); code == 0 || !strings.Contains(errs, "completed") {
		t.Fatalf("decide after completion: exit %d, %s", code, errs)
	}
	out = s.ok(t, "", "review", "show", "1")
	for _, want := range []string{"completed", "still on the team", "left in May"} {
		if !strings.Contains(out, want) {
			t.Errorf("review show lacks %q:\n%s", want, out)
		}
	}

	es, _, err := sv.db.Changes(site.ChangeFilter{Target: "review 1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Op+" "+strings.Fields(e.Result)[0])
	}
	want := "review start ok,review decide ok,review complete refused,review decide ok,review complete ok,review decide refused"
	if strings.Join(got, ",") != want {
		t.Errorf("change log of review 1: %s\nwant %s", strings.Join(got, ","), want)
	}
	if last := es[len(es)-2]; !strings.Contains(string(last.After), `"left in May"`) || !strings.Contains(string(last.After), `"still on the team"`) {
		t.Errorf("the completion's entry does not hold every decision: %s", last.After)
	}

	key, err := loadSiteKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	trust := key.Kid + "=" + key.publicBase64()
	for _, format := range []string{"json", "csv"} {
		file := filepath.Join(t.TempDir(), "review-1."+format)
		s.ok(t, "", "review", "export", "1", "--format", format, "-o", file)
		out, errs := verifyOut(t, file, trust)
		if !strings.Contains(out, "OK: review 1 of group staff") || !strings.Contains(out, "2 holders, 1 kept, 1 removed") {
			t.Fatalf("%s: verify-evidence: %s %s", format, out, errs)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(b), "left in May")
		b[i] = 'L'
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errs := verifyOut(t, file, trust); out != "" || !strings.Contains(errs, "FAILED") {
			t.Errorf("%s: a changed byte: %q %q", format, out, errs)
		}
	}
}

// verifyOut runs latch audit verify-evidence on file, trusting trust.
func verifyOut(t *testing.T, file, trust string) (string, string) {
	t.Helper()
	_, out, errs := latch(t, "", "audit", "verify-evidence", file, "--site-key", trust)
	return out, errs
}

// The console's review pages against two doors: an admin starts the
// review with the form; an auditor who is not its owner may read it but
// not decide; its owner (an auditor) removes a holder with the page's
// button, which reaches both doors; after completion the page offers the
// signed evidence and no buttons, and a decision is refused.
func TestReviewConsole(t *testing.T) {
	var base string
	s, sv, front, back := startE2EWith(t, serveOptions{web: webConfig{Listen: "127.0.0.1:0"}, webReady: func(addr string) { base = "http://" + addr }})
	cs := &consoleSite{testSite: s, sv: sv, base: base}
	cs.addUser(t, "root", "admin", adminPW)
	cs.addUser(t, "ada", "auditor", audPW)
	cs.addUser(t, "eve", "auditor", audPW)
	s.ok(t, "", "holder", "add", "bob")
	s.ok(t, "", "card", "add", "04D1E2F3", "--holder", "bob", "--doors", "*", "--card-only")
	s.current(t, "front", "back")

	adm := cs.browser(t)
	acsrf := adm.mustLogin("root", adminPW)
	if p := adm.get("/reviews"); p.code != http.StatusOK || !strings.Contains(p.body, `id="review-start"`) || !strings.Contains(p.body, `<option value="ada">`) {
		t.Fatalf("reviews page for an admin: %d %s", p.code, p.body)
	}
	if p := adm.post("/reviews", url.Values{"csrf": {acsrf}, "group": {"staff"}, "owner": {"ada"}, "due": {"2099-01-31"}}); p.code != http.StatusSeeOther || p.location != "/reviews/1" {
		t.Fatalf("start: %d %s %s", p.code, p.location, p.body)
	}

	eve := cs.browser(t)
	ecsrf := eve.mustLogin("eve", audPW)
	if p := eve.get("/reviews/1"); p.code != http.StatusOK || !strings.Contains(p.body, `id="holder-bob"`) || strings.Contains(p.body, `value="remove"`) {
		t.Fatalf("review page for another auditor: %d %s", p.code, p.body)
	}
	if p := eve.post("/reviews", url.Values{"csrf": {ecsrf}, "group": {"staff"}, "owner": {"eve"}}); p.code != http.StatusForbidden {
		t.Errorf("an auditor starts a review: %d", p.code)
	}
	eve.post("/reviews/1/decide", url.Values{"csrf": {ecsrf}, "holder": {"bob"}, "decision": {"remove"}, "comment": {"not mine"}})
	if rv, _ := sv.db.Review(1); rv.Holder("bob").Decision != "" {
		t.Fatalf("a decision by an auditor who is not the owner: %+v", rv.Holder("bob"))
	}
	if p := eve.get("/reviews/1"); !strings.Contains(p.body, "review 1 is ada&#39;s to decide") {
		t.Errorf("the refusal of a decision by an auditor who is not the owner: %s", p.body)
	}

	own := cs.browser(t)
	ocsrf := own.mustLogin("ada", audPW)
	p := own.get("/reviews/1")
	if !strings.Contains(p.body, `value="remove"`) || !strings.Contains(p.body, "front via *") {
		t.Fatalf("review page for its owner: %s", p.body)
	}
	if p := own.post("/reviews/1/decide", url.Values{"csrf": {ocsrf}, "holder": {"bob"}, "decision": {"remove"}, "comment": {"contractor, contract ended"}}); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/changes/") {
		t.Fatalf("remove: %d %s: %s", p.code, p.location, own.get("/reviews/1").body)
	}
	s.current(t, "front", "back")
	for _, d := range []*simDoor{front, back} {
		d.tapPIN("04D1E2F3", "", "unknown_card")
	}
	own.post("/reviews/1/complete", url.Values{"csrf": {ocsrf}})
	p = own.get("/reviews/1")
	if !strings.Contains(p.body, "no further decision is accepted") || strings.Contains(p.body, `value="keep"`) || !strings.Contains(p.body, "evidence?format=csv") {
		t.Fatalf("completed review page: %s", p.body)
	}
	if p := own.get("/api/v1/reviews/1/evidence?format=json"); p.code != http.StatusOK || !strings.Contains(p.body, `"signature"`) {
		t.Fatalf("evidence through the console: %d %s", p.code, p.body)
	}
	if p := own.api("POST", "/api/v1/reviews/1/decisions", ocsrf, `{"holder":"bob","decision":"keep","comment":"again"}`); p.code != http.StatusConflict {
		t.Errorf("decide after completion through the console's API: %d %s", p.code, p.body)
	}
}
