package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example in docs/ is a complete config but for the site's public key,
// which every site has to fill in: as shipped it is refused with an error
// naming the key, and with a real key in its place it is valid.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "latchd.example.toml")
	_, err := loadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "mqtt.trusted_keys.") || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("error %v, want the placeholder site key refused", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.MQTT.TrustedKeys) == 0 {
		t.Fatal("the example has no mqtt.trusted_keys")
	}
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	for kid := range c.MQTT.TrustedKeys {
		c.MQTT.TrustedKeys[kid] = base64.StdEncoding.EncodeToString(pub)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the example with a real site key: %v", err)
	}
	if c.Door != "front" || c.Reader.IRQ != "GPIO24" || c.Timing.Held.Seconds() != 30 || c.location().String() != "Europe/Berlin" {
		t.Fatalf("decoded %+v", c)
	}
}

// The example's commented [display] section, uncommented, is valid and
// says what it means.
func TestExampleConfigDisplay(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "latchd.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var section []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if line == "# [display]" {
			in = true
		}
		if in && !strings.HasPrefix(line, "# ") {
			break
		}
		if in {
			section = append(section, strings.TrimPrefix(line, "# "))
		}
	}
	if len(section) < 2 {
		t.Fatalf("the example has no commented [display] section: %q", section)
	}
	c, err := decodeConfig([]byte(goodConfig + "\n" + strings.Join(section, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the example's display section: %v", err)
	}
	if want := (DisplayConfig{Type: "hd44780", I2C: "I2C1", Address: 0x27}); c.Display != want {
		t.Errorf("decoded %+v, want %+v", c.Display, want)
	}
}
