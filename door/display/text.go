package display

import "fmt"

// Width is the characters a line holds on either display: door.DisplayWidth.
const Width = 16

// screen is two lines as the display shows them: printable ASCII, padded
// with spaces.
type screen [2][Width]byte

// blank is a screen of spaces.
var blank = screen{
	{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '},
	{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '},
}

// fit makes lines showable: each rune outside printable ASCII becomes '?',
// a line is cut after Width characters and padded with spaces to Width.
// It never fails: a display shows what it can rather than nothing.
func fit(lines [2]string) screen {
	s := blank
	for i, l := range lines {
		n := 0
		for _, r := range l {
			if n == Width {
				break
			}
			if r < 0x20 || r > 0x7E {
				r = '?'
			}
			s[i][n] = byte(r)
			n++
		}
	}
	return s
}

// Default addresses.
const (
	LCDAddress  = 0x27 // a PCF8574 backpack with its address jumpers open
	LCDAddressA = 0x3F // the same with a PCF8574A
	OLEDAddress = 0x3C // an SSD1306 module as sold; 0x3D with its jumper moved
)

// CheckLCDAddress checks that addr is one a PCF8574 or PCF8574A backpack
// can be set to.
func CheckLCDAddress(addr uint16) error {
	if addr >= 0x20 && addr <= 0x27 || addr >= 0x38 && addr <= 0x3F {
		return nil
	}
	return fmt.Errorf("address %#02x: an LCD backpack answers on 0x20 to 0x27 (PCF8574; 0x27 with its jumpers open) or 0x38 to 0x3f (PCF8574A; 0x3f)", addr)
}

// CheckOLEDAddress checks that addr is one an SSD1306 on I²C can be set to.
func CheckOLEDAddress(addr uint16) error {
	if addr == 0x3C || addr == 0x3D {
		return nil
	}
	return fmt.Errorf("address %#02x: an SSD1306 answers on 0x3c or 0x3d", addr)
}
