package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const visitorCode = "583017"

// codeReq is a keypad code typed without a card at the front door.
func codeReq(code string, mode Mode, now time.Time) Request {
	return Request{PIN: []byte(code), Door: "front", DoorGroups: []string{"building-a"}, Mode: mode, Now: now, ClockTrusted: true}
}

// A keypad code is judged as a card: granted in card-or-PIN mode within
// its validity at its doors, refused outside them or once revoked, and
// never in another mode or as a card's UID. Every decision on a code runs
// exactly one derivation.
func TestDecideCode(t *testing.T) {
	opts := testOptions()
	opts.Lockout.DoorMaxBadPINs = 3
	s := openTest(t, opts)
	key, err := CodeKey([]byte(visitorCode))
	mustDo(t, err)
	if len(key) != CodeKeyLen || !IsCodeKey(key) {
		t.Fatalf("CodeKey: %X", key)
	}
	if again, _ := CodeKey([]byte(visitorCode)); !bytes.Equal(again, key) {
		t.Fatalf("CodeKey is not deterministic: %X, %X", key, again)
	}
	if _, err := CodeKey([]byte("12a4")); !errors.Is(err, ErrInvalidPIN) {
		t.Fatalf("CodeKey of a non-digit code: %v", err)
	}
	until := testEpoch.Add(time.Hour)
	mustDo(t, s.PutHolder(Holder{ID: "vic", Name: "Vic Visitor"}))
	enrol(t, s, key, "vic", "", func(c *Card) { c.HolderName = ""; c.ValidUntil = until })

	runs := s.PINChecks()
	check := func(what string, req Request, out Outcome, r Reason, note string) {
		t.Helper()
		d := decide(t, s, req)
		expect(t, what, d, out, r)
		if !strings.Contains(d.Note, note) {
			t.Errorf("%s: note %q, want it to say %q", what, d.Note, note)
		}
		if n := s.PINChecks() - runs; n != 1 {
			t.Errorf("%s: %d derivations, want 1", what, n)
		}
		runs = s.PINChecks()
	}
	d := decide(t, s, codeReq(visitorCode, ModeCardOrPIN, testEpoch))
	expect(t, "the code", d, Granted, ReasonGranted)
	if d.HolderID != "vic" || d.HolderName != "Vic Visitor" || d.Note != "keypad code" {
		t.Errorf("the code's decision: %+v", d)
	}
	runs = s.PINChecks()
	check("the code in card+PIN mode", codeReq(visitorCode, ModeCardPIN, testEpoch), Denied, ReasonUnknownCard, "only in card-or-pin mode")

	// The key read as a card's UID is refused.
	expect(t, "the key as a card", decide(t, s, cardReq(key, ModeCardOrPIN, testEpoch)), Denied, ReasonUnknownCard)

	// Refused codes count towards the door's bad-PIN limit (3 here): the
	// third locks the keypad, and then the right code is refused too,
	// until the oldest failure is out of the door's window (10 minutes).
	check("a code that cannot be one", codeReq("12", ModeCardOrPIN, testEpoch), Denied, ReasonUnknownCard, "no keypad code matches")
	now := testEpoch.Add(time.Minute)
	check("an unknown code", codeReq("111111", ModeCardOrPIN, now), Denied, ReasonUnknownCard, "no keypad code matches")
	check("another unknown code", codeReq("222222", ModeCardOrPIN, now), Denied, ReasonUnknownCard, "PINs refused until 2026-03-02T09:40:00Z")
	check("the code while the keypad is locked", codeReq(visitorCode, ModeCardOrPIN, now), Denied, ReasonLockedOut, "keypad code: too many bad PINs")
	check("the code after the door's window", codeReq(visitorCode, ModeCardOrPIN, now.Add(10*time.Minute)), Granted, ReasonGranted, "keypad code")

	// The code at another door: refused there (that door's own count).
	other := codeReq(visitorCode, ModeCardOrPIN, until.Add(-time.Minute))
	other.Door, other.DoorGroups = "back", nil
	check("the code at another door", other, Denied, ReasonWrongDoor, "keypad code")

	// A known code refused counts too: past its window, the third try
	// locks the keypad.
	check("the code, after its window", codeReq(visitorCode, ModeCardOrPIN, until), Denied, ReasonExpired, "keypad code")
	check("the code, after its window again", codeReq(visitorCode, ModeCardOrPIN, until), Denied, ReasonExpired, "keypad code")
	check("the code, after its window a third time", codeReq(visitorCode, ModeCardOrPIN, until), Denied, ReasonExpired, "PINs refused until")

	// Revoked like a card.
	mustDo(t, s.Revoke(Revocation{UID: key}))
	check("the code revoked", codeReq(visitorCode, ModeCardOrPIN, until.Add(time.Hour)), Denied, ReasonRevoked, "keypad code")
}

// A code has no PIN of its own, and keys of other lengths are refused.
func TestCodeRecordRules(t *testing.T) {
	s := openTest(t, nil)
	key, err := CodeKey([]byte(visitorCode))
	mustDo(t, err)
	h, err := HashSecret([]byte("1234"), fastPIN)
	mustDo(t, err)
	err = s.PutCard(Card{UID: key, HolderID: "vic", PINHash: h, Doors: []string{"front"}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "a code is its own secret") {
		t.Fatalf("a code with a PIN hash: %v", err)
	}
	err = s.PutCard(Card{UID: make([]byte, 9), HolderID: "vic", Doors: []string{"front"}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "want 4, 7 or 10 (or 8 for a keypad code)") {
		t.Fatalf("a 9-byte key: %v", err)
	}
	if err := CheckOp(&Op{Kind: OpRevokeCard, UID: key}); err != nil {
		t.Fatalf("revoking a code: %v", err)
	}
}
