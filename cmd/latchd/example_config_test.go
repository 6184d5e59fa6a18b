package main

import (
	"path/filepath"
	"testing"
)

// The example in docs/ must stay a valid config.
func TestExampleConfigParses(t *testing.T) {
	c, err := loadConfig(filepath.Join("..", "..", "docs", "latchd.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Door != "front" || c.Reader.IRQ != "GPIO24" || c.Timing.Held.Seconds() != 30 {
		t.Fatalf("decoded %+v", c)
	}
}
