package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigWarnings: an active-high relay on a pin pulled up at reset
// (GPIO0-8) would release a fail-secure strike while the Pi boots.
func TestConfigWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, edit string
		warn       bool
	}{
		{"active-low relay on GPIO17", "", false},
		{"active-high relay on GPIO17 (pulled down)", "[relay]\nactive_low = false", false},
		{"active-high relay on GPIO4 (pulled up)", "[relay]\npin = \"GPIO4\"\nactive_low = false", true},
		{"active-high relay on GPIO8 (pulled up)", "[relay]\npin = \"GPIO8\"\nactive_low = false", true},
		{"active-high relay on GPIO9 (pulled down)", "[relay]\npin = \"GPIO9\"\nactive_low = false", false},
		{"active-low relay on GPIO4", "[relay]\npin = \"GPIO4\"", false},
		{"active-high maglock on GPIO4 (energised is locked)", "[relay]\npin = \"GPIO4\"\nactive_low = false\nlock = \"fail-safe\"", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig([]byte(override(goodConfig, tc.edit)))
			if err != nil {
				t.Fatal(err)
			}
			w := c.warnings()
			if (len(w) > 0) != tc.warn {
				t.Fatalf("warnings %v, want some: %t", w, tc.warn)
			}
			if tc.warn && !strings.HasPrefix(w[0].Error(), "relay.pin GPIO") {
				t.Errorf("warning %q does not start with its key", w[0])
			}
		})
	}
}

// TestCheckOnBoard: -check-config on a board resolves every pin and the
// SPI port there and names each one the board lacks with its file and
// line; off a board it says the names were checked for their form only.
func TestCheckOnBoard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "door.toml")
	conf := override(goodConfig, "[relay]\npin = \"GPIO4\"\nactive_low = false")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	lineOf := func(text string) int {
		for i, l := range strings.Split(conf, "\n") {
			if strings.Contains(l, text) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the config", text)
		return 0
	}
	// A compute module's header without GPIO27 and GPIO19, and no SPI0.
	b := board{
		hasPin:  func(name string) bool { return name != "GPIO27" && name != "GPIO19" },
		openSPI: func(name string) error { return errors.New("no such device") },
	}
	var out strings.Builder
	err = checkOnBoard(path, cfg, b, true, &out)
	if err == nil {
		t.Fatal("missing pins and SPI port accepted")
	}
	for _, want := range []string{
		fmt.Sprintf("config %s: line %d: inputs.tamper: no pin \"GPIO27\" on this board", path, lineOf(`tamper = "GPIO27"`)),
		fmt.Sprintf("config %s: line %d: keypad.rows[3]: no pin \"GPIO19\" on this board", path, lineOf(`rows = [`)),
		fmt.Sprintf("config %s: line %d: reader.spi: \"SPI0.0\": no such device", path, lineOf(`spi = "SPI0.0"`)),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nwant it to contain %q", err, want)
		}
	}
	if want := fmt.Sprintf("latchd: warning: config %s: line %d: relay.pin GPIO4: GPIO0-8 are pulled up", path, lineOf(`pin = "GPIO4"`)); !strings.Contains(out.String(), want) {
		t.Errorf("output %q\nwant the warning %q", out.String(), want)
	}

	b = board{hasPin: func(string) bool { return true }, openSPI: func(string) error { return nil }}
	out.Reset()
	if err := checkOnBoard(path, cfg, b, true, &out); err != nil {
		t.Errorf("a board with every pin: %v", err)
	}
	out.Reset()
	if err := checkOnBoard(path, cfg, board{}, false, &out); err != nil || !strings.Contains(out.String(), "checked for their form only") {
		t.Errorf("off a board: %v, output %q", err, out.String())
	}
}

// TestConfigI2C1Pins: with a device on I2C1, its SDA and SCL pins (GPIO2
// and GPIO3) are refused for anything else.
func TestConfigI2C1Pins(t *testing.T) {
	conf := override(goodConfig, "[inputs]\ntamper = \"GPIO2\"\nexit_button = \"GPIO3\"")
	if _, err := parseConfig([]byte(conf)); err != nil {
		t.Fatalf("GPIO2 and GPIO3 without an I²C device: %v", err)
	}
	_, err := parseConfig([]byte(conf + "\n[display]\ntype = \"hd44780\"\n"))
	for _, want := range []string{"inputs.tamper GPIO2: it is I2C1's SDA, which the display uses", "inputs.exit_button GPIO3: it is I2C1's SCL, which the display uses"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	_, err = parseConfig([]byte(conf + "\n[display]\ntype = \"hd44780\"\ni2c = \"I2C3\"\n"))
	if err != nil {
		t.Errorf("a display on I2C3 leaves GPIO2 and GPIO3 free: %v", err)
	}
}
