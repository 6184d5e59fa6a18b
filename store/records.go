package store

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"time"
	"unicode/utf8"
)

// Record versions (the first byte of each stored value).
const (
	cardVersion   = 1
	holderVersion = 1
	revVersion    = 1
	smallVersion  = 1 // lockout, door failures, commands, heads, scalars, door state
	eventVersion  = 1
)

// Limits on allowlist fields, so that every record fits the encoding and a
// hostile or broken message cannot make one absurdly large.
const (
	maxIDLen       = 255  // holder ids, door ids and group names
	maxNameLen     = 1024 // holder names and revocation reasons
	maxDoors       = 256
	maxWindows     = 48 // per weekday
	maxHolidays    = 1024
	maxPINHashLen  = 512
	minutesPerDay  = 24 * 60
	flagCardOnly   = 1 << 0
	flagExtended   = 1 << 1
	flagOverride   = 1 << 2
	knownFlagsMask = flagCardOnly | flagExtended | flagOverride
)

// Tags of the canonical allowlist entries hashed into the state hash.
const (
	tagCard          = 1
	tagHolder        = 2
	tagRevokedCard   = 3
	tagRevokedHolder = 4
)

// keyText shows a bucket key in an error: text if it is short printable
// UTF-8, else hex; cut after 32 bytes (a damaged file can hold huge keys).
func keyText(k []byte) string {
	cut := ""
	if len(k) > 32 {
		k, cut = k[:32], fmt.Sprintf("... (%d bytes)", len(k))
	}
	if utf8.Valid(k) && checkID("key", string(k)) == nil {
		return fmt.Sprintf("%q%s", k, cut)
	}
	return fmt.Sprintf("%X%s", k, cut)
}

func validUIDLen(n int) bool { return n == 4 || n == 7 || n == 10 }

func checkID(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxIDLen:
		return fmt.Errorf("%s has %d bytes, limit %d", what, len(s), maxIDLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q has a control character", what, s)
		}
	}
	return nil
}

func checkText(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s has %d bytes, limit %d", what, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", what)
	}
	return nil
}

func checkTime(what string, t time.Time) error {
	if s := t.Unix(); s < minUnix || s > maxUnix {
		return fmt.Errorf("%s %v is out of range", what, t)
	}
	return nil
}

// checkCard validates a card's fields; used on input and after decoding.
func checkCard(c *Card) error {
	if !validUIDLen(len(c.UID)) {
		return fmt.Errorf("uid has %d bytes, want 4, 7 or 10", len(c.UID))
	}
	if err := checkID("holder id", c.HolderID); err != nil {
		return err
	}
	if err := checkText("holder name", c.HolderName, maxNameLen); err != nil {
		return err
	}
	if c.PINHash != "" {
		if len(c.PINHash) > maxPINHashLen {
			return fmt.Errorf("pin hash has %d bytes, limit %d", len(c.PINHash), maxPINHashLen)
		}
		if _, err := parsePHC(c.PINHash); err != nil {
			return fmt.Errorf("pin hash: %w", err)
		}
	}
	if len(c.Doors) > maxDoors {
		return fmt.Errorf("card lists %d doors, limit %d", len(c.Doors), maxDoors)
	}
	for i, d := range c.Doors {
		if err := checkID(fmt.Sprintf("door %d", i), d); err != nil {
			return err
		}
	}
	if err := checkTime("valid_from", c.ValidFrom); err != nil {
		return err
	}
	if err := checkTime("valid_until", c.ValidUntil); err != nil {
		return err
	}
	if !c.ValidFrom.IsZero() && !c.ValidUntil.IsZero() && !c.ValidFrom.Before(c.ValidUntil) {
		return fmt.Errorf("valid_from %s is not before valid_until %s",
			c.ValidFrom.UTC().Format(time.RFC3339), c.ValidUntil.UTC().Format(time.RFC3339))
	}
	return checkSchedule(&c.Schedule)
}

func checkSchedule(s *Schedule) error {
	for day, ws := range s.Weekly {
		if len(ws) > maxWindows {
			return fmt.Errorf("%s has %d windows, limit %d", time.Weekday(day), len(ws), maxWindows)
		}
		for _, w := range ws {
			if w.From >= w.To || w.To > minutesPerDay {
				return fmt.Errorf("%s window %d-%d: want 0 <= from < to <= 1440 minutes", time.Weekday(day), w.From, w.To)
			}
		}
	}
	if len(s.Holidays) > maxHolidays {
		return fmt.Errorf("%d holidays, limit %d", len(s.Holidays), maxHolidays)
	}
	for _, h := range s.Holidays {
		t, err := time.Parse(time.DateOnly, h)
		if err != nil || t.Format(time.DateOnly) != h {
			return fmt.Errorf("holiday %q is not a YYYY-MM-DD date", h)
		}
	}
	return nil
}

