package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimPreview runs the simulator on a door's config file: its Wiegand
// keypad, its normally closed door contact and tamper loop and its LEDs
// and buzzer are emulated as wired, and the simulator prints what the
// door shows and sounds: a key with no card beeps and the display, an
// OLED read back from its pixels, asks for the card first; the PIN prompt
// masks the digits; a grant is green with one beep. The tamper switch trips and is restored, and the contact,
// wired normally closed, reads open and closed the right way round.
func TestSimPreview(t *testing.T) {
	example, err := os.ReadFile("../../docs/latchd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(example), `type = "matrix"`, `type = "wiegand"
d0 = "GPIO5"
d1 = "GPIO6"
#`, 1)
	// The placeholder site key stays: the preview does not use [mqtt].
	conf = strings.Replace(conf, `rows = ["GPIO5", "GPIO6", "GPIO13", "GPIO19"]`, "", 1)
	conf = strings.Replace(conf, `cols = ["GPIO12", "GPIO16", "GPIO20"]`, "", 1)
	conf += "\n[display]\ntype = \"ssd1306\"\nheight = 64\n"
	path := filepath.Join(t.TempDir(), "door.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, "-config", path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr: %s", sim.stderr.String())
		}
	})
	out, send := sim.out, sim.send
	out.next("the preview line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "latchd: previewing "+path)
	})
	feedback := func(pattern string) {
		t.Helper()
		out.next("feedback "+pattern, func(m map[string]any) bool { return m["type"] == "feedback" && m["pattern"] == pattern })
	}
	out.next("the try line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "latchd: try: ")
	})
	display := func(l1, l2 string) {
		t.Helper()
		out.next(fmt.Sprintf("display %q %q", l1, l2), func(m map[string]any) bool {
			lines, _ := m["lines"].([]any)
			return m["type"] == "display" && len(lines) == 2 && lines[0] == l1 && lines[1] == l2
		})
	}
	send("key 1")
	feedback("key")
	display("Present card", "then enter PIN")
	send("tamper")
	if ev := out.event("tamper"); ev["detail"] != "active" {
		t.Errorf("tamper event %v, want active", ev)
	}
	feedback("alarm")
	send("tamper off")
	if ev := out.event("tamper"); ev["detail"] != "cleared" {
		t.Errorf("tamper event %v, want cleared", ev)
	}
	send("open")
	if ev := out.event("door_forced"); ev["reason"] != "door_forced" {
		t.Errorf("door_forced event %v", ev)
	}
	send("close")
	out.event("door_closed")
	send("tap 04A1B2C3D4E5F6")
	feedback("awaiting_pin")
	display("Enter PIN", "")
	send("key 123")
	display("Enter PIN", "***")
	send("key 4#")
	if ev := out.event("granted"); ev["uid"] != "04A1B2C3D4E5F6" {
		t.Errorf("granted event %v", ev)
	}
	feedback("granted")
	display("Access granted", "")
	send("remove")
	sim.quit()
}

// TestSimPreviewExpander previews a keypad on a PCF8574 expander with its
// INT wired, and an LCD on the same I²C bus: the PIN typed on the
// emulated keypad reaches the door through the emulated chip.
func TestSimPreviewExpander(t *testing.T) {
	example, err := os.ReadFile("../../docs/latchd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(example), "REPLACE-WITH-THE-SITE-PUBLIC-KEY", testSiteKey(), 1)
	conf = strings.Replace(conf, `rows = ["GPIO5", "GPIO6", "GPIO13", "GPIO19"]`, `rows = ["P0", "P1", "P2", "P3"]
expander = "pcf8574"
interrupt = "GPIO4"`, 1)
	conf = strings.Replace(conf, `cols = ["GPIO12", "GPIO16", "GPIO20"]`, `cols = ["P4", "P5", "P6"]`, 1)
	conf += "\n[display]\ntype = \"hd44780\"\n"
	path := filepath.Join(t.TempDir(), "door.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, "-config", path)
	out, send := sim.out, sim.send
	out.next("the try line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "latchd: try: ")
	})
	send("tap 04A1B2C3D4E5F6")
	send("key 1234#")
	if ev := out.event("granted"); ev["uid"] != "04A1B2C3D4E5F6" {
		t.Errorf("granted event %v (stderr %s)", ev, sim.stderr.String())
	}
	out.next("the LCD showing the grant", func(m map[string]any) bool {
		lines, _ := m["lines"].([]any)
		return m["type"] == "display" && len(lines) == 2 && lines[0] == "Access granted"
	})
	send("remove")
	sim.quit()
}
