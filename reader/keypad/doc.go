// Package keypad reads PIN keypads for the door: matrix keypads scanned over
// GPIO (Matrix) and Wiegand keypads and card readers on two GPIO inputs
// (Wiegand). Both deliver the same Key values, '0'–'9', '*' and '#', and a
// Wiegand reader also delivers the cards it reads as Card.
//
// The keypad is the second factor of card + PIN: a cloned card is useless
// without the PIN. So the package never logs a key, drops any ambiguous or
// malformed input rather than guessing, and delivers one key per press.
//
// # Matrix keypads
//
// A 3×4 (12-key) or 4×4 (16-key) membrane keypad is a grid of switches:
// pressing a key connects one row wire to one column wire. The keypad is
// passive and runs on the Pi's own 3.3 V: connect its wires straight to
// GPIO, with no external parts. The columns use the SoC's internal pull-ups
// (about 50 kΩ); never connect a keypad wire to 5 V.
//
// Example wiring (BCM numbers, header pins in brackets); any free GPIO
// will do, given in the same order to NewMatrix:
//
//	row 1  (1 2 3 A)  GPIO5   [29]      column 1 (1 4 7 *)  GPIO22 [15]
//	row 2  (4 5 6 B)  GPIO6   [31]      column 2 (2 5 8 0)  GPIO23 [16]
//	row 3  (7 8 9 C)  GPIO13  [33]      column 3 (3 6 9 #)  GPIO24 [18]
//	row 4  (* 0 # D)  GPIO26  [37]      column 4 (A B C D)  GPIO25 [22]  4×4 only
//
// Keypad makers order the connector pins differently: find which pins are
// rows and which columns with a continuity meter (a held key connects one
// of each). Keep clear of GPIO2/3 (I²C, with fixed 1.8 kΩ pull-ups) and of
// SPI0, GPIO7–11, which the PN532 uses.
//
// Rows are driven low one at a time and the columns read: a column that
// reads low has a pressed key on the driven row. Rows not being driven are
// released to high-impedance inputs, so two held keys in one column never
// connect a high output to a low one. Pins that can only be outputs are
// driven high instead; then put a 1 kΩ resistor in series with each row
// to limit the current when that happens.
//
// Between presses every row is driven low and the driver sleeps in
// WaitForEdge on the columns: an idle keypad, or one with a key held down,
// costs no scans, only one wake-up a second per column (waits are bounded
// so that Run always notices its context ending). A column edge starts a scan; the key counts once
// every scan for the debounce time (MatrixOpts.Debounce, 20 ms) agrees.
//
// A key is delivered when the keypad goes from no key to exactly one key.
// Holding it delivers nothing more. A key pressed while another is held is
// never delivered, and neither is the key still held after the other is
// released: on a keypad without diodes, three held keys make a fourth read
// pressed, so a scan of several keys cannot be trusted. Release every key
// to type again (two-key lockout). A key held when Run starts is not
// delivered.
//
// The 4×4 layout's fourth column delivers the function keys KeyA–KeyD. The
// door controller takes PINs only from '0'–'9', '*' and '#' (Key.IsPIN);
// the letters are for features of their own, never part of a PIN.
//
// # Keypads on an I/O expander
//
// Keypad backpacks put the keypad behind an I²C GPIO expander, which
// leaves the Pi's GPIO free: a PCF8574 or PCF8574A (8 pins), a PCF8575
// (16), an MCP23008 (8) or an MCP23017 (16). Open the chip with its driver
// in periph.io/x/devices (pcf857x, mcp23xxx), give its pins to NewMatrix as
// rows and columns, and set MatrixOpts.Expander with a gpio.Group of the
// column pins. The same Matrix scans them, with the same debounce and
// two-key lockout. Power the chip from the Pi's 3.3 V, never 5 V: its SDA,
// SCL and INT lines go straight to the Pi.
//
// Wire the rows to the low pins and the columns above them, the columns
// all on one port of a 16-pin chip:
//
//	chip        address      rows (1 2 3 4)          columns (1 2 3 [4])
//	PCF8574     0x20–0x27    P0 P1 P2 P3             P4 P5 P6 [P7]
//	PCF8574A    0x38–0x3F    P0 P1 P2 P3             P4 P5 P6 [P7]
//	PCF8575     0x20–0x27    P00 P01 P02 P03         P10 P11 P12 [P13]
//	MCP23008    0x20–0x27    GP0 GP1 GP2 GP3         GP4 GP5 GP6 [GP7]
//	MCP23017    0x20–0x27    GPA0 GPA1 GPA2 GPA3     GPB0 GPB1 GPB2 [GPB3]
//
// The address is set by the A0–A2 pins or jumpers: all to ground is the
// lowest. A PCF857x's pins are quasi-bidirectional: a 1 written makes the
// pin an input with a weak pull-up (about 100 µA), a 0 drives it low
// strongly. So a released row is a high-impedance input, a column needs
// no resistor, and the chip cannot drive a row high against a low one. An
// MCP230xx's rows are released by making them inputs, and its columns use
// its internal pull-ups (GPPU, about 100 kΩ).
//
// An expander's pins cannot wait for an edge, and every read or write is
// an I²C transaction of the chip (about 0.2 ms at 100 kHz). The Matrix
// reads all the columns in one transaction of the column group. Wire the
// chip's INT output to a free Pi GPIO (Expander.Interrupt; for an MCP23017
// whose columns are on port B, INTB): the chip pulls it low when a column
// changes, and between presses the keypad then costs no bus traffic at
// all. A PCF857x's INT is open-drain and needs a pull-up, which the
// Matrix enables on the Pi's pin; an MCP230xx drives its INT, and the
// columns' bits must be set in its GPINTEN register (the mcp23xxx driver
// has no call for that: write the register on the bus). Without INT the
// Matrix reads the columns every Expander.Poll (25 ms): 40 transactions a
// second while idle. A scan of a 4-row keypad costs about 20 transactions
// (5 ms on the bus); a key typed, four scans and the polls around them,
// about 90.
//
// # Wiegand keypads and readers
//
// A Wiegand device sends each bit as a short low pulse (about 50 µs, 1–2
// ms apart) on D0 for a 0 or on D1 for a 1; both lines idle high. Wiring,
// again as an example:
//
//	D0 (green)   → level shifter → GPIO17 [11]
//	D1 (white)   → level shifter → GPIO27 [13]
//	ground       → Pi ground (shared with the reader's supply)
//
// Wiegand lines are 5 V signals; a Pi's GPIO is 3.3 V and is damaged by
// 5 V. Always put a level shifter between them: a BSS138 MOSFET module
// (it has pull-ups on both sides, so it suits open-collector readers too)
// or a 74LVC-family buffer powered from 3.3 V. A resistor divider (2.2 kΩ
// in series, 3.3 kΩ to ground) works only for readers that drive their
// lines high actively. Readers usually need 12 V: power them on their own
// supply and join the grounds.
//
// Frames end after the lines stay quiet for WiegandOpts.Gap (25 ms). Four
// formats are decoded, from SIA AC-01 (26-bit Wiegand) and HID's card
// formats H10301 and H10306:
//
//	 4 bits  one key: 0–9, 10 = '*', 11 = '#'
//	 8 bits  one key: the complement of its 4-bit code, then the code
//	         ('5' is 1010 0101); the complement is checked
//	26 bits  card: even parity, 8-bit facility, 16-bit number, odd parity
//	34 bits  card: even parity, 16-bit facility, 16-bit number, odd parity
//
// Both parity bits of a card are checked, each over its half of the data
// bits. Any other length, a failed check, or a key code of 12–15 drops the
// frame and counts it in Stats. A card's UID is its data bits without the
// parity bits, big-endian: 3 bytes for 26 bits (facility, number high,
// number low), 4 bytes for 34 bits (facility high, low, number high, low).
//
// # Testing
//
// Package keypadtest emulates both kinds of keypad at the pin level, so
// tests and latchd's simulator run the drivers in this package unchanged.
package keypad
