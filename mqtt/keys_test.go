package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"
)

func seededSigner(t testing.TB, kid string, b byte) *Signer {
	s, err := NewSigner(kid, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A rotation signed by the current key makes the next one trusted; the old
// one is refused for messages issued from its end, and for every message
// once the door's time passes its end; what was learnt survives a restart
// and beats the configuration.
func TestKeyRotation(t *testing.T) {
	k1, k2, k3 := testSigner(t), seededSigner(t, "k2", 2), seededSigner(t, "k3", 3)
	v := testVerifier(t, k1)
	end := t0.Add(time.Hour)
	apply := func(signer *Signer, seq uint64, next *Signer, issued, retire time.Time) (bool, error) {
		t.Helper()
		b, err := signer.Rotation("hq", seq, next, issued, retire)
		if err != nil {
			t.Fatal(err)
		}
		m, kid, err := v.Open(b, KindKeyRotation)
		if err != nil {
			return false, err
		}
		return v.Rotate(m.(*KeyRotation), kid)
	}
	hb := func(s *Signer, at time.Time) error {
		b, err := s.Seal(&Heartbeat{Header: Header{Site: "hq", Seq: 1, IssuedAt: at}, Door: "front"})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = v.Open(b, KindHeartbeat)
		return err
	}

	if err := hb(k2, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("k2 before the rotation: %v", err)
	}
	// Only the key being replaced may announce its successor.
	if ok, err := apply(k2, 1, k3, t0, end); ok || err == nil {
		t.Fatalf("rotation signed by an unknown key: %v %v", ok, err)
	}
	if ok, err := apply(k1, 1, k2, t0, end); !ok || err != nil {
		t.Fatalf("rotation k1 → k2: %v %v", ok, err)
	}
	if ok, err := apply(k1, 1, k2, t0, end); ok || err != nil {
		t.Fatalf("the same rotation again: %v %v", ok, err)
	}
	if err := hb(k2, t0); err != nil {
		t.Fatalf("k2 after the rotation: %v", err)
	}
	if err := hb(k1, end.Add(-time.Second)); err != nil {
		t.Fatalf("k1 before its end: %v", err)
	}
	if err := hb(k1, end); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("k1 issued at its end: %v", err)
	}
	// A replaced key cannot name a second successor.
	if ok, err := apply(k1, 2, k3, t0, end); ok || err == nil {
		t.Fatalf("a second rotation by k1: %v %v", ok, err)
	}
	if got := v.RetireDue(end.Add(-time.Minute)); len(got) != 0 {
		t.Fatalf("retired early: %v", got)
	}
	if got := v.RetireDue(end); len(got) != 1 || got[0] != "k1" {
		t.Fatalf("RetireDue = %v", got)
	}
	// Retired: refused whatever the message's issued_at.
	if err := hb(k1, t0); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("k1 after retirement, backdated: %v", err)
	}
	stored, err := v.MarshalKeys()
	if err != nil {
		t.Fatal(err)
	}

	// A restart: the configuration still names k1 alone.
	v = testVerifier(t, k1)
	if err := v.LoadKeys(stored); err != nil {
		t.Fatal(err)
	}
	if err := hb(k1, t0); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("k1 after a restart: %v", err)
	}
	if err := hb(k2, end); err != nil {
		t.Fatalf("k2 after a restart: %v", err)
	}
	if ids := v.KeyIDs(); len(ids) != 1 || ids[0] != "k2" {
		t.Fatalf("KeyIDs = %v", ids)
	}
	if ok, err := apply(k2, 2, k3, end, end.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("rotation k2 → k3: %v %v", ok, err)
	}
	for _, bad := range [][]byte{[]byte(`{`), []byte(`{"rotation_seq":1,"keys":{"k9":{"key":"AAAA"}}}`), []byte(`{"x":1}`)} {
		if err := testVerifier(t, k1).LoadKeys(bad); err == nil {
			t.Errorf("LoadKeys(%s) accepted", bad)
		}
	}
}

func TestKeyRotationChecks(t *testing.T) {
	k1, k2 := testSigner(t), seededSigner(t, "k2", 2)
	for name, retire := range map[string]time.Time{
		"ends before it is issued": t0.Add(-time.Second),
		"overlap too long":         t0.Add(MaxKeyOverlap + time.Second),
	} {
		if _, err := k1.Rotation("hq", 1, k2, t0, retire); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := k1.Rotation("hq", 1, k1, t0, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("a key replacing itself: %v", err)
	}
	if _, err := k1.Rotation("hq", 0, k2, t0, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("rotation 0: %v", err)
	}
}

// A configured key that the configuration drops is not trusted again from
// what the store kept; a key a rotation named is.
func TestLoadKeysConfigWins(t *testing.T) {
	k1, k2, x := testSigner(t), seededSigner(t, "k2", 2), seededSigner(t, "x", 9)
	v, err := NewDoorVerifier("hq", "front", map[string]ed25519.PublicKey{"k1": k1.Public(), "x": x.Public()}, testIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := k1.Rotation("hq", 1, k2, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m, kid, err := v.Open(b, KindKeyRotation)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(m.(*KeyRotation), kid); err != nil {
		t.Fatal(err)
	}
	stored, err := v.MarshalKeys()
	if err != nil {
		t.Fatal(err)
	}
	// x is dropped from the configuration.
	w := testVerifier(t, k1)
	if err := w.LoadKeys(stored); err != nil {
		t.Fatal(err)
	}
	if ids := w.KeyIDs(); !slices.Equal(ids, []string{"k1", "k2"}) {
		t.Fatalf("KeyIDs = %v, want k1 and k2 (x dropped by the configuration)", ids)
	}
}
