package mqtt

import (
	"bytes"
	"crypto/ecdh"
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

// testIdentity is the identity of door "front" in the wire tests, made
// from fixed seeds.
func testIdentity(t testing.TB) *Identity {
	x, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &Identity{sign: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x24}, 32)), seal: x}
}

// testVerifier is door "front"'s verifier, trusting s.
func testVerifier(t testing.TB, s *Signer) *Verifier {
	v, err := NewDoorVerifier("hq", "front", map[string]ed25519.PublicKey{s.KeyID(): s.Public()}, testIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sealAny seals m, to door "front" when it is a sealed kind.
func sealAny(t testing.TB, s *Signer, m Signed) []byte {
	var b []byte
	var err error
	if sm, ok := m.(sealedMsg); ok {
		b, err = s.SealFor(testIdentity(t).Public(), sm)
	} else {
		b, err = s.Seal(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hdr(seq uint64) Header { return Header{Site: "hq", Seq: seq, IssuedAt: t0} }

func on(b bool) *bool { return &b }

// sampleMessages is one valid message of each signed kind.
func sampleMessages() []Signed {
	return []Signed{
		NewDelta("hq", "front", 7, t0, []store.Op{
			{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "h1", Doors: []string{"front"}}},
			{Kind: store.OpRevokeCard, UID: []byte{9, 9, 9, 9}, Reason: "lost"},
		}),
		&SnapshotChunk{Header: hdr(7), sealing: sealing{Door: "front"}, Hash: strings.Repeat("ab", 32), Chunk: 0, Chunks: 1,
			Cards: []store.Card{{UID: []byte{1, 2, 3, 4}, HolderID: "h1"}}},
		&Heartbeat{Header: hdr(7), Door: "front"},
		&KeyRotation{Header: hdr(1), Kid: "k2", Key: base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32)).Public().(ed25519.PublicKey)),
			Retires: "k1", RetireAt: t0.Add(24 * time.Hour)},
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
			b := sealAny(t, s, m)
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
			if sm, ok := m.(sealedMsg); ok {
				want, _ := json.Marshal(sm.plain())
				have, _ := json.Marshal(got.(sealedMsg).plain())
				if !bytes.Equal(want, have) {
					t.Errorf("sealed body:\n got %s\nwant %s", have, want)
				}
				if bytes.Contains(b, []byte("AQIDBA==")) {
					t.Error("the sealed message carries the card UID in clear")
				}
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
	good, err := s.Seal(&Heartbeat{Header: hdr(1), Door: "front"})
	if err != nil {
		t.Fatal(err)
	}
	payload := func(m map[string]any) []byte {
		b, _ := json.Marshal(m)
		return b
	}
	base := func() map[string]any {
		return map[string]any{"v": 2, "type": "heartbeat", "site": "hq", "seq": 1, "issued_at": t0, "door": "front"}
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
	wrongSite, err := otherSite.Seal(&Heartbeat{Header: Header{Site: "elsewhere", Seq: 1, IssuedAt: t0}, Door: "front"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(good, []byte(`"seq":1`), []byte(`"seq":2`), 1)
	forged, err := other.Seal(&Heartbeat{Header: hdr(1), Door: "front"})
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
		{"version 1", envelopeWith(s, "k1", payload(with("v", 1))), nil, ErrVersion},
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

// A large snapshot is chunked under the size limit; its chunks, opened by
// the door and concatenated, give the same entries and hash.
// (TestSnapshot100kCards takes 100,000 cards through the broker into a
// store.)
func TestSnapshotChunks(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	snap := bigSnapshot(20000)
	chunks, err := s.SealSnapshot("hq", "front", testIdentity(t).Public(), snap, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks", len(chunks))
	}
	var got store.Snapshot
	for i, b := range chunks {
		if len(b) > MaxChunkBytes {
			t.Fatalf("chunk %d has %d bytes", i, len(b))
		}
		m, _, err := v.Open(b, KindChunk)
		if err != nil {
			t.Fatal(err)
		}
		c := m.(*SnapshotChunk)
		if c.Chunk != i || c.Chunks != len(chunks) || c.Hash != store.HashSnapshot(snap) {
			t.Fatalf("chunk %d: %d of %d, hash %s", i, c.Chunk, c.Chunks, c.Hash)
		}
		p := c.StorePart()
		got.Cards = append(got.Cards, p.Cards...)
		got.Holders = append(got.Holders, p.Holders...)
		got.Revocations = append(got.Revocations, p.Revocations...)
	}
	got.Seq = snap.Seq
	if store.HashSnapshot(got) != store.HashSnapshot(snap) {
		t.Fatal("the chunks do not give the snapshot")
	}
	t.Logf("%d cards: %d chunks", len(snap.Cards), len(chunks))
}

// A sealed message opens only at its door, with its identity, under its
// own header.
func TestSealedRefuses(t *testing.T) {
	s := testSigner(t)
	v := testVerifier(t, s)
	d := NewDelta("hq", "front", 3, t0, []store.Op{{Kind: store.OpRevokeCard, UID: []byte{1, 2, 3, 4}}})
	other, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	toOther, err := s.SealFor(other.Public(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Open(toOther, KindDelta); !errors.Is(err, ErrNotForMe) {
		t.Fatalf("sealed to another identity: %v", err)
	}
	back := NewDelta("hq", "back", 3, t0, d.Ops)
	toBack, err := s.SealFor(testIdentity(t).Public(), back)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Open(toBack, KindDelta); !errors.Is(err, ErrWrongDoor) {
		t.Fatalf("sealed for another door: %v", err)
	}
	good := sealAny(t, s, NewDelta("hq", "front", 3, t0, d.Ops))
	// The body of delta 3 moved under the header of delta 4, re-signed by
	// the site key (as a site bug or a stolen key could): the HPKE info
	// binds it to its header, so it does not open.
	var env struct {
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	env.Payload["seq"] = 4
	moved, _ := json.Marshal(env.Payload)
	if _, _, err := v.Open(envelopeWith(s, "k1", moved), KindDelta); !errors.Is(err, ErrNotForMe) {
		t.Fatalf("body under another seq: %v", err)
	}
	unsealed := NewDelta("hq", "front", 3, t0, d.Ops)
	if _, err := s.Seal(unsealed); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Seal of a sealed kind without SealFor: %v", err)
	}
	// The site's own verifier has no identity: it cannot read a door's view.
	site, err := NewVerifier("hq", map[string]ed25519.PublicKey{"k1": s.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := site.Open(good, KindDelta); err == nil {
		t.Fatal("a verifier without the door's identity opened its view")
	}
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
	ev := EventMsg{V: Version, Type: KindEvent, Site: "hq", Door: "front", Event: store.Event{
		Seq: 3, Time: t0, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted,
		Prev: strings.Repeat("a", 64)}}
	var err error
	if ev.Event.Hash, err = store.HashEvent(ev.Event); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	if _, err := DecodeEvent(b, "hq", "front"); err != nil {
		t.Fatal(err)
	}
	// Altered on the way, its hash left as it was.
	altered := bytes.Replace(b, []byte(`"granted"`), []byte(`"bad_pin"`), 1)
	if _, err := DecodeEvent(altered, "hq", "front"); !errors.Is(err, ErrMalformed) {
		t.Errorf("altered event: %v", err)
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
		{"unknown field", bytes.Replace(b, []byte(`"v":2`), []byte(`"v":2,"x":0`), 1), "hq", "", ErrMalformed},
		{"version", bytes.Replace(b, []byte(`"v":2`), []byte(`"v":1`), 1), "hq", "", ErrVersion},
		{"bad hash", bytes.Replace(b, []byte(ev.Event.Hash), []byte("bb"), 1), "hq", "", ErrMalformed},
		{"too big", append(bytes.Clone(b), bytes.Repeat([]byte(" "), MaxEventBytes)...), "hq", "", ErrTooLarge},
	} {
		if _, err := DecodeEvent(tc.b, tc.site, tc.door); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	id := testIdentity(t)
	good := SyncRequest{V: Version, Type: KindSync, Site: "hq", Door: "front", AppliedSeq: 5, SnapshotHash: strings.Repeat("c", 64)}
	good.Sign(id)
	for name, edit := range map[string]func(r *SyncRequest){
		"want":         func(r *SyncRequest) { r.Want = "everything" },
		"window":       func(r *SyncRequest) { r.Window = MaxChunkWindow + 1 },
		"chunks count": func(r *SyncRequest) { r.Chunks = &ChunkWindow{Seq: 9, Hash: strings.Repeat("d", 64), Count: 0} },
		"chunks from": func(r *SyncRequest) {
			r.Chunks = &ChunkWindow{Seq: 9, Hash: strings.Repeat("d", 64), From: -1, Count: 1}
		},
		"chunks hash":    func(r *SyncRequest) { r.Chunks = &ChunkWindow{Seq: 9, Hash: "d", Count: 1} },
		"unsigned":       func(r *SyncRequest) { r.Sig = "" },
		"negative seq":   func(r *SyncRequest) { r.Chunks = &ChunkWindow{Hash: strings.Repeat("d", 64), Count: 1} },
		"state hash":     func(r *SyncRequest) { r.SnapshotHash = "x" },
		"another door's": func(r *SyncRequest) { r.Door = "back" },
	} {
		r := good
		edit(&r)
		b, _ := json.Marshal(r)
		if _, err := DecodeSyncRequest(b, "hq", "front"); err == nil {
			t.Errorf("sync request with bad %s accepted", name)
		}
	}
	b, _ = json.Marshal(good)
	got, err := DecodeSyncRequest(b, "hq", "front")
	if err != nil {
		t.Fatal(err)
	}
	if err := got.VerifySig(id.Public().SignKey); err != nil {
		t.Fatalf("a good sync request: %v", err)
	}
	got.Window = 3
	if err := got.VerifySig(id.Public().SignKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a sync request changed after signing: %v", err)
	}
	st := Status{V: Version, Type: KindStatus, Site: "hq", Door: "front", Online: true, Outbox: -1}
	b, _ = json.Marshal(st)
	if _, err := DecodeStatus(b, "hq", "front"); !errors.Is(err, ErrMalformed) {
		t.Errorf("status outbox: %v", err)
	}
}
