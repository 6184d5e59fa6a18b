package keypad

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// The frame formats are described in the package documentation. Bits are
// sent first bit first, a pulse on D0 for 0 and on D1 for 1.

// maxBurst is the most bits of one burst that are kept; longer bursts are
// counted to their end and dropped.
const maxBurst = 64

var (
	errBitCount = errors.New("unsupported bit count")
	errParity   = errors.New("parity check failed")
	errKeyCode  = errors.New("code is no key")
)

// frame is one decoded Wiegand burst: a key, or a card when isCard.
type frame struct {
	key    Key
	card   Card
	isCard bool
}

// decodeWiegand decodes a burst of n bits held in the n low bits of v, the
// first bit received the most significant. It returns an error, wrapping
// errBitCount, errParity or errKeyCode, for anything but a well-formed
// frame of a format listed above.
func decodeWiegand(v uint64, n int) (frame, error) {
	if n <= 0 || n > maxBurst || (n < 64 && v>>n != 0) {
		return frame{}, fmt.Errorf("%d-bit burst: %w", n, errBitCount)
	}
	switch n {
	case 4:
		k, err := keyCode(v)
		if err != nil {
			return frame{}, fmt.Errorf("4-bit key: %w", err)
		}
		return frame{key: k}, nil
	case 8:
		hi, lo := v>>4, v&0xf
		if hi != ^lo&0xf {
			return frame{}, fmt.Errorf("8-bit key: complement nibble: %w", errParity)
		}
		k, err := keyCode(lo)
		if err != nil {
			return frame{}, fmt.Errorf("8-bit key: %w", err)
		}
		return frame{key: k}, nil
	case 26, 34:
		half := (n - 2) / 2
		// Leading bit: even parity over itself and the first half of the
		// data; trailing bit: odd parity over the second half and itself.
		if bits.OnesCount64(v>>(half+1))%2 != 0 || bits.OnesCount64(v&(1<<(half+1)-1))%2 != 1 {
			return frame{}, fmt.Errorf("%d-bit card: %w", n, errParity)
		}
		data := v >> 1 & (1<<(n-2) - 1)
		uid := make([]byte, (n-2)/8)
		for i := range uid {
			uid[i] = byte(data >> (8 * (len(uid) - 1 - i)))
		}
		return frame{isCard: true, card: Card{
			UID:      uid,
			Facility: uint32(data >> 16),
			Number:   uint32(data & 0xffff),
			Bits:     n,
		}}, nil
	}
	return frame{}, fmt.Errorf("%d-bit burst: %w", n, errBitCount)
}

// keyCode decodes a 4-bit key code.
func keyCode(c uint64) (Key, error) {
	switch {
	case c <= 9:
		return Key('0' + c), nil
	case c == 10:
		return '*', nil
	case c == 11:
		return '#', nil
	}
	return 0, errKeyCode
}

// bitAt is one Wiegand bit and when it was seen.
type bitAt struct {
	t   time.Time
	one bool
}

// burst gathers timestamped bits into frames: a frame ends once no bit has
// come for gap. It is pure: the caller supplies every timestamp.
//
// Bits are kept in timestamp order, so a bit reported late by the goroutine
// watching the other line still lands in its place.
type burst struct {
	gap  time.Duration
	bits [maxBurst]bitAt
	n    int       // bits in this burst, including any beyond maxBurst
	last time.Time // latest bit
}

// add records a bit seen at t. If the previous burst had already ended by
// t, add returns it (v, n as for decodeWiegand) with done true; the new bit
// starts the next burst.
func (b *burst) add(one bool, t time.Time) (v uint64, n int, done bool) {
	if b.n > 0 && t.Sub(b.last) >= b.gap {
		v, n = b.take()
		done = true
	}
	if b.n < maxBurst {
		i := b.n
		for i > 0 && t.Before(b.bits[i-1].t) {
			b.bits[i] = b.bits[i-1]
			i--
		}
		b.bits[i] = bitAt{t: t, one: one}
	}
	b.n++
	if b.n == 1 || t.After(b.last) {
		b.last = t
	}
	return v, n, done
}

// end returns the burst in progress if it has ended by t.
func (b *burst) end(t time.Time) (v uint64, n int, ok bool) {
	if b.n == 0 || t.Sub(b.last) < b.gap {
		return 0, 0, false
	}
	v, n = b.take()
	return v, n, true
}

// due reports whether a burst is in progress, and when it will have ended
// if no bit comes before.
func (b *burst) due() (time.Time, bool) {
	return b.last.Add(b.gap), b.n > 0
}

// take empties the burst and returns its bits. A burst longer than
// maxBurst returns its length and no bits; decodeWiegand refuses it.
func (b *burst) take() (v uint64, n int) {
	n = b.n
	if n <= maxBurst {
		for _, x := range b.bits[:n] {
			v <<= 1
			if x.one {
				v |= 1
			}
		}
	}
	b.n = 0
	return v, n
}
