package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
	"unicode/utf8"
)

// The byte-level encoding shared by every stored record and by the
// canonical encodings that are hashed (allowlist entries, audit entries).
// Integers are big-endian and fixed width; a string is a uint16 length and
// its UTF-8 bytes; a time is int64 Unix seconds then uint32 nanoseconds
// (the zero time.Time is seconds -62135596800, nanoseconds 0). There is one
// encoding of every value, so a decoder that accepts bytes re-encodes them
// to the same bytes.

const (
	// Unix seconds of 0001-01-01 and 9999-12-31T23:59:59, the range a
	// stored time may take.
	minUnix = -62135596800
	maxUnix = 253402300799
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) raw(b []byte) { e.b = append(e.b, b...) }

// str writes a string; callers have checked len(s) <= maxString.
func (e *encoder) str(s string) {
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}

// short writes a byte string of at most 255 bytes (UIDs).
func (e *encoder) short(b []byte) {
	e.u8(uint8(len(b)))
	e.b = append(e.b, b...)
}

// uvarint writes v as an unsigned LEB128 varint (encoding/binary).
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

// bytesU writes a byte string as a uvarint length and its bytes: the
// compact form used by stored allowlist records.
func (e *encoder) bytesU(b []byte) {
	e.uvarint(uint64(len(b)))
	e.b = append(e.b, b...)
}

// strU is bytesU for a string.
func (e *encoder) strU(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// timeU writes a time compactly: zigzag varint Unix seconds, uvarint
// nanoseconds.
func (e *encoder) timeU(t time.Time) {
	e.b = binary.AppendVarint(e.b, t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

func (e *encoder) time(t time.Time) {
	e.u64(uint64(t.Unix()))
	e.u32(uint32(t.Nanosecond()))
}

// decoder reads the encoding above. The first problem is kept in err with
// the byte offset where it was found; later reads return zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("need %d bytes, %d left", n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() uint8 {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) u16() uint16 {
	p := d.take(2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (d *decoder) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *decoder) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// uvarint reads a varint written by encoder.uvarint, at most limit.
// Only the shortest encoding is accepted, so that a record has one form.
func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n <= 0:
		d.fail("bad varint")
		return 0
	case n != uvarintLen(v):
		d.fail("varint is not in its shortest form")
		return 0
	case v > limit:
		d.fail("value %d, limit %d", v, limit)
		return 0
	}
	d.off += n
	return v
}

// uvarintLen is the length of the shortest varint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// bytesU reads a byte string written by encoder.bytesU, at most limit
// bytes, aliasing d.b.
func (d *decoder) bytesU(limit int) []byte {
	n := d.uvarint(uint64(limit))
	return d.take(int(n))
}

// strBytesU reads a string written by encoder.strU without copying it;
// it must be UTF-8.
func (d *decoder) strBytesU(limit int) []byte {
	p := d.bytesU(limit)
	if p != nil && !utf8.Valid(p) {
		d.off -= len(p)
		d.fail("string is not UTF-8")
		return nil
	}
	return p
}

// timeU reads a time written by encoder.timeU.
func (d *decoder) timeU() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	sec, n := binary.Varint(d.b[d.off:])
	if n <= 0 || n != uvarintLen(uint64(sec)<<1^uint64(sec>>63)) {
		d.fail("bad time varint")
		return time.Time{}
	}
	d.off += n
	nsec := d.uvarint(1e9 - 1)
	if d.err != nil {
		return time.Time{}
	}
	if sec < minUnix || sec > maxUnix {
		d.fail("time %d out of range", sec)
		return time.Time{}
	}
	if sec == minUnix && nsec == 0 {
		d.fail("the zero time is stored by leaving the time out")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) str() string { return string(d.strBytes()) }

// strBytes is str without the copy: the string's bytes inside d.b.
func (d *decoder) strBytes() []byte {
	n := int(d.u16())
	p := d.take(n)
	if p == nil {
		return nil
	}
	if !utf8.Valid(p) {
		d.off -= n
		d.fail("string is not UTF-8")
		return nil
	}
	return p
}

func (d *decoder) short() []byte {
	n := int(d.u8())
	p := d.take(n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) time() time.Time {
	sec := int64(d.u64())
	nsec := d.u32()
	if d.err != nil {
		return time.Time{}
	}
	if sec < minUnix || sec > maxUnix || nsec >= 1e9 {
		d.off -= 12
		d.fail("time %d.%09d out of range", sec, nsec)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// end reports trailing bytes as an error and returns the first error.
func (d *decoder) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d unexpected trailing bytes", len(d.b)-d.off)
	}
	return d.err
}

// seal frames a record body: one version byte, the body, and a CRC-32C
// (Castagnoli) of the version byte and body, big-endian. The checksum lets
// the store tell a damaged record from a valid one even when the damage
// still decodes.
func seal(version byte, body []byte) []byte {
	out := make([]byte, 0, len(body)+5)
	out = append(out, version)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

// unseal checks a sealed record and returns its version and body (aliasing
// rec).
func unseal(rec []byte) (byte, []byte, error) {
	if len(rec) < 5 {
		return 0, nil, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(rec))
	}
	n := len(rec) - 4
	if got, want := crc32.Checksum(rec[:n], crcTable), binary.BigEndian.Uint32(rec[n:]); got != want {
		return 0, nil, fmt.Errorf("%w: record checksum %08x, stored %08x", ErrCorrupt, got, want)
	}
	return rec[0], rec[1:n], nil
}

// unsealVersion unseals a record that must have the given version.
func unsealVersion(rec []byte, version byte) ([]byte, error) {
	v, body, err := unseal(rec)
	if err != nil {
		return nil, err
	}
	if v != version {
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, v, version)
	}
	return body, nil
}

// corrupt wraps a decoder error as ErrCorrupt.
func corrupt(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
