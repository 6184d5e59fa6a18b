package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
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
		{"a card and a code", func(r *visitorAddReq) { r.Holder, r.UID, r.Code = "val", "04E0E0E1", 6 }, "not both"},
		{"a code too short", func(r *visitorAddReq) { r.Holder, r.UID, r.Code = "val", "", 4 }, "want 6 to 12 digits"},
		{"a code's key as a card", func(r *visitorAddReq) { r.Holder, r.UID = "val", "0102030405060708" }, "keypad code's key"},
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
	// A keypad code: stored as its key, a card with no PIN and not card
	// only, and named in the change log by its length alone.
	withCode := good
	withCode.Holder, withCode.UID, withCode.Code = "vik", "", 8
	raw, err = cl.call(context.Background(), "POST", "/v1/visitors", withCode)
	if err != nil {
		t.Fatal(err)
	}
	decodeInto(t, raw, &res)
	key, err := store.CodeKey([]byte(res.Code))
	if err != nil || len(res.Code) != 8 || !res.Visitor.Code {
		t.Fatalf("a code: %+v, %v", res, err)
	}
	if c, err := db.Card(key); err != nil || c.HolderID != "vik" || c.PINHash != "" || c.Flags.CardOnly || !c.ValidUntil.Equal(good.Until) {
		t.Fatalf("the code's card: %+v, %v", c, err)
	}
	es, _, _ := db.Changes(site.ChangeFilter{Target: "visitor vik"})
	if len(es) != 1 || !strings.HasPrefix(es[0].Detail, "keypad code of 8 digits") || strings.Contains(string(es[0].After)+es[0].Detail, res.Code) {
		t.Fatalf("the code's change-log entry: %+v", es)
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
	f.Add([]byte(`{"holder":"vic","host":"alice","from":"2026-01-01T09:00:00Z","until":"2026-01-02T09:00:00Z","doors":["front"],"code":6}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeVisitorAdd(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || r.Holder == "" || strings.TrimSpace(r.Host) == "" || (len(r.uid) == 0) == (r.Code == 0 && r.EnrollDoor == "") || store.IsCodeKey(r.uid) ||
			(r.Code != 0 && (r.Code < minCodeDigits || r.Code > maxCodeDigits)) || !r.From.Before(r.Until) || len(r.Doors) == 0 || r.Uses < 0 {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodeVisitorAdd(mustJSON(t, r.visitorAddReq))
		if err != nil || !bytes.Equal(again.uid, r.uid) || again.Code != r.Code || again.Holder != r.Holder || again.Host != r.Host || again.Uses != r.Uses ||
			!again.From.Equal(r.From) || !again.Until.Equal(r.Until) || len(again.Doors) != len(r.Doors) {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

// Codes a guesser tries first are never made.
func TestVisitorCodes(t *testing.T) {
	for code, want := range map[string]bool{
		"111111": true, "123456": true, "987654": true, "890123": true, "210987": true,
		"583017": false, "112233": false, "123457": false,
	} {
		if got := guessable([]byte(code)); got != want {
			t.Errorf("guessable(%s) = %v", code, got)
		}
	}
	seen := make(map[string]bool)
	for range 200 {
		c, err := newCode(6)
		if err != nil || len(c) != 6 || guessable(c) || strings.Trim(string(c), "0123456789") != "" {
			t.Fatalf("newCode: %q, %v", c, err)
		}
		seen[string(c)] = true
	}
	if len(seen) < 190 {
		t.Errorf("200 codes, %d different", len(seen))
	}
}
