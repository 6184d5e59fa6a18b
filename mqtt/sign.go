package mqtt

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The signed envelope is a JSON object of exactly three fields:
//
//	{"kid":"site-2026","sig":"<base64 Ed25519 signature>","payload":{...}}
//
// The signature covers the exact bytes of the payload value as they appear
// in the envelope. A receiver verifies those bytes before it parses them.
type envelope struct {
	Kid     string          `json:"kid"`
	Sig     string          `json:"sig"`
	Payload json.RawMessage `json:"payload"`
}

// Signer seals site messages with one Ed25519 key. It is safe for
// concurrent use.
type Signer struct {
	kid string
	key ed25519.PrivateKey
}

// NewSigner returns a Signer for key, named kid in every envelope (1-64 of
// A-Z a-z 0-9 . _ -).
func NewSigner(kid string, key ed25519.PrivateKey) (*Signer, error) {
	if !kidRE.MatchString(kid) {
		return nil, fmt.Errorf("mqtt: signer: key id %q: want 1-64 of A-Z a-z 0-9 . _ -", kid)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("mqtt: signer %s: private key of %d bytes, want %d", kid, len(key), ed25519.PrivateKeySize)
	}
	return &Signer{kid: kid, key: slices.Clone(key)}, nil
}

// KeyID returns the key id the Signer puts in envelopes.
func (s *Signer) KeyID() string { return s.kid }

// Public returns the public key doors must trust under KeyID.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// maxSigned is the size limit of a signed message of kind k.
func maxSigned(k Kind) int {
	switch k {
	case KindDelta:
		return MaxDeltaBytes
	case KindChunk:
		return MaxChunkBytes
	}
	return MaxSmallBytes
}

