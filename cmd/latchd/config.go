package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/latchdoor/latch/store"
)

// maxConfigSize bounds the config file: a real one is a few kilobytes.
const maxConfigSize = 1 << 20

// Config is latchd's configuration file (TOML). Pin names are periph names
// such as "GPIO17"; the SPI device is a periph name such as "SPI0.0".
type Config struct {
	Site     string   `toml:"site"`     // site id, as in the MQTT topic root
	Door     string   `toml:"door"`     // this door's id
	Groups   []string `toml:"groups"`   // door groups a card may list instead of the door id
	DataDir  string   `toml:"data_dir"` // where the bbolt file lives
	Mode     string   `toml:"mode"`     // "card", "card+pin" or "card-or-pin"
	Timezone string   `toml:"timezone"` // IANA zone for schedules, e.g. "Europe/Berlin"
	Lockdown bool     `toml:"lockdown"` // start in lockdown

	Reader   ReaderConfig   `toml:"reader"`
	Keypad   KeypadConfig   `toml:"keypad"`
	Relay    RelayConfig    `toml:"relay"`
	Inputs   InputsConfig   `toml:"inputs"`
	Feedback FeedbackConfig `toml:"feedback"`
	Timing   TimingConfig   `toml:"timing"`
	MQTT     MQTTConfig     `toml:"mqtt"`
}

// ReaderConfig names the PN532's SPI device and optional pins.
type ReaderConfig struct {
	SPI     string `toml:"spi"`      // e.g. "SPI0.0"
	SpeedHz int64  `toml:"speed_hz"` // bus clock; 0 = driver default (1 MHz)
	Reset   string `toml:"reset"`    // RSTPDN pin, optional
	IRQ     string `toml:"irq"`      // IRQ pin, optional
}

// KeypadConfig selects and wires the keypad.
type KeypadConfig struct {
	Type string   `toml:"type"` // "matrix", "wiegand" or "" for none
	Rows []string `toml:"rows"` // matrix rows (outputs)
	Cols []string `toml:"cols"` // matrix columns (inputs with pull-ups)
	D0   string   `toml:"d0"`   // Wiegand DATA0
	D1   string   `toml:"d1"`   // Wiegand DATA1
}

// RelayConfig wires the lock relay.
type RelayConfig struct {
	Pin       string `toml:"pin"`
	ActiveLow bool   `toml:"active_low"` // most relay boards energise on a low pin
	Lock      string `toml:"lock"`       // "fail-secure" (strike) or "fail-safe" (maglock)
	// FailSafeHalt is what a fail-safe lock does on shutdown: "locked" or "unlocked".
	FailSafeHalt string `toml:"fail_safe_halt"`
}

// InputsConfig wires the door contact, exit button and tamper switch.
type InputsConfig struct {
	Contact         string `toml:"contact"`
	ContactNC       bool   `toml:"contact_normally_closed"`
	ExitButton      string `toml:"exit_button"`
	ExitButtonNC    bool   `toml:"exit_button_normally_closed"`
	Tamper          string `toml:"tamper"`
	TamperNC        bool   `toml:"tamper_normally_closed"`
	ActiveHighInput bool   `toml:"active_high"` // inputs pulled down and active high (default: pulled up, active low)
}

// FeedbackConfig wires the LEDs and buzzer (each optional).
type FeedbackConfig struct {
	Green     string `toml:"green"`
	Red       string `toml:"red"`
	Buzzer    string `toml:"buzzer"`
	ActiveLow bool   `toml:"active_low"`
}

// TimingConfig overrides the door's timings; zero keeps the default.
type TimingConfig struct {
	Unlock         duration `toml:"unlock"`
	ExtendedUnlock duration `toml:"extended_unlock"`
	Held           duration `toml:"held"`
	PIN            duration `toml:"pin"`
	InterKey       duration `toml:"inter_key"`
	Debounce       duration `toml:"debounce"`
}

// MQTTConfig connects the door to the site.
type MQTTConfig struct {
	Broker       string            `toml:"broker"` // tcp://host:1883 or ssl://host:8883; empty = offline
	CA           string            `toml:"ca"`
	Cert         string            `toml:"cert"`
	Key          string            `toml:"key"`
	Username     string            `toml:"username"`
	PasswordFile string            `toml:"password_file"`
	TrustedKeys  map[string]string `toml:"trusted_keys"` // kid → base64 Ed25519 public key
}

