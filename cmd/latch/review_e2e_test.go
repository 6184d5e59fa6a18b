package main

import (
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
