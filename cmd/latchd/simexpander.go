package main

import (
	"fmt"
	"strings"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// simExpander is the emulated keypad and I²C expander that a config's
// [keypad] with an expander describes, for the simulator.
type simExpander struct {
	// Keys is the emulated keypad: its TypeKeys is the simulator's key
	// command.
	Keys *keypadtest.Matrix
	// Bus is the emulated chip, answering at the configured address: the
	// daemon opens the expander on it (hardware.wireExpanderKeypad).
	Bus i2c.Bus
	// Interrupt is the chip's INT (on an MCP23017, INTA or INTB, that of
	// the columns' port) when keypad.interrupt is set; nil otherwise.
	Interrupt gpio.PinIn
}

// newSimExpander emulates the keypad and the expander of k, a valid
// config's [keypad] with type "matrix" and an expander: the chip at its
// address with the keypad's rows and columns on the pins k names.
func newSimExpander(k *KeypadConfig) (*simExpander, error) {
	x, ok := expanderByName(k.Expander)
	if !ok {
		return nil, fmt.Errorf("keypad.expander %q: not a known chip", k.Expander)
	}
	layout := k.Layout
	if layout == "" {
		layout = keypad.Layout3x4
		if len(k.Cols) == 4 {
			layout = keypad.Layout4x4
		}
	}
	keys, err := keypadtest.NewMatrix(layout)
	if err != nil {
		return nil, err
	}
	num := func(names []string) []int {
		var out []int
		for _, n := range names {
			i, _ := x.pin(n)
			out = append(out, i)
		}
		return out
	}
	cols := num(k.Cols)
	chip, err := keypadtest.NewExpander(keypadtest.Chip(strings.ToUpper(x.name)), k.address(x), keys, num(k.Rows), cols)
	if err != nil {
		return nil, err
	}
	s := &simExpander{Keys: keys, Bus: chip}
	if k.Interrupt != "" {
		s.Interrupt = chip.Interrupt()
		if x.name == "mcp23017" && len(cols) > 0 && cols[0] >= 8 {
			s.Interrupt = chip.InterruptB()
		}
	}
	return s, nil
}
