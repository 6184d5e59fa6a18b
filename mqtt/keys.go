package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Site keys rotate without touching a door's configuration: the site
// signs, with the key being replaced, a KeyRotation that names the next
// key and when the old one ends. The rotations are kept, in order, in one
// retained message on the site's keys topic (KeyChain), so that a door
// offline through one or several rotations walks the chain from the keys
// it trusts when it comes back. A door keeps what it learnt in its store;
// a retired key is refused from then on, whatever its configuration says.

// MaxKeyOverlap is the longest a replaced key may stay valid after the
// rotation that replaces it is issued.
const MaxKeyOverlap = 30 * 24 * time.Hour

// KeyRotation names the site's next key. It is signed by the key it
// replaces (Retires); Seq numbers the site's rotations from 1.
type KeyRotation struct {
	Header
	Kid      string    `json:"kid"`       // the new key's id
	Key      string    `json:"key"`       // the new Ed25519 public key, base64
	Retires  string    `json:"retires"`   // the id of the key it replaces, the one that signs this
	RetireAt time.Time `json:"retire_at"` // messages issued from then on under Retires are refused
}

// Head implements Signed.
func (m *KeyRotation) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*KeyRotation) Kind() Kind { return KindKeyRotation }

// Check implements Signed.
func (m *KeyRotation) Check() error {
	switch {
	case m.Seq == 0:
		return fmt.Errorf("%w: key rotation seq 0", ErrMalformed)
	case !kidRE.MatchString(m.Kid) || !kidRE.MatchString(m.Retires):
		return fmt.Errorf("%w: key ids %q and %q: want 1-64 of A-Z a-z 0-9 . _ -", ErrMalformed, m.Kid, m.Retires)
	case m.Kid == m.Retires:
		return fmt.Errorf("%w: key %q replaces itself", ErrMalformed, m.Kid)
	}
	if _, err := m.PublicKey(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkTime("retire_at", m.RetireAt); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if d := m.RetireAt.Sub(m.IssuedAt); d < 0 || d > MaxKeyOverlap {
		return fmt.Errorf("%w: the old key ends %s after the rotation, want 0..%s", ErrMalformed, d, MaxKeyOverlap)
	}
	return nil
}

// PublicKey decodes and checks the new key.
func (m *KeyRotation) PublicKey() (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(m.Key)
	if err != nil {
		return nil, fmt.Errorf("key rotation %d: key: %w", m.Seq, err)
	}
	if err := CheckPublicKey("key rotation "+m.Kid, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// KeyChain is the retained list of the site's rotations, oldest first,
// each a signed envelope of a KeyRotation. The list itself is not signed:
// a door trusts a rotation only when a key it trusts signed it.
type KeyChain struct {
	V         int               `json:"v"`         // protocol version, 2
	Type      Kind              `json:"type"`      // KindKeys
	Site      string            `json:"site"`      // the site id
	Rotations []json.RawMessage `json:"rotations"` // at most MaxRotations signed KeyRotation envelopes
}

// DecodeKeyChain decodes the keys message of site.
func DecodeKeyChain(b []byte, site string) (*KeyChain, error) {
	var m KeyChain
	if err := decodeDoorMsg("key chain", b, MaxKeysBytes, &m); err != nil {
		return nil, err
	}
	switch {
	case m.Type != KindKeys:
		return nil, fmt.Errorf("mqtt: decode key chain: %w: %q", ErrWrongType, m.Type)
	case m.Site != site:
		return nil, fmt.Errorf("mqtt: decode key chain: %w: %q, want %q", ErrWrongSite, m.Site, site)
	case len(m.Rotations) > MaxRotations:
		return nil, fmt.Errorf("mqtt: decode key chain: %w: %d rotations, limit %d", ErrMalformed, len(m.Rotations), MaxRotations)
	}
	return &m, nil
}

// Rotation signs, with s (the key being replaced), the rotation of site
// number seq to next, the old key ending at retireAt.
func (s *Signer) Rotation(site string, seq uint64, next *Signer, issuedAt, retireAt time.Time) ([]byte, error) {
	return s.Seal(&KeyRotation{
		Header: Header{Site: site, Seq: seq, IssuedAt: issuedAt},
		Kid:    next.KeyID(), Key: base64.StdEncoding.EncodeToString(next.Public()),
		Retires: s.KeyID(), RetireAt: retireAt,
	})
}

// Rotate applies a rotation that Open verified, signed by the key kid. A
// rotation already applied (its seq is not above the last one) changes
// nothing and returns false. Otherwise the signer must be the key it
// retires, and the new key id must be new.
func (v *Verifier) Rotate(m *KeyRotation, kid string) (bool, error) {
	if kid != m.Retires {
		return false, fmt.Errorf("mqtt: key rotation %d: signed by %q, not by the key it replaces (%q)", m.Seq, kid, m.Retires)
	}
	pub, err := m.PublicKey()
	if err != nil {
		return false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if m.Seq <= v.rotSeq {
		return false, nil
	}
	if _, ok := v.keys[m.Kid]; ok {
		return false, fmt.Errorf("mqtt: key rotation %d: key id %q is taken", m.Seq, m.Kid)
	}
	old := v.keys[m.Retires]
	switch {
	case old == nil || old.retired:
		return false, fmt.Errorf("mqtt: key rotation %d: %w: %q", m.Seq, ErrUnknownKey, m.Retires)
	case !old.retireAt.IsZero():
		// One successor per key: a key stolen after its rotation cannot
		// name another.
		return false, fmt.Errorf("mqtt: key rotation %d: key %q was already replaced", m.Seq, m.Retires)
	}
	old.retireAt = m.RetireAt
	v.keys[m.Kid] = &trustedKey{pub: pub, learnt: true}
	v.rotSeq = m.Seq
	return true, nil
}

// RetireDue retires the keys whose RetireAt is not after now, and returns
// their ids. A retired key is refused whatever the issued_at of a message.
func (v *Verifier) RetireDue(now time.Time) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, kid := range slices.Sorted(maps.Keys(v.keys)) {
		k := v.keys[kid]
		if !k.retired && !k.retireAt.IsZero() && !now.Before(k.retireAt) {
			k.retired = true
			out = append(out, kid)
		}
	}
	return out
}

// ring is the stored form of a Verifier's keys.
type ring struct {
	RotationSeq uint64             `json:"rotation_seq"`
	Keys        map[string]ringKey `json:"keys"`
}

type ringKey struct {
	Key      []byte    `json:"key"`
	RetireAt time.Time `json:"retire_at,omitzero"`
	Retired  bool      `json:"retired,omitempty"`
	Learnt   bool      `json:"learnt,omitempty"` // named by a rotation
}

// MarshalKeys returns the trusted keys in the form LoadKeys reads.
func (v *Verifier) MarshalKeys() ([]byte, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	r := ring{RotationSeq: v.rotSeq, Keys: make(map[string]ringKey, len(v.keys))}
	for kid, k := range v.keys {
		r.Keys[kid] = ringKey{Key: k.pub, RetireAt: k.retireAt, Retired: k.retired, Learnt: k.learnt}
	}
	return json.Marshal(r)
}

// LoadKeys merges keys stored by MarshalKeys into the verifier: a key a
// rotation named is trusted (unless the configuration gives its id to
// another key), and a configured key keeps the end or retirement a
// rotation gave it (a retired key stays retired). A configured key that
// the configuration no longer names is not trusted again.
func (v *Verifier) LoadKeys(b []byte) error {
	var r ring
	if err := decodeStrict(b, &r); err != nil {
		return fmt.Errorf("mqtt: stored site keys: %w", err)
	}
	for _, kid := range slices.Sorted(maps.Keys(r.Keys)) {
		k := r.Keys[kid]
		if !kidRE.MatchString(kid) {
			return fmt.Errorf("mqtt: stored site keys: key id %q", kid)
		}
		if err := CheckPublicKey("mqtt: stored site key "+kid, k.Key); err != nil {
			return err
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for kid, k := range r.Keys {
		cur, configured := v.keys[kid]
		switch {
		case configured && !bytes.Equal(cur.pub, k.Key):
			// The configuration gave the id to another key: it wins;
			// what was stored of the old one no longer applies.
		case configured:
			cur.retireAt, cur.retired = k.RetireAt, k.Retired
		case k.Learnt:
			v.keys[kid] = &trustedKey{pub: k.Key, retireAt: k.RetireAt, retired: k.Retired, learnt: true}
		}
	}
	v.rotSeq = max(v.rotSeq, r.RotationSeq)
	return nil
}

// KeyIDs returns the ids of the keys trusted now, sorted.
func (v *Verifier) KeyIDs() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []string
	for kid, k := range v.keys {
		if !k.retired {
			out = append(out, kid)
		}
	}
	slices.Sort(out)
	return out
}

// rotationSeq returns the seq of the last rotation applied.
func (v *Verifier) rotationSeq() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.rotSeq
}
