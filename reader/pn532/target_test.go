package pn532

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// targetOf decodes a golden InListPassiveTarget frame down to its target.
func targetOf(frame []byte) (Target, error) {
	f, err := decodeFrame(frame)
	if err != nil {
		return Target{}, err
	}
	p, err := checkResponse(f, cmdInListPassiveTarget)
	if err != nil {
		return Target{}, err
	}
	return parseTarget(p)
}

func TestParseTargetGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string
		want  Target
	}{
		{"MIFARE Classic 1K", "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00",
			Target{Tg: 1, UID: hx("DE AD BE EF"), ATQA: 0x0004, SAK: 0x08}},
		{"NTAG, 7-byte UID", "00 00 FF 0F F1 D5 4B 01 01 00 44 00 07 04 C6 3A 63 11 01 89 91 00",
			Target{Tg: 1, UID: hx("04 C6 3A 63 11 01 89"), ATQA: 0x0044, SAK: 0x00}},
		{"ISO14443-4 with ATS", "00 00 FF 1C E4 D5 4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99 5C 00",
			Target{Tg: 1, UID: hx("FD E6 08 99"), ATQA: 0x0004, SAK: 0x28, ATS: hx("10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99")}},
	} {
		got, err := targetOf(hx(tc.frame))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.Tg != tc.want.Tg || !bytes.Equal(got.UID, tc.want.UID) || got.ATQA != tc.want.ATQA ||
			got.SAK != tc.want.SAK || !bytes.Equal(got.ATS, tc.want.ATS) || got.RandomUID {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := targetOf(hx("00 00 FF 03 FD D5 4B 00 E0 00")); err != ErrNoTarget {
		t.Errorf("no target: %v", err)
	}
	iso, _ := targetOf(hx("00 00 FF 1C E4 D5 4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99 5C 00"))
	if !iso.ISODEP() || iso.String() != "uid=fde60899 atqa=0004 sak=28 ats=107880900220900000000000fde60899" {
		t.Errorf("ISO-DEP target: %v %q", iso.ISODEP(), iso.String())
	}
}

func TestParseTargetSizes(t *testing.T) {
	for _, tc := range []struct {
		p      string
		uid    string
		random bool
	}{
		{"01 01 00 04 08 04 01 02 03 04", "01 02 03 04", false},
		{"01 01 00 04 20 04 08 11 22 33", "08 11 22 33", true},
		{"01 01 00 44 00 07 08 11 22 33 44 55 66", "08 11 22 33 44 55 66", false},
		{"01 01 00 84 00 0A 04 01 02 03 04 05 06 07 08 09", "04 01 02 03 04 05 06 07 08 09", false},
	} {
		got, err := parseTarget(hx(tc.p))
		if err != nil || !bytes.Equal(got.UID, hx(tc.uid)) || got.RandomUID != tc.random {
			t.Errorf("% s: got %v, %v", tc.p, got, err)
		}
	}
	r, _ := parseTarget(hx("01 01 00 04 20 04 08 11 22 33"))
	if !strings.HasSuffix(r.String(), " random") {
		t.Errorf("random target prints %q", r.String())
	}
}

func TestParseTargetMalformed(t *testing.T) {
	for _, tc := range []struct{ p, reason string }{
		{"", "no target count"},
		{"00 01", "no target but 1 more"},
		{"02 01 00 04 08 04 01 02 03 04", "2 targets, asked for 1"},
		{"01 01 00 04 08", "at least 6"},
		{"01 00 00 04 08 04 01 02 03 04", "target number 0"},
		{"01 01 00 04 08 05 01 02 03 04 05", "UID length 5"},
		{"01 01 00 04 08 00", "UID length 0"},
		{"01 01 00 04 08 07 01 02 03 04", "only 4 bytes follow"},
		{"01 01 00 04 08 04 88 02 03 04", "cascade tag"},
		{"01 01 00 04 0C 04 01 02 03 04", "not complete"},
		{"01 01 00 04 08 04 01 02 03 04 05", "without ISO/IEC 14443-4"},
		{"01 01 00 04 28 04 01 02 03 04 05 78 80", "ATS length byte 5 but 3"},
		{"01 01 00 04 28 04 01 02 03 04 00", "ATS length byte 0"},
	} {
		got, err := parseTarget(hx(tc.p))
		if !errors.Is(err, ErrFrame) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("% s: got %v, want %q", tc.p, err, tc.reason)
		}
		if got.UID != nil {
			t.Errorf("% s: a UID from a bad frame: % X", tc.p, got.UID)
		}
	}
}

func TestSameCard(t *testing.T) {
	a := Target{UID: hx("01 02 03 04")}
	b := Target{UID: hx("01 02 03 05")}
	r1 := Target{UID: hx("08 01 02 03"), RandomUID: true}
	r2 := Target{UID: hx("08 09 09 09"), RandomUID: true}
	if !sameCard(a, a) || sameCard(a, b) || !sameCard(r1, r2) || sameCard(a, r1) {
		t.Fatal("sameCard")
	}
}

func TestFirmware(t *testing.T) {
	fw, err := parseFirmware(hx("32 01 06 07"))
	if err != nil || fw != (Firmware{IC: 0x32, Version: 1, Revision: 6, Support: 7}) {
		t.Fatalf("%+v, %v", fw, err)
	}
	if s := fw.String(); s != "PN532 v1.6 (ISO14443A ISO14443B ISO18092)" {
		t.Fatalf("%q", s)
	}
	if s := (Firmware{IC: 0x33, Version: 2, Revision: 1, Support: 1}).String(); s != "IC 0x33 v2.1 (ISO14443A)" {
		t.Fatalf("%q", s)
	}
	if _, err := parseFirmware(hx("32 01 06")); !errors.Is(err, ErrFrame) {
		t.Fatalf("short answer: %v", err)
	}
}
