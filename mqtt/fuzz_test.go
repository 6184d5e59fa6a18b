package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// Every decoder of bytes from the broker is fuzzed: the envelope and
// signature check (FuzzOpen), the payload decoders behind a valid
// signature (FuzzOpenSigned), and the door messages a site decodes
// (FuzzDecodeEvent, FuzzDecodeStatus, FuzzDecodeSyncRequest). None may
// panic; whatever they accept must satisfy the checks they promise.

func FuzzOpen(f *testing.F) {
	s := testSigner(f)
	v := testVerifier(f, s)
	for _, m := range sampleMessages() {
		f.Add(sealAny(f, s, m))
	}
	f.Add([]byte(`{"kid":"k1","sig":"","payload":{}}`))
	f.Add([]byte(`{"v":1,"type":"cmd"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, kid, err := v.Open(b)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message", err)
			}
			return
		}
		if kid != "k1" {
			t.Fatalf("accepted kid %q", kid)
		}
		checkAccepted(t, m)
	})
}

// checkAccepted asserts what Open guarantees of an accepted message.
func checkAccepted(t *testing.T, m Signed) {
	t.Helper()
	h := m.Head()
	if h.V != Version || h.Type != m.Kind() || h.Site != "hq" || h.IssuedAt.IsZero() {
		t.Fatalf("accepted header %+v", h)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("accepted message fails its check: %v", err)
	}
	if c, ok := m.(*Command); ok {
		if ttl := c.ExpiresAt.Sub(c.IssuedAt); ttl <= 0 || ttl > MaxCommandTTL {
			t.Fatalf("accepted command living %s", ttl)
		}
		if c.Action == ActionUnlock && (c.Duration() <= 0 || c.Duration() > MaxUnlockDuration) {
			t.Fatalf("accepted unlock for %s", c.Duration())
		}
	}
	if c, ok := m.(*SnapshotChunk); ok && (c.Chunk < 0 || c.Chunk >= c.Chunks || c.Chunks > MaxSnapshotChunks) {
		t.Fatalf("accepted chunk %d of %d", c.Chunk, c.Chunks)
	}
}

// FuzzOpenSigned signs the fuzzed payload, so the strict payload decoding
// behind the signature check is what gets explored.
func FuzzOpenSigned(f *testing.F) {
	s := testSigner(f)
	v := testVerifier(f, s)
	for _, m := range sampleMessages() {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":2,"type":"cmd","site":"hq","seq":1,"issued_at":"2026-03-01T12:00:00Z","door":"front","id":"abcdefgh","expires_at":"2026-03-01T12:00:30Z","cmd":"unlock","duration_ms":1e3}`))
	f.Add([]byte(`{"v":2,"type":"keys.rotate","site":"hq","seq":1,"issued_at":"2026-03-01T12:00:00Z","kid":"k2","key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=","retires":"k1","retire_at":"2026-03-02T12:00:00Z"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if !json.Valid(payload) {
			return
		}
		var compact bytes.Buffer
		if json.Compact(&compact, payload) != nil {
			return
		}
		m, _, err := v.Open(envelopeWith(s, "k1", compact.Bytes()))
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message", err)
			}
			for _, known := range []error{ErrMalformed, ErrTooLarge, ErrVersion, ErrWrongType, ErrWrongSite, ErrWrongDoor, ErrNotForMe} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		checkAccepted(t, m)
	})
}

func FuzzDecodeEvent(f *testing.F) {
	ev := EventMsg{V: Version, Type: KindEvent, Site: "hq", Door: "front", Event: store.Event{
		Seq: 3, Time: t0, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted,
		UID: "04A1B2C3", Prev: strings.Repeat("a", 64)}}
	ev.Event.Hash, _ = store.HashEvent(ev.Event)
	b, _ := json.Marshal(ev)
	f.Add(b)
	f.Add([]byte(`{"v":2,"type":"event","site":"hq","door":"front","event":{"seq":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeEvent(b, "hq", "")
		if err != nil {
			return
		}
		if m.Site != "hq" || CheckID("door", m.Door) != nil || m.Event.Seq == 0 || len(m.Event.Hash) != 64 {
			t.Fatalf("accepted %+v", m)
		}
		if h, err := store.HashEvent(m.Event); err != nil || h != m.Event.Hash {
			t.Fatalf("accepted an event that does not hash to its hash")
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	st := Status{V: Version, Type: KindStatus, Site: "hq", Door: "front", Online: true, At: t0, DoorState: "closed",
		Reader: "ok", ACLSeq: 9, SnapshotHash: strings.Repeat("c", 64), Outbox: 3, Version: "1.0", UptimeS: 60, Clock: store.TimeSynced}
	b, _ := json.Marshal(st)
	f.Add(b)
	f.Add([]byte(`{"v":2,"type":"status","site":"hq","door":"front","online":false}`))
	// With an identity and a signed head.
	id, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	p := id.Public()
	st.Fingerprint = p.Fingerprint()
	st.SignKey = base64.StdEncoding.EncodeToString(p.SignKey)
	st.SealKey = base64.StdEncoding.EncodeToString(p.SealKey)
	st.HeadSeq, st.HeadHash = 7, strings.Repeat("d", 64)
	msg, _ := headMessage("hq", "front", st.HeadSeq, st.HeadHash)
	st.HeadSig = base64.StdEncoding.EncodeToString(id.Sign(msg))
	b, _ = json.Marshal(st)
	f.Add(b)
	// And a next identity it vouches for.
	next, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	np := next.Public()
	st.NextFingerprint = np.Fingerprint()
	st.NextSignKey = base64.StdEncoding.EncodeToString(np.SignKey)
	st.NextSealKey = base64.StdEncoding.EncodeToString(np.SealKey)
	st.NextSig = id.Vouch("hq", "front", np)
	b, _ = json.Marshal(st)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeStatus(b, "hq", "front")
		if err != nil {
			return
		}
		if m.Door != "front" || m.Outbox < 0 || m.UptimeS < 0 {
			t.Fatalf("accepted %+v", m)
		}
		// An accepted announcement holds together, and so does its head.
		if m.Fingerprint != "" || m.SignKey != "" || m.SealKey != "" {
			p, err := m.Identity()
			if err != nil {
				t.Fatalf("accepted an identity that does not check: %v", err)
			}
			if m.HeadSig != "" && m.VerifyHead(p.SignKey) != nil {
				t.Fatalf("accepted a head that does not verify")
			}
		} else if m.HeadSig != "" {
			t.Fatalf("accepted a signed head without a key")
		}
		// An accepted next identity is vouched for by the current key.
		if m.NextFingerprint != "" || m.NextSignKey != "" || m.NextSealKey != "" || m.NextSig != "" {
			if _, err := m.NextIdentity(); err != nil {
				t.Fatalf("accepted a next identity that does not check: %v", err)
			}
		}
	})
}

func FuzzDecodeSyncRequest(f *testing.F) {
	id := testIdentity(f)
	sr := SyncRequest{V: Version, Type: KindSync, Site: "hq", Door: "front", AppliedSeq: 5, SnapshotHash: strings.Repeat("c", 64), At: t0}
	sr.Sign(id)
	b, _ := json.Marshal(sr)
	f.Add(b)
	sr.Want = WantSnapshot
	sr.Chunks = &ChunkWindow{Seq: 9, Hash: strings.Repeat("d", 64), From: 3, Count: 4}
	sr.Sign(id)
	b, _ = json.Marshal(sr)
	f.Add(b)
	sr.Want, sr.Chunks, sr.AppliedSeq = "", nil, 1<<64-1 // a seq a site would wrap adding one
	sr.Sign(id)
	b, _ = json.Marshal(sr)
	f.Add(b)
	key := id.Public().SignKey
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeSyncRequest(b, "hq", "")
		if err != nil {
			return
		}
		if len(m.SnapshotHash) != 64 || (m.Want != "" && m.Want != WantSnapshot) || m.Window < 0 || m.Window > MaxChunkWindow || m.AppliedSeq > MaxSyncSeq {
			t.Fatalf("accepted %+v", m)
		}
		if w := m.Chunks; w != nil && (w.Count < 1 || w.Count > MaxChunkWindow || w.From < 0 || w.Seq > MaxSyncSeq) {
			t.Fatalf("accepted chunks %+v", w)
		}
		// A signature that verifies covers every field: the same request
		// with any field changed does not.
		if m.VerifySig(key) == nil {
			m.AppliedSeq++
			if m.VerifySig(key) == nil {
				t.Fatal("the signature does not cover applied_seq")
			}
		}
	})
}

// FuzzOpenSealedBody seals fuzzed bytes as the body of a delta or a
// chunk to the door, so that the strict decoding of an opened body, behind
// the signature and the HPKE open, is what gets explored.
func FuzzOpenSealedBody(f *testing.F) {
	s := testSigner(f)
	v := testVerifier(f, s)
	to := testIdentity(f).Public()
	f.Add(false, []byte(`{"ops":[{"op":"revoke_card","uid":"AQIDBA==","reason":"lost"}]}`))
	f.Add(false, []byte(`{"ops":[{"op":"explode"}]}`))
	f.Add(true, []byte(`{"cards":[{"uid":"AQIDBA==","holder_id":"h1"}],"holders":[{"id":"h1"}]}`))
	f.Add(true, []byte(`{"cards":null,"x":1}`))
	f.Fuzz(func(t *testing.T, chunk bool, pt []byte) {
		var m sealedMsg = NewDelta("hq", "front", 9, t0, nil)
		if chunk {
			m = &SnapshotChunk{Header: hdr(9), sealing: sealing{Door: "front"}, Hash: strings.Repeat("ab", 32), Chunk: 1, Chunks: 3}
		}
		h := m.Head()
		h.V, h.Type = Version, m.Kind()
		m.sealed().To = to.Fingerprint()
		ct, err := SealTo(to, sealInfo(m), pt)
		if err != nil {
			t.Fatal(err)
		}
		m.sealed().Body = base64.StdEncoding.EncodeToString(ct)
		env, err := s.Seal(m)
		if err != nil {
			return // too large
		}
		got, _, err := v.Open(env)
		if err != nil {
			if got != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused with %v (message %v)", err, got)
			}
			return
		}
		checkAccepted(t, got)
		if d, ok := got.(*Delta); ok {
			if err := d.checkBody(); err != nil {
				t.Fatalf("accepted a delta whose body fails its check: %v", err)
			}
		}
	})
}

// FuzzDecodeKeyChain decodes the retained key chain, then walks its links
// as a door does: nothing panics, and only a rotation signed by a trusted
// key is applied.
func FuzzDecodeKeyChain(f *testing.F) {
	s := testSigner(f)
	next, err := NewSigner("k2", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	rot, err := s.Rotation("hq", 1, next, t0, t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	kc, _ := json.Marshal(KeyChain{V: Version, Type: KindKeys, Site: "hq", Rotations: []json.RawMessage{rot}})
	f.Add(kc)
	f.Add([]byte(`{"v":2,"type":"keys","site":"hq","rotations":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeKeyChain(b, "hq")
		if err != nil {
			return
		}
		if len(m.Rotations) > MaxRotations {
			t.Fatalf("accepted %d rotations", len(m.Rotations))
		}
		v := testVerifier(t, s)
		for _, link := range m.Rotations {
			r, kid, err := v.Open(link, KindKeyRotation)
			if err != nil {
				continue
			}
			if _, err := v.Rotate(r.(*KeyRotation), kid); err == nil && kid != "k1" {
				t.Fatalf("rotation signed by %q applied", kid)
			}
		}
	})
}
