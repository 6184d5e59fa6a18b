package store

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func sampleCard(t testing.TB) Card {
	h, err := HashPIN([]byte("482916"), uidAda, fastPIN)
	mustDo(t, err)
	c := Card{
		UID: uidAda, HolderID: "ada", HolderName: "Ada Lovelace", PINHash: h,
		Doors:      []string{"front", "building-a"},
		ValidFrom:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		ValidUntil: time.Date(2027, 1, 1, 0, 0, 0, 500, time.UTC),
		Flags:      Flags{ExtendedUnlock: true, LockdownOverride: true},
	}
	c.Schedule.Weekly[time.Monday] = []Window{{From: 420, To: 720}, {From: 780, To: 1140}}
	c.Schedule.Weekly[time.Saturday] = []Window{{From: 0, To: 1440}}
	c.Schedule.Holidays = []string{"2026-12-25", "2026-12-26"}
	return c
}

func TestCardRecordRoundTrip(t *testing.T) {
	c := sampleCard(t)
	rec := encodeCard(&c)
	got, err := decodeCard(c.UID, rec)
	mustDo(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if !bytes.Equal(encodeCard(&got), rec) {
		t.Error("re-encoding differs")
	}
	// Every single-bit change is caught.
	for i := range rec {
		for bit := range 8 {
			bad := bytes.Clone(rec)
			bad[i] ^= 1 << bit
			if _, err := decodeCard(c.UID, bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	// A record under the wrong key is damage too.
	if _, err := decodeCard(uidBob, rec); !errors.Is(err, ErrCorrupt) {
		t.Errorf("record under another key: %v", err)
	}
	// Truncations.
	for n := range len(rec) {
		if _, err := decodeCard(c.UID, rec[:n]); err == nil {
			t.Fatalf("record cut to %d bytes accepted", n)
		}
	}
}

func TestCheckCardRejects(t *testing.T) {
	for name, mod := range map[string]func(c *Card){
		"uid of 5 bytes":       func(c *Card) { c.UID = []byte{1, 2, 3, 4, 5} },
		"no holder":            func(c *Card) { c.HolderID = "" },
		"control char in id":   func(c *Card) { c.HolderID = "a\nb" },
		"bad utf-8 name":       func(c *Card) { c.HolderName = "\xff" },
		"bad pin hash":         func(c *Card) { c.PINHash = "$2y$10$abc" },
		"empty door":           func(c *Card) { c.Doors = []string{""} },
		"window backwards":     func(c *Card) { c.Schedule.Weekly[1] = []Window{{From: 600, To: 500}} },
		"window past midnight": func(c *Card) { c.Schedule.Weekly[1] = []Window{{From: 600, To: 1441}} },
		"holiday format":       func(c *Card) { c.Schedule.Holidays = []string{"25.12.2026"} },
		"holiday not a date":   func(c *Card) { c.Schedule.Holidays = []string{"2026-02-30"} },
		"until before from":    func(c *Card) { c.ValidUntil = c.ValidFrom },
		"year 10000":           func(c *Card) { c.ValidUntil = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		c := sampleCard(t)
		mod(&c)
		if err := checkCard(&c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSmallRecordsRoundTrip(t *testing.T) {
	l := lockoutRec{Fails: 7, Until: time.Date(2026, 3, 2, 9, 0, 0, 1, time.UTC)}
	if got, err := decodeLockout(encodeLockout(l)); err != nil || got != l {
		t.Errorf("lockout: %+v, %v", got, err)
	}
	ts := []time.Time{testEpoch, testEpoch.Add(time.Second)}
	if got, err := decodeTimes(encodeTimes(ts)); err != nil || !reflect.DeepEqual(got, ts) {
		t.Errorf("times: %v, %v", got, err)
	}
	cmd := commandRec{Seq: 99, Expires: testEpoch}
	if got, err := decodeCommand(encodeCommand(cmd)); err != nil || got != cmd {
		t.Errorf("command: %+v, %v", got, err)
	}
	p := chainPoint{Seq: 5, Hash: [32]byte{1, 2, 3}}
	if got, err := decodePoint(encodePoint(p)); err != nil || got != p {
		t.Errorf("point: %+v, %v", got, err)
	}
	var zero time.Time
	if got, err := decodeTime(encodeTime(zero)); err != nil || !got.IsZero() || got != zero {
		t.Errorf("zero time: %v, %v", got, err)
	}
	for _, rec := range [][]byte{nil, {1}, {1, 0, 0, 0, 0}, seal(2, []byte{1}), append(encodeU64(1), 0)} {
		if _, err := decodeU64(rec); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeU64(%x): %v, want ErrCorrupt", rec, err)
		}
	}
}

func TestEventRecordRoundTrip(t *testing.T) {
	e := normalizeEvent(Event{Time: testEpoch.Add(123456789), Clock: TimeSynced, BootID: "b", Door: "front", Type: TypeAccess,
		Reason: ReasonGranted, UID: "04abcdef", Holder: "ada", HolderName: "Ada", Detail: "ok"})
	prev := [32]byte{9}
	rec := eventCanonical(&e, 42, prev)
	rec = append(rec, make([]byte, 32)...)
	se, err := decodeEvent(rec)
	mustDo(t, err)
	if se.hashOK {
		t.Error("a zero hash passes as the hash of the entry")
	}
	e.Seq, e.Prev, e.Hash = 42, se.Prev, se.Hash
	if !reflect.DeepEqual(se.Event, e) || se.prev != prev || e.UID != "04ABCDEF" {
		t.Errorf("round trip: %+v, want %+v", se.Event, e)
	}
}

func TestNormalizeEvent(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), maxEventDetail)) // 2 bytes each
	e := normalizeEvent(Event{Detail: long, Door: "bad\xffutf8", Time: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), Clock: TimeSynced})
	if len(e.Detail) > maxEventDetail || !utf8ValidString(e.Detail) {
		t.Errorf("detail of %d bytes after clipping", len(e.Detail))
	}
	if e.Door != "bad\uFFFDutf8" {
		t.Errorf("door %q", e.Door)
	}
	if !e.Time.IsZero() || e.Clock != TimeUnsynced {
		t.Errorf("out-of-range time kept: %v %s", e.Time, e.Clock)
	}
}
