package pn532

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoder: it must not
// panic, and what it accepts must be a frame it would itself write.
func FuzzDecodeFrame(f *testing.F) {
	for _, g := range goldenFrames {
		f.Add(hx(g.frame))
	}
	for _, s := range []string{
		"00 00 FF 00 FF 00", "00 00 FF FF 00 00", "00 00 FF 01 FF 7F 81 00",
		"00 FF 06 FA D5 03 32 01 06 07 E8", "00 00 FF FF FF 00 02 FE D4 02 2A 00",
		"FF FF FF FF", "00 00 00 00", "",
	} {
		f.Add(hx(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("error %v does not match ErrFrame", err)
			}
			if fr.data != nil || fr.kind != 0 {
				t.Fatalf("a frame from a failed decode: %+v", fr)
			}
			return
		}
		if fr.end > len(b) || fr.end < 4 {
			t.Fatalf("end %d of %d bytes", fr.end, len(b))
		}
		if fr.kind != kindInfo {
			return
		}
		// From the start code on, the frame is what appendFrame writes for
		// the same data, less the postamble if it was missing.
		start := bytes.IndexByte(b, 0xFF) - 1
		got := b[start:fr.end]
		if got[2] == 0xFF && got[3] == 0xFF {
			return // an extended frame, which may carry what a normal one could
		}
		enc, err := appendFrame(nil, fr.tfi, fr.data)
		if err != nil {
			if len(fr.data) != 0 {
				t.Fatalf("re-encode: %v", err)
			}
			return
		}
		want := enc[1:]
		if len(got) == len(want)-1 {
			want = want[:len(got)]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded % X from % X; re-encoded % X", fr.data, got, want)
		}
	})
}

// FuzzParseTarget feeds arbitrary parameters to the target parser: it must
// not panic, every target it returns must be well formed, and every byte
// it was given must be accounted for.
func FuzzParseTarget(f *testing.F) {
	for _, g := range goldenFrames {
		d := hx(g.data)
		if g.tfi == tfiChip && d[0] == cmdInListPassiveTarget+1 {
			f.Add(d[1:])
		}
	}
	f.Add(hx("01 01 00 84 00 0A 04 01 02 03 04 05 06 07 08 09"))
	f.Add(hx("01 01 00 04 20 04 08 11 22 33"))
	f.Fuzz(func(t *testing.T, p []byte) {
		tg, err := parseTarget(p)
		if err != nil {
			if tg.UID != nil || tg.ATS != nil {
				t.Fatalf("a target from a failed parse: %+v", tg)
			}
			if err != ErrNoTarget && !errors.Is(err, ErrFrame) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		switch len(tg.UID) {
		case 4, 7, 10:
		default:
			t.Fatalf("UID of %d bytes", len(tg.UID))
		}
		if tg.UID[0] == 0x88 || tg.SAK&0x04 != 0 || tg.Tg == 0 {
			t.Fatalf("bad target accepted: %+v", tg)
		}
		re := []byte{0x01, tg.Tg, byte(tg.ATQA >> 8), byte(tg.ATQA), tg.SAK, byte(len(tg.UID))}
		re = append(append(re, tg.UID...), tg.ATS...)
		if !bytes.Equal(re, p) {
			t.Fatalf("parsed %+v from % X", tg, p)
		}
		if tg.RandomUID != (len(tg.UID) == 4 && tg.UID[0] == 0x08) {
			t.Fatalf("RandomUID %v for % X", tg.RandomUID, tg.UID)
		}
	})
}

// FuzzCorruptTargetFrame damages one byte of a card's response frame: the
// driver must then either fail or read the very same UID.
func FuzzCorruptTargetFrame(f *testing.F) {
	frames := [][]byte{
		hx("00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00"),
		hx("00 00 FF 0F F1 D5 4B 01 01 00 44 00 07 04 C6 3A 63 11 01 89 91 00"),
		hx("00 00 FF 1C E4 D5 4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99 5C 00"),
	}
	for i := range frames {
		for pos := range 40 {
			f.Add(uint8(i), uint8(pos), uint8(0x01))
		}
	}
	f.Fuzz(func(t *testing.T, which, pos, xor uint8) {
		orig := frames[int(which)%len(frames)]
		want, err := targetOf(orig)
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(orig)
		b[int(pos)%len(b)] ^= xor
		got, err := targetOf(b)
		if err != nil {
			if got.UID != nil {
				t.Fatalf("a UID from a bad frame: % X", got.UID)
			}
			return
		}
		if !bytes.Equal(got.UID, want.UID) || got.SAK != want.SAK || got.ATQA != want.ATQA || !bytes.Equal(got.ATS, want.ATS) {
			t.Fatalf("damaged frame % X gave %v, the original %v", b, got, want)
		}
	})
}
