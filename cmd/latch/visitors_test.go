package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// Without a broker: a visitor's add and end are committed, each one
// change-log entry, and what is wrong is refused, each refusal an entry
// too and nothing else stored.
func TestVisitorAddRefusals(t *testing.T) {
	s := initSite(t)
	db := s.serve(t)
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	now := time.Now()
	good := visitorAddReq{Holder: "vic", Host: "ada", From: now, Until: now.Add(time.Hour), Doors: []string{"front"}, Uses: 3, UID: "04E0E0E0"}
	raw, err := cl.call(context.Background(), "POST", "/v1/visitors", good)
	if err != nil {
		t.Fatal(err)
	}
	var res visitorResult
	decodeInto(t, raw, &res)
	if res.Seq == 0 || res.Visitor.Holder != "vic" || res.Visitor.Uses != 3 || res.Visitor.AddedBy == "" {
		t.Fatalf("added: %+v", res)
	}
	c, err := db.Card([]byte{0x04, 0xE0, 0xE0, 0xE0})
	if err != nil || !c.Flags.CardOnly || !c.ValidFrom.Equal(good.From.UTC().Truncate(0)) || !c.ValidUntil.Equal(good.Until) || c.HolderID != "vic" {
		t.Fatalf("the visitor's card: %+v, %v", c, err)
	}
	for _, c := range []struct {
		what string
		req  func(r *visitorAddReq)
		want string
	}{
		{"the holder exists", func(r *visitorAddReq) { r.UID = "04E0E0E1" }, "exists"},
		{"the card exists", func(r *visitorAddReq) { r.Holder = "val" }, "exists"},
		{"the window is over", func(r *visitorAddReq) {
			r.Holder, r.UID, r.From, r.Until = "val", "04E0E0E1", now.Add(-time.Hour), now.Add(-time.Minute)
		}, "over"},
		{"no window", func(r *visitorAddReq) { r.Holder, r.UID, r.Until = "val", "04E0E0E1", r.From }, "window"},
		{"no host", func(r *visitorAddReq) { r.Holder, r.UID, r.Host = "val", "04E0E0E1", " " }, "host"},
		{"no doors", func(r *visitorAddReq) { r.Holder, r.UID, r.Doors = "val", "04E0E0E1", nil }, "doors"},
		{"negative uses", func(r *visitorAddReq) { r.Holder, r.UID, r.Uses = "val", "04E0E0E1", -1 }, "uses"},
	} {
		r := good
		c.req(&r)
		before, _, _ := db.Changes(site.ChangeFilter{})
		if _, err := cl.call(context.Background(), "POST", "/v1/visitors", r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.what, err, c.want)
		}
		after, _, _ := db.Changes(site.ChangeFilter{})
		if added := after[len(before):]; len(added) != 1 || !strings.HasPrefix(added[0].Result, "refused") || added[0].Op != "visitor add" {
			t.Errorf("%s: entries %+v", c.what, added)
		}
	}
	if _, err := db.Holder("val"); err == nil {
		t.Error("a refused visitor's holder was stored")
	}
	if vs, err := db.Visitors(); err != nil || len(vs) != 1 {
		t.Errorf("visitors %+v, %v", vs, err)
	}
	if out := s.ok(t, "", "visitor", "end", "vic"); !strings.Contains(out, "visit of vic ended") {
		t.Fatalf("end: %s", out)
	}
	if rev, err := db.Revoked([]byte{0x04, 0xE0, 0xE0, 0xE0}); err != nil || !strings.HasPrefix(rev.Reason, "visit ended by ") {
		t.Fatalf("the card after the end: %+v, %v", rev, err)
	}
	if _, err := cl.call(context.Background(), "POST", "/v1/visitors/nobody/end", nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("ending no visitor: %v", err)
	}
}

func FuzzDecodeVisitorAdd(f *testing.F) {
	seedCommon(f)
	f.Add([]byte(`{"holder":"vera","host":"alice","from":"2026-01-01T09:00:00Z","until":"2026-01-01T17:00:00+01:00","doors":["front"],"uses":2,"uid":"04A1B2C3"}`))
	f.Add([]byte(`{"holder":"vera","host":"alice","from":"2026-01-01T09:00:00Z","until":"2026-01-01T09:00:00Z","doors":["front"],"uid":"04A1B2C3"}`))
	f.Add([]byte(`{"holder":"vera","host":"alice","from":"2026-01-01T09:00:00Z","until":"2026-01-02T09:00:00Z","doors":["front"],"uid":"04A1B2C3","pin":"1234"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeVisitorAdd(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || r.Holder == "" || strings.TrimSpace(r.Host) == "" || len(r.uid) == 0 || !r.From.Before(r.Until) || len(r.Doors) == 0 || r.Uses < 0 {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodeVisitorAdd(mustJSON(t, r.visitorAddReq))
		if err != nil || !bytes.Equal(again.uid, r.uid) || again.Holder != r.Holder || again.Host != r.Host || again.Uses != r.Uses ||
			!again.From.Equal(r.From) || !again.Until.Equal(r.Until) || len(again.Doors) != len(r.Doors) {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}
