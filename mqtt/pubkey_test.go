package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// smallOrderHex are the canonical encodings of the eight points of order
// 1, 2, 4 and 8: the identity, (0, -1), (±√-1, 0) and four of order 8.
// smallOrderPoints checks that they are all of them.
var smallOrderHex = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = -1, order 2
	"0000000000000000000000000000000000000000000000000000000000000000", // y = 0, order 4 (all zero)
	"0000000000000000000000000000000000000000000000000000000000000080", // y = 0, order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
}

// fieldP is 2^255 - 19.
var fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// smallOrderPoints returns the canonical encodings of the eight small-order
// points, checked against the curve: each decodes, is distinct, has order
// dividing 8, and together they are the multiples of one point of order 8
// (the whole torsion subgroup, which has eight elements).
func smallOrderPoints(t testing.TB) [][]byte {
	t.Helper()
	var encs [][]byte
	var gen *edwards25519.Point
	for _, h := range smallOrderHex {
		b := mustHex(t, h)
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if !bytes.Equal(p.Bytes(), b) {
			t.Fatalf("%s is not canonical", h)
		}
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) != 1 {
			t.Fatalf("%s is not of small order", h)
		}
		// Order 8: four times it is not the identity.
		q := new(edwards25519.Point).Double(p)
		q.Double(q)
		if gen == nil && q.Equal(edwards25519.NewIdentityPoint()) != 1 {
			gen = p
		}
		encs = append(encs, b)
	}
	if gen == nil {
		t.Fatal("no point of order 8 in the list")
	}
	var multiples [][]byte
	m := edwards25519.NewIdentityPoint()
	for range 8 {
		multiples = append(multiples, m.Bytes())
		m = new(edwards25519.Point).Add(m, gen)
	}
	sortBytes := func(s [][]byte) [][]byte {
		s = slices.Clone(s)
		slices.SortFunc(s, bytes.Compare)
		return s
	}
	if !slices.EqualFunc(sortBytes(multiples), sortBytes(encs), bytes.Equal) {
		t.Fatal("the list is not the eight multiples of a point of order 8")
	}
	return encs
}

// leBytes encodes y in 32 little-endian bytes, with the sign bit sign.
func leBytes(y *big.Int, sign bool) []byte {
	b := make([]byte, 32)
	y.FillBytes(b)
	slices.Reverse(b)
	if sign {
		b[31] |= 0x80
	}
	return b
}

// nonCanonical returns the other encodings that decode to the point b
// encodes: with a y of p or more (y + p, when below 2^255), and with the sign
// bit set on an x of zero.
func nonCanonical(t testing.TB, b []byte) [][]byte {
	t.Helper()
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	le := slices.Clone(b)
	sign := le[31]&0x80 != 0
	le[31] &^= 0x80
	slices.Reverse(le)
	y := new(big.Int).SetBytes(le)
	var out [][]byte
	cands := [][]byte{leBytes(y, !sign)}
	if yp := new(big.Int).Add(y, fieldP); yp.BitLen() <= 255 {
		cands = append(cands, leBytes(yp, sign), leBytes(yp, !sign))
	}
	for _, c := range cands {
		q, err := new(edwards25519.Point).SetBytes(c)
		if err == nil && q.Equal(p) == 1 && !bytes.Equal(c, b) {
			out = append(out, c)
		}
	}
	return out
}

// smallOrderEncodings is every 32-byte string that decodes to a small-order
// point: the eight canonical encodings and the six non-canonical ones.
func smallOrderEncodings(t testing.TB) [][]byte {
	t.Helper()
	var all [][]byte
	for _, b := range smallOrderPoints(t) {
		all = append(all, b)
		all = append(all, nonCanonical(t, b)...)
	}
	if len(all) != 14 {
		t.Fatalf("%d encodings of small-order points, want 14", len(all))
	}
	return all
}