// duration is a time.Duration written as "5s" in TOML.
type duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// loadConfig reads and validates the configuration file at path.
func loadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigSize)
	}
	c, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parseConfig decodes TOML strictly (unknown keys are refused) and validates.
func parseConfig(b []byte) (*Config, error) {
	c := &Config{Mode: string(store.ModeCardPIN), Relay: RelayConfig{Lock: "fail-secure", ActiveLow: true, FailSafeHalt: "locked"}}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) validate() error {
	if !idPattern.MatchString(c.Site) {
		return fmt.Errorf("site %q: want 1-64 of a-z, 0-9, '-', '_'", c.Site)
	}
	if !idPattern.MatchString(c.Door) {
		return fmt.Errorf("door %q: want 1-64 of a-z, 0-9, '-', '_'", c.Door)
	}
	switch store.Mode(c.Mode) {
	case store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN:
	default:
		return fmt.Errorf("mode %q: want card, card+pin or card-or-pin", c.Mode)
	}
	if c.Timezone != "" {
		if _, err := time.LoadLocation(c.Timezone); err != nil {
			return fmt.Errorf("timezone %q: %w", c.Timezone, err)
		}
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if c.Reader.SPI == "" {
		return errors.New("reader.spi: required (e.g. \"SPI0.0\")")
	}
	if c.Reader.SpeedHz != 0 && (c.Reader.SpeedHz < 50_000 || c.Reader.SpeedHz > 5_000_000) {
		return fmt.Errorf("reader.speed_hz %d: want 50000 to 5000000", c.Reader.SpeedHz)
	}
	if c.Relay.Pin == "" {
		return errors.New("relay.pin: required")
	}
	switch c.Relay.Lock {
	case "fail-secure", "fail-safe":
	default:
		return fmt.Errorf("relay.lock %q: want fail-secure or fail-safe", c.Relay.Lock)
	}
	switch c.Relay.FailSafeHalt {
	case "locked", "unlocked":
	default:
		return fmt.Errorf("relay.fail_safe_halt %q: want locked or unlocked", c.Relay.FailSafeHalt)
	}
	switch c.Keypad.Type {
	case "":
		if store.Mode(c.Mode) != store.ModeCardOnly {
			return fmt.Errorf("keypad.type: a keypad is required in mode %q", c.Mode)
		}
	case "matrix":
		if (len(c.Keypad.Rows) != 4) || (len(c.Keypad.Cols) != 3 && len(c.Keypad.Cols) != 4) {
			return fmt.Errorf("keypad: a matrix needs 4 rows and 3 or 4 cols, have %d and %d", len(c.Keypad.Rows), len(c.Keypad.Cols))
		}
	case "wiegand":
		if c.Keypad.D0 == "" || c.Keypad.D1 == "" {
			return errors.New("keypad: wiegand needs d0 and d1")
		}
	default:
		return fmt.Errorf("keypad.type %q: want matrix, wiegand or empty", c.Keypad.Type)
	}
	seen := map[string]string{}
	pins := c.pins()
	for _, name := range slices.Sorted(maps.Keys(pins)) {
		pin := pins[name]
		if pin == "" {
			continue
		}
		if other, ok := seen[pin]; ok {
			return fmt.Errorf("pin %s is used twice: %s and %s", pin, other, name)
		}
		seen[pin] = name
	}
	if c.MQTT.Broker != "" && len(c.MQTT.TrustedKeys) == 0 {
		return errors.New("mqtt.trusted_keys: at least one site key is required with a broker")
	}
	return nil
}

// pins returns every configured pin by its config key.
func (c *Config) pins() map[string]string {
	m := map[string]string{
		"reader.reset":       c.Reader.Reset,
		"reader.irq":         c.Reader.IRQ,
		"keypad.d0":          c.Keypad.D0,
		"keypad.d1":          c.Keypad.D1,
		"relay.pin":          c.Relay.Pin,
		"inputs.contact":     c.Inputs.Contact,
		"inputs.exit_button": c.Inputs.ExitButton,
		"inputs.tamper":      c.Inputs.Tamper,
		"feedback.green":     c.Feedback.Green,
		"feedback.red":       c.Feedback.Red,
		"feedback.buzzer":    c.Feedback.Buzzer,
	}
	for i, p := range c.Keypad.Rows {
		m[fmt.Sprintf("keypad.rows[%d]", i)] = p
	}
	for i, p := range c.Keypad.Cols {
		m[fmt.Sprintf("keypad.cols[%d]", i)] = p
	}
	return m
}
