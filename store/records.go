package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
	"unicode/utf8"
)

// Record versions (the first byte of each stored value). Since schema 3,
// cards, holders and revocations are stored in a compact form (version 2)
// that differs from their canonical encodings, which are what the state
// hash covers; schemas 1 and 2 stored the canonical encodings themselves
// (version 1, legacyVersion), which only the migration still reads.
const (
	cardVersion   = 2
	holderVersion = 2
	revVersion    = 2
	legacyVersion = 1 // cards, holders and revocations of schemas 1 and 2
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
	if err := CheckCardKey(c.UID); err != nil {
		return err
	}
	if IsCodeKey(c.UID) && c.PINHash != "" {
		return fmt.Errorf("keypad code %X has a PIN hash; a code is its own secret", c.UID)
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
		if err := CheckCardKey(r.UID); err != nil {
			return err
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

// cardBody is the canonical encoding of a card, which the state hash
// covers (and which schemas 1 and 2 stored as record version 1):
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

// decodeCardBody decodes and checks a canonical card encoding.
func decodeCardBody(b []byte) (Card, error) {
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
		d.fail("unknown flag bits %#x", f&^knownFlagsMask)
	}
	c.Flags = flagsOf(f)
	if err := d.end(); err != nil {
		return Card{}, err
	}
	if err := checkCard(&c); err != nil {
		return Card{}, err
	}
	return c, nil
}

// flagsOf decodes the card flags in the low bits of f.
func flagsOf(f uint8) Flags {
	return Flags{CardOnly: f&flagCardOnly != 0, ExtendedUnlock: f&flagExtended != 0, LockdownOverride: f&flagOverride != 0}
}

// Bits of a stored card's first byte above the card flags: which optional
// parts follow.
const (
	recPIN        = 1 << 3 // a PIN hash
	recValidFrom  = 1 << 4 // a valid-from time
	recValidUntil = 1 << 5 // a valid-until time
	recSchedule   = 1 << 6 // weekly windows and holidays
	recHolderName = 1 << 7 // no name: the card's holder name is its holder record's
)

// Forms of a stored PIN hash.
const (
	pinStandard = 0 // parameters standardPIN: the salt and key follow
	pinExplicit = 1 // uvarint memory, time, threads; salt and key with uvarint lengths
)

// standardPIN are the parameters a stored PIN hash need not spell out:
// those of DefaultPINParams when schema 3 was made. This is part of the
// file format and does not follow later changes of DefaultPINParams.
var standardPIN = PINParams{Memory: 32 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// pin writes an argon2id hash in binary.
func (e *encoder) pin(h *phc) {
	if h.params == standardPIN {
		e.u8(pinStandard)
		e.raw(h.salt)
		e.raw(h.key)
		return
	}
	e.u8(pinExplicit)
	e.uvarint(uint64(h.params.Memory))
	e.uvarint(uint64(h.params.Time))
	e.uvarint(uint64(h.params.Threads))
	e.bytesU(h.salt)
	e.bytesU(h.key)
}

// pin reads a hash written by encoder.pin, its salt and key aliasing d.b.
// Its parameters are within bounds; an explicit form never holds the
// standard parameters (each hash has one form).
func (d *decoder) pin() phc {
	var h phc
	switch form := d.u8(); {
	case d.err != nil:
		return h
	case form == pinStandard:
		h.params = standardPIN
		h.salt = d.take(int(standardPIN.SaltLen))
		h.key = d.take(int(standardPIN.KeyLen))
	case form == pinExplicit:
		h.params.Memory = uint32(d.uvarint(maxPINMemoryKiB))
		h.params.Time = uint32(d.uvarint(maxPINTime))
		h.params.Threads = uint8(d.uvarint(maxPINThreads))
		h.salt = d.bytesU(maxSaltLen)
		h.key = d.bytesU(maxKeyLen)
		h.params.SaltLen, h.params.KeyLen = uint32(len(h.salt)), uint32(len(h.key))
		if d.err == nil && h.params == standardPIN {
			d.fail("explicit PIN hash parameters equal the standard ones")
		}
	default:
		d.fail("PIN hash form %d", form)
	}
	if d.err == nil {
		if err := h.params.check(); err != nil {
			d.fail("PIN hash: %v", err)
		}
	}
	return h
}

// getter reads a bucket: *bolt.Bucket, or a test's map.
type getter interface{ Get(key []byte) []byte }

// encodeCard returns the stored record of a checked card (version 2):
//
//	flags        uint8: card flags (1, 2, 4 as in the canonical form) and
//	             8 PIN hash, 16 valid-from, 32 valid-until, 64 schedule,
//	             128 holder name left out (it is the holder record's)
//	holder_id    uvarint length, bytes
//	holder_name  uvarint length, bytes, unless flag 128
//	pin_hash     if flag 8: uint8 form; form 0: 16-byte salt, 32-byte key
//	             (m=32768, t=2, p=1); form 1: uvarint m, t, p, then salt
//	             and key each as uvarint length and bytes
//	doors        uvarint count, each a uvarint number in the names bucket
//	             (0 is "*")
//	valid_from   if flag 16: zigzag varint Unix seconds, uvarint nanoseconds
//	valid_until  if flag 32: the same
//	schedule     if flag 64: for each weekday from Sunday uvarint count and
//	             per window uvarint from and to; uvarint count of holidays,
//	             each uvarint length and bytes
//
// The UID is the record's key. holderName is the name in the holder
// record of the card's holder ("" when there is none): a card whose
// holder name is the same leaves it out, and the holder record supplies it.
// doors are the numbers of c.Doors in the names bucket.
func encodeCard(c *Card, holderName string, doors []uint64) ([]byte, error) {
	if len(doors) != len(c.Doors) {
		return nil, fmt.Errorf("%d door numbers for %d doors", len(doors), len(c.Doors))
	}
	flags := flagsByte(c.Flags)
	var h phc
	if c.PINHash != "" {
		var err error
		if h, err = parsePHC(c.PINHash); err != nil {
			return nil, fmt.Errorf("pin hash: %w", err)
		}
		flags |= recPIN
	}
	if !c.ValidFrom.IsZero() {
		flags |= recValidFrom
	}
	if !c.ValidUntil.IsZero() {
		flags |= recValidUntil
	}
	if !scheduleEmpty(&c.Schedule) {
		flags |= recSchedule
	}
	if c.HolderName != "" && c.HolderName == holderName {
		flags |= recHolderName
	}
	e := encoder{b: make([]byte, 0, 96)}
	e.u8(cardVersion)
	e.u8(flags)
	e.strU(c.HolderID)
	if flags&recHolderName == 0 {
		e.strU(c.HolderName)
	}
	if flags&recPIN != 0 {
		e.pin(&h)
	}
	e.uvarint(uint64(len(doors)))
	for _, d := range doors {
		e.uvarint(d)
	}
	if flags&recValidFrom != 0 {
		e.timeU(c.ValidFrom)
	}
	if flags&recValidUntil != 0 {
		e.timeU(c.ValidUntil)
	}
	if flags&recSchedule != 0 {
		e.schedule(&c.Schedule)
	}
	return e.sealedFor(c.UID), nil
}

// schedule appends the stored form of a schedule (see encodeCard).
func (e *encoder) schedule(s *Schedule) {
	for _, ws := range s.Weekly {
		e.uvarint(uint64(len(ws)))
		for _, w := range ws {
			e.uvarint(uint64(w.From))
			e.uvarint(uint64(w.To))
		}
	}
	e.uvarint(uint64(len(s.Holidays)))
	for _, d := range s.Holidays {
		e.strU(d)
	}
}

// sealedFor frames a record of an allowlist bucket written into e, which
// starts with its version byte: it appends the CRC-32C of the record's
// key followed by everything written. The key is not stored in the value,
// but a record moved under another key (a damaged key) fails its check.
func (e *encoder) sealedFor(key []byte) []byte {
	return binary.BigEndian.AppendUint32(e.b, crc32.Update(crc32.Checksum(key, crcTable), crcTable, e.b))
}

// unsealFor checks a record framed by sealedFor under key and returns its
// body (aliasing rec).
func unsealFor(key, rec []byte, version byte) ([]byte, error) {
	if len(rec) < 5 {
		return nil, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(rec))
	}
	n := len(rec) - 4
	if got, want := crc32.Update(crc32.Checksum(key, crcTable), crcTable, rec[:n]), binary.BigEndian.Uint32(rec[n:]); got != want {
		return nil, fmt.Errorf("%w: record checksum %08x, stored %08x (damaged, or under another key)", ErrCorrupt, got, want)
	}
	if rec[0] != version {
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, rec[0], version)
	}
	return rec[1:n], nil
}

// cardRec is a stored card decoded without copies: its byte fields alias
// the record, so it lives no longer than the transaction that read it.
type cardRec struct {
	flags                 uint8
	holderID, name        []byte // name is nil when the holder record has it
	pin                   phc    // when flags&recPIN
	doors                 []byte // uvarint count, then each door's uvarint number
	validFrom, validUntil time.Time
	schedule              []byte // the schedule part as stored, nil without one
}

// parseCardRec decodes a stored card record (checksum, version, layout and
// field limits), without the checks of checkCard that only writing needs.
func parseCardRec(key, rec []byte) (cardRec, error) {
	body, err := unsealFor(key, rec, cardVersion)
	if err != nil {
		return cardRec{}, fmt.Errorf("card %s: %w", keyText(key), err)
	}
	var r cardRec
	d := decoder{b: body}
	r.flags = d.u8() // every bit has a meaning
	r.holderID = d.strBytesU(maxIDLen)
	if r.flags&recHolderName == 0 {
		r.name = d.strBytesU(maxNameLen)
	}
	if r.flags&recPIN != 0 {
		r.pin = d.pin()
	}
	start := d.off
	n := d.uvarint(maxDoors)
	for i := uint64(0); i < n && d.err == nil; i++ {
		d.uvarint(maxNameID)
	}
	r.doors = d.b[start:d.off]
	if r.flags&recValidFrom != 0 {
		r.validFrom = d.timeU()
	}
	if r.flags&recValidUntil != 0 {
		r.validUntil = d.timeU()
	}
	if r.flags&recSchedule != 0 {
		start := d.off
		d.skipSchedule()
		r.schedule = d.b[start:d.off]
	}
	if err := d.end(); err == nil && !validKeyLen(len(key)) {
		d.fail("key of %d bytes is not a UID", len(key))
	}
	if d.err != nil {
		return cardRec{}, corrupt("card "+keyText(key), d.err)
	}
	return r, nil
}

// skipSchedule reads past a stored schedule, checking its limits.
func (d *decoder) skipSchedule() {
	for range 7 {
		n := d.uvarint(maxWindows)
		for i := uint64(0); i < n && d.err == nil; i++ {
			d.uvarint(minutesPerDay)
			d.uvarint(minutesPerDay)
		}
	}
	n := d.uvarint(maxHolidays)
	for i := uint64(0); i < n && d.err == nil; i++ {
		d.strBytesU(len(time.DateOnly))
	}
}

// eachDoor calls fn with the number of every door id or group name of
// the card until fn returns false.
func (r *cardRec) eachDoor(fn func(id uint64) bool) {
	d := decoder{b: r.doors}
	n := d.uvarint(maxDoors)
	for i := uint64(0); i < n && d.err == nil; i++ {
		if !fn(d.uvarint(maxNameID)) {
			return
		}
	}
}

// scheduleOf decodes the stored schedule part.
func scheduleOf(b []byte) Schedule {
	var s Schedule
	if b == nil {
		return s
	}
	d := decoder{b: b}
	for day := range s.Weekly {
		n := d.uvarint(maxWindows)
		for i := uint64(0); i < n && d.err == nil; i++ {
			s.Weekly[day] = append(s.Weekly[day], Window{From: uint16(d.uvarint(minutesPerDay)), To: uint16(d.uvarint(minutesPerDay))})
		}
	}
	n := d.uvarint(maxHolidays)
	for i := uint64(0); i < n && d.err == nil; i++ {
		s.Holidays = append(s.Holidays, string(d.strBytesU(len(time.DateOnly))))
	}
	return s
}

// card builds the Card of a stored record with the given UID; holderName
// is the holder record's name, used when the record leaves its own out,
// and names the names bucket.
func (r *cardRec) card(uid []byte, holderName string, names getter) (Card, error) {
	c := Card{
		UID:        bytes.Clone(uid),
		HolderID:   string(r.holderID),
		HolderName: string(r.name),
		ValidFrom:  r.validFrom,
		ValidUntil: r.validUntil,
		Schedule:   scheduleOf(r.schedule),
		Flags:      flagsOf(r.flags),
	}
	if r.flags&recHolderName != 0 {
		c.HolderName = holderName
	}
	if r.flags&recPIN != 0 {
		c.PINHash = r.pin.String()
	}
	var err error
	r.eachDoor(func(id uint64) bool {
		var name string
		name, err = nameOf(names, id)
		c.Doors = append(c.Doors, name)
		return err == nil
	})
	return c, err
}

// cardRefs are the buckets a stored card refers to: the holders bucket
// beside it, which supplies a name the record leaves out, and the names
// bucket, which has its doors' names.
type cardRefs struct{ holders, names getter }

// decodeCard decodes and checks a stored card; key is its bucket key. The
// result re-encodes (cardBody) to the canonical form the state hash
// covers, and passes checkCard.
func decodeCard(key, rec []byte, refs cardRefs) (Card, error) {
	r, err := parseCardRec(key, rec)
	if err != nil {
		return Card{}, err
	}
	name := ""
	if r.flags&recHolderName != 0 {
		if name, err = holderNameOf(refs.holders, r.holderID); err != nil {
			return Card{}, fmt.Errorf("card %s: %w", keyText(key), err)
		}
		if name == "" {
			return Card{}, fmt.Errorf("card %s: %w: its holder name is its holder's, and holder %q has none", keyText(key), ErrCorrupt, r.holderID)
		}
	}
	c, err := r.card(key, name, refs.names)
	if err != nil {
		return Card{}, fmt.Errorf("card %s: %w", keyText(key), err)
	}
	if r.flags&recSchedule != 0 && scheduleEmpty(&c.Schedule) {
		return Card{}, fmt.Errorf("card %s: %w: an empty schedule is stored", keyText(key), ErrCorrupt)
	}
	if err := checkCard(&c); err != nil {
		return Card{}, corrupt("card "+keyText(key), err)
	}
	return c, nil
}

// holderNameOf returns the name in the holder record of id, which must
// exist.
func holderNameOf(holders getter, id []byte) (string, error) {
	v := holders.Get(id)
	if v == nil {
		return "", fmt.Errorf("%w: its holder name is its holder's, and holder %s has no record", ErrCorrupt, keyText(id))
	}
	r, err := parseHolderRec(id, v)
	if err != nil {
		return "", err
	}
	return string(r.name), nil
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

// decodeHolderBody decodes and checks a canonical holder encoding.
func decodeHolderBody(b []byte) (Holder, error) {
	d := decoder{b: b}
	h := Holder{ID: d.str(), Name: d.str(), DuressPINHash: d.str()}
	if err := d.end(); err != nil {
		return Holder{}, err
	}
	if err := checkHolder(&h); err != nil {
		return Holder{}, err
	}
	return h, nil
}

// recDuress marks a stored holder with a duress PIN hash.
const recDuress = 1

// encodeHolder returns the stored record of a checked holder (version 2):
// uint8 flags (1: a duress PIN hash follows the name), the name as uvarint
// length and bytes, and the duress hash in the binary form of a card's
// PIN. The id is the record's key.
func encodeHolder(h *Holder) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 16+len(h.Name))}
	e.u8(holderVersion)
	if h.DuressPINHash == "" {
		e.u8(0)
		e.strU(h.Name)
		return e.sealedFor([]byte(h.ID)), nil
	}
	p, err := parsePHC(h.DuressPINHash)
	if err != nil {
		return nil, fmt.Errorf("duress pin hash: %w", err)
	}
	e.u8(recDuress)
	e.strU(h.Name)
	e.pin(&p)
	return e.sealedFor([]byte(h.ID)), nil
}

