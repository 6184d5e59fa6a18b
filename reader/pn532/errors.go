package pn532

import (
	"errors"
	"fmt"
)

// Errors about the reader and the bus.
var (
	// ErrNoDevice means nothing that behaves like a PN532 answers on the
	// bus: the status byte only ever read 0xFF (MISO floating: wiring, the
	// board's interface switches or chip select) or 0x00 (MISO held low, or
	// the chip unpowered or held in reset).
	ErrNoDevice = errors.New("no PN532 on the bus")
	// ErrWrongChip means the chip answered GetFirmwareVersion with an IC
	// other than 0x32 (a PN533 or PN531 speaks a similar protocol).
	ErrWrongChip = errors.New("not a PN532")
	// ErrNoACK means the PN532 did not acknowledge a command frame within
	// Opts.ACKTimeout, even after it was sent again.
	ErrNoACK = errors.New("no ACK from the PN532")
	// ErrNoResponse means the PN532 acknowledged a command but did not
	// answer within Opts.ResponseTimeout; the command was aborted.
	ErrNoResponse = errors.New("no response from the PN532 in time")
	// ErrSyntax means the PN532 answered with its error frame: it found
	// the command frame well formed but could not run it.
	ErrSyntax = errors.New("the PN532 rejected the command (error frame)")
	// ErrFrame is matched by every error about a malformed frame
	// (*FrameError, and a frame cut short).
	ErrFrame = errors.New("malformed frame")
	// ErrNoTarget is returned by Poll when no card answered in the field.
	ErrNoTarget = errors.New("no card in the field")
	// ErrMoreData is returned with the first part of an answer that the
	// PN532 flagged as incomplete (MI bit): the card has more to send.
	ErrMoreData = errors.New("the card has more data than one answer holds")
)

// Errors reported by the PN532 in a status byte (UM0701-02 §7.1), matched
// by *StatusError through errors.Is.
var (
	// ErrTimeout: the card did not answer in time (status 0x01).
	ErrTimeout = errors.New("the card did not answer in time")
	// ErrCRC: the card's answer failed its CRC (status 0x02).
	ErrCRC = errors.New("CRC error in the card's answer")
	// ErrParity: the card's answer had a parity error (status 0x03).
	ErrParity = errors.New("parity error in the card's answer")
	// ErrCollision: two cards answered at once during anticollision
	// (status 0x04 or 0x06).
	ErrCollision = errors.New("collision between cards")
	// ErrFraming: a MIFARE answer was not framed right (status 0x05).
	ErrFraming = errors.New("framing error in the card's answer")
	// ErrProtocol: the card broke the RF protocol, or a retry count ran out
	// (status 0x0B or 0x13).
	ErrProtocol = errors.New("RF protocol error")
	// ErrOverheat: the PN532 switched its antenna drivers off because it is
	// too hot (status 0x0D).
	ErrOverheat = errors.New("the PN532 is overheated")
	// ErrBadParameter: the PN532 found a parameter of the command invalid
	// (status 0x10).
	ErrBadParameter = errors.New("invalid command parameter")
	// ErrAuth: MIFARE authentication failed (status 0x14).
	ErrAuth = errors.New("authentication failed")
	// ErrNotAllowed: the command cannot run in the PN532's present state,
	// e.g. there is no such target (status 0x25, 0x26 or 0x27).
	ErrNotAllowed = errors.New("command not allowed in this state")
	// ErrOverCurrent: the PN532 saw an over-current on the antenna
	// (status 0x2D).
	ErrOverCurrent = errors.New("antenna over-current")
)

// statusCodes describes the status codes of UM0701-02 §7.1.
var statusCodes = map[byte]struct {
	err  error
	desc string
}{
	0x01: {ErrTimeout, "the target has not answered"},
	0x02: {ErrCRC, "CRC error"},
	0x03: {ErrParity, "parity error"},
	0x04: {ErrCollision, "erroneous bit count during anticollision"},
	0x05: {ErrFraming, "MIFARE framing error"},
	0x06: {ErrCollision, "abnormal bit collision"},
	0x07: {nil, "communication buffer too small"},
	0x09: {nil, "RF buffer overflow"},
	0x0A: {nil, "RF field not switched on in time by the counterpart"},
	0x0B: {ErrProtocol, "RF protocol error"},
	0x0D: {ErrOverheat, "overheated: antenna drivers off"},
	0x0E: {nil, "internal buffer overflow"},
	0x10: {ErrBadParameter, "invalid parameter"},
	0x12: {nil, "DEP: command not supported by the target"},
	0x13: {ErrProtocol, "data format error or retries exhausted"},
	0x14: {ErrAuth, "MIFARE authentication error"},
	0x23: {nil, "wrong UID check byte"},
	0x25: {ErrNotAllowed, "invalid device state"},
	0x26: {ErrNotAllowed, "operation not allowed in this configuration"},
	0x27: {ErrNotAllowed, "command not acceptable in the current context"},
	0x29: {nil, "released by the initiator"},
	0x2A: {nil, "card ID does not match"},
	0x2B: {nil, "the activated card has disappeared"},
	0x2C: {nil, "NFCID3 mismatch"},
	0x2D: {ErrOverCurrent, "over-current"},
	0x2E: {nil, "NAD missing"},
}

// StatusError is a non-zero status byte from the PN532, e.g. in the answer
// to InDataExchange. Code holds the error bits (the low six bits).
type StatusError struct {
	Code byte // the error bits of the status byte
}

// Error returns the code and what it means, e.g.
// "status 0x14: MIFARE authentication error".
func (e *StatusError) Error() string {
	if s, ok := statusCodes[e.Code]; ok {
		return fmt.Sprintf("status 0x%02X: %s", e.Code, s.desc)
	}
	return fmt.Sprintf("status 0x%02X", e.Code)
}

// Is reports whether target is the sentinel error for e's code, such as
// ErrTimeout for 0x01 or ErrAuth for 0x14.
func (e *StatusError) Is(target error) bool {
	s, ok := statusCodes[e.Code]
	return ok && s.err != nil && s.err == target
}

// FrameError is a malformed frame: Offset is the position of the faulty
// byte in the frame as read (-1 when it is about the frame as a whole), and
// Reason says what is wrong. It matches ErrFrame.
type FrameError struct {
	Offset int    // the faulty byte, or -1
	Reason string // what is wrong with it
}

// Error says what is wrong and where, e.g. "malformed frame at byte 11:
// data checksum 0xE9, want 0xE8".
func (e *FrameError) Error() string {
	if e.Offset < 0 {
		return "malformed frame: " + e.Reason
	}
	return fmt.Sprintf("malformed frame at byte %d: %s", e.Offset, e.Reason)
}

// Is makes every FrameError match ErrFrame.
func (e *FrameError) Is(target error) bool { return target == ErrFrame }
