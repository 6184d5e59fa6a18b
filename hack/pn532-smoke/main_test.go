package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// emulated opens a pn532test chip in place of the host's hardware.
func emulated(chip *pn532test.Chip) opener {
	return func(spiName, resetName, irqName string) (hardware, error) {
		hw := hardware{port: chip}
		if resetName != "" {
			hw.reset = chip.Reset()
		}
		if irqName != "" {
			hw.irq = chip.IRQ()
		}
		return hw, nil
	}
}

func TestSmokeOnEmulator(t *testing.T) {
	chip := pn532test.New(nil)
	if err := chip.Present(pn532test.Card{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, SAK: 0x08}); err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(t.TempDir(), "pn532.trace")
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"-reset", "GPIO25", "-irq", "GPIO24", "-polls", "3", "-period", "1ms", "-record", trace}, &out, &errs, emulated(chip))
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		"firmware: PN532 v1.6 (ISO14443A ISO14443B ISO18092)",
		"echo test: ok",
		"poll 1: card uid=deadbeef atqa=0004 sak=08",
		"3 polls",
		"transcript: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"var ops = []conntest.IO{",
		// SAMConfiguration with IRQ, as the chip reads it, and on the wire.
		"// data write: 00 00 FF 05 FB D4 14 01 14 01 02 00\n\t{W: []byte{0x80, 0x00, 0x00, 0xff, 0xa0, 0xdf, 0x2b, 0x28, 0x80, 0x28, 0x80, 0x40, 0x00}},",
		"// status read: 01 ready",
		"// data read: 00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
}

func TestSmokeNoDevice(t *testing.T) {
	chip := pn532test.New(nil)
	chip.Unplug(0xFF)
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"-polls", "1"}, &out, &errs, emulated(chip)); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errs.String(), "no PN532 on the bus") || !strings.Contains(errs.String(), "interface switches") {
		t.Fatalf("stderr:\n%s", errs.String())
	}
}

func TestSmokeFlags(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"-hz", "fast"}, &out, &errs, emulated(pn532test.New(nil))); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code := run(context.Background(), []string{"extra"}, &out, &errs, emulated(pn532test.New(nil))); code != 2 {
		t.Fatalf("exit %d", code)
	}
}
