// Package display drives the small text display a door may have beside its
// reader: two lines of at most 16 characters ("Enter PIN", "****",
// "Locked out"), as the door's controller decides them. Both devices
// implement door.Display and conn.Resource.
//
// # Devices
//
// LCD is a 16×2 character LCD with an HD44780 controller (or a compatible
// one: KS0066, SPLC780D) behind the common PCF8574 I²C backpack. The
// backpack's port drives the LCD in 4-bit mode:
//
//	P0 RS   P1 RW   P2 E   P3 backlight (through a transistor)
//	P4 D4   P5 D5   P6 D6  P7 D7
//
// The backpack's address is 0x27 with a PCF8574 and 0x3F with a
// PCF8574A, both with the three address jumpers open; closing jumpers
// lowers it (0x20–0x27, 0x38–0x3F). Most such LCDs are 5 V parts, and a
// PCF8574 powered from 5 V wants 3.5 V for a high: put a bidirectional I²C
// level shifter between the Pi's 3.3 V SDA and SCL and the backpack (and
// make sure the backpack's own pull-ups do not pull the Pi's side to 5 V),
// or use a 3.3 V LCD and power the backpack from the Pi's 3.3 V. Set the
// contrast with the backpack's potentiometer: with the wrong setting the
// LCD shows nothing or a row of blocks.
//
// OLED is a 0.91" 128×32 or 0.96" 128×64 monochrome OLED with an SSD1306
// controller on I²C, at 0x3C (or 0x3D with its address jumper moved). It
// runs on 3.3 V and needs nothing else. Text is drawn in a fixed 7×13
// font, one line in each half of the screen.
//
// Wire either to the Pi's I²C1 (bus "I2C1"): SDA on header pin 3 (GPIO2),
// SCL on pin 5 (GPIO3), ground on pin 6 or 9. Both share the bus with any
// other I²C device at the door. Keep the bus at its default 100 kHz: the
// PCF8574 is rated for 100 kHz only.
//
// # Behaviour
//
// Show writes only what changed: the same lines again cost no bus traffic,
// and a changed line costs the changed characters (LCD) or the smallest
// rectangle of changed pixels (OLED). Input is never refused: characters
// outside printable ASCII are shown as '?', and a line longer than 16
// characters is cut. After a failed write the next Show initialises the
// display again and redraws it, so a display unplugged and plugged back in
// comes back by itself. Halt blanks the display (and turns the LCD's
// backlight off); the next Show turns it on again.
//
// # Datasheets
//
//   - Hitachi HD44780U (LCD-II) dot matrix LCD controller, ADE-207-272(Z):
//     the 4-bit interface and initialisation by instruction (figure 24),
//     the instructions (table 6), the timing (bus timing characteristics).
//   - NXP/TI PCF8574 and PCF8574A remote 8-bit I/O expander for the I²C bus.
//   - Solomon Systech SSD1306 128×64 dot matrix OLED controller, rev 1.1:
//     the I²C interface (§8.1.5), the addressing modes (§10.1.3) and the
//     commands (§9, §10).
//
// The package displaytest emulates both at the I²C byte level, for tests
// and for running without a display.
package display
