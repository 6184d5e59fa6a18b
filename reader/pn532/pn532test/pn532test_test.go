package pn532test

import (
	"bytes"
	"encoding/hex"
	"math/bits"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
)

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// host talks to the chip the way an MSB-first controller does, reversing
// bits by hand (with math/bits, not the emulator's own code).
type host struct {
	t *testing.T
	c spi.Conn
}

func newHost(t *testing.T, chip *Chip) *host {
	t.Helper()
	c, err := chip.Connect(physic.MegaHertz, spi.Mode0, 8)
	if err != nil {
		t.Fatal(err)
	}
	return &host{t: t, c: c}
}

func rev(b []byte) []byte {
	o := make([]byte, len(b))
	for i, v := range b {
		o[i] = bits.Reverse8(v)
	}
	return o
}

func (h *host) write(frame []byte) {
	h.t.Helper()
	if err := h.c.Tx(rev(append([]byte{0x01}, frame...)), nil); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) status() byte {
	h.t.Helper()
	r := make([]byte, 2)
	if err := h.c.Tx(rev([]byte{0x02, 0x00}), r); err != nil {
		h.t.Fatal(err)
	}
	return rev(r)[1]
}

// tx runs one transaction of w and returns what the chip sent.
func (h *host) tx(w []byte) []byte {
	h.t.Helper()
	r := make([]byte, len(w))
	if err := h.c.Tx(w, r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *host) read(n int) []byte {
	h.t.Helper()
	r := make([]byte, n+1)
	if err := h.c.Tx(rev(append([]byte{0x03}, make([]byte, n)...)), r); err != nil {
		h.t.Fatal(err)
	}
	return rev(r)[1:]
}

// command writes a frame, reads the ACK and the response of want's length,
// and compares both byte for byte.
func (h *host) command(frame, want string) {
	h.t.Helper()
	h.write(hx(frame))
	if st := h.status(); st != 0x01 {
		h.t.Fatalf("%s: status %02X before the ACK", frame, st)
	}
	if ack := h.read(6); !bytes.Equal(ack, hx("00 00 FF 00 FF 00")) {
		h.t.Fatalf("%s: ACK % X", frame, ack)
	}
	if want == "" {
		if st := h.status(); st != 0x00 {
			h.t.Fatalf("%s: status %02X, want no answer yet", frame, st)
		}
		return
	}
	if st := h.status(); st != 0x01 {
		h.t.Fatalf("%s: status %02X before the response", frame, st)
	}
	w := hx(want)
	if got := h.read(len(w)); !bytes.Equal(got, w) {
		h.t.Fatalf("%s:\n got % X\nwant % X", frame, got, w)
	}
	if st := h.status(); st != 0x00 {
		h.t.Fatalf("%s: status %02X after the response", frame, st)
	}
}

// The chip answers the golden frames of the user manual and the traces
// (shared/vectors/pn532-frames.md) byte for byte.
func TestGoldenExchanges(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	h.command("00 00 FF 05 FB D4 14 01 14 01 02 00", "00 00 FF 02 FE D5 15 16 00")
	h.command("00 00 FF 03 FD D4 14 01 17 00", "00 00 FF 02 FE D5 15 16 00")
	h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
	h.command("00 00 FF 06 FA D4 32 05 FF 01 01 F4 00", "00 00 FF 02 FE D5 33 F8 00")
	h.command("00 00 FF 03 FD D4 12 14 06 00", "00 00 FF 02 FE D5 13 18 00")
	h.command("00 00 FF 09 F7 D4 00 00 6C 69 62 6E 66 63 BE 00", "00 00 FF 09 F7 D5 01 00 6C 69 62 6E 66 63 BC 00")
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "00 00 FF 03 FD D5 4B 00 E0 00")

	if err := chip.Present(Card{UID: hx("04 C6 3A 63 11 01 89")}); err != nil {
		t.Fatal(err)
	}
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "00 00 FF 0F F1 D5 4B 01 01 00 44 00 07 04 C6 3A 63 11 01 89 91 00")
	h.command("00 00 FF 03 FD D4 52 00 DA 00", "00 00 FF 03 FD D5 53 00 D8 00")
	h.command("00 00 FF 04 FC D4 32 01 00 F9 00", "00 00 FF 02 FE D5 33 F8 00")
	if chip.Field() {
		t.Fatal("field on after RFConfiguration off")
	}

	if err := chip.Present(Card{UID: hx("DE AD BE EF"), SAK: 0x08}); err != nil {
		t.Fatal(err)
	}
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00")
	if !chip.Field() {
		t.Fatal("field off after InListPassiveTarget")
	}
	h.command("00 00 FF 03 FD D4 44 00 E8 00", "00 00 FF 03 FD D5 45 00 E6 00")

	if err := chip.Present(Card{UID: hx("FD E6 08 99"), SAK: 0x08, ATS: hx("10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99")}); err != nil {
		t.Fatal(err)
	}
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00",
		"00 00 FF 1C E4 D5 4B 01 01 00 04 28 04 FD E6 08 99 10 78 80 90 02 20 90 00 00 00 00 00 FD E6 08 99 5C 00")
	// The card has no APDU handler: it does not answer.
	h.command("00 00 FF 04 FC D4 40 01 00 EB 00", "00 00 FF 03 FD D5 41 01 E9 00")
	h.write(hx("00 00 FF 03 FD D4 16 20 F6 00"))
	h.status()
	h.read(6)
	h.status()
	if got := h.read(10); !bytes.Equal(got, hx("00 00 FF 03 FD D5 17 00 14 00")) {
		t.Fatalf("PowerDown: % X", got)
	}
	if !chip.Asleep() {
		t.Fatal("awake after PowerDown")
	}
	// Chip select wakes it; that transaction reads a floating MISO.
	if st := h.status(); st != 0xFF {
		t.Fatalf("status %02X while asleep", st)
	}
	h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00")

	want := []byte{0x14, 0x14, 0x02, 0x32, 0x12, 0x00, 0x4A, 0x4A, 0x52, 0x32, 0x4A, 0x44, 0x4A, 0x40, 0x16, 0x02}
	if got := chip.Commands(); !bytes.Equal(got, want) {
		t.Fatalf("commands % X, want % X", got, want)
	}
}