// Seal sets the message's v and type, validates it, and returns the signed
// envelope to publish. The caller sets the rest of the header: Site, Seq
// and IssuedAt.
func (s *Signer) Seal(m Signed) ([]byte, error) {
	k := m.Kind()
	h := m.Head()
	h.V, h.Type = Version, k
	if err := h.check(k); err != nil {
		return nil, fmt.Errorf("mqtt: seal %s: %w", k, err)
	}
	if err := m.Check(); err != nil {
		return nil, fmt.Errorf("mqtt: seal %s: %w", k, err)
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal %s: %w", k, err)
	}
	sig := ed25519.Sign(s.key, payload)
	out := make([]byte, 0, len(payload)+160)
	out = append(out, `{"kid":`...)
	out = strconv.AppendQuote(out, s.kid)
	out = append(out, `,"sig":"`...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	out = append(out, `","payload":`...)
	out = append(out, payload...)
	out = append(out, '}')
	if len(out) > maxSigned(k) {
		return nil, fmt.Errorf("mqtt: seal %s: %w: %d bytes, limit %d", k, ErrTooLarge, len(out), maxSigned(k))
	}
	return out, nil
}

// Verifier opens signed envelopes for one site, trusting a set of public
// keys that changes only by signed key rotations (Rotate) and retirement
// (RetireDue). A door's Verifier also holds the door's identity, with
// which it opens the bodies sealed to the door. It is safe for concurrent
// use.
type Verifier struct {
	site string

	door string // the door whose sealed messages it opens ("" on the site)

	idMu   sync.RWMutex
	id     *Identity // that door's identity
	fp     string    // its fingerprint
	next   *Identity // the identity it rotates to, if any
	nextFP string

	mu     sync.RWMutex
	keys   map[string]*trustedKey
	rotSeq uint64 // the last rotation applied
}

// trustedKey is a site key the verifier trusts, until RetireAt once a
// rotation named its successor.
type trustedKey struct {
	pub      ed25519.PublicKey
	retireAt time.Time // zero: no successor yet
	retired  bool      // refused from now on, whatever the time
	learnt   bool      // named by a rotation, not configured
}

// NewVerifier returns a Verifier that accepts messages of site signed by
// one of keys (key id → Ed25519 public key). keys is copied. A key
// CheckPublicKey refuses (a small-order key, whose signatures anyone can
// forge) is an error.
func NewVerifier(site string, keys map[string]ed25519.PublicKey) (*Verifier, error) {
	if err := CheckID("site", site); err != nil {
		return nil, fmt.Errorf("mqtt: verifier: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("mqtt: verifier: no trusted keys")
	}
	v := &Verifier{site: site, keys: make(map[string]*trustedKey, len(keys))}
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		k := keys[kid]
		if !kidRE.MatchString(kid) {
			return nil, fmt.Errorf("mqtt: verifier: key id %q: want 1-64 of A-Z a-z 0-9 . _ -", kid)
		}
		if err := CheckPublicKey("mqtt: verifier: key "+kid, k); err != nil {
			return nil, err
		}
		v.keys[kid] = &trustedKey{pub: slices.Clone(k)}
	}
	return v, nil
}

// NewDoorVerifier returns a Verifier for door of site that opens what the
// site seals to the door's identity id.
func NewDoorVerifier(site, door string, keys map[string]ed25519.PublicKey, id *Identity) (*Verifier, error) {
	if err := CheckID("door", door); err != nil {
		return nil, fmt.Errorf("mqtt: verifier: %w", err)
	}
	if id == nil {
		return nil, fmt.Errorf("mqtt: verifier: door %s has no identity to open sealed messages with", door)
	}
	v, err := NewVerifier(site, keys)
	if err != nil {
		return nil, err
	}
	v.door = door
	v.id, v.fp = id, id.Public().Fingerprint()
	return v, nil
}

// key returns the trusted key kid, or why it is not.
func (v *Verifier) key(kid string) (ed25519.PublicKey, time.Time, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.keys[kid]
	switch {
	case !ok:
		return nil, time.Time{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	case k.retired:
		return nil, time.Time{}, fmt.Errorf("%w: kid %q was retired by a key rotation", ErrRetiredKey, kid)
	}
	return k.pub, k.retireAt, nil
}

// ParsePublicKeys decodes a config's trusted keys: key id → standard
// base64 of a 32-byte Ed25519 public key that CheckPublicKey accepts.
func ParsePublicKeys(b64 map[string]string) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(b64))
	for _, kid := range slices.Sorted(maps.Keys(b64)) {
		if !kidRE.MatchString(kid) {
			return nil, fmt.Errorf("mqtt: trusted key id %q: want 1-64 of A-Z a-z 0-9 . _ -", kid)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64[kid])
		if err != nil {
			return nil, fmt.Errorf("mqtt: trusted key %s: %w", kid, err)
		}
		if err := CheckPublicKey("mqtt: trusted key "+kid, raw); err != nil {
			return nil, err
		}
		out[kid] = raw
	}
	return out, nil
}