// largeOrderNonCanonical returns a non-canonical encoding (y + p) of a point
// of large order, and 32 bytes that are no point.
func largeOrderNonCanonical(t testing.TB) (nonCanon, offCurve []byte) {
	t.Helper()
	for y := int64(2); y < 19 && (nonCanon == nil || offCurve == nil); y++ {
		b := leBytes(big.NewInt(y), false)
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			offCurve = b
			continue
		}
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		nonCanon = leBytes(new(big.Int).Add(big.NewInt(y), fieldP), false)
	}
	if nonCanon == nil || offCurve == nil {
		t.Fatal("no y below 19 gives a large-order point and one no point")
	}
	return nonCanon, offCurve
}

// weakKeys are the keys CheckPublicKey refuses, by name, with what the
// error says.
func weakKeys(t testing.TB) []struct {
	name string
	key  []byte
	want string
} {
	t.Helper()
	type weak = struct {
		name string
		key  []byte
		want string
	}
	good := ed25519.NewKeyFromSeed(testSeed).Public().(ed25519.PublicKey)
	nonCanon, offCurve := largeOrderNonCanonical(t)
	keys := []weak{
		{"nil", nil, "0 bytes, want 32"},
		{"short", good[:31], "31 bytes, want 32"},
		{"long", append(slices.Clone(good), 0), "33 bytes, want 32"},
		{"all zero", make([]byte, 32), "small-order Ed25519 public key (its signatures can be forged)"},
		{"non-canonical y+p of a large-order point", nonCanon, "non-canonical Ed25519 public key encoding"},
		{"all ones (y >= p)", bytes.Repeat([]byte{0xff}, 32), "non-canonical"},
		{"not on the curve", offCurve, "not an Ed25519 public key (not a point of the curve)"},
	}
	for i, b := range smallOrderPoints(t) {
		keys = append(keys, weak{fmt.Sprintf("small order %d %x", i, b[:4]), b, "small-order Ed25519 public key"})
	}
	for _, b := range smallOrderEncodings(t) {
		p, _ := new(edwards25519.Point).SetBytes(b)
		if bytes.Equal(p.Bytes(), b) {
			continue
		}
		keys = append(keys, weak{fmt.Sprintf("small order non-canonical %x", b), b, "non-canonical"})
	}
	return keys
}

func TestCheckPublicKey(t *testing.T) {
	for _, tc := range weakKeys(t) {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPublicKey(`mqtt.trusted_keys["site-1"]`, tc.key)
			if err == nil {
				t.Fatalf("%x accepted", tc.key)
			}
			if want := `mqtt.trusted_keys["site-1"]: ` + tc.want; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
	_, generated, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	docKey, _ := base64.StdEncoding.DecodeString("iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=")
	for _, good := range [][]byte{
		ed25519.NewKeyFromSeed(testSeed).Public().(ed25519.PublicKey),
		ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey),
		generated.Public().(ed25519.PublicKey),
		docKey,
	} {
		if err := CheckPublicKey("k", good); err != nil {
			t.Errorf("%x: %v", good, err)
		}
	}
}

// NewVerifier and ParsePublicKeys refuse every weak key, naming it.
func TestVerifierRefusesWeakKeys(t *testing.T) {
	for _, tc := range weakKeys(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier("hq", map[string]ed25519.PublicKey{"site-1": tc.key})
			if want := "mqtt: verifier: key site-1: " + tc.want; err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("NewVerifier: %v, want %q", err, want)
			}
			_, err = ParsePublicKeys(map[string]string{"site-1": base64.StdEncoding.EncodeToString(tc.key)})
			if want := "mqtt: trusted key site-1: " + tc.want; err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("ParsePublicKeys: %v, want %q", err, want)
			}
		})
	}
}

