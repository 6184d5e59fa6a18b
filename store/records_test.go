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

// holderMap is a holders bucket for the record tests.
type holderMap map[string][]byte

func (m holderMap) Get(k []byte) []byte { return m[string(k)] }

// testNames is a names bucket for the record tests.
type testNames map[string][]byte

func (m testNames) Get(k []byte) []byte { return m[string(k)] }

// ids numbers names as nameTable does.
func (m testNames) ids(names []string) []uint64 {
	out := make([]uint64, len(names))
	for i, n := range names {
		if n == wildcardDoor {
			continue
		}
		if v, ok := m[string(nameKey(n))]; ok {
			out[i], _ = decodeNameID(nameKey(n), v)
			continue
		}
		id := uint64(len(m)/2 + 1)
		m[string(nameKey(n))] = encodeNameID(nameKey(n), id)
		m[string(idKey(id))] = encodeIDName(idKey(id), n)
		out[i] = id
	}
	return out
}

// storeCard stores c as a test record, numbering its doors in names.
func storeCard(t testing.TB, c *Card, holderName string, names testNames) []byte {
	t.Helper()
	rec, err := encodeCard(c, holderName, names.ids(c.Doors))
	mustDo(t, err)
	return rec
}

func TestCardRecordRoundTrip(t *testing.T) {
	c := sampleCard(t)
	ada, err := encodeHolder(&Holder{ID: "ada", Name: "Ada Lovelace"})
	mustDo(t, err)
	holders := holderMap{"ada": ada}
	names := testNames{}
	refs := cardRefs{holders: holders, names: names}
	for _, holderName := range []string{"", "Ada Lovelace", "Someone else"} {
		rec := storeCard(t, &c, holderName, names)
		got, err := decodeCard(c.UID, rec, refs)
		mustDo(t, err)
		if !reflect.DeepEqual(got, c) {
			t.Errorf("holder record name %q: round trip:\n got %+v\nwant %+v", holderName, got, c)
		}
		if again := storeCard(t, &got, holderName, names); !bytes.Equal(again, rec) {
			t.Errorf("holder record name %q: re-encoding differs", holderName)
		}
		if left := holderName == c.HolderName; left != (rec[1]&recHolderName != 0) {
			t.Errorf("holder record name %q: name left out %v, want %v", holderName, !left, left)
		}
		// Every single-bit change is caught.
		for i := range rec {
			for bit := range 8 {
				bad := bytes.Clone(rec)
				bad[i] ^= 1 << bit
				if _, err := decodeCard(c.UID, bad, refs); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("bit %d of byte %d flipped: %v, want ErrCorrupt", bit, i, err)
				}
			}
		}
		// A record under the wrong key is damage too.
		if _, err := decodeCard(uidBob, rec, refs); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record under another key: %v", err)
		}
		// Truncations.
		for n := range len(rec) {
			if _, err := decodeCard(c.UID, rec[:n], refs); err == nil {
				t.Fatalf("record cut to %d bytes accepted", n)
			}
		}
	}
	// A card that leaves its name to a holder record that is not there.
	rec := storeCard(t, &c, c.HolderName, names)
	if _, err := decodeCard(c.UID, rec, cardRefs{holders: holderMap{}, names: names}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("name left to a missing holder: %v, want ErrCorrupt", err)
	}
	// A card whose door number has no name.
	if _, err := decodeCard(c.UID, rec, cardRefs{holders: holders, names: testNames{}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("door number without a name: %v, want ErrCorrupt", err)
	}
}

// TestRecordSizes pins the stored size of a typical card, holder and
// revocation: the figures the file size per card is made of.
func TestRecordSizes(t *testing.T) {
	pin, err := HashPIN([]byte("482916"), uidAda, standardPIN)
	mustDo(t, err)
	c := Card{UID: uidAda, HolderID: "h0012345", HolderName: "Holder 12345", PINHash: pin, Doors: []string{"front", "staff"}}
	h := Holder{ID: "h0012345", Name: "Holder 12345"}
	legacy := len(legacyCard(&c))
	rec := storeCard(t, &c, h.Name, testNames{})
	hrec, err := encodeHolder(&h)
	mustDo(t, err)
	rrec := encodeRevocation(&Revocation{UID: uidAda, Reason: "lost"})
	t.Logf("card %d bytes (schema 2: %d), holder %d, revocation %d", len(rec), legacy, len(hrec), len(rrec))
	// flags, id, PIN form, salt, key, two door numbers, version and CRC.
	if want := 1 + 9 + 1 + 16 + 32 + 3 + 5; len(rec) != want {
		t.Errorf("card record %d bytes, want %d", len(rec), want)
	}
	if want := 1 + 1 + 1 + 12 + 4; len(hrec) != want {
		t.Errorf("holder record %d bytes, want %d", len(hrec), want)
	}
	if want := 1 + 5 + 4; len(rrec) != want {
		t.Errorf("revocation record %d bytes, want %d", len(rrec), want)
	}
}

func TestHolderAndRevocationRecords(t *testing.T) {
	d, err := HashPIN([]byte("9753"), nil, fastPIN)
	mustDo(t, err)
	for _, h := range []Holder{{ID: "ada", Name: "Ada", DuressPINHash: d}, {ID: "b"}} {
		rec, err := encodeHolder(&h)
		mustDo(t, err)
		got, err := decodeHolder([]byte(h.ID), rec)
		if err != nil || got != h {
			t.Errorf("holder round trip: %+v, %v; want %+v", got, err, h)
		}
		if _, err := decodeHolder([]byte(h.ID+"x"), rec); !errors.Is(err, ErrCorrupt) {
			t.Errorf("holder record under another key: %v", err)
		}
	}
	for _, r := range []Revocation{{UID: uidAda, Reason: "lost"}, {HolderID: "eve"}} {
		rec := encodeRevocation(&r)
		got, err := decodeRevocation(revocationKey(&r), rec, r.HolderID != "")
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("revocation round trip: %+v, %v; want %+v", got, err, r)
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
