package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchdoor/latch/store"
)

// maxBody is the most a request body may hold. The largest request, a
// card with its door list, is a few KiB.
const maxBody = 64 << 10

// errTooLarge is a request body over maxBody.
var errTooLarge = errors.New("request body is too large")

// decodeStrict decodes one JSON object from b into v: unknown fields,
// trailing data and bodies over maxBody are refused.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxBody {
		return fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(b), maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}

// parseUID decodes a card UID written in hex (either case, optionally
// with ':' between bytes). Its length is the site database's to judge.
func parseUID(s string) ([]byte, error) {
	h := strings.ReplaceAll(s, ":", "")
	uid, err := hex.DecodeString(h)
	if err != nil || len(uid) == 0 {
		return nil, fmt.Errorf("uid %q is not hex (like 04A1B2C3)", s)
	}
	return uid, nil
}

// checkText refuses text over max bytes, not UTF-8, or with control
// characters.
func checkText(what, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s has %d bytes, limit %d", what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", what)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s has a control character", what)
	}
	return nil
}

// holderAddReq is POST /v1/holders.
type holderAddReq struct {
	ID   string `json:"id"`             // the holder id
	Name string `json:"name,omitempty"` // display name
}

func decodeHolderAdd(b []byte) (holderAddReq, error) {
	var r holderAddReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.ID == "" {
		return r, errors.New("id is missing")
	}
	return r, checkText("name", r.Name, 255)
}

// cardAddReq is POST /v1/cards.
type cardAddReq struct {
	UID        string         `json:"uid"`                  // hex
	Holder     string         `json:"holder"`               // an existing holder's id
	Doors      []string       `json:"doors,omitempty"`      // door ids or group names
	ValidFrom  time.Time      `json:"valid_from,omitzero"`  // not valid before
	ValidUntil time.Time      `json:"valid_until,omitzero"` // not valid from then on
	Schedule   store.Schedule `json:"schedule,omitzero"`    // when it opens (empty: always)
	Flags      store.Flags    `json:"flags,omitzero"`       // per-card switches
}

// cardAdd is a checked cardAddReq.
type cardAdd struct {
	cardAddReq
	uid []byte
}

func decodeCardAdd(b []byte) (cardAdd, error) {
	var r cardAdd
	if err := decodeStrict(b, &r.cardAddReq); err != nil {
		return r, err
	}
	if r.Holder == "" {
		return r, errors.New("holder is missing")
	}
	uid, err := parseUID(r.UID)
	if err != nil {
		return r, err
	}
	r.uid = uid
	return r, nil
}

// pinSetReq is POST /v1/cards/{uid}/pin. The PIN travels only in a
// request body, never in a URL.
type pinSetReq struct {
	Holder string `json:"holder"` // the card's holder, as the admin believes
	PIN    string `json:"pin"`    // the digits
}

func decodePINSet(b []byte) (pinSetReq, error) {
	var r pinSetReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.Holder == "" {
		return r, errors.New("holder is missing")
	}
	if r.PIN == "" {
		return r, errors.New("pin is missing")
	}
	return r, nil
}

// revokeReq is POST /v1/revoke and POST /v1/reinstate: one card or one
// holder, and why.
type revokeReq struct {
	UID    string `json:"uid,omitempty"`    // hex, or
	Holder string `json:"holder,omitempty"` // a holder id
	Reason string `json:"reason,omitempty"` // why
}

// revoke is a checked revokeReq.
type revoke struct {
	revokeReq
	uid []byte
}

// decodeRevoke decodes a revocation (needReason) or a reinstatement.
func decodeRevoke(b []byte, needReason bool) (revoke, error) {
	var r revoke
	if err := decodeStrict(b, &r.revokeReq); err != nil {
		return r, err
	}
	if (r.UID == "") == (r.Holder == "") {
		return r, errors.New("name either uid or holder")
	}
	if needReason && strings.TrimSpace(r.Reason) == "" {
		return r, errors.New("reason is missing: say why, for the audit log")
	}
	if err := checkText("reason", r.Reason, 1024); err != nil {
		return r, err
	}
	if r.UID != "" {
		uid, err := parseUID(r.UID)
		if err != nil {
			return r, err
		}
		r.uid = uid
	}
	return r, nil
}