func TestErrorFrameAndIgnoredFrames(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	// Unknown command (InAutoPoll is not emulated): the error frame.
	h.command("00 00 FF 05 FB D4 60 FF 01 10 BC 00", "00 00 FF 01 FF 7F 81 00")
	// A bad checksum: the chip ignores the frame.
	h.write(hx("00 00 FF 02 FE D4 02 2B 00"))
	if st := h.status(); st != 0x00 {
		t.Fatalf("status %02X after a bad frame", st)
	}
	if s := chip.Stats(); s.Commands != 1 {
		t.Fatalf("%+v", s)
	}
	chip.SyntaxErrors(1)
	h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 01 FF 7F 81 00")
	h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
}

func TestWaitForCardAndAbort(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	// Out of the box the chip retries activation forever.
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "")
	if err := chip.Present(Card{UID: hx("DE AD BE EF"), SAK: 0x08}); err != nil {
		t.Fatal(err)
	}
	if st := h.status(); st != 0x01 {
		t.Fatalf("status %02X once a card came", st)
	}
	h.read(19)
	h.write(hx("00 00 FF 04 FC D4 32 01 00 F9 00"))
	h.read(7)
	h.read(9)
	// Waiting again; an ACK frame aborts.
	chip.Remove()
	h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "")
	h.write(hx("00 00 FF 00 FF 00"))
	if s := chip.Stats(); s.Aborts != 1 {
		t.Fatalf("%+v", s)
	}
	h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
}

func TestNACKAndCorruption(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	chip.CorruptResponses(1)
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	h.status()
	h.read(6)
	h.status()
	if got := h.read(13); bytes.Equal(got, hx("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")) {
		t.Fatal("not corrupted")
	}
	h.write(hx("00 00 FF FF 00 00"))
	if st := h.status(); st != 0x01 {
		t.Fatalf("status %02X after NACK", st)
	}
	if got := h.read(13); !bytes.Equal(got, hx("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")) {
		t.Fatalf("resent % X", got)
	}
}

