package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// A fixed key, so that fuzz seeds stay valid between runs.
var testSeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)

func testSigner(t testing.TB) *Signer {
	s, err := NewSigner("k1", ed25519.NewKeyFromSeed(testSeed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testVerifier(t testing.TB, s *Signer) *Verifier {
	v, err := NewVerifier("hq", map[string]ed25519.PublicKey{s.KeyID(): s.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hdr(seq uint64) Header { return Header{Site: "hq", Seq: seq, IssuedAt: t0} }

func on(b bool) *bool { return &b }

// sampleMessages is one valid message of each signed kind.
func sampleMessages() []Signed {
	return []Signed{
		&Delta{Header: hdr(7), Ops: []store.Op{
			{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "h1", Doors: []string{"front"}}},
			{Kind: store.OpRevokeCard, UID: []byte{9, 9, 9, 9}, Reason: "lost"},
		}},
		&SnapshotChunk{Header: hdr(7), Hash: strings.Repeat("ab", 32), Chunk: 0, Chunks: 1,
			Cards: []store.Card{{UID: []byte{1, 2, 3, 4}, HolderID: "h1"}}},
		&Heartbeat{Header: hdr(7)},
		&Command{Header: hdr(3), Door: "front", ID: "c0ffee0123", ExpiresAt: t0.Add(30 * time.Second), Action: ActionUnlock, DurationMS: 5000},
		&Command{Header: hdr(4), Door: "front", ID: "c0ffee0124", ExpiresAt: t0.Add(30 * time.Second), Action: ActionLockdown, On: on(true)},
		&Command{Header: hdr(5), Door: "front", ID: "c0ffee0125", ExpiresAt: t0.Add(30 * time.Second), Action: ActionResync},
		&EventsAck{Header: hdr(42), Door: "front"},
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	for _, m := range sampleMessages() {
		t.Run(string(m.Kind()), func(t *testing.T) {
			b, err := s.Seal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, kid, err := v.Open(b, m.Kind())
			if err != nil {
				t.Fatal(err)
			}
			if kid != "k1" {
				t.Errorf("kid %q", kid)
			}
			want, _ := json.Marshal(m)
			have, _ := json.Marshal(got)
			if !bytes.Equal(want, have) {
				t.Errorf("round trip:\n got %s\nwant %s", have, want)
			}
		})
	}
}

// envelopeWith builds an envelope around payload signed by s.
func envelopeWith(s *Signer, kid string, payload []byte) []byte {
	sig := ed25519.Sign(s.key, payload)
	return fmt.Appendf(nil, `{"kid":%q,"sig":%q,"payload":%s}`, kid, base64.StdEncoding.EncodeToString(sig), payload)
}

func TestOpenRefuses(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	other, err := NewSigner("k1", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.Seal(&Heartbeat{Header: hdr(1)})
	if err != nil {
		t.Fatal(err)
	}
	payload := func(m map[string]any) []byte {
		b, _ := json.Marshal(m)
		return b
	}
	base := func() map[string]any {
		return map[string]any{"v": 1, "type": "heartbeat", "site": "hq", "seq": 1, "issued_at": t0}
	}
	with := func(k string, v any) map[string]any {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	otherSite, err := NewSigner("k1", ed25519.NewKeyFromSeed(testSeed))
	if err != nil {
		t.Fatal(err)
	}
	wrongSite, err := otherSite.Seal(&Heartbeat{Header: Header{Site: "elsewhere", Seq: 1, IssuedAt: t0}})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(good, []byte(`"seq":1`), []byte(`"seq":2`), 1)
	forged, err := other.Seal(&Heartbeat{Header: hdr(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		kind []Kind
		want error
	}{
		{"empty", nil, nil, ErrMalformed},
		{"garbage", []byte("\x00\xff"), nil, ErrMalformed},
		{"unsigned payload", payload(base()), nil, ErrUnsigned},
		{"empty signature", fmt.Appendf(nil, `{"kid":"k1","sig":"","payload":%s}`, payload(base())), nil, ErrUnsigned},
		{"unknown key", envelopeWith(s, "k2", payload(base())), nil, ErrUnknownKey},
		{"forged with another key", forged, nil, ErrBadSignature},
		{"tampered", tampered, nil, ErrBadSignature},
		{"short signature", fmt.Appendf(nil, `{"kid":"k1","sig":"AAAA","payload":%s}`, payload(base())), nil, ErrBadSignature},
		{"extra envelope field", bytes.Replace(good, []byte(`{"kid"`), []byte(`{"x":1,"kid"`), 1), nil, ErrMalformed},
		{"trailing data", append(bytes.Clone(good), []byte(`{}`)...), nil, ErrMalformed},
		{"wrong site", wrongSite, nil, ErrWrongSite},
		{"version 2", envelopeWith(s, "k1", payload(with("v", 2))), nil, ErrVersion},
		{"no version", envelopeWith(s, "k1", payload(with("v", nil))), nil, ErrVersion},
		{"unknown type", envelopeWith(s, "k1", payload(with("type", "launch"))), nil, ErrWrongType},
		{"type not wanted", good, []Kind{KindCommand}, ErrWrongType},
		{"unknown field", envelopeWith(s, "k1", payload(with("extra", true))), nil, ErrMalformed},
		{"no issued_at", envelopeWith(s, "k1", payload(with("issued_at", nil))), nil, ErrMalformed},
		{"issued in 1970", envelopeWith(s, "k1", payload(with("issued_at", time.Unix(0, 0)))), nil, ErrMalformed},
		{"negative seq", envelopeWith(s, "k1", payload(with("seq", -1))), nil, ErrMalformed},
		{"bad site id", envelopeWith(s, "k1", payload(with("site", "HQ/#"))), nil, ErrMalformed},
		{"oversized", append([]byte(`{"kid":"k1","sig":"x","payload":"`), bytes.Repeat([]byte("a"), MaxDeltaBytes)...), nil, ErrTooLarge},
		{"oversized heartbeat", envelopeWith(s, "k1", payload(with("pad", strings.Repeat("a", MaxSmallBytes)))), nil, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, err := v.Open(tc.b, tc.kind...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want %v", m, err, tc.want)
			}
			if m != nil {
				t.Fatalf("refused message returned %v", m)
			}
		})
	}
}

func TestCommandChecks(t *testing.T) {
	s := testSigner(t)
	base := func() Command {
		return Command{Header: hdr(3), Door: "front", ID: "c0ffee0123", ExpiresAt: t0.Add(30 * time.Second), Action: ActionUnlock, DurationMS: 5000}
	}
	for _, tc := range []struct {
		name string
		edit func(c *Command)
	}{
		{"lives too long", func(c *Command) { c.ExpiresAt = t0.Add(MaxCommandTTL + time.Second) }},
		{"expires before issue", func(c *Command) { c.ExpiresAt = t0.Add(-time.Second) }},
		{"no door", func(c *Command) { c.Door = "" }},
		{"short id", func(c *Command) { c.ID = "abc" }},
		{"id with space", func(c *Command) { c.ID = "abc def ghi" }},
		{"seq 0", func(c *Command) { c.Seq = 0 }},
		{"unlock too long", func(c *Command) { c.DurationMS = MaxUnlockDuration.Milliseconds() + 1 }},
		{"unlock zero", func(c *Command) { c.DurationMS = 0 }},
		{"unlock negative", func(c *Command) { c.DurationMS = -5 }},
		{"unlock with on", func(c *Command) { c.On = on(true) }},
		{"lockdown without on", func(c *Command) { c.Action, c.DurationMS = ActionLockdown, 0 }},
		{"lockdown with duration", func(c *Command) { c.Action, c.On = ActionLockdown, on(false) }},
		{"resync with args", func(c *Command) { c.Action = ActionResync }},
		{"unknown action", func(c *Command) { c.Action = "explode" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			if _, err := s.Seal(&c); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Seal = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestVerifierOptions(t *testing.T) {
	s := testSigner(t)
	for _, tc := range []struct {
		site string
		keys map[string]ed25519.PublicKey
	}{
		{"hq", nil},
		{"HQ", map[string]ed25519.PublicKey{"k": s.Public()}},
		{"hq", map[string]ed25519.PublicKey{"k": s.Public()[:16]}},
		{"hq", map[string]ed25519.PublicKey{"bad kid": s.Public()}},
	} {
		if _, err := NewVerifier(tc.site, tc.keys); err == nil {
			t.Errorf("NewVerifier(%q, %v) accepted", tc.site, tc.keys)
		}
	}
	keys, err := ParsePublicKeys(map[string]string{"k1": base64.StdEncoding.EncodeToString(s.Public())})
	if err != nil || !bytes.Equal(keys["k1"], s.Public()) {
		t.Fatalf("ParsePublicKeys = %v, %v", keys, err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParsePublicKeys(map[string]string{"k1": bad}); err == nil {
			t.Errorf("ParsePublicKeys(%q) accepted", bad)
		}
	}
}

// bigSnapshot has n cards with PIN-hash-sized fields and some revocations.
func bigSnapshot(n int) store.Snapshot {
	s := store.Snapshot{Seq: 99}
	pin := "$argon2id$v=19$m=32768,t=2,p=1$" + strings.Repeat("A", 22) + "$" + strings.Repeat("B", 43)
	for i := range n {
		s.Cards = append(s.Cards, store.Card{
			UID: binary.BigEndian.AppendUint32([]byte{4, 0, 0}, uint32(i)), HolderID: fmt.Sprintf("holder-%06d", i),
			HolderName: "Somebody With A Long Name", PINHash: pin, Doors: []string{"front", "lab"},
		})
	}
	for i := range n / 10 {
		s.Holders = append(s.Holders, store.Holder{ID: fmt.Sprintf("holder-%06d", i), Name: "Somebody"})
	}
	for i := range n / 20 {
		s.Revocations = append(s.Revocations, store.Revocation{UID: binary.BigEndian.AppendUint32(nil, uint32(i)), Reason: "lost"})
	}
	return s
}

// A large snapshot is chunked under the size limit and reassembled whole
// in any order, duplicates ignored, hash checked. (TestSnapshot100kCards
// takes 100,000 cards through the broker into a store.)
func TestSnapshotChunks(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	snap := bigSnapshot(20000)
	chunks, err := s.SealSnapshot("hq", snap, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks", len(chunks))
	}
	a := assembler{maxBytes: 256 << 20}
	var got *store.Snapshot
	// Deliver in reverse, with a duplicate: order does not matter.
	for i := len(chunks) - 1; i >= 0; i-- {
		if len(chunks[i]) > MaxChunkBytes {
			t.Fatalf("chunk %d has %d bytes", i, len(chunks[i]))
		}
		m, _, err := v.Open(chunks[i], KindSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		if i == len(chunks)/2 {
			if dup, err := a.add(m.(*SnapshotChunk), len(chunks[i]), t0); dup != nil || err != nil {
				t.Fatalf("first copy of chunk %d: %v %v", i, dup, err)
			}
		}
		got, err = a.add(m.(*SnapshotChunk), len(chunks[i]), t0)
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != (i == 0) {
			t.Fatalf("chunk %d: complete = %v", i, got != nil)
		}
	}
	if len(got.Cards) != len(snap.Cards) || len(got.Holders) != len(snap.Holders) || len(got.Revocations) != len(snap.Revocations) {
		t.Fatalf("reassembled %d/%d/%d entries", len(got.Cards), len(got.Holders), len(got.Revocations))
	}
	if store.HashSnapshot(*got) != store.HashSnapshot(snap) {
		t.Fatal("hash changed")
	}
	t.Logf("%d cards: %d chunks", len(snap.Cards), len(chunks))
}

func TestAssemblerRefuses(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	open := func(b []byte) *SnapshotChunk {
		m, _, err := v.Open(b, KindSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		return m.(*SnapshotChunk)
	}
	snap := bigSnapshot(3000)
	chunks, err := s.SealSnapshot("hq", snap, t0, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 3 {
		t.Fatalf("%d chunks", len(chunks))
	}

	t.Run("hash mismatch", func(t *testing.T) {
		// Entries re-signed under a hash that is not theirs.
		a := assembler{maxBytes: 1 << 30}
		var err error
		for i, b := range chunks {
			c := open(b)
			c.Hash = strings.Repeat("0", 64)
			_, err = a.add(c, len(b), t0)
			if i < len(chunks)-1 && err != nil {
				t.Fatal(err)
			}
		}
		if !errors.Is(err, errSnapshotHash) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		a := assembler{maxBytes: 1 << 30}
		if _, err := a.add(open(chunks[0]), 10, t0); err != nil {
			t.Fatal(err)
		}
		c := open(chunks[1])
		c.Chunks++
		if _, err := a.add(c, 10, t0); !errors.Is(err, errSnapshotConflict) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too big", func(t *testing.T) {
		a := assembler{maxBytes: len(chunks[0]) + 10}
		if _, err := a.add(open(chunks[0]), len(chunks[0]), t0); err != nil {
			t.Fatal(err)
		}
		if _, err := a.add(open(chunks[1]), len(chunks[1]), t0); !errors.Is(err, errSnapshotSize) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("newer wins", func(t *testing.T) {
		a := assembler{maxBytes: 1 << 30}
		if _, err := a.add(open(chunks[0]), 10, t0); err != nil {
			t.Fatal(err)
		}
		snap2 := snap
		snap2.Seq++
		c2, err := s.SealSnapshot("hq", snap2, t0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got *store.Snapshot
		for _, b := range c2 {
			if got, err = a.add(open(b), len(b), t0); err != nil {
				t.Fatal(err)
			}
		}
		if got == nil || got.Seq != snap2.Seq {
			t.Fatalf("got %v", got)
		}
		// A chunk of the older one after that starts nothing newer.
		if got, err := a.add(open(chunks[1]), 10, t0); got != nil || err != nil {
			t.Fatalf("old chunk: %v %v", got, err)
		}
	})
}

func TestLimiter(t *testing.T) {
	l := limiter{burst: 3, window: time.Minute}
	now := t0
	allowed := 0
	for range 100 {
		if l.allow(now) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("allowed %d of 100 in one window", allowed)
	}
	if n, _ := l.flush(now.Add(59 * time.Second)); n != 0 {
		t.Fatalf("flushed %d before the window ended", n)
	}
	// Rejections after the window but before the flush go into the summary.
	if l.allow(now.Add(61 * time.Second)) {
		t.Fatal("allowed before the summary")
	}
	if n, _ := l.flush(now.Add(61 * time.Second)); n != 98 {
		t.Fatalf("summary of %d, want 98", n)
	}
	if !l.allow(now.Add(62 * time.Second)) {
		t.Fatal("new window refused")
	}
}

func TestDoorMessages(t *testing.T) {
	ev := EventMsg{V: 1, Type: KindEvent, Site: "hq", Door: "front", Event: store.Event{
		Seq: 3, Time: t0, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted,
		Prev: strings.Repeat("a", 64), Hash: strings.Repeat("b", 64)}}
	b, _ := json.Marshal(ev)
	if _, err := DecodeEvent(b, "hq", "front"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		site string
		door string
		want error
	}{
		{"other door", b, "hq", "back", ErrWrongDoor},
		{"other site", b, "lab", "front", ErrWrongSite},
		{"unknown field", bytes.Replace(b, []byte(`"v":1`), []byte(`"v":1,"x":0`), 1), "hq", "", ErrMalformed},
		{"version", bytes.Replace(b, []byte(`"v":1`), []byte(`"v":9`), 1), "hq", "", ErrVersion},
		{"bad hash", bytes.Replace(b, []byte(strings.Repeat("b", 64)), []byte("bb"), 1), "hq", "", ErrMalformed},
		{"too big", append(bytes.Clone(b), bytes.Repeat([]byte(" "), MaxEventBytes)...), "hq", "", ErrTooLarge},
	} {
		if _, err := DecodeEvent(tc.b, tc.site, tc.door); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	sr := SyncRequest{V: 1, Type: KindSync, Site: "hq", Door: "front", AppliedSeq: 5, SnapshotHash: strings.Repeat("c", 64), Want: "everything"}
	b, _ = json.Marshal(sr)
	if _, err := DecodeSyncRequest(b, "hq", "front"); !errors.Is(err, ErrMalformed) {
		t.Errorf("sync want: %v", err)
	}
	st := Status{V: 1, Type: KindStatus, Site: "hq", Door: "front", Online: true, Outbox: -1}
	b, _ = json.Marshal(st)
	if _, err := DecodeStatus(b, "hq", "front"); !errors.Is(err, ErrMalformed) {
		t.Errorf("status outbox: %v", err)
	}
}