// With a small-order key anyone forges a signed unlock: R a small-order
// point and s = 0 make crypto/ed25519.Verify accept the envelope for some
// message. The key never gets into a Verifier, so the door refuses it.
func TestForgedUnlockUnderSmallOrderKey(t *testing.T) {
	identity := mustHex(t, smallOrderHex[0])
	for _, pub := range smallOrderPoints(t) {
		t.Run(fmt.Sprintf("%x", pub[:4]), func(t *testing.T) {
			env, payload, sig := forgeUnlock(t, pub, identity)
			if !ed25519.Verify(pub, payload, sig) {
				t.Fatal("crypto/ed25519 refuses the forgery: the test shows nothing")
			}
			// A Verifier holding the key (built around NewVerifier) opens
			// it as a genuine unlock: the key is all that stops it.
			bare := &Verifier{site: "hq", keys: map[string]*trustedKey{"site-1": {pub: pub}}}
			m, _, err := bare.Open(env, KindCommand)
			if err != nil {
				t.Fatalf("the forged envelope is not otherwise valid: %v", err)
			}
			if c := m.(*Command); c.Action != ActionUnlock || c.Door != "front" {
				t.Fatalf("forged %+v", c)
			}
			if _, err := NewVerifier("hq", map[string]ed25519.PublicKey{"site-1": pub}); err == nil || !strings.Contains(err.Error(), "small-order") {
				t.Fatalf("NewVerifier: %v, want the small-order key refused", err)
			}
			if _, err := ParsePublicKeys(map[string]string{"site-1": base64.StdEncoding.EncodeToString(pub)}); err == nil {
				t.Fatal("ParsePublicKeys accepted the key")
			}
		})
	}
}

// forgeUnlock builds a signed envelope of an unlock command for door
// "front" of site "hq", under key id site-1 and public key pub, without
// any private key: the signature is R = r (a small-order point) and s = 0.
// It tries command ids until crypto/ed25519.Verify accepts one.
func forgeUnlock(t *testing.T, pub, r []byte) (env, payload, sig []byte) {
	t.Helper()
	sig = append(slices.Clone(r), make([]byte, 32)...)
	for i := range 1000 {
		m := &Command{Header: Header{V: Version, Type: KindCommand, Site: "hq", Seq: 1, IssuedAt: t0},
			Door: "front", ID: fmt.Sprintf("forged%04d", i), ExpiresAt: t0.Add(time.Minute),
			Action: ActionUnlock, DurationMS: 60000}
		payload, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, payload, sig) {
			continue
		}
		env, err := json.Marshal(envelope{Kid: "site-1", Sig: base64.StdEncoding.EncodeToString(sig), Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return env, payload, sig
	}
	t.Fatalf("no forgery under %x in 1000 tries", pub)
	return nil, nil, nil
}

// FuzzCheckPublicKey checks CheckPublicKey's promise: it never panics, and
// a key it accepts is 32 bytes that decode to a point of large order whose
// canonical encoding they are.
func FuzzCheckPublicKey(f *testing.F) {
	f.Add([]byte(ed25519.NewKeyFromSeed(testSeed).Public().(ed25519.PublicKey)))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	for _, b := range smallOrderEncodings(f) {
		f.Add(b)
	}
	nonCanon, offCurve := largeOrderNonCanonical(f)
	f.Add(nonCanon)
	f.Add(offCurve)
	f.Fuzz(func(t *testing.T, key []byte) {
		err := CheckPublicKey("k", key)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "k: ") {
				t.Fatalf("error %q does not name the key", err)
			}
			return
		}
		if len(key) != ed25519.PublicKeySize {
			t.Fatalf("accepted %d bytes", len(key))
		}
		p, perr := new(edwards25519.Point).SetBytes(key)
		if perr != nil {
			t.Fatalf("accepted %x, which is no point: %v", key, perr)
		}
		if !bytes.Equal(p.Bytes(), key) {
			t.Fatalf("accepted %x, which re-encodes as %x", key, p.Bytes())
		}
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			t.Fatalf("accepted %x, of small order", key)
		}
		if _, err := NewVerifier("hq", map[string]ed25519.PublicKey{"k": key}); err != nil {
			t.Fatalf("NewVerifier refuses an accepted key: %v", err)
		}
	})
}
