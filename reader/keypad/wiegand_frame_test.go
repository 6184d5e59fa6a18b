package keypad

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"testing"
	"time"
)

// bitsOf turns "0101…" into decodeWiegand's arguments.
func bitsOf(t testing.TB, s string) (uint64, int) {
	t.Helper()
	var v uint64
	for _, c := range s {
		if c != '0' && c != '1' {
			t.Fatalf("bad bit %q", c)
		}
		v = v<<1 | uint64(c-'0')
	}
	return v, len(s)
}

// refCard is an encoder written apart from the decoder: parity bits from
// counting ones in the text of the data bits.
func refCard(facility, number uint32, n int) string {
	fb := (n - 2) - 16
	data := fmt.Sprintf("%0*b%016b", fb, facility, number)
	half := len(data) / 2
	p0, p1 := "0", "1"
	if strings.Count(data[:half], "1")%2 == 1 {
		p0 = "1"
	}
	if strings.Count(data[half:], "1")%2 == 1 {
		p1 = "0"
	}
	return p0 + data + p1
}

var refCodes = map[Key]uint64{'0': 0, '1': 1, '2': 2, '3': 3, '4': 4, '5': 5, '6': 6, '7': 7, '8': 8, '9': 9, '*': 10, '#': 11}

func TestDecodeWiegandKeys(t *testing.T) {
	for k, c := range refCodes {
		for _, s := range []string{fmt.Sprintf("%04b", c), fmt.Sprintf("%04b%04b", 15-c, c)} {
			v, n := bitsOf(t, s)
			f, err := decodeWiegand(v, n)
			if err != nil || f.isCard || f.key != k {
				t.Errorf("decode %s = %+v, %v; want key %v", s, f, err, k)
			}
		}
	}
	// The example from the package documentation.
	if f, err := decodeWiegand(0b10100101, 8); err != nil || f.key != '5' {
		t.Errorf("decode 10100101 = %+v, %v; want key 5", f, err)
	}
}

func TestDecodeWiegandCards(t *testing.T) {
	for _, tc := range []struct {
		bits     string
		facility uint32
		number   uint32
		uid      []byte
	}{
		// Worked by hand: facility 1, card 1. One 1 in each half of the
		// data, so the even parity bit is 1 and the odd one 0.
		{"1" + "00000001" + "0000000000000001" + "0", 1, 1, []byte{0x01, 0x00, 0x01}},
		{"1" + "0000000000000001" + "0000000000000001" + "0", 1, 1, []byte{0x00, 0x01, 0x00, 0x01}},
		{refCard(0, 0, 26), 0, 0, []byte{0, 0, 0}},
		{refCard(255, 65535, 26), 255, 65535, []byte{0xff, 0xff, 0xff}},
		{refCard(18, 12345, 26), 18, 12345, []byte{0x12, 0x30, 0x39}},
		{refCard(0xbeef, 0x1234, 34), 0xbeef, 0x1234, []byte{0xbe, 0xef, 0x12, 0x34}},
		{refCard(65535, 0, 34), 65535, 0, []byte{0xff, 0xff, 0, 0}},
	} {
		v, n := bitsOf(t, tc.bits)
		f, err := decodeWiegand(v, n)
		if err != nil || !f.isCard {
			t.Errorf("decode %s = %+v, %v; want a card", tc.bits, f, err)
			continue
		}
		c := f.card
		if c.Facility != tc.facility || c.Number != tc.number || c.Bits != n || !bytes.Equal(c.UID, tc.uid) {
			t.Errorf("decode %s = %v, want fc=%d card=%d uid=%x", tc.bits, c, tc.facility, tc.number, tc.uid)
		}
	}
	c := Card{UID: []byte{0x12, 0x30, 0x39}, Facility: 18, Number: 12345, Bits: 26}
	if s := c.String(); s != "wiegand26 fc=18 card=12345 uid=123039" {
		t.Errorf("Card.String() = %q", s)
	}
}

func TestDecodeWiegandRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    uint64
		n    int
		err  error
	}{
		{"no bits", 0, 0, errBitCount},
		{"negative count", 0, -3, errBitCount},
		{"one bit", 1, 1, errBitCount},
		{"5 bits", 0b10101, 5, errBitCount},
		{"7 bits", 0b1010101, 7, errBitCount},
		{"25 bits", 1, 25, errBitCount},
		{"27 bits", 1, 27, errBitCount},
		{"33 bits", 1, 33, errBitCount},
		{"35 bits", 1, 35, errBitCount},
		{"37 bits", 1, 37, errBitCount},
		{"64 bits", 1, 64, errBitCount},
		{"65 bits", 0, 65, errBitCount},
		{"value wider than count", 0b10000, 4, errBitCount},
		{"4-bit code 12", 12, 4, errKeyCode},
		{"4-bit code 15", 15, 4, errKeyCode},
		{"8-bit code 13 with its complement", 0b00101101, 8, errKeyCode},
		{"8-bit without complement", 0b00000101, 8, errParity},
		{"8-bit complement off by one bit", 0b10110101, 8, errParity},
		{"8-bit all ones", 0xff, 8, errParity},
		{"8-bit all zeros", 0x00, 8, errParity},
		{"26-bit all zeros", 0, 26, errParity},
		{"26-bit all ones", 1<<26 - 1, 26, errParity},
		{"34-bit all zeros", 0, 34, errParity},
	} {
		f, err := decodeWiegand(tc.v, tc.n)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: decode(%#b, %d) = %+v, %v; want %v", tc.name, tc.v, tc.n, f, err, tc.err)
		}
	}
}

