package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodConfig = `
site = "hq"
door = "front"
data_dir = "/var/lib/latch"
mode = "card+pin"
timezone = "Europe/Berlin"

[reader]
spi = "SPI0.0"
reset = "GPIO25"

[keypad]
type = "matrix"
rows = ["GPIO5", "GPIO6", "GPIO13", "GPIO19"]
cols = ["GPIO12", "GPIO16", "GPIO20"]

[relay]
pin = "GPIO17"
active_low = true
lock = "fail-secure"

[inputs]
contact = "GPIO22"
exit_button = "GPIO23"
tamper = "GPIO27"

[timing]
unlock = "5s"
held = "30s"
`

func TestParseConfigGood(t *testing.T) {
	c, err := parseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Site != "hq" || c.Door != "front" || c.Relay.Pin != "GPIO17" || c.Timing.Unlock.Seconds() != 5 || len(c.Keypad.Cols) != 3 {
		t.Fatalf("decoded %+v", c)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"unknown key", "[relay]\npin = \"GPIO17\"\nbogus = 1", "unknown key relay.bogus"},
		{"syntax", "site = ", "line "},
		{"bad mode", `mode = "fingerprint"`, `mode "fingerprint"`},
		{"bad door", `door = "Front Door"`, `door "Front Door"`},
		{"bad zone", `timezone = "Mars/Olympus"`, `timezone "Mars/Olympus"`},
		{"pin twice", "[inputs]\ncontact = \"GPIO17\"", "pin GPIO17 is used twice"},
		{"bad duration", "[timing]\nunlock = \"5 parsecs\"", `duration "5 parsecs"`},
		{"bad speed", "[reader]\nspi = \"SPI0.0\"\nspeed_hz = 10", "speed_hz 10"},
		{"bad lock", "[relay]\npin = \"GPIO17\"\nlock = \"magic\"", `relay.lock "magic"`},
		{"broker without keys", "[mqtt]\nbroker = \"tcp://127.0.0.1:1883\"", "trusted_keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(override(goodConfig, tc.edit)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// override replaces the tables and keys named in edit within base: keys
// before any table header in edit replace top-level keys; a table header in
// edit replaces that table's matching keys or adds the table.
func override(base, edit string) string {
	out := base
	table := ""
	for _, line := range strings.Split(edit, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			table = line
			if !strings.Contains(out, table) {
				out += "\n" + table + "\n"
			}
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			out = line + "\n" + out
			continue
		}
		key = strings.TrimSpace(key)
		lines := strings.Split(out, "\n")
		cur, done := "", false
		for i, l := range lines {
			t := strings.TrimSpace(l)
			if strings.HasPrefix(t, "[") {
				cur = t
				continue
			}
			if cur == table && strings.HasPrefix(t, key+" ") {
				lines[i] = line
				done = true
				break
			}
		}
		if !done {
			for i, l := range lines {
				if strings.TrimSpace(l) == table {
					lines = append(lines[:i+1], append([]string{line}, lines[i+1:]...)...)
					done = true
					break
				}
			}
		}
		if !done {
			lines = append([]string{line}, lines...)
		}
		out = strings.Join(lines, "\n")
	}
	return out
}

func TestLoadConfigMissing(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("error = %v, want one naming the file", err)
	}
}

func TestLoadConfigTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(p, []byte(strings.Repeat("#", maxConfigSize+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("site = \"a\"\n[relay]\npin=\"\"\n"))
	f.Add([]byte("[[x]]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b)
		if err != nil {
			return
		}
		if c.validate() != nil {
			t.Fatal("parseConfig returned a config that does not validate")
		}
	})
}
