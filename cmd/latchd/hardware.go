package main

import (
	"errors"
	"fmt"

	"github.com/latchdoor/latch/door"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/host/v3"

	"github.com/latchdoor/latch/reader/keypad"
)

// hardware is what the daemon drives: the Pi's SPI port and pins, or the
// simulator's emulated ones. Optional pins are nil.
type hardware struct {
	// openSPI opens the reader's SPI port; the func it returns closes it.
	openSPI     func() (spi.Port, func() error, error)
	spiName     string
	readerReset gpio.PinOut
	readerIRQ   gpio.PinIn

	keypadRows []gpio.PinOut
	keypadCols []gpio.PinIn
	// keypadExpander is set for a matrix on an I²C expander, whose pins
	// keypadRows and keypadCols then are.
	keypadExpander *keypad.Expander
	wiegandD0      gpio.PinIn
	wiegandD1      gpio.PinIn

	// openI2C opens an I²C bus by name; the func it returns, if any,
	// closes it. nil: no I²C.
	openI2C func(name string) (i2c.Bus, func() error, error)

	relay   gpio.PinOut
	contact gpio.PinIn
	rex     gpio.PinIn
	tamper  gpio.PinIn
	green   gpio.PinOut
	red     gpio.PinOut
	buzzer  gpio.PinOut

	// onPattern, if set, hears each feedback pattern as it starts (the
	// simulator prints them).
	onPattern func(door.Pattern)
	// onShown, if set, is called after each screen the display shows (the
	// simulator prints what the emulated display then reads).
	onShown func()
	// closers close what opening the hardware opened (an expander's
	// driver, its I²C bus), last opened first.
	closers []func() error
}

// close closes what opening the hardware opened.
func (hw *hardware) close() error {
	var errs []error
	for i := len(hw.closers) - 1; i >= 0; i-- {
		errs = append(errs, hw.closers[i]())
	}
	hw.closers = nil
	return errors.Join(errs...)
}

// openPiI2C opens an I²C bus by its periph name, such as "I2C1"; the func
// it returns closes it. The display and an expander keypad each open
// theirs, the same bus or not: the kernel serialises their transfers.
func openPiI2C(name string) (i2c.Bus, func() error, error) {
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("I²C bus %q: %w", name, err)
	}
	return b, b.Close, nil
}

// pinByName looks a pin up in periph's registry; key is the config key that
// named it, for the error.
func pinByName(key, name string) (gpio.PinIO, error) {
	if name == "" {
		return nil, nil
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("%s: no pin %q on this board", key, name)
	}
	return p, nil
}

// openPiRelay initialises periph's host drivers and returns the relay pin.
// It is the first thing a real door does, so that the relay can be driven to
// its locked level before anything else.
func openPiRelay(c *Config) (gpio.PinIO, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("periph host init: %w", err)
	}
	return pinByName("relay.pin", c.Relay.Pin)
}

// openPiHardware opens the SPI device and every other pin named in c.
func openPiHardware(c *Config, relay gpio.PinOut) (*hardware, error) {
	hw := &hardware{relay: relay, spiName: c.Reader.SPI, openI2C: openPiI2C}
	var err error
	get := func(key, name string) gpio.PinIO {
		if err != nil {
			return nil
		}
		var p gpio.PinIO
		p, err = pinByName(key, name)
		return p
	}
	in := func(p gpio.PinIO) gpio.PinIn {
		if p == nil {
			return nil
		}
		return p
	}
	out := func(p gpio.PinIO) gpio.PinOut {
		if p == nil {
			return nil
		}
		return p
	}
	hw.readerReset = out(get("reader.reset", c.Reader.Reset))
	hw.readerIRQ = in(get("reader.irq", c.Reader.IRQ))
	if c.Keypad.Expander == "" {
		for i, n := range c.Keypad.Rows {
			hw.keypadRows = append(hw.keypadRows, out(get(fmt.Sprintf("keypad.rows[%d]", i), n)))
		}
		for i, n := range c.Keypad.Cols {
			hw.keypadCols = append(hw.keypadCols, in(get(fmt.Sprintf("keypad.cols[%d]", i), n)))
		}
	}
	intr := in(get("keypad.interrupt", c.Keypad.Interrupt))
	hw.wiegandD0 = in(get("keypad.d0", c.Keypad.D0))
	hw.wiegandD1 = in(get("keypad.d1", c.Keypad.D1))
	hw.contact = in(get("inputs.contact", c.Inputs.Contact))
	hw.rex = in(get("inputs.exit_button", c.Inputs.ExitButton))
	hw.tamper = in(get("inputs.tamper", c.Inputs.Tamper))
	hw.green = out(get("feedback.green", c.Feedback.Green))
	hw.red = out(get("feedback.red", c.Feedback.Red))
	hw.buzzer = out(get("feedback.buzzer", c.Feedback.Buzzer))
	if err != nil {
		return nil, err
	}
	if c.Keypad.Type == "matrix" && c.Keypad.Expander != "" {
		bus, closeBus, err := hw.openI2C(c.Keypad.i2cBus())
		if err != nil {
			return nil, fmt.Errorf("keypad.i2c: %w", err)
		}
		hw.closers = append(hw.closers, closeBus)
		if err := hw.wireExpanderKeypad(&c.Keypad, bus, intr); err != nil {
			return nil, errors.Join(err, hw.close())
		}
	}
	// Fail now on a name that is not on this board; the reader itself may
	// still come up later.
	p, err := spireg.Open(c.Reader.SPI)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("reader.spi: %q: %w", c.Reader.SPI, err), hw.close())
	}
	first := p
	hw.openSPI = func() (spi.Port, func() error, error) {
		if first != nil {
			p := first
			first = nil
			return p, p.Close, nil
		}
		p, err := spireg.Open(c.Reader.SPI)
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	}
	return hw, nil
}

// wireExpanderKeypad opens the keypad's expander on bus and makes its pins
// the keypad's; intr is the Pi pin wired to the chip's INT, or nil.
func (hw *hardware) wireExpanderKeypad(k *KeypadConfig, bus i2c.Bus, intr gpio.PinIn) error {
	rows, cols, x, closeDev, err := openExpanderKeypad(k, bus, intr != nil)
	if err != nil {
		return err
	}
	hw.closers = append(hw.closers, closeDev)
	x.Interrupt = intr
	hw.keypadRows, hw.keypadCols, hw.keypadExpander = rows, cols, x
	return nil
}