// Every single flipped bit of a card frame breaks one parity.
func TestDecodeWiegandParityFlips(t *testing.T) {
	for _, n := range []int{26, 34} {
		for _, fc := range []uint32{0, 1, 0x5a, 0xff} {
			v, _ := bitsOf(t, refCard(fc, 0xa5c3, n))
			for i := range n {
				if f, err := decodeWiegand(v^1<<i, n); !errors.Is(err, errParity) {
					t.Errorf("%d-bit fc=%d, bit %d flipped: %+v, %v; want errParity", n, fc, i, f, err)
				}
			}
		}
	}
}

type timedBit struct {
	ms  float64
	one bool
}

func TestBurst(t *testing.T) {
	t0 := time.Unix(5000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	type result struct {
		v uint64
		n int
	}
	for _, tc := range []struct {
		name string
		in   []timedBit
		end  float64 // time of the final end call
		want []result
	}{
		{"one frame", []timedBit{{0, true}, {2, false}, {4, true}, {6, true}}, 31, []result{{0b1011, 4}}},
		{"not ended before the gap", []timedBit{{0, true}, {2, false}}, 26.9, nil},
		{"ended exactly at the gap", []timedBit{{0, true}, {2, false}}, 27, []result{{0b10, 2}}},
		{"gap splits", []timedBit{{0, true}, {2, true}, {27, false}, {29, true}}, 100, []result{{0b11, 2}, {0b01, 2}}},
		{"bits 24 ms apart stay together", []timedBit{{0, true}, {24, false}, {48, true}}, 100, []result{{0b101, 3}}},
		{"late report put back in order", []timedBit{{0, true}, {4, true}, {2, false}, {6, false}}, 50, []result{{0b1010, 4}}},
		{"empty burst never ends", nil, 1000, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := burst{gap: 25 * time.Millisecond}
			var got []result
			for _, x := range tc.in {
				if v, n, ok := b.add(x.one, at(x.ms)); ok {
					got = append(got, result{v, n})
				}
			}
			if v, n, ok := b.end(at(tc.end)); ok {
				got = append(got, result{v, n})
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("frames = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBurstTooLong(t *testing.T) {
	t0 := time.Unix(0, 0)
	b := burst{gap: 25 * time.Millisecond}
	for i := range 100 {
		if _, _, ok := b.add(i%2 == 0, t0.Add(time.Duration(i)*time.Millisecond)); ok {
			t.Fatalf("bit %d ended a burst", i)
		}
	}
	if at, ok := b.due(); !ok || !at.Equal(t0.Add(99*time.Millisecond+25*time.Millisecond)) {
		t.Errorf("due() = %v, %v", at, ok)
	}
	v, n, ok := b.end(t0.Add(time.Second))
	if !ok || n != 100 {
		t.Fatalf("end = %#x, %d, %v; want 100 bits", v, n, ok)
	}
	if f, err := decodeWiegand(v, n); !errors.Is(err, errBitCount) {
		t.Errorf("100-bit burst decoded to %+v, %v", f, err)
	}
	if _, ok := b.due(); ok {
		t.Error("due after end")
	}
}

// refEncode re-encodes a decoded frame, independently of decodeWiegand.
func refEncode(t *testing.T, f frame, n int) string {
	if f.isCard {
		return refCard(f.card.Facility, f.card.Number, n)
	}
	c, ok := refCodes[f.key]
	if !ok {
		t.Fatalf("decoded key %v has no code", f.key)
	}
	if n == 4 {
		return fmt.Sprintf("%04b", c)
	}
	return fmt.Sprintf("%04b%04b", 15-c, c)
}

// FuzzWiegand checks that whatever decodes is a well-formed frame that
// encodes back to exactly the bits received: no key or card comes from a
// malformed frame.
func FuzzWiegand(f *testing.F) {
	f.Add(uint64(0b0101), 4)
	f.Add(uint64(0b1100), 4)
	f.Add(uint64(0b10100101), 8)
	f.Add(uint64(0b10100100), 8)
	for _, s := range []string{refCard(18, 12345, 26), refCard(0xbeef, 0x1234, 34)} {
		v, n := bitsOf(f, s)
		f.Add(v, n)
		f.Add(v^4, n)
		f.Add(v, n+1)
	}
	f.Add(uint64(0), 0)
	f.Add(^uint64(0), 64)
	f.Add(uint64(1), -1)
	f.Fuzz(func(t *testing.T, v uint64, n int) {
		fr, err := decodeWiegand(v, n)
		if err != nil {
			if !errors.Is(err, errBitCount) && !errors.Is(err, errParity) && !errors.Is(err, errKeyCode) {
				t.Fatalf("decode(%#x, %d): unclassified error %v", v, n, err)
			}
			return
		}
		switch {
		case fr.isCard && n != 26 && n != 34, !fr.isCard && n != 4 && n != 8:
			t.Fatalf("decode(%#x, %d) = %+v from an unsupported length", v, n, fr)
		}
		if fr.isCard && (fr.card.Bits != n || len(fr.card.UID) != (n-2)/8) {
			t.Fatalf("decode(%#x, %d) = %v", v, n, fr.card)
		}
		if !fr.isCard && !fr.key.IsPIN() {
			t.Fatalf("decode(%#x, %d) = key %v", v, n, fr.key)
		}
		if got, want := refEncode(t, fr, n), fmt.Sprintf("%0*b", n, v); got != want {
			t.Fatalf("decode(%s) = %+v, which encodes to %s", want, fr, got)
		}
	})
}

// FuzzBurst feeds timestamped bits, one per byte: bit 0 is the bit, the
// rest a signed step in milliseconds from the previous bit (bits may be
// reported out of order). The frames must be exactly those of a reference
// framer: a new frame when a bit comes a gap or more after the latest bit,
// bits within a frame in time order.
func FuzzBurst(f *testing.F) {
	f.Add([]byte{3, 4, 5, 4})
	f.Add([]byte{1, 100, 1, 0xf1, 4})
	f.Add(bytes.Repeat([]byte{5}, 70))
	f.Add([]byte{1, 0x30, 0x31, 0x32, 0x33, 0x40, 0x41, 0x80, 0x81})
	const gap = 25 * time.Millisecond
	f.Fuzz(func(t *testing.T, data []byte) {
		type tb struct {
			t   time.Time
			one bool
		}
		type result struct {
			v uint64
			n int
		}
		now := time.Unix(1e6, 0)
		var (
			b        = burst{gap: gap}
			got      []result
			want     []result
			frame    []tb
			latest   time.Time
			received []tb
		)
		flush := func() {
			if len(frame) == 0 {
				return
			}
			sort.SliceStable(frame, func(i, j int) bool { return frame[i].t.Before(frame[j].t) })
			r := result{n: len(frame)}
			if len(frame) <= maxBurst {
				for _, x := range frame {
					r.v <<= 1
					if x.one {
						r.v |= 1
					}
				}
			}
			want = append(want, r)
			frame = nil
		}
		for _, c := range data {
			now = now.Add(time.Duration(int8(c)>>1) * time.Millisecond)
			x := tb{now, c&1 == 1}
			received = append(received, x)
			if len(frame) > 0 && x.t.Sub(latest) >= gap {
				flush()
			}
			// Beyond maxBurst bits are counted, not kept: the reference
			// keeps them too, but only the count matters then.
			frame = append(frame, x)
			if len(frame) == 1 || x.t.After(latest) {
				latest = x.t
			}
			if v, n, ok := b.add(x.one, x.t); ok {
				got = append(got, result{v, n})
			}
		}
		flush()
		if v, n, ok := b.end(latest.Add(gap)); ok {
			got = append(got, result{v, n})
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("frames %v, reference %v (bits %v)", got, want, len(received))
		}
		total := 0
		for _, r := range got {
			total += r.n
			if r.n > 64 && r.v != 0 {
				t.Fatalf("%d-bit burst kept bits %#x", r.n, r.v)
			}
			if r.n < 64 && bits.Len64(r.v) > r.n {
				t.Fatalf("%d-bit burst has value %#x", r.n, r.v)
			}
		}
		if total != len(data) {
			t.Fatalf("%d bits in frames, %d received", total, len(data))
		}
	})
}

// BenchmarkWiegandDecode measures framing and decoding: each iteration
// feeds one frame's timestamped bits, 2 ms apart, ends the frame and
// decodes it.
func BenchmarkWiegandDecode(b *testing.B) {
	for _, tc := range []struct {
		name string
		bits string
	}{
		{"key4", "0101"},
		{"key8", "10100101"},
		{"card26", refCard(18, 12345, 26)},
		{"card34", refCard(0xbeef, 0x1234, 34)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ones := make([]bool, len(tc.bits))
			for i := range tc.bits {
				ones[i] = tc.bits[i] == '1'
			}
			bu := burst{gap: 25 * time.Millisecond}
			now := time.Unix(0, 0)
			b.ReportAllocs()
			for b.Loop() {
				for _, one := range ones {
					now = now.Add(2 * time.Millisecond)
					bu.add(one, now)
				}
				now = now.Add(25 * time.Millisecond)
				v, n, ok := bu.end(now)
				if !ok {
					b.Fatal("frame did not end")
				}
				if _, err := decodeWiegand(v, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
			b.ReportMetric(float64(b.N*len(ones))/b.Elapsed().Seconds(), "bits/s")
		})
	}
}