func checkHolder(h *Holder) error {
	if err := checkID("holder id", h.ID); err != nil {
		return err
	}
	if err := checkText("holder name", h.Name, maxNameLen); err != nil {
		return err
	}
	if h.DuressPINHash != "" {
		if len(h.DuressPINHash) > maxPINHashLen {
			return fmt.Errorf("duress pin hash has %d bytes, limit %d", len(h.DuressPINHash), maxPINHashLen)
		}
		if _, err := parsePHC(h.DuressPINHash); err != nil {
			return fmt.Errorf("duress pin hash: %w", err)
		}
	}
	return nil
}

// checkRevocation validates a revocation: exactly one of UID and HolderID.
func checkRevocation(r *Revocation) error {
	switch {
	case len(r.UID) > 0 && r.HolderID != "":
		return fmt.Errorf("revocation names both uid %X and holder %q; want one", r.UID, r.HolderID)
	case len(r.UID) > 0:
		if !validUIDLen(len(r.UID)) {
			return fmt.Errorf("uid has %d bytes, want 4, 7 or 10", len(r.UID))
		}
	case r.HolderID != "":
		if err := checkID("holder id", r.HolderID); err != nil {
			return err
		}
	default:
		return fmt.Errorf("revocation names neither a uid nor a holder")
	}
	return checkText("reason", r.Reason, maxNameLen)
}

func flagsByte(f Flags) uint8 {
	var b uint8
	if f.CardOnly {
		b |= flagCardOnly
	}
	if f.ExtendedUnlock {
		b |= flagExtended
	}
	if f.LockdownOverride {
		b |= flagOverride
	}
	return b
}

// cardBody is the canonical encoding of a card (record version 1 body):
//
//	uid        uint8 length, bytes
//	holder_id  string
//	holder_name string
//	pin_hash   string (PHC, may be empty)
//	doors      uint16 count, strings
//	valid_from time, valid_until time
//	weekly     7 x (uint8 count, count x (uint16 from, uint16 to)), Sunday first
//	holidays   uint16 count, strings (YYYY-MM-DD)
//	flags      uint8: 1 card-only, 2 extended unlock, 4 lockdown override
func cardBody(c *Card) []byte {
	e := encoder{b: make([]byte, 0, 64+len(c.PINHash))}
	e.short(c.UID)
	e.str(c.HolderID)
	e.str(c.HolderName)
	e.str(c.PINHash)
	e.u16(uint16(len(c.Doors)))
	for _, d := range c.Doors {
		e.str(d)
	}
	e.time(c.ValidFrom)
	e.time(c.ValidUntil)
	for _, ws := range c.Schedule.Weekly {
		e.u8(uint8(len(ws)))
		for _, w := range ws {
			e.u16(w.From)
			e.u16(w.To)
		}
	}
	e.u16(uint16(len(c.Schedule.Holidays)))
	for _, h := range c.Schedule.Holidays {
		e.str(h)
	}
	e.u8(flagsByte(c.Flags))
	return e.b
}

func decodeCardBody(b []byte) (Card, error) {
	c, err := parseCardBody(b)
	if err != nil {
		return Card{}, err
	}
	if err := checkCard(&c); err != nil {
		return Card{}, err
	}
	return c, nil
}

// parseCardBody decodes a card without checkCard: for Decide, which reads
// records checked when they were written and sealed with a CRC, and need
// not parse the PIN hash of every card it looks up.
func parseCardBody(b []byte) (Card, error) {
	d := decoder{b: b}
	var c Card
	c.UID = d.short()
	c.HolderID = d.str()
	c.HolderName = d.str()
	c.PINHash = d.str()
	if n := int(d.u16()); n > 0 && d.err == nil {
		if n > maxDoors {
			d.fail("%d doors, limit %d", n, maxDoors)
		}
		for i := 0; i < n && d.err == nil; i++ {
			c.Doors = append(c.Doors, d.str())
		}
	}
	c.ValidFrom = d.time()
	c.ValidUntil = d.time()
	for day := range c.Schedule.Weekly {
		n := int(d.u8())
		if n > maxWindows {
			d.fail("%d windows on day %d, limit %d", n, day, maxWindows)
		}
		for i := 0; i < n && d.err == nil; i++ {
			c.Schedule.Weekly[day] = append(c.Schedule.Weekly[day], Window{From: d.u16(), To: d.u16()})
		}
	}
	if n := int(d.u16()); n > 0 && d.err == nil {
		if n > maxHolidays {
			d.fail("%d holidays, limit %d", n, maxHolidays)
		}
		for i := 0; i < n && d.err == nil; i++ {
			c.Schedule.Holidays = append(c.Schedule.Holidays, d.str())
		}
	}
	f := d.u8()
	if f&^knownFlagsMask != 0 {
		d.fail("unknown flag bits %#x", f)
	}
	c.Flags = Flags{CardOnly: f&flagCardOnly != 0, ExtendedUnlock: f&flagExtended != 0, LockdownOverride: f&flagOverride != 0}
	if err := d.end(); err != nil {
		return Card{}, err
	}
	return c, nil
}

