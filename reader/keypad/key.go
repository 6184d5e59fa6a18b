package keypad

import (
	"encoding/hex"
	"fmt"
)

// Key is one key press: '0'–'9', '*' and '#', or one of the function keys
// KeyA–KeyD of a 4×4 matrix keypad.
//
// Its value is the ASCII code of the key's label, so string(rune(k)) and
// k.String() print the label.
type Key byte

// Function keys of the fourth column of a 4×4 matrix keypad (Layout4x4).
// The door controller takes PINs only from '0'–'9', '*' and '#' (see IsPIN);
// these keys are delivered for features of their own and are never part of a
// PIN.
const (
	KeyA Key = 'A'
	KeyB Key = 'B'
	KeyC Key = 'C'
	KeyD Key = 'D'
)

// IsPIN reports whether k is one of the keys of PIN entry: '0'–'9', '*'
// or '#'.
func (k Key) IsPIN() bool {
	return (k >= '0' && k <= '9') || k == '*' || k == '#'
}

// valid reports whether k is a key this package can produce.
func (k Key) valid() bool {
	return k.IsPIN() || (k >= KeyA && k <= KeyD)
}

// String returns the key's label, such as "7" or "#", or "Key(0x..)" for a
// value that is not a key.
func (k Key) String() string {
	if k.valid() {
		return string(rune(k))
	}
	return fmt.Sprintf("Key(%#02x)", byte(k))
}

// Card is a card presented on a Wiegand reader.
//
// UID is what the allowlist stores for the card: the frame's data bits
// without the two parity bits, first received bit first, packed big-endian.
// For a 26-bit frame (H10301) that is 24 bits, 3 bytes: facility code, then
// the card number high byte, low byte. For a 34-bit frame (H10306) it is 32
// bits, 4 bytes: facility code high, low, card number high, low. The UID of
// a card read over Wiegand is therefore not the chip UID a PN532 reads from
// the same card; enrol the card through the reader the door uses.
type Card struct {
	// UID is the card's data bits, big-endian: 3 bytes for 26 bits, 4 bytes
	// for 34 bits.
	UID []byte
	// Facility is the facility (site) code: 8 bits in a 26-bit frame, 16
	// bits in a 34-bit frame.
	Facility uint32
	// Number is the card number: 16 bits in both formats.
	Number uint32
	// Bits is the frame length the card arrived in: 26 or 34.
	Bits int
}

// String formats the card as "wiegand26 fc=12 card=3456 uid=0c0d80".
func (c Card) String() string {
	return fmt.Sprintf("wiegand%d fc=%d card=%d uid=%s", c.Bits, c.Facility, c.Number, hex.EncodeToString(c.UID))
}
