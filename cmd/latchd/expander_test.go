package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/reader/keypad"
)

// withKeypad returns goodConfig with its [keypad] section's keys replaced
// by section.
func withKeypad(t *testing.T, section string) string {
	t.Helper()
	old := "type = \"matrix\"\nrows = [\"GPIO5\", \"GPIO6\", \"GPIO13\", \"GPIO19\"]\ncols = [\"GPIO12\", \"GPIO16\", \"GPIO20\"]\n"
	if !strings.Contains(goodConfig, old) {
		t.Fatal("goodConfig's [keypad] has changed")
	}
	return strings.Replace(goodConfig, old, section, 1)
}

// The keypads on expanders that the tests run, one per chip.
var expanderKeypads = []string{
	"type = \"matrix\"\nexpander = \"pcf8574\"\nrows = [\"P0\", \"P1\", \"P2\", \"P3\"]\ncols = [\"P4\", \"P5\", \"P6\"]\n",
	"type = \"matrix\"\nexpander = \"pcf8574a\"\naddress = 0x3f\nrows = [\"P0\", \"P1\", \"P2\", \"P3\"]\ncols = [\"P4\", \"P5\", \"P6\", \"P7\"]\n",
	"type = \"matrix\"\nexpander = \"pcf8575\"\ni2c = \"I2C3\"\naddress = 0x27\nrows = [\"P00\", \"P01\", \"P02\", \"P03\"]\ncols = [\"P10\", \"P11\", \"P12\"]\n",
	"type = \"matrix\"\nexpander = \"mcp23008\"\naddress = 0x21\nrows = [\"GP0\", \"GP1\", \"GP2\", \"GP3\"]\ncols = [\"GP4\", \"GP5\", \"GP6\"]\n",
	"type = \"matrix\"\nexpander = \"mcp23017\"\nrows = [\"GPA0\", \"GPA1\", \"GPA2\", \"GPA3\"]\ncols = [\"GPB0\", \"GPB1\", \"GPB2\"]\n",
}

func TestConfigExpander(t *testing.T) {
	for _, k := range expanderKeypads {
		c, err := parseConfig([]byte(withKeypad(t, k)))
		if err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		// With an interrupt line too, on a GPIO of its own.
		if _, err := parseConfig([]byte(withKeypad(t, k+"interrupt = \"GPIO4\"\n"))); err != nil {
			t.Errorf("%s with an interrupt: %v", k, err)
		}
		x, _ := expanderByName(c.Keypad.Expander)
		if c.Keypad.i2cBus() == "" || c.Keypad.address(x)&^7 != x.base {
			t.Errorf("%s: bus %q, address %#x", k, c.Keypad.i2cBus(), c.Keypad.address(x))
		}
	}
	c, err := parseConfig([]byte(withKeypad(t, expanderKeypads[0])))
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := expanderByName("pcf8574"); c.Keypad.i2cBus() != DefaultI2C || c.Keypad.address(x) != 0x20 {
		t.Errorf("defaults: bus %q, address %#x; want %s, 0x20", c.Keypad.i2cBus(), c.Keypad.address(x), DefaultI2C)
	}
}

// Every problem of an expander's keys at once, each with its line.
func TestConfigExpanderErrors(t *testing.T) {
	for _, tc := range []struct {
		keypad string
		want   []string // each with the key's line
	}{
		{"type = \"matrix\"\nexpander = \"pcf8574\"\ni2c = \"i2c-1\"\naddress = 0x40\ninterrupt = \"GPIO17\"\nrows = [\"P0\", \"P1\", \"P2\", \"P2\"]\ncols = [\"P4\", \"P5\", \"GPIO6\"]\n", []string{
			`keypad.i2c "i2c-1": want I2C<bus>`,
			`keypad.address 0x40: a pcf8574 answers at 0x20 to 0x27`,
			`keypad.rows[3] "P2": pin used twice: keypad.rows[2] and keypad.rows[3]`,
			`keypad.cols[2] "GPIO6": want a pcf8574 pin, P0 to P7`,
			`pin GPIO17 is used twice: keypad.interrupt and relay.pin`,
		}},
		{"type = \"matrix\"\nexpander = \"mcp23017\"\naddress = 0x80\nrows = [\"GPA0\", \"GPA1\", \"GPA2\", \"GPA3\"]\ncols = [\"GPB0\", \"GPA4\", \"GPB2\"]\ninterrupt = \"GPIO99\"\n", []string{
			`keypad.address 0x80: want a 7-bit device address`,
			`keypad.cols[1] "GPA4": every column must be on the same port of the mcp23017`,
			`keypad.interrupt "GPIO99": want a BCM GPIO name`,
		}},
		{"type = \"matrix\"\nexpander = \"pcf8591\"\nrows = [\"P0\", \"P1\", \"P2\", \"P3\"]\ncols = [\"P4\", \"P5\", \"P6\"]\n", []string{
			`keypad.expander "pcf8591": want one of [pcf8574 pcf8574a pcf8575 mcp23008 mcp23017]`,
		}},
		{"type = \"matrix\"\nexpander = \"pcf8575\"\nrows = [\"P00\", \"P01\", \"P02\"]\ncols = [\"P10\", \"P11\", \"P08\"]\n", []string{
			`keypad.cols[2] "P08": want a pcf8575 pin, P00 to P17`,
			`keypad: a matrix needs 4 rows and 3 or 4 cols, have 3 and 3`,
		}},
		{"type = \"matrix\"\nrows = [\"GPIO5\", \"GPIO6\", \"GPIO13\", \"GPIO19\"]\ncols = [\"GPIO12\", \"GPIO16\", \"GPIO20\"]\naddress = 0x20\ninterrupt = \"GPIO4\"\n", []string{
			`keypad.address: only for a matrix on an I/O expander`,
			`keypad.interrupt: only for a matrix on an I/O expander`,
		}},
		{"type = \"wiegand\"\nd0 = \"GPIO5\"\nd1 = \"GPIO6\"\nexpander = \"pcf8574\"\n", []string{
			`keypad.expander: only for type = "matrix"`,
		}},
	} {
		cfg := withKeypad(t, tc.keypad)
		_, err := parseConfig([]byte(cfg))
		if err == nil {
			t.Errorf("%s: accepted", tc.keypad)
			continue
		}
		for _, want := range tc.want {
			key, _, _ := strings.Cut(want, " ")
			key, _, _ = strings.Cut(strings.TrimSuffix(key, ":"), "[")
			if key == "pin" {
				// A clash names two keys, and no line.
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error\n%v\nlacks %q", err, want)
				}
				continue
			}
			line := keyLine([]byte(cfg), key)
			if line == 0 {
				t.Fatalf("%s is not in the config", key)
			}
			if w := fmt.Sprintf("line %d: %s", line, want); !strings.Contains(err.Error(), w) {
				t.Errorf("error\n%v\nlacks %q", err, w)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
			t.Errorf("%d problems reported, want %d:\n%v", n, len(tc.want), err)
		}
	}
}