// A frame read in parts: the first read gets the frame after the
// operation byte; each continuation gets the next byte under it.
func TestContinuationReads(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	want := hx("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	h.status()
	h.read(6)
	h.status()
	a := h.read(5)
	// 5 more bytes in a transaction of 5: the first under the read op.
	b := rev(h.tx(rev([]byte{0x03, 0, 0, 0, 0})))
	c := rev(h.tx(rev([]byte{0x03, 0, 0})))
	got := append(append(a, b...), c...)
	if !bytes.Equal(got, want) {
		t.Fatalf("in three reads % X\nwant % X", got, want)
	}
	if st := h.status(); st != 0x00 {
		t.Fatalf("status %02X after the frame was read", st)
	}
	// A host that reads a continuation as if it were a first read loses
	// the byte under the operation byte.
	h.write(hx("00 00 FF FF 00 00"))
	h.status()
	a, b = h.read(5), h.read(8)
	if got := append(a, b...); bytes.Equal(got[:12], want[:12]) || !bytes.Equal(got[5:12], want[6:]) {
		t.Fatalf("first-read style continuation % X", got)
	}
	// Past the end of a frame: zeros, and the frame counts as read.
	h.write(hx("00 00 FF FF 00 00"))
	h.status()
	if got := h.read(20); !bytes.Equal(got, append(bytes.Clone(want), make([]byte, 7)...)) {
		t.Fatalf("long read % X", got)
	}
	if s := chip.Stats(); s.Bytes != 10+2+7+2+6+5+3+2+7+2+6+9+7+2+21 {
		t.Fatalf("%d bytes clocked", s.Bytes)
	}
}

// ACKBusy and ResponseBusy hold every ACK and response back for as many
// status reads; Busy overrides the response's count once.
func TestBusyCounts(t *testing.T) {
	chip := New(&Opts{ACKBusy: 1, ResponseBusy: 2})
	h := newHost(t, chip)
	for _, busy := range []int{2, 4} {
		if busy == 4 {
			chip.Busy(4)
		}
		h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
		if st := h.status(); st != 0x00 {
			t.Fatalf("status %02X: the ACK is ready at once", st)
		}
		if st := h.status(); st != 0x01 {
			t.Fatalf("status %02X after one busy read", st)
		}
		h.read(6)
		for i := range busy {
			if st := h.status(); st != 0x00 {
				t.Fatalf("busy %d, read %d: status %02X", busy, i, st)
			}
		}
		if st := h.status(); st != 0x01 {
			t.Fatalf("busy %d: status %02X", busy, st)
		}
		if got := h.read(13); !bytes.Equal(got, hx("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")) {
			t.Fatalf("% X", got)
		}
	}
}

// RFTime holds a card's answer back on the fake clock, whether the card
// was there when the command came or came while the chip waited; other
// answers are not held.
func TestRFTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rf = 3 * time.Millisecond
		chip := New(&Opts{RFTime: rf})
		h := newHost(t, chip)
		irq := chip.IRQ()
		if err := irq.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			t.Fatal(err)
		}
		// Retries forever (the chip's setting after power-up): it waits.
		h.command("00 00 FF 04 FC D4 4A 01 00 E1 00", "")
		time.Sleep(time.Second)
		if irq.Read() != gpio.High {
			t.Fatal("an answer with no card")
		}
		// Forget the edges of the ACK.
		if err := irq.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := chip.Present(Card{UID: hx("DE AD BE EF"), SAK: 0x08}); err != nil {
			t.Fatal(err)
		}
		if st := h.status(); st != 0x00 {
			t.Fatalf("status %02X before the RF time", st)
		}
		if !irq.WaitForEdge(time.Second) || time.Since(start) != rf {
			t.Fatalf("answer after %s, want %s", time.Since(start), rf)
		}
		h.read(19)
		// Field off, then a card already there: RF time again.
		h.command("00 00 FF 04 FC D4 32 01 00 F9 00", "00 00 FF 02 FE D5 33 F8 00")
		h.write(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
		h.status()
		h.read(6)
		if err := irq.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		if !irq.WaitForEdge(time.Second) || time.Since(start) != rf {
			t.Fatalf("answer after %s, want %s", time.Since(start), rf)
		}
		if got := h.read(19); got[7] != 0x01 {
			t.Fatalf("% X", got)
		}
		// A command that activates nothing answers at once.
		start = time.Now()
		h.command("00 00 FF 02 FE D4 02 2A 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
		if time.Since(start) != 0 {
			t.Fatalf("GetFirmwareVersion took %s", time.Since(start))
		}
	})
}

