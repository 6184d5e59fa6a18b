package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"
)

// Keypad codes.
//
// A keypad code is a credential typed without a card, such as a visitor's
// one-time PIN, at a door in card-or-PIN mode. It lives in the allowlist
// as a card whose key is the code's key (CodeKey): CodeKeyLen bytes, a
// length no ISO/IEC 14443 UID has, so a code never meets a card. Its
// holder, doors, validity, schedule, flags and revocation work as a
// card's; it has no PIN of its own, since the code is the secret.
//
// The key is an argon2id derivation of the code with fixed parameters and
// a fixed salt, so the site and every door find the same key and a door
// looks a typed code up with one derivation, whatever the number of codes.
// A fixed salt means a stolen door file can be searched for its codes (a
// million 6-digit codes cost a million derivations of 32 MiB); what
// protects a code at the door is the door's bad-PIN limit, which every
// refused code counts towards, and its short validity.

// CodeKeyLen is the length of a keypad code's key in the allowlist.
const CodeKeyLen = 8

// codeSalt is the salt of every code key. Changing it orphans every code
// enrolled with it.
var codeSalt = []byte("latch keypad code v1")

// Code key derivation: DefaultPINParams' memory and passes, one lane.
const (
	codeMemoryKiB = 32 * 1024
	codeTime      = 2
)

// CodeKey returns the allowlist key of a keypad code: 4 to 12 digits, as
// for a PIN. It runs one argon2id derivation of 32 MiB.
func CodeKey(code []byte) ([]byte, error) {
	if err := checkPINFormat(code); err != nil {
		return nil, fmt.Errorf("store: code key: %w", err)
	}
	return deriveCodeKey(code), nil
}

func deriveCodeKey(code []byte) []byte {
	return argon2.IDKey(code, codeSalt, codeTime, codeMemoryKiB, 1, CodeKeyLen)
}

// IsCodeKey reports whether a card's key is a keypad code's rather than
// a card's UID.
func IsCodeKey(uid []byte) bool { return len(uid) == CodeKeyLen }

// validKeyLen says whether n is the length of an allowlist card key: a
// UID or a code key.
func validKeyLen(n int) bool { return validUIDLen(n) || n == CodeKeyLen }

// CheckCardKey refuses an allowlist card key of a length no UID or code
// key has.
func CheckCardKey(uid []byte) error {
	if !validKeyLen(len(uid)) {
		return fmt.Errorf("uid has %d bytes, want 4, 7 or 10 (or %d for a keypad code)", len(uid), CodeKeyLen)
	}
	return nil
}

// decideCode is Decide for a keypad code typed without a card at a door
// in card-or-PIN mode. It runs exactly one derivation, the code's key,
// whatever the outcome. A code is refused while the door refuses PINs
// (locked_out); an unknown code is unknown_card; a known code goes
// through every check a card does and is then granted, with no PIN
// stage. Every refused code counts towards the door's bad-PIN limit, so
// guessing codes at the keypad locks the keypad as guessing PINs does.
func (s *Store) decideCode(req Request) (Decision, error) {
	s.argonRuns.Add(1)
	var key []byte
	if checkPINFormat(req.PIN) == nil {
		key = deriveCodeKey(req.PIN)
	} else {
		// The same work for a code that cannot be one.
		deriveCodeKey([]byte("0000"))
	}
	var v cardView
	var d Decision
	var ok bool
	req.UID = key
	gen := s.names.gen.Load()
	err := s.view(func(tx *bolt.Tx) error {
		if err := s.readDoorFails(tx, &req, &v); err != nil || v.doorLocked || key == nil {
			return err
		}
		var err error
		if v, err = s.readCardView(tx, &req); err != nil || !v.found {
			return err
		}
		d, ok, err = s.checkCard(tx, &req, &v, gen)
		return err
	})
	if err != nil {
		return Decision{Outcome: Denied}, fmt.Errorf("store: decide keypad code at door %q: %w", req.Door, err)
	}
	switch {
	case v.doorLocked:
		return Decision{Outcome: Denied, Reason: ReasonLockedOut,
			Note: "keypad code: " + doorLockNote(v.doorUntil)}, nil
	case !v.found:
		return s.recordBadCode(req, Decision{Outcome: Denied, Reason: ReasonUnknownCard, Note: "no keypad code matches"})
	case !ok:
		// A known code refused (expired, not yet valid, revoked, outside
		// its schedule) counts too: to a guesser it is no different, and
		// the door answers it as any refusal.
		d.Note = joinNotes(append([]string{"keypad code"}, noteList(d.Note)...))
		return s.recordBadCode(req, d)
	}
	d.Outcome, d.Reason = Granted, ReasonGranted
	d.Note = joinNotes(append([]string{"keypad code"}, noteList(d.Note)...))
	return d, nil
}

// recordBadCode counts a refused keypad code, d, against the door's
// bad-PIN limit.
func (s *Store) recordBadCode(req Request, d Decision) (Decision, error) {
	var locked bool
	var until time.Time
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		locked, until, err = s.addDoorFail(tx, &req)
		return err
	})
	if err != nil {
		return d, fmt.Errorf("store: decide keypad code at door %q: record bad code: %w", req.Door, err)
	}
	if locked {
		d.Note = joinNotes([]string{d.Note, doorLockNote(until)})
	}
	return d, nil
}