// The simulator's emulated expanders run the daemon's own opening of the
// chip and keypad.Matrix: a PIN typed arrives, polled or with INT.
func TestSimExpanderTypesKeys(t *testing.T) {
	for _, k := range expanderKeypads {
		for _, intr := range []string{"", "interrupt = \"GPIO4\"\n"} {
			c, err := parseConfig([]byte(withKeypad(t, k+intr)))
			if err != nil {
				t.Fatal(err)
			}
			t.Run(c.Keypad.Expander+fmt.Sprintf("/interrupt=%t", intr != ""), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					s, err := newSimExpander(&c.Keypad)
					if err != nil {
						t.Fatal(err)
					}
					if (s.Interrupt != nil) != (intr != "") {
						t.Fatalf("interrupt pin %v for %q", s.Interrupt, intr)
					}
					hw := &hardware{}
					if err := hw.wireExpanderKeypad(&c.Keypad, s.Bus, s.Interrupt); err != nil {
						t.Fatal(err)
					}
					defer func() {
						if err := hw.close(); err != nil {
							t.Error(err)
						}
					}()
					m, err := keypad.NewMatrix(hw.keypadRows, hw.keypadCols, &keypad.MatrixOpts{Layout: c.Keypad.Layout, Expander: hw.keypadExpander})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					keys := make(chan keypad.Key, 16)
					done := make(chan error, 1)
					go func() { done <- m.Run(ctx, func(k keypad.Key) { keys <- k }) }()
					if err := s.Keys.TypeKeys(ctx, "2580#"); err != nil {
						t.Fatal(err)
					}
					if err := m.Halt(); err != nil {
						t.Fatal(err)
					}
					if err := <-done; err != nil {
						t.Fatal(err)
					}
					close(keys)
					var got strings.Builder
					for k := range keys {
						got.WriteByte(byte(k))
					}
					if got.String() != "2580#" {
						t.Errorf("typed %q, want 2580#", got.String())
					}
				})
			})
		}
	}
}

// A chip that does not answer at the configured address fails at start,
// saying where it looked.
func TestOpenExpanderKeypadNoChip(t *testing.T) {
	for _, k := range []string{expanderKeypads[0], expanderKeypads[4]} {
		c, err := parseConfig([]byte(withKeypad(t, k)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSimExpander(&c.Keypad)
		if err != nil {
			t.Fatal(err)
		}
		c.Keypad.Address = 0x23
		hw := &hardware{}
		err = hw.wireExpanderKeypad(&c.Keypad, s.Bus, nil)
		if err == nil || !strings.Contains(err.Error(), "at 0x23") || !strings.Contains(err.Error(), "is the address right?") {
			t.Errorf("%s: error %v, want one naming 0x23 and asking about the address", c.Keypad.Expander, err)
		}
	}
}

// The example config's commented keypad on an expander is valid once its
// lines replace the GPIO matrix's.
func TestExampleConfigExpander(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "latchd.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var section []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "# A matrix on an I²C keypad backpack") {
			in = true
			continue
		}
		if !in || !strings.HasPrefix(line, "# ") {
			if in {
				break
			}
			continue
		}
		section = append(section, strings.TrimPrefix(line, "# "))
	}
	if len(section) < 5 {
		t.Fatalf("no commented expander example: %q", section)
	}
	cfg := withKeypad(t, "type = \"matrix\"\n"+strings.Join(section, "\n")+"\n")
	c, err := parseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("%v\n%s", err, cfg)
	}
	if c.Keypad.Expander != "pcf8574" || c.Keypad.Address != 0x20 || c.Keypad.Interrupt == "" || len(c.Keypad.Cols) != 3 {
		t.Errorf("decoded %+v", c.Keypad)
	}
}
