package main

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"
)

func parseQuery(q string) (url.Values, error) { return url.ParseQuery(q) }

// Each decoder takes any bytes without panicking, refuses what is over
// the size limit or has unknown fields, and what it accepts is what its
// checks promise and survives a round trip.

// commonSeeds are inputs every decoder must handle.
func commonSeeds() [][]byte {
	return [][]byte{[]byte(`{}`), []byte(`{"id":"alice","bogus":1}`), []byte(`{"id":"alice"} {}`),
		[]byte(`[]`), []byte(`null`), bytes.Repeat([]byte(" "), maxBody+1)}
}

func seedCommon(f *testing.F) {
	for _, b := range commonSeeds() {
		f.Add(b)
	}
}

func FuzzDecodeHolderAdd(f *testing.F) {
	seedCommon(f)
	f.Add([]byte(`{"id":"alice","name":"Alice Example"}`))
	f.Add([]byte(`{"id":"alice","name":"a\u0000b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeHolderAdd(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || r.ID == "" || checkText("name", r.Name, 255) != nil {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodeHolderAdd(mustJSON(t, r))
		if err != nil || again != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzDecodeCardAdd(f *testing.F) {
	seedCommon(f)
	f.Add([]byte(`{"uid":"04A1B2C3","holder":"alice","doors":["front","lab"],"valid_from":"2026-01-01T00:00:00Z","valid_until":"2030-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`{"uid":"04:a1:b2:c3","holder":"alice"}`))
	f.Add([]byte(`{"uid":"04XYZ","holder":"alice"}`))
	f.Add([]byte(`{"uid":"04A1B2C3","holder":"alice","pin_hash":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeCardAdd(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || r.Holder == "" || len(r.uid) == 0 {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodeCardAdd(mustJSON(t, r.cardAddReq))
		if err != nil || !bytes.Equal(again.uid, r.uid) || again.Holder != r.Holder ||
			!again.ValidFrom.Equal(r.ValidFrom) || !again.ValidUntil.Equal(r.ValidUntil) || len(again.Doors) != len(r.Doors) {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzDecodePINSet(f *testing.F) {
	seedCommon(f)
	f.Add([]byte(`{"holder":"alice","pin":"8461"}`))
	f.Add([]byte(`{"holder":"alice","pin":""}`))
	f.Add([]byte(`{"holder":"alice","pin":8461}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodePINSet(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || r.Holder == "" || r.PIN == "" {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodePINSet(mustJSON(t, r))
		if err != nil || again != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzDecodeRevoke(f *testing.F) {
	for _, b := range commonSeeds() {
		f.Add(b, true)
	}
	f.Add([]byte(`{"uid":"04A1B2C3","reason":"lost"}`), true)
	f.Add([]byte(`{"holder":"alice","reason":"left"}`), true)
	f.Add([]byte(`{"holder":"alice"}`), false)
	f.Add([]byte(`{"holder":"alice","uid":"04A1B2C3","reason":"x"}`), true)
	f.Fuzz(func(t *testing.T, b []byte, needReason bool) {
		r, err := decodeRevoke(b, needReason)
		if err != nil {
			return
		}
		if len(b) > maxBody || (r.uid == nil) == (r.Holder == "") || (needReason && r.Reason == "") ||
			checkText("reason", r.Reason, 1024) != nil {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decodeRevoke(mustJSON(t, r.revokeReq), needReason)
		if err != nil || !bytes.Equal(again.uid, r.uid) || again.revokeReq != r.revokeReq {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzAuditFilter(f *testing.F) {
	f.Add("door=front&holder=alice&limit=10")
	f.Add("uid=04a1b2c3&from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z")
	f.Add("limit=0")
	f.Add("bogus=1")
	f.Add("door=a&door=b")
	f.Fuzz(func(t *testing.T, q string) {
		vals, err := parseQuery(q)
		if err != nil {
			return
		}
		fl, err := auditFilter(vals)
		if err != nil {
			return
		}
		if fl.Limit < 1 || fl.Limit > maxAuditLimit {
			t.Fatalf("%q: limit %d", q, fl.Limit)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