func encodeCard(c *Card) []byte { return seal(cardVersion, cardBody(c)) }

// decodeCard decodes a stored card record; key is its bucket key.
func decodeCard(key, rec []byte) (Card, error) { return readCard(key, rec, decodeCardBody) }

// decideCard is decodeCard without checkCard (see parseCardBody).
func decideCard(key, rec []byte) (Card, error) { return readCard(key, rec, parseCardBody) }

func readCard(key, rec []byte, decodeBody func([]byte) (Card, error)) (Card, error) {
	body, err := unsealVersion(rec, cardVersion)
	if err != nil {
		return Card{}, fmt.Errorf("card %s: %w", keyText(key), err)
	}
	c, err := decodeBody(body)
	if err != nil {
		return Card{}, corrupt("card "+keyText(key), err)
	}
	if !bytes.Equal(c.UID, key) {
		return Card{}, fmt.Errorf("card %s: %w: record holds uid %X", keyText(key), ErrCorrupt, c.UID)
	}
	return c, nil
}

// holderBody is the canonical encoding of a holder: id, name and duress
// PIN hash as strings.
func holderBody(h *Holder) []byte {
	e := encoder{}
	e.str(h.ID)
	e.str(h.Name)
	e.str(h.DuressPINHash)
	return e.b
}

func decodeHolderBody(b []byte) (Holder, error) {
	h, err := parseHolderBody(b)
	if err != nil {
		return Holder{}, err
	}
	if err := checkHolder(&h); err != nil {
		return Holder{}, err
	}
	return h, nil
}

// parseHolderBody decodes a holder without checkHolder (see parseCardBody).
func parseHolderBody(b []byte) (Holder, error) {
	d := decoder{b: b}
	h := Holder{ID: d.str(), Name: d.str(), DuressPINHash: d.str()}
	if err := d.end(); err != nil {
		return Holder{}, err
	}
	return h, nil
}

func encodeHolder(h *Holder) []byte { return seal(holderVersion, holderBody(h)) }

func decodeHolder(key, rec []byte) (Holder, error) { return readHolder(key, rec, decodeHolderBody) }

// decideHolder is decodeHolder without checkHolder (see parseCardBody).
func decideHolder(key, rec []byte) (Holder, error) { return readHolder(key, rec, parseHolderBody) }

func readHolder(key, rec []byte, decodeBody func([]byte) (Holder, error)) (Holder, error) {
	body, err := unsealVersion(rec, holderVersion)
	if err != nil {
		return Holder{}, fmt.Errorf("holder %s: %w", keyText(key), err)
	}
	h, err := decodeBody(body)
	if err != nil {
		return Holder{}, corrupt("holder "+keyText(key), err)
	}
	if h.ID != string(key) {
		return Holder{}, fmt.Errorf("holder %s: %w: record holds id %q", keyText(key), ErrCorrupt, h.ID)
	}
	return h, nil
}

// revocationBody is the canonical encoding of a revocation: for a card,
// the uid (uint8 length, bytes) then the reason string; for a holder, the
// holder id string then the reason string. Which one it is follows from
// the bucket (or the entry tag when hashed).
func revocationBody(r *Revocation) []byte {
	e := encoder{}
	if len(r.UID) > 0 {
		e.short(r.UID)
	} else {
		e.str(r.HolderID)
	}
	e.str(r.Reason)
	return e.b
}

func decodeRevocationBody(b []byte, byHolder bool) (Revocation, error) {
	d := decoder{b: b}
	var r Revocation
	if byHolder {
		r.HolderID = d.str()
	} else {
		r.UID = d.short()
	}
	r.Reason = d.str()
	if err := d.end(); err != nil {
		return Revocation{}, err
	}
	if err := checkRevocation(&r); err != nil {
		return Revocation{}, err
	}
	return r, nil
}

func encodeRevocation(r *Revocation) []byte { return seal(revVersion, revocationBody(r)) }

