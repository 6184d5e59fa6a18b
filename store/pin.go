package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PINParams are the argon2id cost parameters of a PIN hash. They are stored
// in each hash (PHC string), so changing the defaults affects only new
// hashes.
type PINParams struct {
	Memory  uint32 // KiB of memory per hash
	Time    uint32 // passes over the memory
	Threads uint8  // lanes; 1 keeps one core free for the door on a Pi
	SaltLen uint32 // bytes of random salt, per card
	KeyLen  uint32 // bytes of derived key
}

// DefaultPINParams is the cost of a PIN hash: 32 MiB, 2 passes, 1 lane.
//
// A PIN has at most 12 digits and usually 4 to 6, so no hash cost makes an
// offline search of a stolen file hopeless; what protects PINs against
// guessing at the door is the lockout. The hash makes each offline guess
// cost 32 MiB of memory traffic, which takes away most of the advantage of
// GPUs. A check takes about 45 ms on one core of the development machine
// (BenchmarkVerifyPIN) and much longer on a door: x/crypto has no arm
// assembly, and 32-bit arm needs 1.2 billion instructions per check, 2.4
// times arm64, so at least 1.2 s on a Pi Zero and 0.2 s on a Pi 3 with a
// 64-bit system (estimates from counts by hack/argon-arm.sh: docs/pin.md).
// A check holds about twice 32 MiB at its peak, within a Pi Zero's 512 MB.
// One lane, because the door answers one person at a time.
var DefaultPINParams = PINParams{Memory: 32 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on the parameters a stored hash may carry, so a malformed or
// hostile hash cannot make a verification take unbounded memory or time.
const (
	minPINLen       = 4
	maxPINLen       = 12
	maxPINMemoryKiB = 256 * 1024
	maxPINTime      = 16
	maxPINThreads   = 16
	minSaltLen      = 8
	maxSaltLen      = 64
	minKeyLen       = 16
	maxKeyLen       = 64
)

func (p PINParams) check() error {
	switch {
	case p.Threads < 1 || p.Threads > maxPINThreads:
		return fmt.Errorf("argon2id threads %d out of 1..%d", p.Threads, maxPINThreads)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxPINMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB out of %d..%d", p.Memory, 8*uint32(p.Threads), maxPINMemoryKiB)
	case p.Time < 1 || p.Time > maxPINTime:
		return fmt.Errorf("argon2id time %d out of 1..%d", p.Time, maxPINTime)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("salt length %d out of %d..%d", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("key length %d out of %d..%d", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// phc is a decoded PHC string.
type phc struct {
	params PINParams
	salt   []byte
	key    []byte
}

// String encodes the hash as $argon2id$v=19$m=M,t=T,p=P$salt$key with
// unpadded standard base64.
func (h phc) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.Memory, h.params.Time, h.params.Threads,
		base64.RawStdEncoding.EncodeToString(h.salt), base64.RawStdEncoding.EncodeToString(h.key))
}

// parsePHC decodes an argon2id PHC string strictly: exactly the form
// String writes, parameters within bounds, canonical decimal and base64.
func parsePHC(s string) (phc, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return phc{}, fmt.Errorf("not a PHC string of 5 fields")
	}
	if parts[1] != "argon2id" {
		return phc{}, fmt.Errorf("algorithm %q, want argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return phc{}, fmt.Errorf("version field %q, want v=%d", parts[2], argon2.Version)
	}
	ps := strings.Split(parts[3], ",")
	if len(ps) != 3 {
		return phc{}, fmt.Errorf("parameters %q, want the form m=M,t=T,p=P", parts[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(ps[i], name)
		if !ok {
			return phc{}, fmt.Errorf("parameter %d is %q, want it to start with %s", i+1, ps[i], name)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != v {
			return phc{}, fmt.Errorf("parameter %q is not a canonical decimal", ps[i])
		}
		vals[i] = n
	}
	if vals[2] > maxPINThreads {
		return phc{}, fmt.Errorf("argon2id threads %d out of 1..%d", vals[2], maxPINThreads)
	}
	// The base64 decoder skips CR and LF, even when strict; a hash has
	// neither. It refuses every other character outside base64 itself.
	if strings.ContainsAny(parts[4], "\r\n") || strings.ContainsAny(parts[5], "\r\n") {
		return phc{}, fmt.Errorf("salt or hash has a line break")
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil {
		return phc{}, fmt.Errorf("salt: %w", err)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return phc{}, fmt.Errorf("hash: %w", err)
	}
	h := phc{
		params: PINParams{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2]),
			SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))},
		salt: salt,
		key:  key,
	}
	if err := h.params.check(); err != nil {
		return phc{}, err
	}
	return h, nil
}

// derive runs argon2id over pin with the hash's salt and parameters.
func (h phc) derive(pin []byte) []byte {
	return argon2.IDKey(pin, h.salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
}

// matches derives the key for pin and compares it in constant time.
func (h phc) matches(pin []byte) bool {
	return subtle.ConstantTimeCompare(h.derive(pin), h.key) == 1
}

// checkPINFormat says whether pin is 4 to 12 ASCII digits.
func checkPINFormat(pin []byte) error {
	if len(pin) < minPINLen || len(pin) > maxPINLen {
		return fmt.Errorf("%w: a PIN has %d to %d digits, this one %d", ErrInvalidPIN, minPINLen, maxPINLen, len(pin))
	}
	for _, c := range pin {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: a PIN has only the digits 0-9", ErrInvalidPIN)
		}
	}
	return nil
}

// uidRenderings are the ways a card's UID is commonly printed or read out:
// hex in reader byte order and reversed, and the decimal value of the bytes
// read big-endian and little-endian (the number printed on many cards).
func uidRenderings(uid []byte) []string {
	rev := make([]byte, len(uid))
	for i, b := range uid {
		rev[len(uid)-1-i] = b
	}
	return []string{
		fmt.Sprintf("%X", uid),
		fmt.Sprintf("%X", rev),
		new(big.Int).SetBytes(uid).String(),
		new(big.Int).SetBytes(rev).String(),
	}
}

// HashPIN checks a PIN against the enrolment rules and returns its argon2id
// hash as a PHC string with a fresh random salt. The rules: 4 to 12 digits,
// and not a prefix or suffix of the card's UID written in hex or in decimal
// (either byte order), since a UID is readable by anyone near the card. For
// a holder's duress PIN, which belongs to no card, pass a nil uid.
func HashPIN(pin []byte, uid []byte, p PINParams) (string, error) {
	if err := p.check(); err != nil {
		return "", fmt.Errorf("store: hash pin: %w: %w", ErrInvalidArgument, err)
	}
	if err := checkPINFormat(pin); err != nil {
		return "", fmt.Errorf("store: hash pin: %w", err)
	}
	if len(uid) > 0 {
		for _, r := range uidRenderings(uid) {
			if strings.HasPrefix(r, string(pin)) || strings.HasSuffix(r, string(pin)) {
				return "", fmt.Errorf("store: hash pin: %w: the PIN is part of the card's UID", ErrInvalidPIN)
			}
		}
	}
	h, err := HashSecret(pin, p)
	if err != nil {
		return "", fmt.Errorf("store: hash pin: %w", err)
	}
	return h, nil
}

// HashSecret returns an argon2id PHC hash of any secret with a fresh random
// salt, without HashPIN's rules on what a PIN may be: the site hashes its
// console passwords with it. VerifyPIN checks a secret against it.
func HashSecret(secret []byte, p PINParams) (string, error) {
	if err := p.check(); err != nil {
		return "", fmt.Errorf("store: hash secret: %w: %w", ErrInvalidArgument, err)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("store: hash secret: salt: %w", err)
	}
	h := phc{params: p, salt: salt}
	h.key = h.derive(secret)
	return h.String(), nil
}

// VerifyPIN reports whether pin matches a PHC hash made by HashPIN (or a
// secret one made by HashSecret). It runs
// one argon2id derivation and compares in constant time. An unparseable
// hash is an error.
func VerifyPIN(hash string, pin []byte) (bool, error) {
	h, err := parsePHC(hash)
	if err != nil {
		return false, fmt.Errorf("store: verify pin: %w", err)
	}
	return h.matches(pin), nil
}
