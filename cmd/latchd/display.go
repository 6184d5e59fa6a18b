package main

import (
	"fmt"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/door/display"
)

// displayDev is a display device: it shows text and halts.
type displayDev interface {
	door.Display
	conn.Resource
}

// newDisplay brings up the configured display on bus.
func newDisplay(c DisplayConfig, bus i2c.Bus) (displayDev, error) {
	switch c.Type {
	case displayLCD:
		return display.NewLCD(bus, c.addr(), nil)
	case displayOLED:
		return display.NewOLED(bus, c.addr(), &display.OLEDOpts{Height: c.Height})
	}
	return nil, fmt.Errorf("display.type %q: want hd44780 or ssd1306", c.Type)
}

// displayConn is the display the daemon opened, with its bus.
type displayConn struct {
	dev      displayDev
	closeBus func() error // nil when there is nothing to close
}

// openDisplay opens the configured display for the controller; nil when
// none is configured or it cannot be opened. A display is not worth a
// door that does not open: a failure is logged and the door runs without.
func (d *daemon) openDisplay() door.Display {
	c := d.cfg.Display
	if c.Type == "" {
		return nil
	}
	log := d.log.With("display", c.Type, "i2c", c.bus(), "address", fmt.Sprintf("%#02x", c.addr()))
	if d.hw.openI2C == nil {
		log.Error("display: no I²C bus on this hardware; the door runs without the display")
		return nil
	}
	bus, closeBus, err := d.hw.openI2C(c.bus())
	if err != nil {
		log.Error("display: cannot open its I²C bus; the door runs without the display", "err", err)
		return nil
	}
	dev, err := newDisplay(c, bus)
	if err != nil {
		log.Error("display: not ready; the door runs without it", "err", err)
		if closeBus != nil {
			if err := closeBus(); err != nil {
				log.Warn("display: close the I²C bus", "err", err)
			}
		}
		return nil
	}
	log.Info("display ready", "device", dev.String())
	d.display = displayConn{dev: dev, closeBus: closeBus}
	if d.hw.onShown != nil {
		return shownDisplay{dev, d.hw.onShown}
	}
	return dev
}

// shownDisplay is a display that reports each screen once shown.
type shownDisplay struct {
	door.Display
	shown func()
}

// Show shows lines, then reports it.
func (s shownDisplay) Show(lines [2]string) error {
	err := s.Display.Show(lines)
	s.shown()
	return err
}

// closeDisplay blanks the display and closes its bus, once the controller
// no longer shows anything on it.
func (d *daemon) closeDisplay() {
	dc := d.display
	d.display = displayConn{}
	if dc.dev == nil {
		return
	}
	if err := dc.dev.Halt(); err != nil {
		d.log.Warn("display: halt", "err", err)
	}
	if dc.closeBus != nil {
		if err := dc.closeBus(); err != nil {
			d.log.Warn("display: close the I²C bus", "err", err)
		}
	}
}
