package display_test

import (
	"fmt"
	"log"
	"time"

	"github.com/latchdoor/latch/door/display"
	"github.com/latchdoor/latch/door/display/displaytest"
)

// On a Pi the bus comes from periph's i2creg (i2creg.Open("I2C1")) after
// host.Init; here it is the emulator, which also reads the LCD back.
func ExampleNewLCD() {
	bus := displaytest.NewLCD(0x27)
	lcd, err := display.NewLCD(bus, display.LCDAddress, &display.LCDOpts{Sleep: func(time.Duration) {}})
	if err != nil {
		log.Fatal(err)
	}
	defer lcd.Halt()
	if err := lcd.Show([2]string{"Enter PIN", "***"}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", bus.Text())
	// Output: ["Enter PIN       " "***             "]
}

func ExampleNewOLED() {
	bus := displaytest.NewOLED(0x3C, 32)
	oled, err := display.NewOLED(bus, display.OLEDAddress, &display.OLEDOpts{Height: 32})
	if err != nil {
		log.Fatal(err)
	}
	defer oled.Halt()
	if err := oled.Show([2]string{"Locked out", "30 s"}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", displaytest.ReadText(bus.Image()))
	// Output: ["Locked out      " "30 s            "]
}
