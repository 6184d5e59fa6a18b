package main

import (
	"fmt"
	"strings"

	"periph.io/x/conn/v3/i2c"

	"github.com/latchdoor/latch/door/display/displaytest"
)

// newSimDisplay emulates the display c configures, at its address: the bus
// to give the daemon's hardware (see simI2C), and a func that reads the two
// lines the display shows, as 16 characters each, spaces while it is off.
// The OLED's lines are read back from its pixels (displaytest.ReadText);
// a cell that holds no character reads as displaytest.Unreadable. With no
// display configured it returns nil, nil, nil.
func newSimDisplay(c DisplayConfig) (i2c.Bus, func() [2]string, error) {
	switch c.Type {
	case "":
		return nil, nil, nil
	case displayLCD:
		emu := displaytest.NewLCD(c.addr())
		return emu, emu.Text, nil
	case displayOLED:
		h := c.Height
		if h == 0 {
			h = 32
		}
		emu := displaytest.NewOLED(c.addr(), h)
		return emu, func() [2]string {
			if !emu.On() {
				off := strings.Repeat(" ", 16)
				return [2]string{off, off}
			}
			return displaytest.ReadText(emu.Image())
		}, nil
	}
	return nil, nil, fmt.Errorf("display.type %q: want hd44780, ssd1306 or empty", c.Type)
}

// simI2C is hardware.openI2C for an emulated bus: every name opens it.
func simI2C(bus i2c.Bus) func(name string) (i2c.Bus, func() error, error) {
	return func(string) (i2c.Bus, func() error, error) { return bus, nil, nil }
}
