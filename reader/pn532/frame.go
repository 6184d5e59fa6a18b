package pn532

import (
	"fmt"
	"math/bits"
)

// Frame layout (UM0701-02 §6.2.1):
//
//	normal:   00 00 FF LEN LCS TFI PD0..PDn DCS 00
//	extended: 00 00 FF FF FF LENm LENl LCS TFI PD0..PDn DCS 00
//	ACK:      00 00 FF 00 FF 00
//	NACK:     00 00 FF FF 00 00
//	error:    00 00 FF 01 FF 7F 81 00
//
// LEN counts TFI and the packet data. The preamble may be missing or longer
// than one byte, and the postamble may be missing.

const (
	tfiHost  = 0xD4 // frame identifier, host to PN532
	tfiChip  = 0xD5 // frame identifier, PN532 to host
	tfiError = 0x7F // packet data of the application-level error frame

	// maxNormalLen is the largest LEN of a normal frame (TFI included).
	maxNormalLen = 255
	// maxExtendedLen is the largest LEN the PN532 firmware handles in an
	// extended frame (TFI included).
	maxExtendedLen = 265
	// maxFrameLen is the longest frame on the wire: an extended frame with
	// a one-byte preamble and a postamble.
	maxFrameLen = 11 + maxExtendedLen - 1 + 1
)

var (
	ackFrame  = []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}
	nackFrame = []byte{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}
)

// frameKind tells the four kinds of frames apart.
type frameKind int

const (
	kindInfo  frameKind = iota + 1 // normal or extended information frame
	kindACK                        // command accepted (or, from the host, abort)
	kindNACK                       // resend the last response (host to PN532 only)
	kindError                      // application-level (syntax) error
)

func (k frameKind) String() string {
	switch k {
	case kindInfo:
		return "information frame"
	case kindACK:
		return "ACK"
	case kindNACK:
		return "NACK"
	case kindError:
		return "error frame"
	}
	return fmt.Sprintf("frameKind(%d)", int(k))
}

// frame is one decoded frame.
type frame struct {
	kind frameKind
	tfi  byte   // kindInfo only
	data []byte // kindInfo: PD0..PDn, aliasing the input buffer
	at   int    // kindInfo: offset of TFI in the input
	end  int    // bytes of the input the frame used, postamble included if present
}

// truncatedError reports a frame that starts well but runs past the end of
// the bytes read: need is how many bytes, counted from the start of the
// buffer, hold the whole frame and its postamble.
type truncatedError struct {
	need, have int
}

func (e *truncatedError) Error() string {
	return fmt.Sprintf("frame needs %d bytes, only %d read", e.need, e.have)
}

// Is makes a truncated frame a malformed one for errors.Is.
func (e *truncatedError) Is(target error) bool { return target == ErrFrame }

// checksum returns the byte that makes the sum of b and it zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// appendFrame appends to dst the information frame carrying tfi and data
// (PD0..PDn): a normal frame when it fits, an extended one otherwise.
func appendFrame(dst []byte, tfi byte, data []byte) ([]byte, error) {
	n := len(data) + 1
	switch {
	case len(data) == 0:
		return dst, fmt.Errorf("%w: empty packet data", ErrFrame)
	case n <= maxNormalLen:
		dst = append(dst, 0x00, 0x00, 0xFF, byte(n), -byte(n))
	case n <= maxExtendedLen:
		hi, lo := byte(n>>8), byte(n)
		dst = append(dst, 0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, -(hi + lo))
	default:
		return dst, fmt.Errorf("%w: %d bytes of packet data, at most %d fit in a frame", ErrFrame, len(data), maxExtendedLen-1)
	}
	dst = append(dst, tfi)
	dst = append(dst, data...)
	sum := tfi
	for _, c := range data {
		sum += c
	}
	return append(dst, -sum, 0x00), nil
}

