package mqtt

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A door's identity: the keys by which the site knows it. The door makes
// them at its first start and keeps them in its data directory; the site
// trusts a door only after an admin approved its fingerprint.
//
//   - An Ed25519 key signs what the door says (its events' chain heads and
//     its status), so that the site can attribute them.
//   - An X25519 key receives what the site seals to this door alone with
//     HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//     ChaCha20-Poly1305), its view of the allowlist.
//
// The identity file (IdentityFile) is 76 bytes: the magic "LATCHID1", the
// 32-byte Ed25519 seed, the 32-byte X25519 private key, and a CRC-32C
// (Castagnoli) of what precedes it, big-endian. Mode 0600.

// IdentityFile is the name of the identity file in a door's data directory.
const IdentityFile = "identity.key"

// NextIdentityFile holds the identity a door rotates to: made on purpose
// (CreateNextIdentity), announced in the status vouched by the current
// key, and promoted (PromoteIdentity) once the site seals to it, which it
// does only after an admin approved it.
const NextIdentityFile = "identity.next"

const (
	identityMagic = "LATCHID1"
	identityLen   = len(identityMagic) + ed25519.SeedSize + 32 + 4
	// fingerprintContext separates the fingerprint's hash from any other
	// use of the same keys.
	fingerprintContext = "latch door identity v2\x00"
)

// HPKE suite of sealed messages to a door; the KEM, DHKEM(X25519,
// HKDF-SHA256), comes with the keys (hpke.NewDHKEMPublicKey).
var (
	sealKDF  = hpke.HKDFSHA256()
	sealAEAD = hpke.ChaCha20Poly1305()
)

// ErrNoIdentity is returned by LoadIdentity when the data directory has no
// identity file.
var ErrNoIdentity = errors.New("mqtt: no door identity")

var identityCRC = crc32.MakeTable(crc32.Castagnoli)

// Identity is a door's private keys.
type Identity struct {
	sign ed25519.PrivateKey
	seal *ecdh.PrivateKey
}

// NewIdentity makes a new identity from the system's random source.
func NewIdentity() (*Identity, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("mqtt: new identity: %w", err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mqtt: new identity: %w", err)
	}
	return &Identity{sign: ed25519.NewKeyFromSeed(seed), seal: x}, nil
}

// Public returns the identity's public keys.
func (id *Identity) Public() PublicIdentity {
	return PublicIdentity{
		SignKey: id.sign.Public().(ed25519.PublicKey),
		SealKey: id.seal.PublicKey().Bytes(),
	}
}

// Sign signs msg with the door's Ed25519 key.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.sign, msg) }

// Open opens what the site sealed to this door with SealTo, with the same
// info; an error means the ciphertext was not sealed to this door with
// this info, or was altered.
func (id *Identity) Open(info, ciphertext []byte) ([]byte, error) {
	k, err := hpke.NewDHKEMPrivateKey(id.seal)
	if err != nil {
		return nil, fmt.Errorf("mqtt: open sealed: %w", err)
	}
	pt, err := hpke.Open(k, sealKDF, sealAEAD, info, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("mqtt: open sealed: %w", err)
	}
	return pt, nil
}

// marshal encodes the identity file.
func (id *Identity) marshal() []byte {
	b := make([]byte, 0, identityLen)
	b = append(b, identityMagic...)
	b = append(b, id.sign.Seed()...)
	b = append(b, id.seal.Bytes()...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, identityCRC))
}

// parseIdentity decodes an identity file.
func parseIdentity(b []byte) (*Identity, error) {
	if len(b) != identityLen {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), identityLen)
	}
	if string(b[:len(identityMagic)]) != identityMagic {
		return nil, errors.New("not a latch identity file (bad magic)")
	}
	body := b[:identityLen-4]
	if crc32.Checksum(body, identityCRC) != binary.BigEndian.Uint32(b[identityLen-4:]) {
		return nil, errors.New("checksum mismatch: the file is damaged")
	}
	off := len(identityMagic)
	seed := body[off : off+ed25519.SeedSize]
	x, err := ecdh.X25519().NewPrivateKey(body[off+ed25519.SeedSize:])
	if err != nil {
		return nil, fmt.Errorf("X25519 key: %w", err)
	}
	return &Identity{sign: ed25519.NewKeyFromSeed(seed), seal: x}, nil
}

// LoadIdentity reads the identity in dir. A missing file is ErrNoIdentity;
// a damaged one, or one that others than its owner may read, is an error
// naming the file (a key others could read is no longer the door's alone).
func LoadIdentity(dir string) (*Identity, error) { return loadIdentityFile(dir, IdentityFile) }

func loadIdentityFile(dir, name string) (*Identity, error) {
	path := filepath.Join(dir, name)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoIdentity, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: identity %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("mqtt: identity %s: mode %v lets others read the door's private keys; make it 0600 (chmod 600) if they cannot have, else make a new identity and have it approved", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mqtt: identity %s: %w", path, err)
	}
	id, err := parseIdentity(b)
	if err != nil {
		return nil, fmt.Errorf("mqtt: identity %s: %w", path, err)
	}
	return id, nil
}

