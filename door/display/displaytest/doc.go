// Package displaytest emulates the door's displays at the I²C byte level,
// for tests and for running latchd without hardware: an HD44780 character
// LCD behind a PCF8574 backpack (LCD) and an SSD1306 OLED (OLED). Each is
// an i2c.Bus with one device on it; a transaction to another address fails
// as a NACK does. A sequence the chip would not understand is recorded
// (Errors), never a panic. Both are safe for concurrent use.
//
// Neither can check timing: a bus carries no time. The LCD cannot tell
// whether the start-up waits were kept; tests of the driver check its
// waits themselves.
package displaytest

import "errors"

// ErrNoDevice is what a transaction to an address without a device
// returns: the address byte was not acknowledged.
var ErrNoDevice = errors.New("displaytest: no device at this address (NACK)")
