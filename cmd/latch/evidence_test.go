package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store/site"
)

var evidenceT0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// sampleEvidence is a completed review signed by key-2, which a rotation
// signed by key-1 named.
func sampleEvidence(t testing.TB) (evidence, ed25519.PrivateKey, map[string]ed25519.PublicKey) {
	ev, key, _, trusted := sampleEvidenceKeys(t)
	return ev, key, trusted
}

// sampleEvidenceKeys is sampleEvidence with key-1, the replaced key.
func sampleEvidenceKeys(t testing.TB) (evidence, ed25519.PrivateKey, ed25519.PrivateKey, map[string]ed25519.PublicKey) {
	t.Helper()
	pub1, key1, _ := ed25519.GenerateKey(rand.Reader)
	_, key2, _ := ed25519.GenerateKey(rand.Reader)
	s1, err := mqtt.NewSigner("key-1", key1)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := mqtt.NewSigner("key-2", key2)
	rot, err := s1.Rotation("hq", 1, s2, evidenceT0, evidenceT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rv := site.Review{ID: 3, Group: "staff", Owner: "ada", Doors: []string{"back", "front"}, Due: evidenceT0.AddDate(0, 1, 0),
		Started: evidenceT0, StartedBy: "root", Seq: 12, Completed: evidenceT0.Add(48 * time.Hour), CompletedBy: "ada",
		Holders: []site.ReviewHolder{
			{Holder: "alice", Name: "Alice, \"A\"", Cards: []site.ReviewCard{{UID: "04A1B2C3", Access: []site.ReviewAccess{{Door: "front", Via: "staff", Decision: "opens", Reason: "granted"}}}},
				Decision: site.DecisionKeep, Comment: "=still on the team", DecidedBy: "ada", DecidedAt: evidenceT0.Add(time.Hour)},
			{Holder: "bob", Cards: []site.ReviewCard{{UID: "04D1E2F3"}}, Decision: site.DecisionRemove, Comment: "left\nin May", DecidedBy: "ada",
				DecidedAt: evidenceT0.Add(2 * time.Hour), Change: 13},
		}}
	ev := evidence{Site: "hq", Kid: "key-2", ExportedAt: evidenceT0.Add(50 * time.Minute), Review: rv, KeyChain: []json.RawMessage{rot}}
	return ev, key2, key1, map[string]ed25519.PublicKey{"key-1": pub1}
}

// An evidence file verifies with a key the doors trust, through the key
// chain; every one-byte change of it fails, and says which part.
func TestEvidenceVerifies(t *testing.T) {
	ev, key, old, trusted := sampleEvidenceKeys(t)
	for _, format := range []string{"json", "csv"} {
		b, err := writeEvidence(ev, format, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := verifyEvidence(b, trusted)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, b)
		}
		if got.Review.ID != 3 || len(got.Review.Holders) != 2 || got.Review.Holders[1].Change != 13 || got.Review.Holders[1].Comment != "left\nin May" {
			t.Errorf("%s: read back %+v", format, got.Review)
		}
		for i := range b {
			for _, x := range []byte{0x01, 0x20} {
				c := append([]byte(nil), b...)
				c[i] ^= x
				if _, err := verifyEvidence(c, trusted); err == nil {
					t.Fatalf("%s: byte %d ^ %#x verifies", format, i, x)
				} else if _, ok := errors.AsType[*evidenceError](err); !ok {
					t.Fatalf("%s: byte %d: %v is not an evidence error", format, i, err)
				}
			}
		}
		if _, err := verifyEvidence(b, map[string]ed25519.PublicKey{"key-9": trusted["key-1"]}); err == nil {
			t.Errorf("%s: verifies with no key of its chain trusted", format)
		}
		// Signed with key-1: before its successor took over, and after.
		byOld := ev
		byOld.Kid, byOld.ExportedAt = "key-1", evidenceT0.Add(30*time.Minute)
		ob, _ := writeEvidence(byOld, format, old)
		if _, err := verifyEvidence(ob, trusted); err != nil {
			t.Errorf("%s: signed by key-1 before it ended: %v", format, err)
		}
		byOld.ExportedAt = evidenceT0.Add(2 * time.Hour)
		ob, _ = writeEvidence(byOld, format, old)
		var ee *evidenceError
		if _, err := verifyEvidence(ob, trusted); !errors.As(err, &ee) || ee.part != "key" {
			t.Errorf("%s: signed by key-1 after it ended: %v, want a key failure", format, err)
		}
	}
}

func FuzzEvidence(f *testing.F) {
	ev, key, trusted := sampleEvidence(f)
	for _, format := range []string{"json", "csv"} {
		b, err := writeEvidence(ev, format, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("{}"))
	f.Add([]byte("signature,AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := verifyEvidence(b, trusted)
		if err != nil {
			return
		}
		// Only what key-2 signed verifies: the sample's content.
		if got.Format != evidenceFormat || got.Kid != "key-2" || got.Review.ID == 0 {
			t.Fatalf("verified evidence %+v", got)
		}
	})
}