func TestBusyStaleDrop(t *testing.T) {
	chip := New(&Opts{LoseFirstCommand: true})
	h := newHost(t, chip)
	// The first command after power-up only wakes the chip.
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	if st := h.status(); st != 0x00 {
		t.Fatalf("status %02X", st)
	}
	chip.Busy(3)
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	h.status()
	h.read(6)
	for i := range 3 {
		if st := h.status(); st != 0x00 {
			t.Fatalf("busy read %d: %02X", i, st)
		}
	}
	if st := h.status(); st != 0x01 {
		t.Fatalf("status %02X after Busy ran out", st)
	}
	h.read(13)

	chip.LeaveStaleResponse()
	// A new command is ignored: the old answer comes first.
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	if got := h.read(6); !bytes.Equal(got, hx("00 00 FF 02 FE D5")) {
		t.Fatalf("got % X where the stale answer was due", got)
	}
	h.write(hx("00 00 FF 00 FF 00"))
	if st := h.status(); st != 0x00 {
		t.Fatalf("status %02X after abort", st)
	}
	chip.DropCommands(1)
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	if st := h.status(); st != 0x00 {
		t.Fatalf("status %02X after a dropped command", st)
	}
	if s := chip.Stats(); s.Dropped != 3 || s.Commands != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestUnplugResetAndConnect(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	chip.Unplug(0xFF)
	if st := h.status(); st != 0xFF {
		t.Fatalf("unplugged status %02X", st)
	}
	chip.Unplug(0x00)
	if got := h.read(4); !bytes.Equal(got, []byte{0, 0, 0, 0}) {
		t.Fatalf("% X", got)
	}
	chip.Plug()
	h.command("00 00 FF 06 FA D4 32 05 FF 01 01 F4 00", "00 00 FF 02 FE D5 33 F8 00")
	if sam, retries := chip.Configured(); sam || retries != 0x01 {
		t.Fatalf("configured %v %02X", sam, retries)
	}
	rst := chip.Reset()
	if err := rst.Out(gpio.Low); err != nil {
		t.Fatal(err)
	}
	if st := h.status(); st != 0xFF {
		t.Fatalf("status %02X in reset", st)
	}
	if err := rst.Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	if _, retries := chip.Configured(); retries != 0xFF {
		t.Fatalf("retries %02X after reset", retries)
	}
	if s := chip.Stats(); s.Resets != 1 || s.PowerUps != 3 {
		t.Fatalf("%+v", s)
	}
	if rst.PWM(gpio.DutyHalf, physic.KiloHertz) == nil {
		t.Fatal("PWM on the reset pin")
	}

	for _, tc := range []struct {
		f    physic.Frequency
		mode spi.Mode
		bits int
		want string
	}{
		{physic.MegaHertz, spi.Mode0 | spi.LSBFirst, 8, "LSB first"},
		{physic.MegaHertz, spi.Mode3, 8, "mode 0 only"},
		{physic.MegaHertz, spi.Mode0, 9, "9 bits"},
		{physic.MegaHertz, spi.Mode0 | spi.HalfDuplex, 8, "full duplex"},
		{10 * physic.MegaHertz, spi.Mode0, 8, "above the PN532's 5MHz"},
	} {
		if _, err := chip.Connect(tc.f, tc.mode, tc.bits); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Connect(%s, %s, %d): %v", tc.f, tc.mode, tc.bits, err)
		}
	}
	// With LSB first allowed, bytes go unreversed.
	lsb := New(&Opts{AllowLSBFirst: true})
	c, err := lsb.Connect(physic.MegaHertz, spi.Mode0|spi.LSBFirst, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Tx(append([]byte{0x01}, hx("00 00 FF 02 FE D4 02 2A 00")...), nil); err != nil {
		t.Fatal(err)
	}
	r := make([]byte, 2)
	if err := c.Tx([]byte{0x02, 0x00}, r); err != nil || r[1] != 0x01 {
		t.Fatalf("status % X, %v", r, err)
	}
	if err := c.Tx([]byte{0x03, 0}, make([]byte, 3)); err == nil {
		t.Fatal("Tx with buffers of different lengths")
	}
}

func TestTxPackets(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
	// Status read as two packets under one chip select, then the ACK.
	st := make([]byte, 1)
	ack := make([]byte, 6)
	err := h.c.TxPackets([]spi.Packet{
		{W: rev([]byte{0x02}), KeepCS: true},
		{R: st},
		{W: rev([]byte{0x03}), KeepCS: true},
		{R: ack},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rev(st)[0] != 0x01 || !bytes.Equal(rev(ack), hx("00 00 FF 00 FF 00")) {
		t.Fatalf("status % X ack % X", rev(st), rev(ack))
	}
	if s := chip.Stats(); s.Tx != 3 {
		t.Fatalf("%d transactions, want 3", s.Tx)
	}
	if err := h.c.TxPackets([]spi.Packet{{W: []byte{0x40}, KeepCS: true}}); err == nil {
		t.Fatal("chip select left asserted")
	}
}

// TestIRQPin runs in a synctest bubble: Latency is measured on the
// bubble's fake clock, which moves only while the test waits for an
// edge, so a test goroutine held up by a loaded machine never finds the
// response ready before it has checked that it is not.
func TestIRQPin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		chip := New(&Opts{Latency: time.Millisecond})
		h := newHost(t, chip)
		irq := chip.IRQ()
		if err := irq.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			t.Fatal(err)
		}
		if irq.Read() != gpio.High {
			t.Fatal("IRQ low with nothing to read")
		}
		h.write(hx("00 00 FF 02 FE D4 02 2A 00"))
		// The ACK is ready at once.
		if !irq.WaitForEdge(time.Second) || irq.Read() != gpio.Low {
			t.Fatal("no edge for the ACK")
		}
		h.read(6)
		if irq.Read() != gpio.High {
			t.Fatal("IRQ low after the ACK was read")
		}
		// The response comes after Latency.
		if !irq.WaitForEdge(time.Second) || irq.Read() != gpio.Low {
			t.Fatal("no edge for the response")
		}
		if got := h.read(13); !bytes.Equal(got, hx("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")) {
			t.Fatalf("% X", got)
		}
		if irq.WaitForEdge(0) {
			t.Fatal("edge with nothing to read")
		}
		// SAMConfiguration with IRQ 0 silences the line.
		h.command("00 00 FF 05 FB D4 14 01 14 00 03 00", "")
		if !irq.WaitForEdge(time.Second) {
			t.Fatal("no edge for the ACK")
		}
	})
}