// decodeFrame decodes the first frame in b. Leading 0x00 bytes are the
// preamble and start code; bytes after the frame are ignored. When the
// frame runs past the end of b, the error is a *truncatedError that tells
// how many bytes would hold it.
func decodeFrame(b []byte) (frame, error) {
	i := 0
	for i < len(b) && b[i] == 0x00 {
		i++
	}
	switch {
	case len(b) == 0:
		return frame{}, &FrameError{Offset: 0, Reason: "no bytes"}
	case i == 0:
		return frame{}, &FrameError{Offset: 0, Reason: fmt.Sprintf("no start code: frame begins 0x%02X, want 0x00 0xFF", b[0])}
	case i == len(b):
		return frame{}, &truncatedError{need: i + 5, have: len(b)}
	case b[i] != 0xFF:
		return frame{}, &FrameError{Offset: i, Reason: fmt.Sprintf("start code is 0x00 0x%02X, want 0x00 0xFF", b[i])}
	}
	i++ // at LEN
	if len(b) < i+2 {
		return frame{}, &truncatedError{need: i + 3, have: len(b)}
	}
	length, lcs := b[i], b[i+1]
	switch {
	case length == 0x00 && lcs == 0xFF:
		return frame{kind: kindACK, end: postamble(b, i+2)}, nil
	case length == 0xFF && lcs == 0x00:
		return frame{kind: kindNACK, end: postamble(b, i+2)}, nil
	}
	var n, data int // n: LEN; data: offset of TFI
	if length == 0xFF && lcs == 0xFF {
		if len(b) < i+5 {
			return frame{}, &truncatedError{need: i + 6, have: len(b)}
		}
		hi, lo, lcs2 := b[i+2], b[i+3], b[i+4]
		if hi+lo+lcs2 != 0 {
			return frame{}, &FrameError{Offset: i + 4, Reason: fmt.Sprintf("extended length checksum 0x%02X does not match length 0x%02X%02X", lcs2, hi, lo)}
		}
		n = int(hi)<<8 | int(lo)
		if n > maxExtendedLen {
			return frame{}, &FrameError{Offset: i + 2, Reason: fmt.Sprintf("extended length %d is over the PN532's %d", n, maxExtendedLen)}
		}
		data = i + 5
	} else {
		if length+lcs != 0 {
			return frame{}, &FrameError{Offset: i + 1, Reason: fmt.Sprintf("length checksum 0x%02X does not match length 0x%02X", lcs, length)}
		}
		n = int(length)
		data = i + 2
	}
	if n == 0 {
		return frame{}, &FrameError{Offset: i, Reason: "length 0: no frame identifier"}
	}
	dcs := data + n
	if len(b) <= dcs {
		return frame{}, &truncatedError{need: dcs + 2, have: len(b)}
	}
	body := b[data:dcs]
	if c := checksum(body); c != b[dcs] {
		return frame{}, &FrameError{Offset: dcs, Reason: fmt.Sprintf("data checksum 0x%02X, want 0x%02X", b[dcs], c)}
	}
	if n == 1 && body[0] == tfiError {
		return frame{kind: kindError, end: postamble(b, dcs+1)}, nil
	}
	return frame{kind: kindInfo, tfi: body[0], data: body[1:], at: data, end: postamble(b, dcs+1)}, nil
}

// postamble returns the end of a frame whose last byte before the
// postamble is at i-1, counting the postamble when it is there.
func postamble(b []byte, i int) int {
	if i < len(b) && b[i] == 0x00 {
		return i + 1
	}
	return i
}

// frameLen returns the length of the information frame carrying n bytes of
// TFI and packet data, preamble and postamble included.
func frameLen(n int) int {
	if n <= maxNormalLen {
		return n + 7
	}
	return n + 10
}

// checkResponse checks that an information frame from the PN532 answers
// command code cmd and returns its parameters (after the response code).
func checkResponse(f frame, cmd byte) ([]byte, error) {
	if f.tfi != tfiChip {
		return nil, &FrameError{Offset: f.at, Reason: fmt.Sprintf("frame identifier 0x%02X, want 0x%02X (PN532 to host)", f.tfi, tfiChip)}
	}
	if len(f.data) == 0 {
		return nil, &FrameError{Offset: f.at + 1, Reason: "no response code"}
	}
	if f.data[0] != cmd+1 {
		return nil, &FrameError{Offset: f.at + 1, Reason: fmt.Sprintf("response code 0x%02X does not answer command 0x%02X (want 0x%02X)", f.data[0], cmd, cmd+1)}
	}
	return f.data[1:], nil
}

// reverseBits reverses the bit order of every byte of b in place: the PN532
// shifts bytes LSB first, most SPI controllers MSB first.
func reverseBits(b []byte) {
	for i, c := range b {
		b[i] = bits.Reverse8(c)
	}
}
