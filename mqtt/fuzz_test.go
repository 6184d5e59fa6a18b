package mqtt

import (
	"bytes"
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
		b, err := s.Seal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
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
	f.Add([]byte(`{"v":1,"type":"cmd","site":"hq","seq":1,"issued_at":"2026-03-01T12:00:00Z","door":"front","id":"abcdefgh","expires_at":"2026-03-01T12:00:30Z","cmd":"unlock","duration_ms":1e3}`))
	f.Add([]byte(`{"v":1,"type":"acl.delta","site":"hq","seq":1,"issued_at":"2026-03-01T12:00:00Z","ops":[{"op":"upsert_card","card":{"uid":"AQIDBA==","holder_id":"h","schedule":{"weekly":[[{"from":1,"to":2}]]}}}]}`))
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
			for _, known := range []error{ErrMalformed, ErrTooLarge, ErrVersion, ErrWrongType, ErrWrongSite} {
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
	ev := EventMsg{V: 1, Type: KindEvent, Site: "hq", Door: "front", Event: store.Event{
		Seq: 3, Time: t0, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted,
		UID: "04A1B2C3", Prev: strings.Repeat("a", 64), Hash: strings.Repeat("b", 64)}}
	b, _ := json.Marshal(ev)
	f.Add(b)
	f.Add([]byte(`{"v":1,"type":"event","site":"hq","door":"front","event":{"seq":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeEvent(b, "hq", "")
		if err != nil {
			return
		}
		if m.Site != "hq" || CheckID("door", m.Door) != nil || m.Event.Seq == 0 || len(m.Event.Hash) != 64 {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	st := Status{V: 1, Type: KindStatus, Site: "hq", Door: "front", Online: true, At: t0, DoorState: "closed",
		Reader: "ok", ACLSeq: 9, SnapshotHash: strings.Repeat("c", 64), Outbox: 3, Version: "1.0", UptimeS: 60, Clock: store.TimeSynced}
	b, _ := json.Marshal(st)
	f.Add(b)
	f.Add([]byte(`{"v":1,"type":"status","site":"hq","door":"front","online":false}`))
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
	})
}

func FuzzDecodeSyncRequest(f *testing.F) {
	sr := SyncRequest{V: 1, Type: KindSync, Site: "hq", Door: "front", AppliedSeq: 5, SnapshotHash: strings.Repeat("c", 64), At: t0}
	b, _ := json.Marshal(sr)
	f.Add(b)
	sr.Want = WantSnapshot
	b, _ = json.Marshal(sr)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeSyncRequest(b, "hq", "")
		if err != nil {
			return
		}
		if len(m.SnapshotHash) != 64 || (m.Want != "" && m.Want != WantSnapshot) {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// FuzzAssembler feeds chunks of two snapshots, signed, in a fuzzed order
// with fuzzed duplicates: a snapshot comes out only whole and with its own
// hash.
func FuzzAssembler(f *testing.F) {
	s := testSigner(f)
	v := testVerifier(f, s)
	var chunks []*SnapshotChunk
	var sizes []int
	for seq := uint64(1); seq <= 2; seq++ {
		snap := bigSnapshot(400)
		snap.Seq = seq
		bs, err := s.SealSnapshot("hq", snap, t0, 8<<10)
		if err != nil {
			f.Fatal(err)
		}
		for _, b := range bs {
			m, _, err := v.Open(b, KindSnapshot)
			if err != nil {
				f.Fatal(err)
			}
			chunks = append(chunks, m.(*SnapshotChunk))
			sizes = append(sizes, len(b))
		}
	}
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{200, 3, 3, 1, 0})
	f.Fuzz(func(t *testing.T, order []byte) {
		a := assembler{maxBytes: 1 << 30}
		for _, o := range order {
			i := int(o) % len(chunks)
			snap, err := a.add(chunks[i], sizes[i], t0.Add(time.Duration(o)))
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if snap != nil && store.HashSnapshot(*snap) != chunks[i].Hash {
				t.Fatalf("snapshot %d does not hash to its chunks' hash", snap.Seq)
			}
		}
	})
}
