package main

import (
	"errors"
	"fmt"
	"slices"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/devices/v3/mcp23xxx"
	"periph.io/x/devices/v3/pcf857x"

	"github.com/latchdoor/latch/reader/keypad"
)

// expanderChip is an I²C GPIO expander a matrix keypad can sit behind.
type expanderChip struct {
	name string   // as keypad.expander spells it
	base uint16   // lowest address; each chip has 8, set by A0–A2
	pins []string // pin names by number, as the datasheet prints them
}

// numbered returns prefix0 … prefix7.
func numbered(prefix string) []string {
	var out []string
	for i := range 8 {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// expanderChips are the chips keypad.expander names.
var expanderChips = []expanderChip{
	{"pcf8574", 0x20, numbered("P")},
	{"pcf8574a", 0x38, numbered("P")},
	{"pcf8575", 0x20, append(numbered("P0"), numbered("P1")...)},
	{"mcp23008", 0x20, numbered("GP")},
	{"mcp23017", 0x20, append(numbered("GPA"), numbered("GPB")...)},
}

// expanderByName returns the chip keypad.expander names.
func expanderByName(name string) (expanderChip, bool) {
	i := slices.IndexFunc(expanderChips, func(c expanderChip) bool { return c.name == name })
	if i < 0 {
		return expanderChip{}, false
	}
	return expanderChips[i], true
}

func (x expanderChip) isMCP() bool { return x.name == "mcp23008" || x.name == "mcp23017" }

// pin returns the number of the pin named n.
func (x expanderChip) pin(n string) (int, bool) {
	i := slices.Index(x.pins, n)
	return i, i >= 0
}

// i2cBus returns the bus the keypad's expander is on.
func (k *KeypadConfig) i2cBus() string {
	if k.I2C == "" {
		return DefaultI2C
	}
	return k.I2C
}

// address returns the expander's address: the one set, or the chip's
// lowest.
func (k *KeypadConfig) address(x expanderChip) uint16 {
	if k.Address == 0 {
		return x.base
	}
	return uint16(k.Address)
}

// checkExpander checks the keypad's expander keys; isSet tells which keys
// the file sets.
func (k *KeypadConfig) checkExpander(isSet func(key string) bool) []error {
	var errs []error
	addrErr := error(nil)
	if isSet("keypad.address") {
		addrErr = checkI2CAddr("keypad.address", k.Address)
	}
	if k.Expander == "" {
		if addrErr != nil {
			errs = append(errs, addrErr)
		}
		for _, key := range []string{"i2c", "address", "interrupt"} {
			if isSet("keypad."+key) && (key != "address" || addrErr == nil) {
				errs = append(errs, fmt.Errorf("keypad.%s: only for a matrix on an I/O expander (keypad.expander)", key))
			}
		}
		return errs
	}
	x, ok := expanderByName(k.Expander)
	if !ok {
		names := make([]string, len(expanderChips))
		for i, c := range expanderChips {
			names[i] = c.name
		}
		return []error{fmt.Errorf("keypad.expander %q: want one of %v, or empty for rows and cols on the Pi's GPIO", k.Expander, names)}
	}
	if k.Type != "matrix" {
		errs = append(errs, errors.New("keypad.expander: only for type = \"matrix\""))
	}
	if isSet("keypad.i2c") {
		if err := checkI2CName("keypad.i2c", k.I2C); err != nil {
			errs = append(errs, err)
		}
	}
	if isSet("keypad.address") {
		if addrErr != nil {
			errs = append(errs, addrErr)
		} else if uint16(k.Address)&^7 != x.base {
			errs = append(errs, fmt.Errorf("keypad.address %#02x: a %s answers at %#02x to %#02x", k.Address, x.name, x.base, x.base+7))
		}
	}
	seen := map[string]string{}
	port := -1
	check := func(key, n string, col bool) {
		i, ok := x.pin(n)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s %q: want a %s pin, %s to %s", key, n, x.name, x.pins[0], x.pins[len(x.pins)-1]))
		case seen[n] != "":
			errs = append(errs, fmt.Errorf("%s %q: pin used twice: %s and %s", key, n, seen[n], key))
		case col && port >= 0 && i/8 != port:
			errs = append(errs, fmt.Errorf("%s %q: every column must be on the same port of the %s, as the first is", key, n, x.name))
		case col:
			port = i / 8
		}
		if ok && seen[n] == "" {
			seen[n] = key
		}
	}
	for i, n := range k.Rows {
		check(fmt.Sprintf("keypad.rows[%d]", i), n, false)
	}
	for i, n := range k.Cols {
		check(fmt.Sprintf("keypad.cols[%d]", i), n, true)
	}
	return errs
}

// openExpanderKeypad opens the keypad's expander on bus with periph's
// driver and returns its row and column pins and what keypad.Matrix needs
// to read them (the interrupt pin is the caller's to set), and a function
// that closes the driver. With wantInterrupt, an MCP230xx is told to
// signal a change of the columns on INT (INTA or INTB, that of the
// columns' port).
func openExpanderKeypad(k *KeypadConfig, bus i2c.Bus, wantInterrupt bool) (rows []gpio.PinOut, cols []gpio.PinIn, ex *keypad.Expander, closeDev func() error, err error) {
	x, ok := expanderByName(k.Expander)
	if !ok {
		return nil, nil, nil, nil, fmt.Errorf("keypad.expander %q: not a known chip", k.Expander)
	}
	addr := k.address(x)
	where := fmt.Sprintf("keypad: %s at %#02x on %s", x.name, addr, bus)
	var colNums []int
	for _, n := range k.Cols {
		i, _ := x.pin(n)
		colNums = append(colNums, i)
	}
	if !x.isMCP() {
		v := pcf857x.PCF8574
		if x.name == "pcf8575" {
			v = pcf857x.PCF8575
		}
		dev, err := pcf857x.New(bus, addr, v)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		all := make([]int, len(x.pins))
		for i := range all {
			all[i] = i
		}
		g, err := dev.Group(colNums...)
		if err == nil {
			var whole gpio.Group
			if whole, err = dev.Group(all...); err == nil {
				// The driver starts believing every pin is written 0: set
				// them all to 1, the chip's power-on state, so that pins the
				// keypad leaves alone stay released. It is also the first
				// transfer to the chip: is it there?
				err = whole.Out(gpio.GPIOValue(1)<<len(all)-1, 0)
			}
		}
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s: %w (is the address right? i2cdetect lists the chips on a bus)", where, err)
		}
		for _, n := range k.Rows {
			i, _ := x.pin(n)
			rows = append(rows, dev.Pins[i])
		}
		for _, i := range colNums {
			cols = append(cols, dev.Pins[i])
		}
		return rows, cols, &keypad.Expander{Columns: g}, dev.Halt, nil
	}
	v := mcp23xxx.MCP23008
	if x.name == "mcp23017" {
		v = mcp23xxx.MCP23017
	}
	// NewI2C reads IODIR: the first transfer to the chip.
	dev, err := mcp23xxx.NewI2C(bus, v, addr)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("%s: %w (is the address right? i2cdetect lists the chips on a bus)", where, err)
	}
	for _, n := range k.Rows {
		i, _ := x.pin(n)
		rows = append(rows, dev.Pins[i/8][i%8])
	}
	port := colNums[0] / 8
	var bits []int
	var mask byte
	for _, i := range colNums {
		cols = append(cols, dev.Pins[i/8][i%8])
		bits = append(bits, i%8)
		mask |= 1 << (i % 8)
	}
	if wantInterrupt {
		// GPINTEN, which the driver has no call for: 0x02 on an MCP23008,
		// 0x04 + port on an MCP23017 (IOCON.BANK = 0). INTCON stays 0: an
		// interrupt on any change.
		reg := byte(0x02)
		if x.name == "mcp23017" {
			reg = 0x04 + byte(port)
		}
		if err := (&i2c.Dev{Bus: bus, Addr: addr}).Tx([]byte{reg, mask}, nil); err != nil {
			return nil, nil, nil, nil, errors.Join(fmt.Errorf("%s: enabling the interrupt: %w", where, err), dev.Close())
		}
	}
	return rows, cols, &keypad.Expander{Columns: *dev.Group(port, bits)}, dev.Close, nil
}
