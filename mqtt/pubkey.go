package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"filippo.io/edwards25519"
)

// CheckPublicKey reports whether key is an Ed25519 public key a door may
// trust; the error starts with name, which says which key it is (a key id
// or a config key).
//
// crypto/ed25519.Verify takes any 32 bytes as a public key. A key whose
// point has a small order (one of the eight points of order 1, 2, 4 or 8,
// the all-zero bytes among their encodings) lets anyone forge signatures
// without a private key: with R a small-order point and s = 0, a signature
// verifies for at least one message in eight, and for every message under
// the identity. CheckPublicKey refuses a key that
//   - is not 32 bytes long;
//   - is not a point of the curve;
//   - is not the canonical encoding of its point (a y of p or more, or a
//     sign bit set on an x of zero): the point would re-encode differently;
//   - is of small order, the identity included: its point times the
//     cofactor 8 is the identity.
//
// A key made by ed25519.GenerateKey or NewKeyFromSeed always passes.
func CheckPublicKey(name string, key []byte) error {
	if len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("%s: %d bytes, want %d", name, len(key), ed25519.PublicKeySize)
	}
	p, err := new(edwards25519.Point).SetBytes(key)
	if err != nil {
		return fmt.Errorf("%s: not an Ed25519 public key (not a point of the curve)", name)
	}
	if !bytes.Equal(p.Bytes(), key) {
		return fmt.Errorf("%s: non-canonical Ed25519 public key encoding", name)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return fmt.Errorf("%s: small-order Ed25519 public key (its signatures can be forged)", name)
	}
	return nil
}
