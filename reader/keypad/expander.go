package keypad

import (
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/pin"
)

// DefaultPoll is how often a Matrix on an expander without an interrupt
// line reads its columns (Expander.Poll): quick enough that a key feels
// instant, one bus transaction each time.
const DefaultPoll = 25 * time.Millisecond

// PortReader reads several pins of one chip in one operation, such as the
// port of an I²C I/O expander in one bus transaction. Bit i of the value
// is the pin at offset i, 1 for high; only the bits of mask are read, and
// a zero mask reads them all. periph's gpio.Group implements it: the groups
// of periph.io/x/devices' pcf857x and mcp23xxx drivers do.
type PortReader interface {
	Read(mask gpio.GPIOValue) (gpio.GPIOValue, error)
}

// Expander says that a Matrix's rows and columns are pins of an I/O
// expander on I²C (see "Keypads on an I/O expander" in the package
// documentation). Such pins cannot wait for an edge, and each read of one
// costs a bus transaction, so the Matrix reads the columns all at once and
// either waits for the expander's interrupt output or polls.
type Expander struct {
	// Columns reads every column at once: bit i is the column given i-th
	// to NewMatrix. Use a gpio.Group of the column pins, in that order,
	// from the expander's driver (on an MCP23017 every column must then be
	// on the same port). Required.
	Columns PortReader
	// Interrupt is the Pi GPIO wired to the expander's INT output, which
	// the chip pulls low when a pin changes; wire it with a pull-up (the
	// Pi's internal one is enabled). Between presses the Matrix then
	// sleeps until INT falls and costs no bus traffic at all. Nil polls
	// instead.
	Interrupt gpio.PinIn
	// Poll is how often the columns are read while waiting without an
	// interrupt (or while the interrupt line stays low, as it does when
	// its pull-up is missing): default DefaultPoll, 25 ms. Every poll is
	// one bus transaction; lower it for a keypad that must notice taps
	// shorter than a poll, raise it to leave the bus to other devices.
	Poll time.Duration
}

// check checks x for a Matrix of ncols columns and fills in its defaults.
func (x *Expander) check(cols []gpio.PinIn) error {
	if x.Columns == nil {
		return errors.New("Expander.Columns is nil: give a gpio.Group of the column pins")
	}
	if x.Poll < 0 {
		return errors.New("negative Expander.Poll")
	}
	if x.Poll == 0 {
		x.Poll = DefaultPoll
	}
	// A group that can say which pins it holds must hold the columns,
	// in order: a mix-up would read the wrong wires.
	g, ok := x.Columns.(interface{ Pins() []pin.Pin })
	if !ok {
		return nil
	}
	pins := g.Pins()
	if len(pins) != len(cols) {
		return fmt.Errorf("Expander.Columns has %d pins, the keypad %d columns", len(pins), len(cols))
	}
	for i, p := range pins {
		if p.Name() != cols[i].Name() {
			return fmt.Errorf("Expander.Columns pin %d is %s, column %d is %s: give the column pins in the same order", i, p.Name(), i, cols[i].Name())
		}
	}
	return nil
}

// lowColumns reads the columns through the expander's port and returns
// those that read low: bit c for column c.
func (x *Expander) lowColumns(ncols int) (uint64, error) {
	mask := gpio.GPIOValue(1)<<ncols - 1
	v, err := x.Columns.Read(mask)
	if err != nil {
		return 0, fmt.Errorf("keypad: matrix: reading the columns: %w", err)
	}
	return uint64(^v & mask), nil
}