// CreateIdentity makes a new identity and writes it to dir, durably (a
// temporary file, synced, renamed, and the directory synced). It refuses
// to replace an identity that is there.
func CreateIdentity(dir string) (*Identity, error) { return createIdentityFile(dir, IdentityFile) }

// CreateNextIdentity makes the identity the door rotates to, in
// NextIdentityFile, durably; it refuses to replace one that is there.
func CreateNextIdentity(dir string) (*Identity, error) {
	return createIdentityFile(dir, NextIdentityFile)
}

// LoadNextIdentity reads the identity the door rotates to (ErrNoIdentity
// when there is none), with LoadIdentity's checks.
func LoadNextIdentity(dir string) (*Identity, error) { return loadIdentityFile(dir, NextIdentityFile) }

// PromoteIdentity makes the next identity the door's identity: the next
// file replaces the identity file in one rename, and the directory is
// synced.
func PromoteIdentity(dir string) error {
	if err := os.Rename(filepath.Join(dir, NextIdentityFile), filepath.Join(dir, IdentityFile)); err != nil {
		return fmt.Errorf("mqtt: promote the next identity: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mqtt: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mqtt: sync %s: %w", dir, err)
	}
	return nil
}

func createIdentityFile(dir, name string) (*Identity, error) {
	id, err := NewIdentity()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, name+".new-*")
	if err != nil {
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	if _, err := tmp.Write(id.marshal()); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	// A hard link fails if the name is taken, so a concurrent start
	// cannot replace an identity just made.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("mqtt: create identity: %s exists; not replaced", path)
		}
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("mqtt: create identity: %w", err)
	}
	return id, nil
}

// PublicIdentity is what a door shows of its identity.
type PublicIdentity struct {
	SignKey ed25519.PublicKey // verifies the door's signatures
	SealKey []byte            // X25519 public key that the site seals to
}

// Check refuses public keys that cannot be a door's: a weak Ed25519 key
// (see CheckPublicKey) or an X25519 key that is not 32 bytes or is a
// low-order point (with which a sealed message would not be secret).
func (p PublicIdentity) Check(name string) error {
	if err := CheckPublicKey(name+" signing key", p.SignKey); err != nil {
		return err
	}
	k, err := ecdh.X25519().NewPublicKey(p.SealKey)
	if err != nil {
		return fmt.Errorf("%s sealing key: %w", name, err)
	}
	if _, err := hpke.NewDHKEMPublicKey(k); err != nil {
		return fmt.Errorf("%s sealing key: %w", name, err)
	}
	// A low-order X25519 point makes every shared secret predictable:
	// an exchange with any key gives the all-zero output, which ecdh
	// refuses.
	probe, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("%s sealing key: %w", name, err)
	}
	if _, err := probe.ECDH(k); err != nil {
		return fmt.Errorf("%s sealing key: a low-order X25519 point", name)
	}
	return nil
}

// Fingerprint is the short form of the public identity that an installer
// reads out and an admin compares before approving the door: the first 20
// bytes of SHA-256 over a context string and both public keys, in base32
// groups of four (XXXX-XXXX-…, 8 groups).
func (p PublicIdentity) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(fingerprintContext))
	h.Write(p.SignKey)
	h.Write(p.SealKey)
	s := base32.StdEncoding.EncodeToString(h.Sum(nil)[:20])
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, "-")
}

// String renders the public identity as latchd -show-identity prints it.
func (p PublicIdentity) String() string {
	return fmt.Sprintf("fingerprint %s\nsigning key (Ed25519) %s\nsealing key (X25519, HPKE) %s",
		p.Fingerprint(), base64.StdEncoding.EncodeToString(p.SignKey), base64.StdEncoding.EncodeToString(p.SealKey))
}

// SealTo seals plaintext to the door whose public identity is p, with
// info bound to it (for example the topic and sequence it is sent under):
// only that door can open it, and only with the same info.
func SealTo(p PublicIdentity, info, plaintext []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPublicKey(p.SealKey)
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal: %w", err)
	}
	ct, err := hpke.Seal(pk, sealKDF, sealAEAD, info, plaintext)
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal: %w", err)
	}
	return ct, nil
}

// vouchContext separates a door's word for its next identity from
// anything else its key signs.
const vouchContext = "latch door identity rotation v2\x00"

func vouchMessage(site, door string, next PublicIdentity) []byte {
	b := []byte(vouchContext)
	for _, f := range []string{site, door} {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	b = append(b, next.SignKey...)
	return append(b, next.SealKey...)
}

// Vouch signs, with the door's current key, its next identity as door of
// site: the site shows an admin a rotation the approved key asked for.
func (id *Identity) Vouch(site, door string, next PublicIdentity) string {
	return base64.StdEncoding.EncodeToString(id.Sign(vouchMessage(site, door, next)))
}

// VerifyVouch checks that key (the door's approved key) vouched for next.
func VerifyVouch(key ed25519.PublicKey, site, door string, next PublicIdentity, sig string) error {
	raw, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil {
		return fmt.Errorf("next identity: signature: %w", err)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, vouchMessage(site, door, next), raw) {
		return errors.New("next identity: the door's current key did not vouch for it")
	}
	return nil
}
