package pn532

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
)

// Target is an ISO/IEC 14443 type A card that answered InListPassiveTarget
// at 106 kbps.
type Target struct {
	// Tg is the number the PN532 gave the target; DataExchange takes it.
	Tg byte
	// UID is the card's NFCID1: 4, 7 or 10 bytes, cascade tags removed.
	UID []byte
	// ATQA is the card's answer to request (SENS_RES), first byte on the
	// wire as the high byte: 0x0004 for a MIFARE Classic 1K, 0x0044 for an
	// NTAG.
	ATQA uint16
	// SAK is the card's select acknowledge (SEL_RES).
	SAK byte
	// ATS is the card's answer to select, its length byte first, when the
	// card speaks ISO/IEC 14443-4 and the PN532 sent RATS; nil otherwise.
	ATS []byte
	// RandomUID is true for a 4-byte UID starting with 0x08: a random ID
	// that phones and privacy-mode cards make up on each activation. It
	// identifies nothing and must never be taken as a credential.
	RandomUID bool
}

// ISODEP reports whether the card announced ISO/IEC 14443-4 (SAK bit 6),
// the transport DESFire and NTAG 424 authentication run over.
func (t Target) ISODEP() bool { return t.SAK&0x20 != 0 }

// String returns the target in the form uid=04a1b2c3 atqa=0004 sak=08.
func (t Target) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "uid=%s atqa=%04x sak=%02x", hex.EncodeToString(t.UID), t.ATQA, t.SAK)
	if t.ATS != nil {
		fmt.Fprintf(&b, " ats=%s", hex.EncodeToString(t.ATS))
	}
	if t.RandomUID {
		b.WriteString(" random")
	}
	return b.String()
}

// sameCard reports whether a and b are, as far as a reader can tell, the
// same card still in the field. Random UIDs change on every activation,
// so any two random-UID targets count as the same.
func sameCard(a, b Target) bool {
	if a.RandomUID && b.RandomUID {
		return true
	}
	return bytes.Equal(a.UID, b.UID)
}

// parseTarget decodes the parameters of an InListPassiveTarget response
// for one 106 kbps type A target (UM0701-02 §7.3.5):
//
//	NbTg Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1... [ATS...]
//
// It accepts nothing it does not fully understand: a bad length, a UID
// size other than 4, 7 or 10, a cascade tag in the UID, a SAK that says
// the UID is incomplete or trailing bytes all make it fail, and no UID
// comes out of a failed parse.
func parseTarget(p []byte) (Target, error) {
	if len(p) == 0 {
		return Target{}, &FrameError{Offset: -1, Reason: "InListPassiveTarget response has no target count"}
	}
	switch p[0] {
	case 0:
		if len(p) != 1 {
			return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("InListPassiveTarget response: no target but %d more bytes", len(p)-1)}
		}
		return Target{}, ErrNoTarget
	case 1:
	default:
		return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("InListPassiveTarget response: %d targets, asked for 1", p[0])}
	}
	// p[0] is NbTg; offsets in errors count from it.
	if len(p) < 6 {
		return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("target data is %d bytes, want at least 6", len(p))}
	}
	t := Target{
		Tg:   p[1],
		ATQA: uint16(p[2])<<8 | uint16(p[3]),
		SAK:  p[4],
	}
	if t.Tg == 0 {
		return Target{}, &FrameError{Offset: -1, Reason: "target number 0"}
	}
	n := int(p[5])
	switch n {
	case 4, 7, 10:
	default:
		return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("UID length %d, want 4, 7 or 10", n)}
	}
	rest := p[6:]
	if len(rest) < n {
		return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("UID length %d but only %d bytes follow", n, len(rest))}
	}
	uid := rest[:n]
	rest = rest[n:]
	if uid[0] == 0x88 {
		return Target{}, &FrameError{Offset: -1, Reason: "UID starts with the cascade tag 0x88"}
	}
	if t.SAK&0x04 != 0 {
		return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("SAK 0x%02X says the UID is not complete", t.SAK)}
	}
	if len(rest) > 0 {
		if !t.ISODEP() {
			return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("%d bytes after the UID of a card without ISO/IEC 14443-4 (SAK 0x%02X)", len(rest), t.SAK)}
		}
		if tl := int(rest[0]); tl == 0 || tl != len(rest) {
			return Target{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("ATS length byte %d but %d ATS bytes", tl, len(rest))}
		}
		t.ATS = bytes.Clone(rest)
	}
	t.UID = bytes.Clone(uid)
	t.RandomUID = n == 4 && uid[0] == 0x08
	return t, nil
}

// Firmware is the answer to GetFirmwareVersion.
type Firmware struct {
	// IC is the chip: 0x32 for a PN532.
	IC byte
	// Version and Revision of the firmware: 1 and 6 for the PN532/C106.
	Version, Revision byte
	// Support has a bit for each card family the firmware handles:
	// 0x01 ISO/IEC 14443 type A, 0x02 type B, 0x04 ISO 18092.
	Support byte
}

// String returns e.g. "PN532 v1.6 (ISO14443A ISO14443B ISO18092)".
func (f Firmware) String() string {
	name := "PN532"
	if f.IC != 0x32 {
		name = fmt.Sprintf("IC 0x%02X", f.IC)
	}
	var sup []string
	for i, s := range []string{"ISO14443A", "ISO14443B", "ISO18092"} {
		if f.Support&(1<<i) != 0 {
			sup = append(sup, s)
		}
	}
	return fmt.Sprintf("%s v%d.%d (%s)", name, f.Version, f.Revision, strings.Join(sup, " "))
}

// parseFirmware decodes the parameters of a GetFirmwareVersion response.
func parseFirmware(p []byte) (Firmware, error) {
	if len(p) != 4 {
		return Firmware{}, &FrameError{Offset: -1, Reason: fmt.Sprintf("GetFirmwareVersion response has %d bytes, want 4", len(p))}
	}
	return Firmware{IC: p[0], Version: p[1], Revision: p[2], Support: p[3]}, nil
}