// Cards come and go from other goroutines while a host polls.
func TestConcurrentUse(t *testing.T) {
	chip := New(nil)
	h := newHost(t, chip)
	h.command("00 00 FF 06 FA D4 32 05 FF 01 01 F4 00", "00 00 FF 02 FE D5 33 F8 00")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				_ = chip.Present(Card{UID: []byte{1, 2, 3, byte(i)}})
			} else {
				chip.Remove()
			}
			_ = chip.Stats()
			_ = chip.IRQ().Read()
		}
	}()
	for range 200 {
		h.write(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
		h.status()
		h.read(6)
		h.status()
		f := h.read(19)
		if f[5] != 0xD5 || f[6] != 0x4B {
			t.Fatalf("% X", f)
		}
		h.write(hx("00 00 FF 04 FC D4 32 01 00 F9 00"))
		h.status()
		h.read(6)
		h.status()
		h.read(9)
	}
	close(stop)
	wg.Wait()
}

func TestPresentChecks(t *testing.T) {
	chip := New(nil)
	if err := chip.Present(Card{UID: []byte{1, 2, 3}}); err == nil {
		t.Fatal("3-byte UID accepted")
	}
	if err := chip.Present(Card{UID: []byte{1, 2, 3, 4}, ATS: []byte{5, 1}}); err == nil {
		t.Fatal("bad ATS accepted")
	}
}
