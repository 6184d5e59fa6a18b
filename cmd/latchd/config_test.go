package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
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

		// Timings, by their keys, in the door's ranges.
		{"unlock too short", "[timing]\nunlock = \"100ms\"", "timing.unlock 100ms: want 500ms to 1m0s"},
		{"extended below unlock", "[timing]\nunlock = \"20s\"\nextended_unlock = \"10s\"", "timing.extended_unlock 10s: want 20s to 5m0s"},
		{"held too short", "[timing]\nheld = \"1s\"", "timing.held 1s"},
		{"pin too short", "[timing]\npin = \"500ms\"", "timing.pin 500ms"},
		{"inter_key too long", "[timing]\ninter_key = \"2m\"", "timing.inter_key 2m0s"},
		{"debounce too long", "[timing]\ndebounce = \"1s\"", "timing.debounce 1s"},

		// A fail-secure strike always locks without power.
		{"fail-secure left unlocked", "[relay]\nfail_safe_halt = \"unlocked\"", `relay.fail_safe_halt "unlocked": only a fail-safe lock`},

		// MQTT settings that do not go together.
		{"tls files without broker", "[mqtt]\nca = \"/ca.pem\"", "mqtt.ca: set without mqtt.broker"},
		{"keys without broker", "[mqtt.trusted_keys]\nk1 = \"" + testSiteKey() + "\"", "mqtt.trusted_keys: set without mqtt.broker"},
		{"ca with tcp", mqttEdit("tcp://10.0.0.1:1883", "ca = \"/ca.pem\""), `mqtt.ca: TLS files need a TLS broker, and mqtt.broker "tcp://10.0.0.1:1883" is tcp://`},
		{"cert with tcp", mqttEdit("tcp://10.0.0.1:1883", "cert = \"/c.pem\"\nkey = \"/c.key\""), "mqtt.cert: TLS files need a TLS broker"},
		{"cert without key", mqttEdit("ssl://10.0.0.1:8883", "ca = \"/ca.pem\"\ncert = \"/c.pem\""), "mqtt.cert: a client certificate needs its private key in mqtt.key"},
		{"key without cert", mqttEdit("ssl://10.0.0.1:8883", "ca = \"/ca.pem\"\nkey = \"/c.key\""), "mqtt.key: a private key needs its client certificate"},
		{"cert without ca", mqttEdit("ssl://10.0.0.1:8883", "cert = \"/c.pem\"\nkey = \"/c.key\""), "mqtt.cert: a client certificate needs mqtt.ca"},
		{"password without username", mqttEdit("ssl://10.0.0.1:8883", "password_file = \"/pw\""), "mqtt.password_file: a password needs mqtt.username"},
		{"broker scheme", mqttEdit("http://10.0.0.1:80", ""), `mqtt.broker "http://10.0.0.1:80": scheme "http"`},
		{"broker without port", mqttEdit("ssl://10.0.0.1", ""), `mqtt.broker "ssl://10.0.0.1": want scheme://host:port`},
		{"broker with path", mqttEdit("ssl://10.0.0.1:8883/mqtt", ""), "want scheme://host:port"},

		// Security settings.
		{"untrusted clock", "[security]\nuntrusted_clock = \"open-all\"", `security.untrusted_clock "open-all": want deny-bound or ignore-schedules`},
		{"max bad pins", "[security]\nmax_bad_pins = 50", "security.max_bad_pins 50: want 1 to 20"},
		{"lockout too short", "[security]\nlockout = \"1s\"", "security.lockout 1s: want 5s to 1h0m0s"},
		{"max lockout below lockout", "[security]\nlockout = \"10m\"\nmax_lockout = \"5m\"", "security.max_lockout 5m0s: want 10m0s to 24h0m0s"},
		{"lockout above default max", "[security]\nlockout = \"30m\"", "set security.max_lockout too"},
		{"door window", "[security]\ndoor_window = \"10s\"", "security.door_window 10s: want 1m0s to 24h0m0s"},

		// The matrix key map.
		{"layout rows", "[keypad]\nlayout = \"123/456/789\"", `keypad.layout: layout "123/456/789" has 3 rows`},
		{"layout without hash", "[keypad]\nlayout = \"123/456/789/*0A\"", `keypad.layout "123/456/789/*0A": no '#' key`},

		// The unlock schedule.
		{"window without dash", "[unlock_schedule]\nmon = [\"08:00\"]", `unlock_schedule.mon[0] "08:00": want "HH:MM-HH:MM"`},
		{"window backwards", "[unlock_schedule]\ntue = [\"17:00-08:00\"]", `unlock_schedule.tue[0] "17:00-08:00": the end must be after the start`},
		{"bad time", "[unlock_schedule]\nwed = [\"8:00-12:00\"]", `unlock_schedule.wed[0] "8:00-12:00": "8:00" is not a time of day`},
		{"past midnight", "[unlock_schedule]\nthu = [\"08:00-24:30\"]", `"24:30" is not a time of day`},
		{"overlap", "[unlock_schedule]\nfri = [\"08:00-12:00\", \"11:00-13:00\"]", `unlock_schedule.fri[1] "11:00-13:00": overlaps unlock_schedule.fri[0]`},
		{"bad holiday", "[unlock_schedule]\nmon = [\"08:00-12:00\"]\nholidays = [\"25.12.2026\"]", `unlock_schedule.holidays[0] "25.12.2026": want YYYY-MM-DD`},
		{"holidays alone", "[unlock_schedule]\nholidays = [\"2026-12-25\"]", "unlock_schedule.holidays: set without any window"},
		{"first card without group", "[unlock_schedule]\nmon = [\"08:00-12:00\"]\nfirst_card = true", "unlock_schedule.first_card: set without first_card_group"},
		{"first card group alone", "[unlock_schedule]\nmon = [\"08:00-12:00\"]\nfirst_card_group = \"managers\"", "unlock_schedule.first_card_group: set without first_card = true"},
		{"first card without windows", "[unlock_schedule]\nfirst_card = true\nfirst_card_group = \"managers\"", "unlock_schedule.first_card: set without any window"},
		{"first card wildcard", "[unlock_schedule]\nmon = [\"08:00-12:00\"]\nfirst_card = true\nfirst_card_group = \"*\"", `unlock_schedule.first_card_group "*": want a door group name`},

		// Freshness and remote unlock.
		{"stale_after too short", mqttEdit("ssl://10.0.0.1:8883", "stale_after = \"10m\""), "mqtt.stale_after 10m0s: want 1h0m0s to 720h0m0s"},
		{"unknown stale policy", mqttEdit("ssl://10.0.0.1:8883", "stale_policy = \"panic\""), `mqtt.stale_policy "panic": want "keep-going", "card+pin" or "override-only"`},
		{"remote unlock too long", mqttEdit("ssl://10.0.0.1:8883", "max_remote_unlock = \"5m\""), "mqtt.max_remote_unlock 5m0s: want 1s to 1m0s"},
		{"stale policy without broker", "[mqtt]\nstale_policy = \"card+pin\"", "mqtt.stale_after, mqtt.stale_policy, mqtt.max_remote_unlock: set without mqtt.broker"},

		// The display.
		{"display type", "[display]\ntype = \"vfd\"", `display.type "vfd": want hd44780, ssd1306 or empty`},
		{"display bus", "[display]\ntype = \"hd44780\"\ni2c = \"I2C-1\"", `display.i2c "I2C-1": want I2C<bus>`},
		{"display address reserved", "[display]\ntype = \"ssd1306\"\naddress = 0x7c", "display.address 0x7c: want a 7-bit device address"},
		{"lcd address", "[display]\ntype = \"hd44780\"\naddress = 0x50", "display.address 0x50: an LCD backpack answers on 0x20 to 0x27"},
		{"oled address", "[display]\ntype = \"ssd1306\"\naddress = 0x27", "display.address 0x27: an SSD1306 answers on 0x3c or 0x3d"},
		{"oled height", "[display]\ntype = \"ssd1306\"\nheight = 48", "display.height 48: an SSD1306 panel is 32"},
		{"lcd height", "[display]\ntype = \"hd44780\"\nheight = 64", "display.height 64: only for an ssd1306"},
		{"display without type", "[display]\ni2c = \"I2C1\"", `display.i2c "I2C1": set without display.type`},

		// Site keys.
		{"placeholder key", "[mqtt]\nbroker = \"ssl://10.0.0.1:8883\"\n[mqtt.trusted_keys]\nsite-2026 = \"REPLACE-WITH-THE-SITE-PUBLIC-KEY\"", `mqtt.trusted_keys.site-2026 = "REPLACE-WITH-THE-SITE-PUBLIC-KEY" is a placeholder`},
		{"empty key", "[mqtt]\nbroker = \"ssl://10.0.0.1:8883\"\n[mqtt.trusted_keys]\nk1 = \"\"", "mqtt.trusted_keys.k1 = \"\" is a placeholder"},
		{"short key", "[mqtt]\nbroker = \"ssl://10.0.0.1:8883\"\n[mqtt.trusted_keys]\nk1 = \"AAAA\"", "mqtt.trusted_keys.k1: mqtt: trusted key k1: 3 bytes, want 32"},
		{"not base64", "[mqtt]\nbroker = \"ssl://10.0.0.1:8883\"\n[mqtt.trusted_keys]\nk1 = \"not a key!\"", "mqtt.trusted_keys.k1: mqtt: trusted key k1: illegal base64"},
		{"bad kid", "[mqtt]\nbroker = \"ssl://10.0.0.1:8883\"\n[mqtt.trusted_keys]\n\"a/b\" = \"" + testSiteKey() + "\"", `mqtt.trusted_keys."a/b": mqtt: trusted key id "a/b"`},

		// The metrics endpoint, by its form alone.
		{"metrics without port", "[metrics]\nlisten = \"127.0.0.1\"", `metrics.listen "127.0.0.1": want host:port`},
		{"metrics port 0", "[metrics]\nlisten = \":0\"", `metrics.listen ":0": port "0": want a number from 1 to 65535`},
		{"metrics port too high", "[metrics]\nlisten = \"127.0.0.1:65536\"", `port "65536": want a number from 1 to 65535`},
		{"metrics port by name", "[metrics]\nlisten = \"127.0.0.1:http\"", `port "http"`},
		{"metrics port signed", "[metrics]\nlisten = \"127.0.0.1:+9102\"", `port "+9102"`},
		{"metrics bad host", "[metrics]\nlisten = \"door_1:9102\"", `metrics.listen "door_1:9102": host "door_1": want an IP address, a host name`},
		{"metrics URL", "[metrics]\nlisten = \"http://127.0.0.1:9102\"", `metrics.listen "http://127.0.0.1:9102": want host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(override(goodConfig, tc.edit)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// testSiteKey is a valid site public key (of the all-zero seed).
func testSiteKey() string {
	return base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey))
}

// mqttEdit is an edit for override: an [mqtt] table with broker and the
// extra lines, and one valid site key.
func mqttEdit(broker, extra string) string {
	e := "[mqtt]\nbroker = \"" + broker + "\""
	if extra != "" {
		e += "\n" + extra
	}
	return e + "\n[mqtt.trusted_keys]\nk1 = \"" + testSiteKey() + "\""
}

func TestParseConfigAccepts(t *testing.T) {
	for _, tc := range []struct{ name, edit string }{
		{"fail-safe left unlocked", "[relay]\nlock = \"fail-safe\"\nfail_safe_halt = \"unlocked\""},
		{"fail-secure locked", "[relay]\nfail_safe_halt = \"locked\""},
		{"tcp broker", mqttEdit("tcp://10.0.0.1:1883", "username = \"door\"\npassword_file = \"/pw\"")},
		{"ssl broker, system roots", mqttEdit("ssl://mqtt.example.org:8883", "")},
		{"ssl broker, client certificate", mqttEdit("mqtts://10.0.0.1:8883", "ca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/c.key\"")},
		{"layout", "[keypad]\nlayout = \"321/654/987/#0*\""},
		{"sync settings", mqttEdit("ssl://10.0.0.1:8883", "stale_after = \"72h\"\nstale_policy = \"override-only\"\nmax_remote_unlock = \"1m\"")},
		{"lcd", "[display]\ntype = \"hd44780\""},
		{"lcd on a PCF8574A", "[display]\ntype = \"hd44780\"\ni2c = \"/dev/i2c-3\"\naddress = 0x3f"},
		{"oled", "[display]\ntype = \"ssd1306\"\naddress = 0x3d\nheight = 64"},
		{"timings at their limits", "[timing]\nunlock = \"1m\"\nextended_unlock = \"1m\"\nheld = \"1h\"\npin = \"1s\"\ninter_key = \"1m\"\ndebounce = \"200ms\""},
		{"metrics on loopback", "[metrics]\nlisten = \"127.0.0.1:9102\""},
		{"metrics everywhere", "[metrics]\nlisten = \":9102\""},
		{"metrics on IPv6", "[metrics]\nlisten = \"[::1]:65535\""},
		{"metrics by host name", "[metrics]\nlisten = \"door-1.example.org:1\""},
		{"metrics off", "[metrics]\nlisten = \"\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseConfig([]byte(override(goodConfig, tc.edit))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The time zone is loaded once, by validation.
func TestConfigLocation(t *testing.T) {
	c, err := parseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.location().String() != "Europe/Berlin" {
		t.Errorf("location %v", c.location())
	}
	if (&Config{}).location() != time.UTC {
		t.Error("no time zone is not UTC")
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

// The sync settings reach the MQTT client's options.
func TestMQTTOptionsSyncSettings(t *testing.T) {
	c, err := parseConfig([]byte(override(goodConfig, mqttEdit("tcp://127.0.0.1:1883",
		"stale_after = \"72h\"\nstale_policy = \"card+pin\"\nmax_remote_unlock = \"45s\""))))
	if err != nil {
		t.Fatal(err)
	}
	o, err := mqttOptions(c, c.MQTT.Broker, slog.New(slog.DiscardHandler), "boot")
	if err != nil {
		t.Fatal(err)
	}
	if o.StaleAfter != 72*time.Hour || o.MaxUnlock != 45*time.Second {
		t.Fatalf("stale after %s, max unlock %s", o.StaleAfter, o.MaxUnlock)
	}
	// The policy is the door's: it changes decisions.
	if p := c.doorConfig().StalePolicy; p != door.StaleCardAndPIN {
		t.Fatalf("door stale policy %q", p)
	}
}

// The unlock schedule is parsed into the door's weekly windows.
func TestConfigUnlockSchedule(t *testing.T) {
	c, err := parseConfig([]byte(override(goodConfig, "[unlock_schedule]\nmon = [\"08:00-12:00\", \"13:00-17:30\"]\nsat = [\"10:00-24:00\"]\nholidays = [\"2026-12-25\"]")))
	if err != nil {
		t.Fatal(err)
	}
	s := c.schedule
	if s == nil {
		t.Fatal("no schedule")
	}
	want := [7][]store.Window{
		time.Monday:   {{From: 480, To: 720}, {From: 780, To: 1050}},
		time.Saturday: {{From: 600, To: 1440}},
	}
	if !reflect.DeepEqual(s.Weekly, want) || !slices.Equal(s.Holidays, []string{"2026-12-25"}) {
		t.Fatalf("schedule %+v", s)
	}
	if c, err := parseConfig([]byte(goodConfig)); err != nil || c.schedule != nil {
		t.Fatalf("no [unlock_schedule]: %+v %v", c.schedule, err)
	}
	c, err = parseConfig([]byte(override(goodConfig, "[unlock_schedule]\nmon = [\"08:00-12:00\"]\nfirst_card = true\nfirst_card_group = \"managers\"")))
	if err != nil || c.doorConfig().FirstCardGroup != "managers" {
		t.Fatalf("first-card schedule: %v", err)
	}
}

// The security settings reach the store, which accepts them.
func TestConfigSecurity(t *testing.T) {
	c, err := parseConfig([]byte(override(goodConfig, "[security]\nuntrusted_clock = \"ignore-schedules\"\nmax_bad_pins = 3\nlockout = \"1m\"\nmax_lockout = \"2h\"\ndoor_max_bad_pins = 50\ndoor_window = \"30m\"")))
	if err != nil {
		t.Fatal(err)
	}
	p, l := c.Security.storeOptions()
	want := store.LockoutPolicy{MaxBadPINs: 3, Backoff: time.Minute, MaxBackoff: 2 * time.Hour, DoorMaxBadPINs: 50, DoorWindow: 30 * time.Minute}
	if p != store.UntrustedIgnoreSchedules || l != want {
		t.Fatalf("policy %v, lockout %+v", p, l)
	}
	c.DataDir = t.TempDir()
	st, err := openStore(c, door.SystemClock{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// weakSiteKeys are Ed25519 public keys whose signatures anyone can forge,
// or that are not keys at all, in standard base64, with what the error
// says: the eight small-order points (the identity, the point of order 2,
// two of order 4 among them the all-zero key, four of order 8) and
// non-canonical encodings.
var weakSiteKeys = []struct{ name, hex, want string }{
	{"identity", "0100000000000000000000000000000000000000000000000000000000000000", "small-order"},
	{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "small-order"},
	{"all zero, order 4", "0000000000000000000000000000000000000000000000000000000000000000", "small-order"},
	{"order 4", "0000000000000000000000000000000000000000000000000000000000000080", "small-order"},
	{"order 8 a", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", "small-order"},
	{"order 8 b", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", "small-order"},
	{"order 8 c", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", "small-order"},
	{"order 8 d", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", "small-order"},
	{"identity, sign bit set", "0100000000000000000000000000000000000000000000000000000000000080", "non-canonical"},
	{"y = p (order 4)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "non-canonical"},
	{"y = p + 1 (identity)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "non-canonical"},
	{"all ones, y >= p", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "non-canonical"},
}

// A weak site key in the config is refused, naming the key, by the config
// loader and by -check-config; the door never trusts it.
func TestConfigRefusesWeakSiteKeys(t *testing.T) {
	dir := t.TempDir()
	base := strings.Replace(goodConfig, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
	write := func(t *testing.T, key string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "latchd.toml")
		edit := "[mqtt]\nbroker = \"tcp://127.0.0.1:1883\"\n[mqtt.trusted_keys]\nsite-1 = \"" + key + "\""
		if err := os.WriteFile(p, []byte(override(base, edit)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range weakSiteKeys {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			p := write(t, base64.StdEncoding.EncodeToString(raw))
			want := "mqtt.trusted_keys.site-1: mqtt: trusted key site-1: " + tc.want
			if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("loadConfig: %v, want %q", err, want)
			}
			code, _, stderr := runArgs(t, "-check-config", "-config", p)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("-check-config: exit %d, stderr %q, want 1 and %q", code, stderr, want)
			}
		})
	}
	t.Run("good key", func(t *testing.T) {
		p := write(t, testSiteKey())
		c, err := loadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mqttOptions(c, c.MQTT.Broker, slog.New(slog.DiscardHandler), ""); err != nil {
			t.Fatal(err)
		}
		if code, stdout, stderr := runArgs(t, "-check-config", "-config", p); code != 0 {
			t.Fatalf("-check-config: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

// A 0 written out is not a key left out: no numeric or duration key of
// [reader], [timing], [security] or [mqtt] has a meaning for 0, so an
// explicit 0 is refused, naming the key, where it would otherwise have
// silently become the default.
func TestParseConfigExplicitZero(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"speed_hz", "[reader]\nspi = \"SPI0.0\"\nspeed_hz = 0", "reader.speed_hz 0: want 50000 to 5000000"},
		{"unlock", "[timing]\nunlock = \"0s\"", "timing.unlock 0s: want more than 0s (leave the key out for the default)"},
		{"unlock written 0", "[timing]\nunlock = \"0\"", "timing.unlock 0s: want more than 0s"},
		{"unlock written 0ms", "[timing]\nunlock = \"0ms\"", "timing.unlock 0s: want more than 0s"},
		{"extended_unlock", "[timing]\nextended_unlock = \"0s\"", "timing.extended_unlock 0s: want more than 0s"},
		{"held", "[timing]\nheld = \"0s\"", "timing.held 0s: want more than 0s"},
		{"pin", "[timing]\npin = \"0s\"", "timing.pin 0s: want more than 0s"},
		{"inter_key", "[timing]\ninter_key = \"0s\"", "timing.inter_key 0s: want more than 0s"},
		{"debounce", "[timing]\ndebounce = \"0s\"", "timing.debounce 0s: want 1ms to 200ms"},
		{"max_bad_pins", "[security]\nmax_bad_pins = 0", "security.max_bad_pins 0: want 1 to 20"},
		{"lockout", "[security]\nlockout = \"0s\"", "security.lockout 0s: want 5s to 1h0m0s"},
		{"max_lockout", "[security]\nmax_lockout = \"0s\"", "security.max_lockout 0s: want 30s to 24h0m0s"},
		{"door_max_bad_pins", "[security]\ndoor_max_bad_pins = 0", "security.door_max_bad_pins 0: want 1 to 1000"},
		{"door_window", "[security]\ndoor_window = \"0s\"", "security.door_window 0s: want 1m0s to 24h0m0s"},
		{"stale_after", mqttEdit("ssl://10.0.0.1:8883", "stale_after = \"0s\""), "mqtt.stale_after 0s: want 1h0m0s to 720h0m0s"},
		{"max_remote_unlock", mqttEdit("ssl://10.0.0.1:8883", "max_remote_unlock = \"0s\""), "mqtt.max_remote_unlock 0s: want 1s to 1m0s"},
		{"stale_after without broker", "[mqtt]\nstale_after = \"0s\"", "set without mqtt.broker"},
		{"max_remote_unlock without broker", "[mqtt]\nmax_remote_unlock = \"0s\"", "set without mqtt.broker"},
		// Other ways to write a key: a dotted key and an inline table.
		{"dotted key", "security.max_bad_pins = 0", "security.max_bad_pins 0: want 1 to 20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(override(goodConfig, tc.edit)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want containing %q", err, tc.want)
			}
		})
	}
	t.Run("inline table", func(t *testing.T) {
		cfg := strings.Replace(goodConfig, "[timing]\nunlock = \"5s\"\nheld = \"30s\"", "", 1)
		if cfg == goodConfig {
			t.Fatal("the edit did not apply")
		}
		cfg = "timing = { unlock = \"5s\", held = \"0s\" }\n" + cfg
		if _, err := parseConfig([]byte(cfg)); err == nil || !strings.Contains(err.Error(), "timing.held 0s") {
			t.Fatalf("error = %v, want timing.held 0s refused", err)
		}
	})
	t.Run("through the loader", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "latchd.toml")
		if err := os.WriteFile(p, []byte(override(goodConfig, "[security]\nmax_bad_pins = 0")), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(p); err == nil || !regexp.MustCompile(regexp.QuoteMeta(p)+`: line [0-9]+: security\.max_bad_pins 0: want 1 to 20`).MatchString(err.Error()) {
			t.Fatalf("error = %v", err)
		}
	})
	// Left out, each keeps its default.
	c, err := parseConfig([]byte(override(goodConfig, mqttEdit("ssl://10.0.0.1:8883", ""))))
	if err != nil {
		t.Fatal(err)
	}
	if _, l := c.Security.storeOptions(); l != (store.LockoutPolicy{}) || c.Reader.SpeedHz != 0 || c.Timing.Debounce.Duration != 0 || c.MQTT.StaleAfter.Duration != 0 {
		t.Fatalf("keys left out are not zero (default): %+v", c)
	}
}

// Every numeric and duration key of the config, found by reflection, is
// refused at 0 with an error naming it: a key added later cannot miss the
// check. A key whose 0 means something is a pointer (nil when left out),
// which tells 0 from absent by itself, and is not walked.
func TestConfigEveryNumericKeyRefusesZero(t *testing.T) {
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			switch {
			case f.Type == reflect.TypeFor[duration]():
				keys = append(keys, key+` = "0s"`)
			case f.Type.Kind() == reflect.Struct:
				walk(key, f.Type)
			case f.Type.Kind() >= reflect.Int && f.Type.Kind() <= reflect.Uint64:
				keys = append(keys, key+" = 0")
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	if len(keys) < 14 {
		t.Fatalf("found %d numeric keys: %q", len(keys), keys)
	}
	for _, kv := range keys {
		t.Run(kv, func(t *testing.T) {
			key, _, _ := strings.Cut(kv, " = ")
			table, name, _ := strings.Cut(key, ".")
			edit := "[" + table + "]\n" + name + strings.TrimPrefix(kv, key)
			if table == "mqtt" {
				edit = mqttEdit("ssl://10.0.0.1:8883", name+strings.TrimPrefix(kv, key))
			}
			_, err := parseConfig([]byte(override(goodConfig, edit)))
			if err == nil || !strings.HasPrefix(withoutLine(err.Error()), key+" 0") {
				t.Fatalf("error = %v, want one starting %q", err, key+" 0")
			}
		})
	}
}

// withoutLine drops the "line N: " a config error starts with when the
// file sets its key.
func withoutLine(msg string) string {
	return regexp.MustCompile(`^line [0-9]+: `).ReplaceAllString(msg, "")
}

// TestConfigEveryErrorAtOnce: a file with several problems gets them all,
// each with the line that sets its key.
func TestConfigEveryErrorAtOnce(t *testing.T) {
	cfg := strings.Replace(goodConfig, `pin = "GPIO17"`, `pin = "GPIO17x"`, 1)
	cfg = strings.Replace(cfg, `spi = "SPI0.0"`, `spi = "SPI9.9"`, 1)
	cfg = strings.Replace(cfg, `mode = "card+pin"`, `mode = "card+face"`, 1)
	cfg += "\n[display]\ntype = \"ssd1306\"\naddress = 0x27\nheight = 40\n"
	cfg += "\n[metrics]\nlisten = \"127.0.0.1:99999\"\n"
	_, err := parseConfig([]byte(cfg))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(cfg, "\n")
	lineOf := func(s string) int {
		for i, l := range lines {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("%q is not in the config", s)
		return 0
	}
	for _, want := range []string{
		fmt.Sprintf(`line %d: mode "card+face"`, lineOf(`"card+face"`)),
		fmt.Sprintf(`line %d: reader.spi "SPI9.9"`, lineOf(`"SPI9.9"`)),
		fmt.Sprintf(`line %d: relay.pin "GPIO17x"`, lineOf(`"GPIO17x"`)),
		fmt.Sprintf(`line %d: display.address 0x27`, lineOf(`address = 0x27`)),
		fmt.Sprintf(`line %d: display.height 40`, lineOf(`height = 40`)),
		fmt.Sprintf(`line %d: metrics.listen "127.0.0.1:99999"`, lineOf(`"127.0.0.1:99999"`)),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 6 {
		t.Errorf("%d problems reported, want 6:\n%v", n, err)
	}
}

func TestI2CNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"I2C1", true}, {"I2C0", true}, {"I2C22", true}, {"/dev/i2c-1", true}, {"/dev/i2c-20", true},
		{"", false}, {"i2c1", false}, {"I2C", false}, {"I2C30", false}, {"I2C1x", false}, {"/dev/i2c1", false}, {"1", false},
	} {
		err := checkI2CName("display.i2c", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("checkI2CName(%q) = %v, want ok %t", tc.name, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "display.i2c ") {
			t.Errorf("checkI2CName(%q) = %q, want the key first", tc.name, err)
		}
	}
	for _, tc := range []struct {
		addr int
		ok   bool
	}{{0x20, true}, {0x27, true}, {0x3c, true}, {0x08, true}, {0x77, true}, {0x07, false}, {0x78, false}, {-1, false}, {0x100, false}} {
		if err := checkI2CAddr("keypad.address", tc.addr); (err == nil) != tc.ok {
			t.Errorf("checkI2CAddr(%#x) = %v, want ok %t", tc.addr, err, tc.ok)
		}
	}
}
