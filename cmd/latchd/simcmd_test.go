package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseUID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		err  string
	}{
		{in: "04A1B2C3D4E5F6", want: []byte{0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6}},
		{in: "04:a1:b2:c3:d4:e5:f6", want: []byte{0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6}},
		{in: "deadbeef", want: []byte{0xde, 0xad, 0xbe, 0xef}},
		{in: "00112233445566778899", want: []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99}},
		{in: "DEADBEE", err: "odd number"},
		{in: "zz112233", err: "not hex"},
		{in: "0011223344", err: "5 bytes"},
		{in: "", err: "0 bytes"},
	} {
		got, err := parseUID(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseUID(%q) error = %v, want containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("parseUID(%q) = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSimCmd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want simCmd
		err  string
	}{
		{in: "tap 04DEADBEEF0001", want: simCmd{op: opTap, uid: []byte{0x04, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}}},
		{in: "  TAP  de:ad:be:ef ", want: simCmd{op: opTap, uid: []byte{0xde, 0xad, 0xbe, 0xef}}},
		{in: "key 1234#", want: simCmd{op: opKey, keys: "1234#"}},
		{in: "remove", want: simCmd{op: opRemove}},
		{in: "open", want: simCmd{op: opOpen}},
		{in: "close", want: simCmd{op: opClose}},
		{in: "rex", want: simCmd{op: opREX}},
		{in: "tamper", want: simCmd{op: opTamper, on: true}},
		{in: "tamper on", want: simCmd{op: opTamper, on: true}},
		{in: "TAMPER off", want: simCmd{op: opTamper}},
		{in: "status", want: simCmd{op: opStatus}},
		{in: "help", want: simCmd{op: opHelp}},
		{in: "quit", want: simCmd{op: opQuit}},
		{in: "unlock", want: simCmd{op: opUnlock, dur: 5 * time.Second}},
		{in: "unlock 10", want: simCmd{op: opUnlock, dur: 10 * time.Second}},
		{in: "lockdown on", want: simCmd{op: opLockdown, on: true}},
		{in: "lockdown off", want: simCmd{op: opLockdown}},
		{in: "revoke 04A1B2C3D4E5F6", want: simCmd{op: opRevoke, uid: []byte{0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6}}},
		{in: "reinstate 04DEADBEEF0001", want: simCmd{op: opReinstate, uid: []byte{0x04, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}}},
		{in: "unlock 99", err: "1 to 60"},
		{in: "lockdown maybe", err: "on or off"},
		{in: "revoke", err: "needs one UID"},
		{in: "", want: simCmd{}},
		{in: "# comment", want: simCmd{}},
		{in: "tap", err: "needs one UID"},
		{in: "tap 12", err: "1 bytes"},
		{in: "key 12a", err: `'a' is not a key`},
		{in: "open now", err: "takes no arguments"},
		{in: "tamper maybe", err: "on (the default) or off"},
		{in: "fly", err: `unknown command "fly"`},
		{in: "tap " + strings.Repeat("0", 300), err: "at most 256"},
	} {
		got, err := parseSimCmd(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseSimCmd(%q) error = %v, want containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.op != tc.want.op || !bytes.Equal(got.uid, tc.want.uid) || got.keys != tc.want.keys || got.dur != tc.want.dur || got.on != tc.want.on {
			t.Errorf("parseSimCmd(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseSimCmd(f *testing.F) {
	for _, s := range []string{"tap 04A1B2C3D4E5F6", "key 1234#", "remove", "tap 04:de:ad", "status", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseSimCmd(line)
		if err != nil {
			return
		}
		if c.op == opTap && len(c.uid) != 4 && len(c.uid) != 7 && len(c.uid) != 10 {
			t.Fatalf("tap with a %d-byte UID from %q", len(c.uid), line)
		}
		if c.op == opKey && strings.Trim(c.keys, "0123456789*#") != "" {
			t.Fatalf("key command with non-keys %q from %q", c.keys, line)
		}
	})
}
