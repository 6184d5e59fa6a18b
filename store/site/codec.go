package site

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"time"
	"unicode/utf8"

	"github.com/latchdoor/latch/store"
)

// recordVersion is the version byte of every sealed value of schema 1.
const recordVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// seal frames a body: version byte, body, CRC-32C of both, big-endian.
func seal(body []byte) []byte {
	out := make([]byte, 0, len(body)+5)
	out = append(out, recordVersion)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

// unseal checks a sealed value and returns its body (aliasing rec).
func unseal(rec []byte) ([]byte, error) {
	if len(rec) < 5 {
		return nil, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(rec))
	}
	n := len(rec) - 4
	if got, want := crc32.Checksum(rec[:n], crcTable), binary.BigEndian.Uint32(rec[n:]); got != want {
		return nil, fmt.Errorf("%w: record checksum %08x, stored %08x", ErrCorrupt, got, want)
	}
	if rec[0] != recordVersion {
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, rec[0], recordVersion)
	}
	return rec[1:n], nil
}

func encodeU64(v uint64) []byte { return seal(binary.BigEndian.AppendUint64(nil, v)) }

func decodeU64(rec []byte) (uint64, error) {
	b, err := unseal(rec)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: integer of %d bytes", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return seal(b), nil
}

// decodeJSON unseals rec and decodes its JSON body into v, strictly.
func decodeJSON(rec []byte, v any) error {
	b, err := unseal(rec)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// doorKey is uint8 length and the door id; ids are 1 to 255 bytes.
func doorKey(door string) []byte {
	return append([]byte{uint8(len(door))}, door...)
}

// eventKey is the events (and heads) key of a door's seq.
func eventKey(door string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(doorKey(door), seq)
}

// splitEventKey returns the door and seq of an events or heads key.
func splitEventKey(k []byte) (string, uint64, bool) {
	if len(k) < 1+1+8 || int(k[0]) != len(k)-9 {
		return "", 0, false
	}
	return string(k[1 : len(k)-8]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// timeKey is a time that sorts: uint64 Unix seconds + 2^63, uint32 ns.
func timeKey(t time.Time) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// labelKey is uint16 length and s: the prefix of the holder and UID
// indexes.
func labelKey(s string) []byte {
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(s)), uint16(len(s))), s...)
}

// checkDoorID checks a door id for keys: 1 to 255 bytes of UTF-8 without
// control characters.
func checkDoorID(door string) error {
	return checkID("door id", door)
}

func checkID(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(s) > 255:
		return fmt.Errorf("%w: %s has %d bytes, limit 255", ErrInvalid, what, len(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q has a control character", ErrInvalid, what, s)
		}
	}
	return nil
}

// encodeEvent is the stored form of an event whose Prev and Hash are 64
// hex digits (see the package comment).
func encodeEvent(e *store.Event) ([]byte, error) {
	prev, err := hex.DecodeString(e.Prev)
	if err != nil || len(prev) != 32 {
		return nil, fmt.Errorf("%w: prev is not 64 hex digits", ErrInvalid)
	}
	hash, err := hex.DecodeString(e.Hash)
	if err != nil || len(hash) != 32 {
		return nil, fmt.Errorf("%w: hash is not 64 hex digits", ErrInvalid)
	}
	b := make([]byte, 0, 160+len(e.Detail))
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Time.Nanosecond()))
	for _, s := range eventStrings(e) {
		if len(s) > 0xffff {
			return nil, fmt.Errorf("%w: a field has %d bytes", ErrInvalid, len(s))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = append(b, prev...)
	b = append(b, hash...)
	return seal(b), nil
}

func eventStrings(e *store.Event) [9]string {
	return [9]string{string(e.Clock), e.BootID, e.Door, string(e.Type), string(e.Reason), e.UID, e.Holder, e.HolderName, e.Detail}
}

// decodeEvent decodes a stored event.
func decodeEvent(rec []byte) (store.Event, error) {
	b, err := unseal(rec)
	if err != nil {
		return store.Event{}, err
	}
	bad := func(what string) (store.Event, error) {
		return store.Event{}, fmt.Errorf("%w: event record: %s", ErrCorrupt, what)
	}
	if len(b) < 20 {
		return bad("cut short")
	}
	var e store.Event
	e.Seq = binary.BigEndian.Uint64(b)
	sec, nsec := int64(binary.BigEndian.Uint64(b[8:])), binary.BigEndian.Uint32(b[16:])
	if nsec >= 1e9 {
		return bad("nanoseconds out of range")
	}
	e.Time = time.Unix(sec, int64(nsec)).UTC()
	b = b[20:]
	var s [9]string
	for i := range s {
		if len(b) < 2 {
			return bad("cut short")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return bad("cut short")
		}
		s[i] = string(b[2 : 2+n])
		b = b[2+n:]
	}
	if len(b) != 64 {
		return bad(fmt.Sprintf("%d bytes of hashes, want 64", len(b)))
	}
	e.Clock, e.BootID, e.Door, e.Type, e.Reason = store.TimeQuality(s[0]), s[1], s[2], store.EventType(s[3]), store.Reason(s[4])
	e.UID, e.Holder, e.HolderName, e.Detail = s[5], s[6], s[7], s[8]
	e.Prev = hex.EncodeToString(b[:32])
	e.Hash = hex.EncodeToString(b[32:])
	return e, nil
}

func bytesU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
