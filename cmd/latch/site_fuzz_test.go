package main

import (
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
)

// fuzzDecoder checks a request decoder: it takes any bytes without
// panicking, what it accepts passes ok, and survives a round trip.
func fuzzDecoder[T any](f *testing.F, decode func([]byte) (T, error), ok func(T) bool, seeds ...string) {
	seedCommon(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b)
		if err != nil {
			return
		}
		if len(b) > maxBody || !ok(r) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := decode(mustJSON(t, r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzDecodeApprove(f *testing.F) {
	fuzzDecoder(f, decodeApprove, func(r approveReq) bool { return r.Fingerprint != "" && checkText("", r.Fingerprint, 64) == nil },
		`{"fingerprint":"IGNX-EY2G-TUSL-7XUG-XQYA-CVND-72GN-3TC5"}`, `{"fingerprint":""}`, `{"fingerprint":"a\nb"}`)
}

func FuzzDecodeGroups(f *testing.F) {
	fuzzDecoder(f, decodeGroups, func(r groupsReq) bool {
		return len(r.Groups) <= 64 && !slices.ContainsFunc(r.Groups, func(g string) bool { return mqtt.CheckID("group", g) != nil })
	}, `{"groups":["staff","night"]}`, `{"groups":[]}`, `{"groups":["*"]}`, `{"groups":["Bad Group"]}`)
}

func FuzzDecodeUnlock(f *testing.F) {
	fuzzDecoder(f, decodeUnlock, func(r unlockReq) bool {
		return r.DurationMS >= 1 && r.DurationMS <= mqtt.MaxUnlockDuration.Milliseconds()
	},
		`{"duration_ms":5000}`, `{"duration_ms":0}`, `{"duration_ms":60001}`, `{"duration_ms":-1}`)
}

func FuzzDecodeLockdown(f *testing.F) {
	fuzzDecoder(f, decodeLockdown, func(r lockdownReq) bool { return r.On != nil }, `{"on":true}`, `{"on":false}`, `{"on":null}`, `{}`)
}

func FuzzDecodeRotate(f *testing.F) {
	fuzzDecoder(f, decodeRotate, func(r rotateReq) bool {
		return (r.Kid == "" || kidRE.MatchString(r.Kid)) && r.RetireAfterS >= 0 && r.RetireAfterS <= 30*24*3600
	}, `{"kid":"hq-2","retire_after_s":3600}`, `{"kid":"bad kid"}`, `{"retire_after_s":-5}`)
}

func FuzzDecodeReplace(f *testing.F) {
	fuzzDecoder(f, decodeReplace, func(r replaceReq) bool {
		_, err := parseUID(r.NewUID)
		return err == nil && r.Reason != "" && checkText("", r.Reason, 255) == nil
	}, `{"new_uid":"04A1B2C3D4E5F6","reason":"lost"}`, `{"new_uid":"zz","reason":"lost"}`, `{"new_uid":"04A1B2C3"}`)
}

func FuzzEnrollQuery(f *testing.F) {
	for _, s := range []string{"", "after=12&wait_s=60", "wait_s=0", "wait_s=601", "after=-1", "after=1&after=2", "bogus=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		_, _, wait, err := enrollQuery(q)
		if err == nil && (wait < time.Second || wait > maxEnrollWait) {
			t.Fatalf("%q: wait %v accepted", s, wait)
		}
	})
}

func FuzzDecodeCardSet(f *testing.F) {
	fuzzDecoder(f, decodeCardSet, func(r cardSetReq) bool { return r != (cardSetReq{}) },
		`{"doors":["front"]}`, `{"valid_until":"2030-01-01T00:00:00Z"}`, `{"schedule":{"weekly":[[],[{"from":420,"to":1140}]]}}`,
		`{"card_only":false}`, `{"flags":{}}`)
}

// FuzzParseSchedule: what parseSchedule accepts is a schedule a store
// takes, and formatSchedule writes it back so that it reads the same.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"", "mon-fri 07:00-19:00,sat 09:00-13:00", "fri-mon 22:00-24:00", "daily 00:00-24:00", "mon 19:00-07:00", "mon 8-9", "sun 23:59-24:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseSchedule(s)
		if err != nil {
			return
		}
		for _, ws := range sc.Weekly {
			for _, w := range ws {
				if w.From >= w.To || w.To > 24*60 {
					t.Fatalf("%q: window %+v", s, w)
				}
			}
		}
		again, err := parseSchedule(formatSchedule(sc))
		if formatSchedule(sc) == "always" {
			again, err = parseSchedule("")
		}
		if err != nil || !reflect.DeepEqual(again.Weekly, sc.Weekly) {
			t.Fatalf("%q: %+v, written %q, read back %+v, %v", s, sc, formatSchedule(sc), again, err)
		}
	})
}

func TestSpreadsheetSafe(t *testing.T) {
	for in, want := range map[string]string{"": "", "Alice": "Alice", "=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")", "+1": "'+1", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "a=b": "a=b"} {
		if got := spreadsheetSafe(in); got != want {
			t.Errorf("spreadsheetSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