// holderRec is a stored holder decoded without copies (see cardRec).
type holderRec struct {
	name      []byte
	hasDuress bool
	duress    phc
}

func parseHolderRec(key, rec []byte) (holderRec, error) {
	body, err := unsealFor(key, rec, holderVersion)
	if err != nil {
		return holderRec{}, fmt.Errorf("holder %s: %w", keyText(key), err)
	}
	var r holderRec
	d := decoder{b: body}
	f := d.u8()
	if f&^recDuress != 0 {
		d.fail("unknown flag bits %#x", f&^recDuress)
	}
	r.name = d.strBytesU(maxNameLen)
	if f&recDuress != 0 {
		r.hasDuress, r.duress = true, d.pin()
	}
	if err := d.end(); err != nil {
		return holderRec{}, corrupt("holder "+keyText(key), err)
	}
	return r, nil
}

// decodeHolder decodes and checks a stored holder; key is its bucket key.
func decodeHolder(key, rec []byte) (Holder, error) {
	r, err := parseHolderRec(key, rec)
	if err != nil {
		return Holder{}, err
	}
	h := Holder{ID: string(key), Name: string(r.name)}
	if r.hasDuress {
		h.DuressPINHash = r.duress.String()
	}
	if err := checkHolder(&h); err != nil {
		return Holder{}, corrupt("holder "+keyText(key), err)
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

// decodeRevocationBody decodes and checks a canonical revocation encoding.
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

// encodeRevocation returns the stored record of a revocation (version 2):
// the reason as uvarint length and bytes. The UID or holder id is the
// record's key, and the bucket says which.
func encodeRevocation(r *Revocation) []byte {
	e := encoder{b: make([]byte, 0, 8+len(r.Reason))}
	e.u8(revVersion)
	e.strU(r.Reason)
	return e.sealedFor(revocationKey(r))
}

func decodeRevocation(key, rec []byte, byHolder bool) (Revocation, error) {
	what := "revocation of card " + keyText(key)
	if byHolder {
		what = "revocation of holder " + keyText(key)
	}
	body, err := unsealFor(key, rec, revVersion)
	if err != nil {
		return Revocation{}, fmt.Errorf("%s: %w", what, err)
	}
	d := decoder{b: body}
	r := Revocation{Reason: string(d.strBytesU(maxNameLen))}
	if byHolder {
		r.HolderID = string(key)
	} else {
		r.UID = bytes.Clone(key)
	}
	err = d.end()
	if err == nil {
		err = checkRevocation(&r)
	}
	if err != nil {
		return Revocation{}, corrupt(what, err)
	}
	return r, nil
}

func revocationKey(r *Revocation) []byte {
	if len(r.UID) > 0 {
		return r.UID
	}
	return []byte(r.HolderID)
}

// Records of schemas 1 and 2 (version 1): the canonical encoding, sealed.
// Only the migration reads them, and tests write them.

func legacyCard(c *Card) []byte             { return seal(legacyVersion, cardBody(c)) }
func legacyHolder(h *Holder) []byte         { return seal(legacyVersion, holderBody(h)) }
func legacyRevocation(r *Revocation) []byte { return seal(legacyVersion, revocationBody(r)) }

// decodeLegacy unseals a version 1 record of the allowlist and decodes
// its canonical body with decode, which checks it; what names the record
// in errors.
func decodeLegacy[T any](what string, rec []byte, decode func([]byte) (T, error)) (T, []byte, error) {
	var zero T
	body, err := unsealVersion(rec, legacyVersion)
	if err != nil {
		return zero, nil, fmt.Errorf("%s: %w", what, err)
	}
	v, err := decode(body)
	if err != nil {
		return zero, nil, corrupt(what, err)
	}
	return v, body, nil
}

// decodeLegacyCard decodes a version 1 card and checks it is keyed by its
// UID.
func decodeLegacyCard(key, rec []byte) (Card, []byte, error) {
	c, body, err := decodeLegacy("card "+keyText(key), rec, decodeCardBody)
	if err == nil && !bytes.Equal(c.UID, key) {
		err = fmt.Errorf("card %s: %w: record holds uid %X", keyText(key), ErrCorrupt, c.UID)
	}
	return c, body, err
}

func decodeLegacyHolder(key, rec []byte) (Holder, []byte, error) {
	h, body, err := decodeLegacy("holder "+keyText(key), rec, decodeHolderBody)
	if err == nil && h.ID != string(key) {
		err = fmt.Errorf("holder %s: %w: record holds id %q", keyText(key), ErrCorrupt, h.ID)
	}
	return h, body, err
}

func decodeLegacyRevocation(key, rec []byte, byHolder bool) (Revocation, []byte, error) {
	r, body, err := decodeLegacy("revocation "+keyText(key), rec, func(b []byte) (Revocation, error) { return decodeRevocationBody(b, byHolder) })
	if err == nil && !bytes.Equal(revocationKey(&r), key) {
		err = fmt.Errorf("revocation %s: %w: record names %s", keyText(key), ErrCorrupt, keyText(revocationKey(&r)))
	}
	return r, body, err
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
