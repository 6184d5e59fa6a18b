package main

import (
	"strings"
	"testing"

	"github.com/latchdoor/latch/door/display/displaytest"
)

// The configured display is brought up for the controller, and blanked
// when the door stops.
func TestDaemonDisplay(t *testing.T) {
	blank := [2]string{strings.Repeat(" ", 16), strings.Repeat(" ", 16)}
	for _, c := range []DisplayConfig{
		{Type: "hd44780"},
		{Type: "ssd1306", Address: 0x3D, Height: 64},
	} {
		bus, text, err := newSimDisplay(c)
		if err != nil {
			t.Fatal(err)
		}
		on := func() bool {
			switch emu := bus.(type) {
			case *displaytest.LCD:
				return emu.On() && emu.Backlight()
			case *displaytest.OLED:
				return emu.On()
			}
			t.Fatalf("newSimDisplay(%+v) gave a %T", c, bus)
			return false
		}
		td := newTestDoor(t, func(d *daemon) {
			d.cfg.Display = c
			d.hw.openI2C = simI2C(bus)
		})
		if td.d.display.dev == nil {
			t.Fatalf("%s: no display; log:\n%s", c.Type, td.logs.String())
		}
		if got := text(); got != blank || !on() {
			t.Errorf("%s after start: %q, on %v; want blank and on", c.Type, got, on())
		}
		if err := td.d.display.dev.Show([2]string{"Enter PIN", "**"}); err != nil {
			t.Fatal(err)
		}
		if got, want := text(), [2]string{"Enter PIN       ", "**              "}; got != want {
			t.Errorf("%s shows %q, want %q", c.Type, got, want)
		}
		td.start()
		if err := td.stop(); err != nil {
			t.Fatal(err)
		}
		if on() {
			t.Errorf("%s still on after the door stopped", c.Type)
		}
		if got := text(); got != blank {
			t.Errorf("%s shows %q after the door stopped", c.Type, got)
		}
	}
}

// A display that does not answer is logged, and the door runs without.
func TestDaemonWithoutItsDisplay(t *testing.T) {
	emu := displaytest.NewLCD(0x3F) // a PCF8574A where the config says 0x27
	td := newTestDoor(t, func(d *daemon) {
		d.cfg.Display = DisplayConfig{Type: "hd44780"}
		d.hw.openI2C = simI2C(emu)
	})
	if td.d.display.dev != nil {
		t.Fatal("a display that does not answer was taken")
	}
	logs := td.logs.String()
	if !strings.Contains(logs, "display: not ready; the door runs without it") || !strings.Contains(logs, "address=0x27") {
		t.Errorf("log:\n%s", logs)
	}
	td.start()
	if err := td.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSimDisplayTypes(t *testing.T) {
	if bus, text, err := newSimDisplay(DisplayConfig{}); bus != nil || text != nil || err != nil {
		t.Errorf("no display: %v, text func %t, %v", bus, text != nil, err)
	}
	if _, _, err := newSimDisplay(DisplayConfig{Type: "vfd"}); err == nil || !strings.Contains(err.Error(), `display.type "vfd"`) {
		t.Errorf("unknown type: %v", err)
	}
}