func decodeRevocation(key, rec []byte, byHolder bool) (Revocation, error) {
	what := "revocation of card " + keyText(key)
	if byHolder {
		what = "revocation of holder " + keyText(key)
	}
	body, err := unsealVersion(rec, revVersion)
	if err != nil {
		return Revocation{}, fmt.Errorf("%s: %w", what, err)
	}
	r, err := decodeRevocationBody(body, byHolder)
	if err != nil {
		return Revocation{}, corrupt(what, err)
	}
	if subject := revocationKey(&r); !bytes.Equal(subject, key) {
		return Revocation{}, fmt.Errorf("%s: %w: record names %s", what, ErrCorrupt, keyText(subject))
	}
	return r, nil
}

func revocationKey(r *Revocation) []byte {
	if len(r.UID) > 0 {
		return r.UID
	}
	return []byte(r.HolderID)
}

// entryHash is the SHA-256 of one canonical allowlist entry: its tag byte
// followed by its canonical body.
func entryHash(tag byte, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{tag})
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// lockoutRec is a card's bad-PIN state.
type lockoutRec struct {
	Fails uint32    // consecutive bad PINs
	Until time.Time // locked out before this instant
}

func encodeLockout(l lockoutRec) []byte {
	e := encoder{}
	e.u32(l.Fails)
	e.time(l.Until)
	return seal(smallVersion, e.b)
}

func decodeLockout(rec []byte) (lockoutRec, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return lockoutRec{}, err
	}
	d := decoder{b: body}
	l := lockoutRec{Fails: d.u32(), Until: d.time()}
	return l, corrupt("lockout", d.end())
}

// maxDoorFails bounds the bad-PIN history kept per door.
const maxDoorFails = 1000

func encodeTimes(ts []time.Time) []byte {
	e := encoder{}
	e.u16(uint16(len(ts)))
	for _, t := range ts {
		e.time(t)
	}
	return seal(smallVersion, e.b)
}

func decodeTimes(rec []byte) ([]time.Time, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return nil, err
	}
	d := decoder{b: body}
	n := int(d.u16())
	if n > maxDoorFails {
		d.fail("%d times, limit %d", n, maxDoorFails)
	}
	var ts []time.Time
	for i := 0; i < n && d.err == nil; i++ {
		ts = append(ts, d.time())
	}
	if err := d.end(); err != nil {
		return nil, corrupt("door bad-PIN history", err)
	}
	return ts, nil
}

// commandRec remembers a command id until it expires.
type commandRec struct {
	Seq     uint64
	Expires time.Time
}

func encodeCommand(c commandRec) []byte {
	e := encoder{}
	e.u64(c.Seq)
	e.time(c.Expires)
	return seal(smallVersion, e.b)
}

func decodeCommand(rec []byte) (commandRec, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return commandRec{}, err
	}
	d := decoder{b: body}
	c := commandRec{Seq: d.u64(), Expires: d.time()}
	return c, corrupt("command", d.end())
}

// chainPoint is a position in the audit chain: a sequence and the hash of
// the entry there (the head, or the checkpoint of pruned entries).
type chainPoint struct {
	Seq  uint64
	Hash [32]byte
}

func encodePoint(p chainPoint) []byte {
	e := encoder{}
	e.u64(p.Seq)
	e.raw(p.Hash[:])
	return seal(smallVersion, e.b)
}

func decodePoint(rec []byte) (chainPoint, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return chainPoint{}, err
	}
	d := decoder{b: body}
	p := chainPoint{Seq: d.u64()}
	copy(p.Hash[:], d.take(32))
	return p, corrupt("chain point", d.end())
}

func encodeU64(v uint64) []byte {
	e := encoder{}
	e.u64(v)
	return seal(smallVersion, e.b)
}

func decodeU64(rec []byte) (uint64, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return 0, err
	}
	d := decoder{b: body}
	v := d.u64()
	return v, corrupt("integer", d.end())
}

func encodeTime(t time.Time) []byte {
	e := encoder{}
	e.time(t)
	return seal(smallVersion, e.b)
}

func decodeTime(rec []byte) (time.Time, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return time.Time{}, err
	}
	d := decoder{b: body}
	t := d.time()
	return t, corrupt("time", d.end())
}

func encodeBytes(b []byte) []byte { return seal(smallVersion, b) }

func decodeBytes(rec []byte) ([]byte, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, body...), nil
}

func encodeBool(v bool) []byte {
	if v {
		return seal(smallVersion, []byte{1})
	}
	return seal(smallVersion, []byte{0})
}

func decodeBool(rec []byte) (bool, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return false, err
	}
	if len(body) != 1 || body[0] > 1 {
		return false, fmt.Errorf("%w: flag record of %d bytes", ErrCorrupt, len(body))
	}
	return body[0] == 1, nil
}
