package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/rpi"
)

// board is what -check-config asks of the board it runs on: whether a pin
// name is one of its GPIOs, and whether an SPI port opens.
type board struct {
	hasPin  func(name string) bool
	openSPI func(name string) error
}

// thisBoard returns the Raspberry Pi latchd runs on, or false elsewhere
// (a PC, or a Pi whose firmware driver is not loaded). Then the names are
// checked for their form only.
func thisBoard() (board, bool) {
	if !rpi.Present() {
		return board{}, false
	}
	if _, err := host.Init(); err != nil {
		return board{}, false
	}
	return board{
		hasPin: func(name string) bool { return gpioreg.ByName(name) != nil },
		openSPI: func(name string) error {
			p, err := spireg.Open(name)
			if err != nil {
				return err
			}
			return p.Close()
		},
	}, true
}

// resolve looks every pin and the SPI port of c up on b, as the door does
// when it starts, and returns every name the board does not have.
func (b board) resolve(c *Config) error {
	var errs []error
	pins := c.pins()
	for _, key := range slices.Sorted(maps.Keys(pins)) {
		if name := pins[key]; name != "" && !b.hasPin(name) {
			errs = append(errs, fmt.Errorf("%s: no pin %q on this board", key, name))
		}
	}
	if err := b.openSPI(c.Reader.SPI); err != nil {
		errs = append(errs, fmt.Errorf("reader.spi: %q: %w (is SPI enabled? dtparam=spi=on in /boot/firmware/config.txt)", c.Reader.SPI, err))
	}
	return errors.Join(errs...)
}

// warnings returns what in c is allowed but likely wrong, each starting
// with its key.
func (c *Config) warnings() []error {
	var w []error
	// At reset, until latchd drives the pin, BCM GPIO0-8 have their pull-ups
	// on and GPIO9-27 their pull-downs. An active-high relay on a pulled-up
	// pin energises from power-on through boot; on a fail-secure strike
	// that opens the door.
	if n, ok := bcmNumber(c.Relay.Pin); ok && n <= 8 && !c.Relay.ActiveLow && c.Relay.Lock == "fail-secure" {
		w = append(w, fmt.Errorf("relay.pin %s: GPIO0-8 are pulled up from power-on until latchd starts, which energises an active-high relay (active_low = false) and releases the strike while the Pi boots; use a pin from GPIO9 to GPIO27 (pulled down at reset) or fit a 10 kΩ pull-down on this one", c.Relay.Pin))
	}
	return w
}

// bcmNumber returns n for a pin named GPIOn.
func bcmNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "GPIO")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
