package pn532_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"math/bits"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/conntest"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/spi/spitest"

	"github.com/latchdoor/latch/reader/pn532"
)

// Wire records. The frames are written in the chip's bit order as in the
// user manual; wire() reverses them as an MSB-first controller sends them.

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func wire(b []byte) []byte {
	o := make([]byte, len(b))
	for i, v := range b {
		o[i] = bits.Reverse8(v)
	}
	return o
}

// status is a status read answered with st (0x01 ready, 0x00 busy).
func status(st byte) conntest.IO {
	return conntest.IO{W: wire([]byte{0x02, 0x00}), R: wire([]byte{0x00, st})}
}

// write is a data write of frame.
func write(frame string) conntest.IO {
	return conntest.IO{W: wire(append([]byte{0x01}, hx(frame)...))}
}

// read is a data read of n bytes answered with frame, padded with zeros.
func read(n int, frame string) conntest.IO {
	r := make([]byte, n+1)
	copy(r[1:], hx(frame))
	return conntest.IO{W: wire(append([]byte{0x03}, make([]byte, n)...)), R: wire(r)}
}

// more is a continuation read of a frame: a transaction of len(bytes)
// in which the chip sends the frame's next byte already under the
// operation byte.
func more(bytes string) conntest.IO {
	r := hx(bytes)
	w := make([]byte, len(r))
	w[0] = 0x03
	return conntest.IO{W: wire(w), R: wire(r)}
}

const (
	ackFrame  = "00 00 FF 00 FF 00"
	nackFrame = "00 00 FF FF 00 00"
)

