package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// A visitor's card enrolled by a tap: latch visitor add --enroll-door
// waits for the first unknown card tapped at the door and adds the
// visitor with it, one change; what is wrong is refused before the wait
// (each refusal a change-log entry), and a wait with no tap ends in 408.
func TestVisitorAddByTap(t *testing.T) {
	s := initSite(t)
	s.provision(t, "front", true)
	db := s.serve(t)
	until := time.Now().Add(time.Hour).Format(time.RFC3339)
	add := func(holder string, args ...string) []string {
		return append([]string{"visitor", "add", holder, "--host", "ada", "--until", until, "--doors", "front"}, args...)
	}
	code, out, errs := tapUntil(t, db, "front", "0A0B0C0E", func() (int, string, string) {
		return s.cli(t, "", add("vic", "--enroll-door", "front", "--enroll-timeout", "1m")...)
	})
	if code != 0 || !strings.Contains(out, "visitor vic added for ada, card 0A0B0C0E") || !strings.Contains(errs, "tap the visitor's card at door front") {
		t.Fatalf("visitor add --enroll-door: exit %d\n%s%s", code, out, errs)
	}
	c, err := db.Card([]byte{0x0a, 0x0b, 0x0c, 0x0e})
	if err != nil || c.HolderID != "vic" || !c.Flags.CardOnly || c.ValidUntil.IsZero() {
		t.Fatalf("the visitor's card: %+v, %v", c, err)
	}
	if v, err := db.Visitor("vic"); err != nil || v.Host != "ada" {
		t.Fatalf("the visitor: %+v, %v", v, err)
	}
	es, _, err := db.Changes(site.ChangeFilter{Target: "visitor vic"})
	if err != nil || len(es) != 1 || es[0].Op != "visitor add" || es[0].Result != "ok" || !strings.Contains(es[0].Detail, "card 0A0B0C0E") {
		t.Fatalf("change log of vic: %+v, %v", es, err)
	}

	// The CLI's refusals, before any request.
	for _, c := range []struct {
		args []string
		want string
	}{
		{add("val", "--uid", "0A0B0C0F", "--enroll-door", "front"), "give one"},
		{add("val"), "--uid or --enroll-door"},
		{add("val", "--enroll-door", "front", "--enroll-timeout", "0s"), "--enroll-timeout"},
	} {
		if code, _, errs := s.cli(t, "", c.args...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d: %s", c.args, code, errs)
		}
	}
	// The service's refusals, before the wait: each returns without a tap.
	for _, c := range []struct {
		args []string
		want string
	}{
		{add("vic", "--enroll-door", "front"), "exists"},
		{add("val", "--enroll-door", "nowhere"), "no such door"},
	} {
		before, _, _ := db.Changes(site.ChangeFilter{})
		if code, _, errs := s.cli(t, "", c.args...); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d: %s", c.args, code, errs)
		}
		after, _, _ := db.Changes(site.ChangeFilter{})
		if added := after[len(before):]; len(added) != 1 || added[0].Op != "visitor add" || !strings.HasPrefix(added[0].Result, "refused") {
			t.Errorf("%q: entries %+v", c.args, added)
		}
	}

	// The API: a UID and a door is refused; a wait with no tap ends.
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	now := time.Now()
	req := visitorAddReq{Holder: "val", Host: "ada", From: now, Until: now.Add(time.Hour), Doors: []string{"front"},
		UID: "0A0B0C0F", visitorTapReq: visitorTapReq{EnrollDoor: "front"}}
	if _, err := cl.call(context.Background(), "POST", "/v1/visitors", req); err == nil || !strings.Contains(err.Error(), "uid and enroll_door") {
		t.Errorf("uid and enroll_door: %v", err)
	}
	req.UID, req.EnrollWaitS = "", 1
	if _, err := cl.call(context.Background(), "POST", "/v1/visitors", req); err == nil || !strings.Contains(err.Error(), "no unknown card was tapped at door front within 1s") {
		t.Errorf("no tap: %v", err)
	}
	if _, err := db.Holder("val"); err == nil {
		t.Error("a refused visitor's holder was stored")
	}
}
