package pn532

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// hx parses hex bytes separated by spaces: "00 00 FF".
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Golden frames from UM0701-02 and the recorded traces in
// shared/vectors/pn532-frames.md (§2.5). data is the packet data after
// the TFI.
var goldenFrames = []struct {
	name  string
	tfi   byte
	data  string
	frame string
}{
	{"GetFirmwareVersion", tfiHost, "02", "00 00 FF 02 FE D4 02 2A 00"},
	{"GetFirmwareVersion response", tfiChip, "03 32 01 06 07", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00"},
	{"SAMConfiguration(01,14,01)", tfiHost, "14 01 14 01", "00 00 FF 05 FB D4 14 01 14 01 02 00"},
	{"SAMConfiguration(01)", tfiHost, "14 01", "00 00 FF 03 FD D4 14 01 17 00"},
	{"SAMConfiguration response", tfiChip, "15", "00 00 FF 02 FE D5 15 16 00"},
	{"SetParameters(0x14)", tfiHost, "12 14", "00 00 FF 03 FD D4 12 14 06 00"},
	{"SetParameters response", tfiChip, "13", "00 00 FF 02 FE D5 13 18 00"},
	{"RFConfiguration MaxRetries FF 01 01", tfiHost, "32 05 FF 01 01", "00 00 FF 06 FA D4 32 05 FF 01 01 F4 00"},
	{"RFConfiguration MaxRetries FF 01 00", tfiHost, "32 05 FF 01 00", "00 00 FF 06 FA D4 32 05 FF 01 00 F5 00"},
	{"RFConfiguration MaxRetries FF 01 02", tfiHost, "32 05 FF 01 02", "00 00 FF 06 FA D4 32 05 FF 01 02 F3 00"},
	{"RFConfiguration MaxRetries FF 01 FF", tfiHost, "32 05 FF 01 FF", "00 00 FF 06 FA D4 32 05 FF 01 FF F6 00"},
	{"libnfc infinite select", tfiHost, "32 05 FF FF FF", "00 00 FF 06 FA D4 32 05 FF FF FF F8 00"},
	{"RFConfiguration response", tfiChip, "33", "00 00 FF 02 FE D5 33 F8 00"},
	{"RF field off", tfiHost, "32 01 00", "00 00 FF 04 FC D4 32 01 00 F9 00"},
	{"RF field on", tfiHost, "32 01 01", "00 00 FF 04 FC D4 32 01 01 F8 00"},
	{"InListPassiveTarget(1, 106A)", tfiHost, "4A 01 00", "00 00 FF 04 FC D4 4A 01 00 E1 00"},
	{"InListPassiveTarget no target", tfiChip, "4B 00", "00 00 FF 03 FD D5 4B 00 E0 00"},
	{"InListPassiveTarget MIFARE Classic 1K", tfiChip, "4B 01 01 00 04 08 04 DE AD BE EF", "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00"},
	{"InListPassiveTarget NTAG", tfiChip, "4B 01 01 00 44 00 07 04 C6 3A 63 11 01 89", "00 00 FF 0F F1 D5 4B 01 01 00 44 00 07 04 C6 3A 63 11 01 89 91 00"},
	{"InListPassiveTarget ISO14443-4", tfiChip, "4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99",
		"00 00 FF 1C E4 D5 4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99 5C 00"},
	{"InRelease(0)", tfiHost, "52 00", "00 00 FF 03 FD D4 52 00 DA 00"},
	{"InRelease response", tfiChip, "53 00", "00 00 FF 03 FD D5 53 00 D8 00"},
	{"InDeselect(0)", tfiHost, "44 00", "00 00 FF 03 FD D4 44 00 E8 00"},
	{"InDeselect response", tfiChip, "45 00", "00 00 FF 03 FD D5 45 00 E6 00"},
	{"Diagnose echo libnfc", tfiHost, "00 00 6C 69 62 6E 66 63", "00 00 FF 09 F7 D4 00 00 6C 69 62 6E 66 63 BE 00"},
	{"Diagnose echo response", tfiChip, "01 00 6C 69 62 6E 66 63", "00 00 FF 09 F7 D5 01 00 6C 69 62 6E 66 63 BC 00"},
	{"InCommunicateThru no card", tfiChip, "43 01", "00 00 FF 03 FD D5 43 01 E7 00"},
	{"InDataExchange status 0x01", tfiChip, "41 01", "00 00 FF 03 FD D5 41 01 E9 00"},
	{"PowerDown(0x20)", tfiHost, "16 20", "00 00 FF 03 FD D4 16 20 F6 00"},
	{"PowerDown response", tfiChip, "17 00", "00 00 FF 03 FD D5 17 00 14 00"},
	{"InAutoPoll(FF,01,10)", tfiHost, "60 FF 01 10", "00 00 FF 05 FB D4 60 FF 01 10 BC 00"},
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldenFrames {
		got, err := appendFrame(nil, g.tfi, hx(g.data))
		if err != nil {
			t.Errorf("%s: %v", g.name, err)
			continue
		}
		if want := hx(g.frame); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % X\nwant % X", g.name, got, want)
		}
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldenFrames {
		b := hx(g.frame)
		f, err := decodeFrame(b)
		if err != nil {
			t.Errorf("%s: %v", g.name, err)
			continue
		}
		if f.kind != kindInfo || f.tfi != g.tfi || !bytes.Equal(f.data, hx(g.data)) || f.end != len(b) {
			t.Errorf("%s: got %s tfi %02X data % X end %d", g.name, f.kind, f.tfi, f.data, f.end)
		}
	}
}

func TestDecodeSpecialFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    string
		kind frameKind
		end  int
	}{
		{"ACK", "00 00 FF 00 FF 00", kindACK, 6},
		{"ACK without preamble", "00 FF 00 FF 00", kindACK, 5},
		{"ACK without postamble", "00 00 FF 00 FF", kindACK, 5},
		{"ACK with a long preamble, then junk", "00 00 00 00 FF 00 FF 00 12 34", kindACK, 8},
		{"NACK", "00 00 FF FF 00 00", kindNACK, 6},
		{"error frame", "00 00 FF 01 FF 7F 81 00", kindError, 8},
	} {
		f, err := decodeFrame(hx(tc.b))
		if err != nil || f.kind != tc.kind || f.end != tc.end {
			t.Errorf("%s: got %s end %d, %v; want %s end %d", tc.name, f.kind, f.end, err, tc.kind, tc.end)
		}
	}
}