// initOps is what NewSPI says and hears bringing up a PN532 without IRQ
// pin; samFrame is the SAMConfiguration frame sent, its IRQ byte as asked.
func initOps(samFrame string) []conntest.IO {
	return []conntest.IO{
		// Wake the chip (chip select) and look for a stale answer: none.
		status(0x00),
		// SAMConfiguration: normal mode, timeout 20×50 ms, IRQ as asked.
		write(samFrame),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		// The shortest usual answer is read: 10 bytes hold this one.
		read(10, "00 00 FF 02 FE D5 15 16 00"),
		// GetFirmwareVersion: IC 0x32, v1.6, type A, type B, ISO 18092.
		write("00 00 FF 02 FE D4 02 2A 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(13, "00 00 FF 06 FA D5 03 32 01 06 07 E8 00"),
		// RFConfiguration item 5: MxRtyATR FF, MxRtyPSL 01,
		// MxRtyPassiveActivation 01 (the chip's FF would retry forever).
		write("00 00 FF 06 FA D4 32 05 FF 01 01 F4 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(10, "00 00 FF 02 FE D5 33 F8 00"),
		// SetParameters: automatic ATR_RES and RATS.
		write("00 00 FF 03 FD D4 12 14 06 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(10, "00 00 FF 02 FE D5 13 18 00"),
	}
}

// fieldOffOps end the initialisation of a chip that had no reset pulse:
// the field may still be on with a card an earlier host selected.
var fieldOffOps = []conntest.IO{
	write("00 00 FF 04 FC D4 32 01 00 F9 00"),
	status(0x01),
	read(6, ackFrame),
	status(0x01),
	// As long as the last RFConfiguration answer.
	read(9, "00 00 FF 02 FE D5 33 F8 00"),
}

var fastOpts = pn532.Opts{
	ACKTimeout:      5 * time.Millisecond,
	ResponseTimeout: 20 * time.Millisecond,
	StatusInterval:  100 * time.Microsecond,
	ResetTime:       time.Microsecond,
	MaxRetries:      1,
}

func TestPlaybackInitAndPoll(t *testing.T) {
	ops := initOps("00 00 FF 05 FB D4 14 01 14 00 03 00")
	ops = append(ops, fieldOffOps...)
	ops = append(ops,
		// First poll, empty field: no field-off, init did it.
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x00), // the chip is still looking for a card
		status(0x01),
		// Sized for a card with a 7-byte UID; the rest reads zeros.
		read(22, "00 00 FF 03 FD D5 4B 00 E0 00"),

		// Poll, a MIFARE Classic 1K in the field.
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		// Read at a card's size still, after the empty answer: the
		// 19-byte answer in one transaction.
		read(22, "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00"),

		// Poll again: the card is still selected, so the field goes off
		// first to reset it.
		write("00 00 FF 04 FC D4 32 01 00 F9 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(9, "00 00 FF 02 FE D5 33 F8 00"),
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		// Never under a card's size; the empty answer is 10 of them.
		read(22, "00 00 FF 03 FD D5 4B 00 E0 00"),

		// Poll, a card with a 10-byte UID: its answer is 25 bytes.
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		// 22 bytes, as usual: the frame says it is 25 long...
		read(22, "00 00 FF 12 EE D5 4B 01 01 00 44 00 0A 01 02 03 04 05 06 07 08 09"),
		// ...so the other 3 are read on, the first under the read op.
		more("0A 59 00"),
	)
	bus := &spitest.Playback{Playback: conntest.Playback{Ops: ops, DontPanic: true}}
	d, err := pn532.NewSPI(bus, &fastOpts)
	if err != nil {
		t.Fatal(err)
	}
	if fw := d.FirmwareVersion(); fw != (pn532.Firmware{IC: 0x32, Version: 1, Revision: 6, Support: 7}) {
		t.Fatalf("firmware %+v", fw)
	}
	if s := d.String(); s != "PN532{playback}" {
		t.Fatalf("String %q", s)
	}
	ctx := context.Background()
	if _, err := d.Poll(ctx); err != pn532.ErrNoTarget {
		t.Fatalf("empty field: %v", err)
	}
	tg, err := d.Poll(ctx)
	if err != nil || !bytes.Equal(tg.UID, hx("DE AD BE EF")) || tg.ATQA != 0x0004 || tg.SAK != 0x08 || tg.Tg != 1 {
		t.Fatalf("card: %v, %v", tg, err)
	}
	if _, err := d.Poll(ctx); err != pn532.ErrNoTarget {
		t.Fatalf("card gone: %v", err)
	}
	tg, err = d.Poll(ctx)
	if err != nil || !bytes.Equal(tg.UID, hx("01 02 03 04 05 06 07 08 09 0A")) || tg.ATQA != 0x0044 || tg.SAK != 0x00 {
		t.Fatalf("10-byte UID card: %v, %v", tg, err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// A host that restarted finds the answer to its predecessor's command
// where its ACK should be: the answer is dropped and the command sent again.
func TestPlaybackStaleResponseInsteadOfACK(t *testing.T) {
	ops := initOps("00 00 FF 05 FB D4 14 01 14 00 03 00")
	ops = append(ops, fieldOffOps...)
	ops = append(ops,
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		// A SAMConfiguration answer, not an ACK.
		read(6, "00 00 FF 02 FE D5"),
		// Abort, and read while anything is left: nothing.
		write(ackFrame),
		status(0x00),
		// Once more.
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(22, "00 00 FF 03 FD D5 4B 00 E0 00"),
	)
	bus := &spitest.Playback{Playback: conntest.Playback{Ops: ops, DontPanic: true}}
	d, err := pn532.NewSPI(bus, &fastOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Poll(context.Background()); err != pn532.ErrNoTarget {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// With the IRQ line low the driver reads at once: no status reads. The
// reset pin is pulsed first.
func TestPlaybackIRQAndReset(t *testing.T) {
	irq := &gpiotest.Pin{N: "IRQ", L: gpio.Low, EdgesChan: make(chan gpio.Level, 1)}
	rst := &gpiotest.Pin{N: "RST", L: gpio.Low}
	ops := []conntest.IO{
		// After the reset pulse, wake and look for a stale answer.
		status(0x00),
		// Init reads the status byte: IRQ is used once the chip is
		// configured. SAMConfiguration asks for IRQ.
		write("00 00 FF 05 FB D4 14 01 14 01 02 00"),
		status(0x01),
		read(6, ackFrame),
		status(0x01),
		read(10, "00 00 FF 02 FE D5 15 16 00"),
	}
	ops = append(ops, initOps("")[6:]...)
	ops = append(ops,
		// The reset pulse switched the field off. A command is three
		// transactions: frame, ACK, answer.
		write("00 00 FF 04 FC D4 4A 01 00 E1 00"),
		read(6, ackFrame),
		read(22, "00 00 FF 03 FD D5 4B 00 E0 00"),
	)
	bus := &spitest.Playback{Playback: conntest.Playback{Ops: ops, DontPanic: true}}
	o := fastOpts
	o.IRQ = irq
	o.Reset = rst
	d, err := pn532.NewSPI(bus, &o)
	if err != nil {
		t.Fatal(err)
	}
	if rst.Read() != gpio.High {
		t.Fatal("reset pin left low")
	}
	if irq.Pull() != gpio.PullUp {
		t.Fatalf("IRQ pull %s", irq.Pull())
	}
	// The chip holds the line low: it always has an answer ready.
	irq.Lock()
	irq.L = gpio.Low
	irq.Unlock()
	if _, err := d.Poll(context.Background()); err != pn532.ErrNoTarget {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// With a controller that shifts LSB first the bytes go as in the manual.
func TestPlaybackLSBFirst(t *testing.T) {
	var ops []conntest.IO
	for _, op := range append(initOps("00 00 FF 05 FB D4 14 01 14 00 03 00"), fieldOffOps...) {
		op.W = wire(op.W)
		if op.R != nil {
			op.R = wire(op.R)
		}
		ops = append(ops, op)
	}
	if !bytes.Equal(ops[1].W, append([]byte{0x01}, hx("00 00 FF 05 FB D4 14 01 14 00 03 00")...)) {
		t.Fatalf("% X", ops[1].W)
	}
	bus := &spitest.Playback{Playback: conntest.Playback{Ops: ops, DontPanic: true}}
	o := fastOpts
	o.LSBFirst = true
	if _, err := pn532.NewSPI(bus, &o); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}