// Open verifies a signed envelope and decodes its payload strictly into a
// new message, which must be of one of the kinds in want (any signed kind
// when want is empty). It returns the message and the id of the key that
// signed it. The signature is checked before the payload is parsed; the
// site must be the Verifier's; a key with a successor is refused for
// messages issued from its RetireAt on. The body of a sealed message (a
// delta or a chunk) is opened with the door's identity: it must be sealed
// to the Verifier's door and identity (ErrWrongDoor, ErrNotForMe).
func (v *Verifier) Open(b []byte, want ...Kind) (Signed, string, error) {
	if len(b) > max(MaxDeltaBytes, MaxChunkBytes) {
		return nil, "", fmt.Errorf("mqtt: open: %w: %d bytes", ErrTooLarge, len(b))
	}
	var env envelope
	if err := decodeStrict(b, &env); err != nil {
		// Only a refused message is decoded again, loosely, to tell an
		// unsigned one (a bare payload, say) from a malformed envelope.
		var loose envelope
		if lerr := json.Unmarshal(b, &loose); lerr != nil {
			return nil, "", fmt.Errorf("mqtt: open: %w: %w", ErrMalformed, lerr)
		}
		if loose.Sig == "" {
			return nil, "", fmt.Errorf("mqtt: open: %w", ErrUnsigned)
		}
		return nil, "", fmt.Errorf("mqtt: open: %w: envelope: %w", ErrMalformed, err)
	}
	if env.Sig == "" {
		return nil, "", fmt.Errorf("mqtt: open: %w", ErrUnsigned)
	}
	pub, retireAt, err := v.key(env.Kid)
	if err != nil {
		return nil, "", fmt.Errorf("mqtt: open: %w", err)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(env.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, "", fmt.Errorf("mqtt: open: %w: signature is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	}
	payload := []byte(env.Payload)
	if !ed25519.Verify(pub, payload, sig) {
		return nil, "", fmt.Errorf("mqtt: open: %w (kid %s)", ErrBadSignature, env.Kid)
	}
	ver, kind, err := peekHeader(payload)
	if err != nil {
		return nil, env.Kid, fmt.Errorf("mqtt: open: %w: payload: %w", ErrMalformed, err)
	}
	if ver != Version {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w: v %d, want %d", kind, ErrVersion, ver, Version)
	}
	if len(want) > 0 && !slices.Contains(want, kind) {
		return nil, env.Kid, fmt.Errorf("mqtt: open: %w: %q, want one of %q", ErrWrongType, kind, want)
	}
	m, err := newSigned(kind)
	if err != nil {
		return nil, env.Kid, fmt.Errorf("mqtt: open: %w", err)
	}
	if len(b) > maxSigned(kind) {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w: %d bytes, limit %d", kind, ErrTooLarge, len(b), maxSigned(kind))
	}
	if err := decodeStrict(payload, m); err != nil {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w: %w", kind, ErrMalformed, err)
	}
	if err := m.Head().check(kind); err != nil {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w", kind, err)
	}
	if site := m.Head().Site; site != v.site {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w: %q, want %q", kind, ErrWrongSite, site, v.site)
	}
	if !retireAt.IsZero() && !m.Head().IssuedAt.Before(retireAt) {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w: kid %q, issued at %s, retired from %s", kind, ErrRetiredKey,
			env.Kid, m.Head().IssuedAt.UTC().Format(time.RFC3339), retireAt.UTC().Format(time.RFC3339))
	}
	if err := m.Check(); err != nil {
		return nil, env.Kid, fmt.Errorf("mqtt: open %s: %w", kind, err)
	}
	if sm, ok := m.(sealedMsg); ok {
		id, fp := v.identityFor(sm.sealed().To)
		if id == nil {
			return nil, env.Kid, fmt.Errorf("mqtt: open %s: no door identity to open its sealed body", kind)
		}
		if err := openSealed(sm, v.door, id, fp); err != nil {
			return nil, env.Kid, fmt.Errorf("mqtt: open %s %d: %w", kind, m.Head().Seq, err)
		}
	}
	return m, env.Kid, nil
}

// identityFor returns the door identity a message sealed to fingerprint to
// opens with: the current one, or the next one once the site seals to it
// (the current one otherwise, whose open then fails with ErrNotForMe).
func (v *Verifier) identityFor(to string) (*Identity, string) {
	v.idMu.RLock()
	defer v.idMu.RUnlock()
	if v.next != nil && to == v.nextFP {
		return v.next, v.nextFP
	}
	return v.id, v.fp
}

// SetNext makes the verifier open messages sealed to the door's next
// identity too (nil: none).
func (v *Verifier) SetNext(next *Identity) {
	v.idMu.Lock()
	defer v.idMu.Unlock()
	v.next, v.nextFP = next, ""
	if next != nil {
		v.nextFP = next.Public().Fingerprint()
	}
}

// Promote makes the next identity the door's identity.
func (v *Verifier) Promote() {
	v.idMu.Lock()
	defer v.idMu.Unlock()
	if v.next != nil {
		v.id, v.fp, v.next, v.nextFP = v.next, v.nextFP, nil, ""
	}
}