func TestDecodeTolerated(t *testing.T) {
	want := hx("03 32 01 06 07")
	for _, tc := range []struct{ name, b string }{
		{"no preamble", "00 FF 06 FA D5 03 32 01 06 07 E8 00"},
		{"long preamble", "00 00 00 00 00 FF 06 FA D5 03 32 01 06 07 E8 00"},
		{"no postamble", "00 00 FF 06 FA D5 03 32 01 06 07 E8"},
		{"neither", "00 FF 06 FA D5 03 32 01 06 07 E8"},
		{"bytes after the frame", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00 00 00 AA 55"},
		{"extended frame", "00 00 FF FF FF 00 06 FA D5 03 32 01 06 07 E8 00"},
	} {
		f, err := decodeFrame(hx(tc.b))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if f.kind != kindInfo || f.tfi != tfiChip || !bytes.Equal(f.data, want) {
			t.Errorf("%s: got %s %02X % X", tc.name, f.kind, f.tfi, f.data)
		}
	}
}

func TestExtendedFrame(t *testing.T) {
	// The golden extended frame of pn53x-internal.h.
	b := hx("00 00 FF FF FF 00 02 FE D4 02 2A 00")
	f, err := decodeFrame(b)
	if err != nil || f.tfi != tfiHost || !bytes.Equal(f.data, []byte{0x02}) {
		t.Fatalf("got %+v, %v", f, err)
	}
	// A command too long for a normal frame goes out extended and comes
	// back whole.
	data := make([]byte, 264)
	for i := range data {
		data[i] = byte(i * 7)
	}
	enc, err := appendFrame(nil, tfiHost, data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc[:8], []byte{0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x01, 0x09, 0xF6}) || len(enc) != frameLen(265) {
		t.Fatalf("header % X, length %d", enc[:8], len(enc))
	}
	f, err = decodeFrame(enc)
	if err != nil || !bytes.Equal(f.data, data) || f.end != len(enc) {
		t.Fatalf("round trip: %v", err)
	}
	// The largest normal frame: 254 bytes of data and the TFI.
	enc, err = appendFrame(nil, tfiHost, data[:254])
	if err != nil || enc[3] != 0xFF || enc[4] != 0x01 || len(enc) != frameLen(255) {
		t.Fatalf("largest normal frame: % X, %v", enc[:5], err)
	}
	if _, err := appendFrame(nil, tfiHost, make([]byte, 265)); !errors.Is(err, ErrFrame) {
		t.Fatalf("265 bytes of data: %v", err)
	}
	if _, err := appendFrame(nil, tfiHost, nil); !errors.Is(err, ErrFrame) {
		t.Fatalf("no data: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      string
		offset int
		reason string
	}{
		{"empty", "", 0, "no bytes"},
		{"floating MISO", "FF FF FF FF FF FF", 0, "no start code"},
		{"no 0xFF", "00 00 FE 02 FE D5 15 16 00", 2, "start code"},
		{"length checksum", "00 00 FF 06 FB D5 03 32 01 06 07 E8 00", 4, "length checksum 0xFB"},
		{"data checksum", "00 00 FF 06 FA D5 03 32 01 06 07 E9 00", 11, "data checksum 0xE9, want 0xE8"},
		{"flipped UID byte", "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EE 96 00", 17, "data checksum"},
		{"length 0", "00 00 FF 00 00 00", 3, "length 0"},
		{"extended length checksum", "00 00 FF FF FF 00 06 FB D5 03 32 01 06 07 E8 00", 7, "extended length checksum"},
		{"extended too long", "00 00 FF FF FF 01 0A F5", 5, "over the PN532's 265"},
	} {
		_, err := decodeFrame(hx(tc.b))
		var fe *FrameError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFrame) {
			t.Errorf("%s: got %v, want a FrameError", tc.name, err)
			continue
		}
		if fe.Offset != tc.offset || !strings.Contains(fe.Reason, tc.reason) {
			t.Errorf("%s: got %q at %d, want %q at %d", tc.name, fe.Reason, fe.Offset, tc.reason, tc.offset)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	full := hx("00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00")
	for n := 0; n < len(full)-1; n++ {
		_, err := decodeFrame(full[:n])
		if err == nil {
			t.Fatalf("%d bytes: decoded", n)
		}
		var te *truncatedError
		if n >= 3 && (!errors.As(err, &te) || te.need > len(full) || te.need <= n) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	// Read as the answer to an empty poll (10 bytes), a card's frame says
	// exactly how much to read again.
	_, err := decodeFrame(full[:10])
	var te *truncatedError
	if !errors.As(err, &te) || te.need != len(full) {
		t.Fatalf("got %v, want need %d", err, len(full))
	}
}

func TestCheckResponse(t *testing.T) {
	f, _ := decodeFrame(hx("00 00 FF 02 FE D5 15 16 00"))
	if p, err := checkResponse(f, cmdSAMConfiguration); err != nil || len(p) != 0 {
		t.Fatalf("SAMConfiguration: % X, %v", p, err)
	}
	if _, err := checkResponse(f, cmdGetFirmwareVersion); err == nil || !strings.Contains(err.Error(), "response code 0x15 does not answer command 0x02") {
		t.Fatalf("wrong code: %v", err)
	}
	f, _ = decodeFrame(hx("00 00 FF 02 FE D4 15 17 00"))
	if _, err := checkResponse(f, cmdSAMConfiguration); err == nil || !strings.Contains(err.Error(), "frame identifier 0xD4") {
		t.Fatalf("wrong TFI: %v", err)
	}
}

// The SPI wire images of §2.5: an MSB-first host reverses every byte.
func TestWireImages(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       byte
		frame    string
		wire     string
		readBack bool
	}{
		{"GetFirmwareVersion", opDataWrite, "00 00 FF 02 FE D4 02 2A 00", "80 00 00 FF 40 7F 2B 40 54 00", false},
		{"InListPassiveTarget", opDataWrite, "00 00 FF 04 FC D4 4A 01 00 E1 00", "80 00 00 FF 20 3F 2B 52 80 00 87 00", false},
		{"abort", opDataWrite, "00 00 FF 00 FF 00", "80 00 00 FF 00 FF 00", false},
		{"status poll", opStatusRead, "00", "40 00", false},
	} {
		b := append([]byte{tc.op}, hx(tc.frame)...)
		reverseBits(b)
		if want := hx(tc.wire); !bytes.Equal(b, want) {
			t.Errorf("%s: got % X, want % X", tc.name, b, want)
		}
	}
	ready := []byte{statusReady}
	reverseBits(ready)
	if ready[0] != 0x80 {
		t.Errorf("ready reads %02X on the wire, want 80", ready[0])
	}
}

func TestStatusError(t *testing.T) {
	for _, tc := range []struct {
		code byte
		want error
	}{
		{0x01, ErrTimeout}, {0x02, ErrCRC}, {0x03, ErrParity}, {0x04, ErrCollision},
		{0x05, ErrFraming}, {0x06, ErrCollision}, {0x0B, ErrProtocol}, {0x0D, ErrOverheat},
		{0x10, ErrBadParameter}, {0x13, ErrProtocol}, {0x14, ErrAuth}, {0x27, ErrNotAllowed},
		{0x2D, ErrOverCurrent},
	} {
		err := error(&StatusError{Code: tc.code})
		if !errors.Is(err, tc.want) {
			t.Errorf("0x%02X is not %v", tc.code, tc.want)
		}
		if errors.Is(err, ErrFrame) || (tc.want != ErrTimeout && errors.Is(err, ErrTimeout)) {
			t.Errorf("0x%02X matches too much", tc.code)
		}
	}
	if s := (&StatusError{Code: 0x14}).Error(); s != "status 0x14: MIFARE authentication error" {
		t.Errorf("got %q", s)
	}
	if s := (&StatusError{Code: 0x3F}).Error(); s != "status 0x3F" {
		t.Errorf("got %q", s)
	}
}
