package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/door/display"
	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/reader/keypad"
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

	Reader   ReaderConfig   `toml:"reader"`   // the PN532 card reader
	Keypad   KeypadConfig   `toml:"keypad"`   // the PIN keypad, if any
	Relay    RelayConfig    `toml:"relay"`    // the lock relay
	Inputs   InputsConfig   `toml:"inputs"`   // door contact, exit button, tamper switch
	Feedback FeedbackConfig `toml:"feedback"` // LEDs and buzzer
	Display  DisplayConfig  `toml:"display"`  // the text display, if any
	Timing   TimingConfig   `toml:"timing"`   // the door's timings
	MQTT     MQTTConfig     `toml:"mqtt"`     // the link to the site
	// UnlockSchedule holds the door unlocked (free access) during its
	// windows, in Timezone, while the clock is trusted.
	UnlockSchedule UnlockScheduleConfig `toml:"unlock_schedule"`
	// Security sets PIN lockout and what time rules do on an untrusted clock.
	Security SecurityConfig `toml:"security"`
	// Journal sets what the door does when it cannot write its audit log.
	Journal JournalConfig `toml:"journal"`
	// Metrics sets where latchd serves its metrics and health check.
	Metrics MetricsConfig `toml:"metrics"`

	// defined reports whether the file sets a key, given as its path
	// ("security", "max_bad_pins"), even to zero: md.IsDefined of the
	// decode. nil for a Config built in code, which sets none.
	defined func(key ...string) bool
	// loc is Timezone, loaded by validate; nil means UTC.
	loc *time.Location
	// schedule is UnlockSchedule, parsed by validate; nil means none.
	schedule *store.Schedule
	// preview says the file is previewed by the simulator (latchd -sim
	// -config), which puts its own site in place of the [mqtt] table:
	// validate leaves that table out.
	preview bool
}

// SecurityConfig tunes the allowlist's defences; a key left out keeps the
// default, and none of them may be 0.
type SecurityConfig struct {
	// UntrustedClock is what time rules do while the clock is not trusted:
	// "deny-bound" (default: cards with dates or schedules the signed site
	// time cannot settle are refused) or "ignore-schedules".
	UntrustedClock string   `toml:"untrusted_clock"`
	MaxBadPINs     int      `toml:"max_bad_pins"`      // consecutive bad PINs that lock a card out (1-20, default 5)
	Lockout        duration `toml:"lockout"`           // first lockout, doubling after (5s-1h, default 30s)
	MaxLockout     duration `toml:"max_lockout"`       // cap of the doubling (lockout-24h, default 15m)
	DoorMaxBadPINs int      `toml:"door_max_bad_pins"` // bad PINs from any cards per door_window that make the door refuse PINs (1-1000, default 20)
	DoorWindow     duration `toml:"door_window"`       // the window door_max_bad_pins counts over (1m-24h, default 10m)
}

// check checks the ranges; an error names the key. isSet tells a key the
// file sets to 0 from one it leaves out.
func (s SecurityConfig) check(isSet func(key string) bool) error {
	switch s.UntrustedClock {
	case "", "deny-bound", "ignore-schedules":
	default:
		return fmt.Errorf("security.untrusted_clock %q: want deny-bound or ignore-schedules", s.UntrustedClock)
	}
	if err := checkRanges(isSet, []setting[int]{
		{"security.max_bad_pins", s.MaxBadPINs, 1, 20},
		{"security.door_max_bad_pins", s.DoorMaxBadPINs, 1, 1000},
	}); err != nil {
		return err
	}
	lockout := s.Lockout.Duration
	if lockout == 0 {
		lockout = 30 * time.Second
	}
	if err := checkRanges(isSet, []setting[time.Duration]{
		{"security.lockout", s.Lockout.Duration, 5 * time.Second, time.Hour},
		{"security.max_lockout", s.MaxLockout.Duration, lockout, 24 * time.Hour},
		{"security.door_window", s.DoorWindow.Duration, time.Minute, 24 * time.Hour},
	}); err != nil {
		return err
	}
	if s.MaxLockout.Duration == 0 && lockout > 15*time.Minute {
		return fmt.Errorf("security.lockout %s: above the default max_lockout 15m0s; set security.max_lockout too", lockout)
	}
	return nil
}

// storeOptions are the store's settings from the config.
func (s SecurityConfig) storeOptions() (store.UntrustedClockPolicy, store.LockoutPolicy) {
	p := store.UntrustedDenyBound
	if s.UntrustedClock == "ignore-schedules" {
		p = store.UntrustedIgnoreSchedules
	}
	return p, store.LockoutPolicy{
		MaxBadPINs:     s.MaxBadPINs,
		Backoff:        s.Lockout.Duration,
		MaxBackoff:     s.MaxLockout.Duration,
		DoorMaxBadPINs: s.DoorMaxBadPINs,
		DoorWindow:     s.DoorWindow.Duration,
	}
}

// UnlockScheduleConfig lists, per weekday, windows written "HH:MM-HH:MM"
// (end after start, "24:00" for midnight), and holidays (YYYY-MM-DD) on
// which the door is not held open.
type UnlockScheduleConfig struct {
	Mon      []string `toml:"mon"`      // Monday's windows
	Tue      []string `toml:"tue"`      // Tuesday's windows
	Wed      []string `toml:"wed"`      // Wednesday's windows
	Thu      []string `toml:"thu"`      // Thursday's windows
	Fri      []string `toml:"fri"`      // Friday's windows
	Sat      []string `toml:"sat"`      // Saturday's windows
	Sun      []string `toml:"sun"`      // Sunday's windows
	Holidays []string `toml:"holidays"` // dates without free access
	// FirstCard makes the windows first-card: the door stays locked in a
	// window until a granted card whose door list names FirstCardGroup
	// opens it, then stays unlocked until the window ends.
	FirstCard      bool   `toml:"first_card"`
	FirstCardGroup string `toml:"first_card_group"` // the door group whose cards count
}

// parse turns the config into a store.Schedule; nil when it has no window.
// An error names the key.
func (u *UnlockScheduleConfig) parse() (*store.Schedule, error) {
	var s store.Schedule
	n := 0
	for _, d := range []struct {
		key  string
		day  time.Weekday
		list []string
	}{
		{"mon", time.Monday, u.Mon}, {"tue", time.Tuesday, u.Tue}, {"wed", time.Wednesday, u.Wed},
		{"thu", time.Thursday, u.Thu}, {"fri", time.Friday, u.Fri}, {"sat", time.Saturday, u.Sat},
		{"sun", time.Sunday, u.Sun},
	} {
		for i, w := range d.list {
			win, err := parseWindow(w)
			if err != nil {
				return nil, fmt.Errorf("unlock_schedule.%s[%d] %q: %w", d.key, i, w, err)
			}
			for j, other := range s.Weekly[d.day] {
				if win.From < other.To && other.From < win.To {
					return nil, fmt.Errorf("unlock_schedule.%s[%d] %q: overlaps unlock_schedule.%s[%d]", d.key, i, w, d.key, j)
				}
			}
			s.Weekly[d.day] = append(s.Weekly[d.day], win)
			n++
		}
	}
	for i, h := range u.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return nil, fmt.Errorf("unlock_schedule.holidays[%d] %q: want YYYY-MM-DD", i, h)
		}
		s.Holidays = append(s.Holidays, h)
	}
	switch {
	case u.FirstCard && u.FirstCardGroup == "":
		return nil, errors.New("unlock_schedule.first_card: set without first_card_group (the door group whose cards count)")
	case !u.FirstCard && u.FirstCardGroup != "":
		return nil, errors.New("unlock_schedule.first_card_group: set without first_card = true")
	}
	if n == 0 {
		if len(s.Holidays) > 0 {
			return nil, errors.New("unlock_schedule.holidays: set without any window")
		}
		if u.FirstCard {
			return nil, errors.New("unlock_schedule.first_card: set without any window")
		}
		return nil, nil
	}
	return &s, nil
}

// parseWindow reads "HH:MM-HH:MM" as minutes since midnight.
func parseWindow(w string) (store.Window, error) {
	from, to, ok := strings.Cut(w, "-")
	if !ok {
		return store.Window{}, errors.New(`want "HH:MM-HH:MM"`)
	}
	f, err := parseClock(strings.TrimSpace(from))
	if err != nil {
		return store.Window{}, err
	}
	t, err := parseClock(strings.TrimSpace(to))
	if err != nil {
		return store.Window{}, err
	}
	if t <= f {
		return store.Window{}, errors.New("the end must be after the start")
	}
	return store.Window{From: f, To: t}, nil
}

// parseClock reads "HH:MM" (00:00 to 24:00) as minutes since midnight.
func parseClock(s string) (uint16, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM, 00:00 to 24:00)", s)
	}
	return uint16(hh*60 + mm), nil
}

// location is the door's time zone.
func (c *Config) location() *time.Location {
	if c.loc == nil {
		return time.UTC
	}
	return c.loc
}

// ReaderConfig names the PN532's SPI device and optional pins.
type ReaderConfig struct {
	SPI     string `toml:"spi"`      // e.g. "SPI0.0"
	SpeedHz int64  `toml:"speed_hz"` // bus clock; left out: the driver's default (1 MHz)
	Reset   string `toml:"reset"`    // RSTPDN pin, optional
	IRQ     string `toml:"irq"`      // IRQ pin, optional
}

// KeypadConfig selects and wires the keypad.
type KeypadConfig struct {
	Type string   `toml:"type"` // "matrix", "wiegand" or "" for none
	Rows []string `toml:"rows"` // matrix rows (outputs): Pi GPIO, or the expander's pins
	Cols []string `toml:"cols"` // matrix columns (inputs with pull-ups): Pi GPIO, or the expander's pins
	// Expander is the I²C GPIO expander a matrix is wired to: "pcf8574",
	// "pcf8574a", "pcf8575", "mcp23008" or "mcp23017"; empty for rows and
	// cols on the Pi's GPIO.
	Expander  string `toml:"expander"`
	I2C       string `toml:"i2c"`       // the expander's bus (default DefaultI2C)
	Address   int    `toml:"address"`   // the expander's address (default its lowest: 0x20, 0x38 for a pcf8574a)
	Interrupt string `toml:"interrupt"` // Pi GPIO wired to the expander's INT, optional (else polled)
	// Layout is the matrix's key map, rows top to bottom separated by '/',
	// e.g. "123/456/789/*0#" (the default for 3 columns; "123A/456B/789C/*0#D"
	// for 4). It must hold 0-9, * and #.
	Layout string `toml:"layout"`
	D0     string `toml:"d0"` // Wiegand DATA0
	D1     string `toml:"d1"` // Wiegand DATA1
}

// RelayConfig wires the lock relay.
type RelayConfig struct {
	Pin       string `toml:"pin"`        // the output driving the relay board
	ActiveLow bool   `toml:"active_low"` // most relay boards energise on a low pin
	Lock      string `toml:"lock"`       // "fail-secure" (strike) or "fail-safe" (maglock)
	// FailSafeHalt is what a fail-safe lock does on shutdown: "locked" or "unlocked".
	FailSafeHalt string `toml:"fail_safe_halt"`
}

// InputsConfig wires the door contact, exit button and tamper switch.
type InputsConfig struct {
	Contact         string `toml:"contact"`                     // door position switch, optional
	ContactNC       bool   `toml:"contact_normally_closed"`     // the contact opens when the door opens
	ExitButton      string `toml:"exit_button"`                 // request-to-exit button, optional
	ExitButtonNC    bool   `toml:"exit_button_normally_closed"` // the button opens its contact when pressed
	Tamper          string `toml:"tamper"`                      // tamper switch, optional
	TamperNC        bool   `toml:"tamper_normally_closed"`      // the switch opens when tampered with
	ActiveHighInput bool   `toml:"active_high"`                 // inputs pulled down and active high (default: pulled up, active low)
}

// FeedbackConfig wires the LEDs and buzzer (each optional).
type FeedbackConfig struct {
	Green     string `toml:"green"`      // green LED: granted, unlocked
	Red       string `toml:"red"`        // red LED: refused, lockdown, alarms
	Buzzer    string `toml:"buzzer"`     // beeps for keys, grants, refusals and alarms
	ActiveLow bool   `toml:"active_low"` // the outputs are on when low
}

// DisplayConfig selects and wires the small text display at the door.
type DisplayConfig struct {
	// Type is "hd44780" (a 16×2 LCD on a PCF8574 I²C backpack), "ssd1306"
	// (a 128×32 or 128×64 OLED on I²C) or "" for none.
	Type string `toml:"type"`
	I2C  string `toml:"i2c"` // the I²C bus; default DefaultI2C
	// Address is the 7-bit I²C address; default 0x27 for an hd44780
	// (0x3f for a PCF8574A backpack), 0x3c for an ssd1306.
	Address int `toml:"address"`
	Height  int `toml:"height"` // ssd1306 only: 32 (default) or 64 pixels
}

// Display types.
const (
	displayLCD  = "hd44780"
	displayOLED = "ssd1306"
)

// bus is the display's I²C bus name.
// i2c1User names what in c uses the Pi's I2C1 (header pins 3 and 5), or
// "".
func (c *Config) i2c1User() string {
	onI2C1 := func(bus string) bool { return bus == "I2C1" || bus == "/dev/i2c-1" }
	switch {
	case c.Display.Type != "" && onI2C1(c.Display.bus()):
		return "the display"
	case c.Keypad.Type == "matrix" && c.Keypad.Expander != "" && onI2C1(c.Keypad.i2cBus()):
		return "the keypad's expander"
	}
	return ""
}

func (d DisplayConfig) bus() string {
	if d.I2C == "" {
		return DefaultI2C
	}
	return d.I2C
}

// addr is the display's I²C address.
func (d DisplayConfig) addr() uint16 {
	switch {
	case d.Address != 0:
		return uint16(d.Address)
	case d.Type == displayOLED:
		return display.OLEDAddress
	}
	return display.LCDAddress
}

// check checks the display's settings, without hardware; each problem goes
// to add, starting with its key. isSet tells a key the file sets to 0 from
// one it leaves out.
func (d DisplayConfig) check(isSet func(key string) bool, add func(error)) {
	switch d.Type {
	case "":
		const none = "set without display.type (hd44780 or ssd1306)"
		if d.I2C != "" {
			add(fmt.Errorf("display.i2c %q: %s", d.I2C, none))
		}
		if d.Address != 0 || isSet("display.address") {
			add(fmt.Errorf("display.address %#02x: %s", d.Address, none))
		}
		if d.Height != 0 || isSet("display.height") {
			add(fmt.Errorf("display.height %d: %s", d.Height, none))
		}
		return
	case displayLCD, displayOLED:
	default:
		add(fmt.Errorf("display.type %q: want hd44780, ssd1306 or empty", d.Type))
		return
	}
	if d.I2C != "" {
		add(checkI2CName("display.i2c", d.I2C))
	}
	if d.Address != 0 || isSet("display.address") {
		if err := checkI2CAddr("display.address", d.Address); err != nil {
			add(err)
		} else if d.Type == displayLCD {
			add(prefixKey("display.", display.CheckLCDAddress(d.addr())))
		} else {
			add(prefixKey("display.", display.CheckOLEDAddress(d.addr())))
		}
	}
	if d.Height != 0 || isSet("display.height") {
		if d.Type != displayOLED {
			add(fmt.Errorf("display.height %d: only for an ssd1306", d.Height))
		} else {
			add(prefixKey("display.", display.CheckOLEDHeight(d.Height)))
		}
	}
}

// prefixKey puts the table in front of an error that starts with its key
// ("address 0x50: …").
func prefixKey(table string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s%w", table, err)
}

// TimingConfig overrides the door's timings; a key left out keeps the
// default, and none of them may be 0.
type TimingConfig struct {
	Unlock         duration `toml:"unlock"`          // release after a grant or the exit button (500ms to 1m)
	ExtendedUnlock duration `toml:"extended_unlock"` // release for cards flagged for accessibility (unlock to 5m)
	Held           duration `toml:"held"`            // open this long raises door_held (5s to 1h)
	PIN            duration `toml:"pin"`             // time for the first PIN digit after a card (1s to 1m)
	InterKey       duration `toml:"inter_key"`       // longest pause between PIN digits (1s to 1m)
	Debounce       duration `toml:"debounce"`        // door contact, exit button and tamper (up to 200ms)
}

// MQTTConfig connects the door to the site.
type MQTTConfig struct {
	Broker       string            `toml:"broker"`        // tcp://host:1883 or ssl://host:8883; empty = offline
	CA           string            `toml:"ca"`            // PEM CA of the broker's certificate (ssl:// only; default: system roots)
	Cert         string            `toml:"cert"`          // PEM client certificate (ssl:// only; with key and ca)
	Key          string            `toml:"key"`           // PEM private key of cert
	Username     string            `toml:"username"`      // MQTT user name
	PasswordFile string            `toml:"password_file"` // file holding the MQTT password (with username)
	TrustedKeys  map[string]string `toml:"trusted_keys"`  // kid → base64 Ed25519 public key
	// StaleAfter is how long the door may go without a fresh signed message
	// from the site before its allowlist is stale (1h to 30 days; default 24h).
	StaleAfter duration `toml:"stale_after"`
	// StalePolicy is what the door does while stale: "keep-going" (default),
	// "card+pin" (every card needs its PIN) or "override-only".
	StalePolicy string `toml:"stale_policy"`
	// MaxRemoteUnlock is the longest momentary unlock a signed command may
	// ask for (1s to 1m; default 30s).
	MaxRemoteUnlock duration `toml:"max_remote_unlock"`
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

// loadConfig reads and validates the configuration file at path.
func loadConfig(path string) (*Config, error) {
	return loadFile("config", path, maxConfigSize, parseConfig)
}

// loadFile reads the file at path, of at most limit bytes, and parses it;
// an error names it as what and path.
func loadFile[T any](what, path string, limit int, parse func([]byte) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(b) > limit {
		return zero, fmt.Errorf("%s %s: larger than %d bytes", what, path, limit)
	}
	v, err := parse(b)
	if errs, ok := err.(interface{ Unwrap() []error }); ok {
		// Every problem on its own line, each naming the file.
		list := errs.Unwrap()
		for i, e := range list {
			list[i] = fmt.Errorf("%s %s: %w", what, path, e)
		}
		return zero, errors.Join(list...)
	}
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return v, nil
}

// parseConfig decodes TOML strictly (unknown keys are refused) and validates.
func parseConfig(b []byte) (*Config, error) { return parseConfigAs(b, false) }

// loadPreviewConfig reads and checks a door's config file for the
// simulator's preview: every setting but the [mqtt] table, which the
// preview does not use (so the example file, with its placeholder key,
// previews as it is).
func loadPreviewConfig(path string) (*Config, error) {
	return loadFile("config", path, maxConfigSize, func(b []byte) (*Config, error) { return parseConfigAs(b, true) })
}

// parseConfigAs decodes and checks a config file; preview leaves its
// [mqtt] table unchecked (Config.preview).
func parseConfigAs(b []byte, preview bool) (*Config, error) {
	c, err := decodeConfig(b)
	if err != nil {
		return nil, err
	}
	c.preview = preview
	if err := c.validate(); err != nil {
		return nil, withLines(b, err)
	}
	return c, nil
}

// withLines puts the line of the file that sets its key in front of each
// of the problems err joins (each starts with its key, such as
// "relay.pin" or "keypad.rows[2]"), when the file sets it.
func withLines(src []byte, err error) error {
	errs, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var out []error
	for _, e := range errs.Unwrap() {
		key, _, _ := strings.Cut(e.Error(), " ")
		key = strings.TrimSuffix(key, ":")
		if i := strings.IndexByte(key, '['); i >= 0 {
			key = key[:i]
		}
		if n := keyLine(src, key); n > 0 {
			e = fmt.Errorf("line %d: %w", n, e)
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// keyLine returns the line (from 1) of the TOML source that sets the
// dotted key, such as "relay.pin" under [relay], or a table's header for a
// table's name; 0 when the file does not set it.
func keyLine(src []byte, key string) int {
	table, name := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, name = key[:i], key[i+1:]
	}
	current := ""
	for n, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			current = strings.Trim(line, "[] \t")
			if c, _, ok := strings.Cut(current, "]"); ok {
				current = strings.TrimSpace(c)
			}
			if table == "" && current == key {
				return n + 1
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if ok && current == table && strings.TrimSpace(k) == name {
			return n + 1
		}
	}
	return 0
}

// decodeConfig decodes TOML strictly (unknown keys are refused) over the
// defaults, without validating.
func decodeConfig(b []byte) (*Config, error) {
	c := &Config{Mode: string(store.ModeCardPIN), Relay: RelayConfig{Lock: "fail-secure", ActiveLow: true, FailSafeHalt: "locked"}}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	c.defined = md.IsDefined
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return c, nil
}

// validate checks c as a door would use it, without reading any file, and
// loads its time zone. It returns every problem it finds, joined, each
// starting with the key it is about.
func (c *Config) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The ids are the topics' (mqtt.CheckID).
	if err := mqtt.CheckID("site", c.Site); err != nil {
		add(err)
	}
	if err := mqtt.CheckID("door", c.Door); err != nil {
		add(err)
	}
	switch store.Mode(c.Mode) {
	case store.ModeCardOnly, store.ModeCardPIN, store.ModeCardOrPIN:
	default:
		add(fmt.Errorf("mode %q: want card, card+pin or card-or-pin", c.Mode))
	}
	c.loc = nil
	if c.Timezone != "" {
		loc, err := time.LoadLocation(c.Timezone)
		if err != nil {
			add(fmt.Errorf("timezone %q: %w", c.Timezone, err))
		}
		c.loc = loc
	}
	if c.DataDir == "" {
		add(errors.New("data_dir: required"))
	}
	if c.Reader.SPI == "" {
		add(errors.New("reader.spi: required (e.g. \"SPI0.0\")"))
	} else {
		add(checkSPIName(c.Reader.SPI))
	}
	if err := checkRanges(c.isSet, []setting[int64]{{"reader.speed_hz", c.Reader.SpeedHz, 50_000, 5_000_000}}); err != nil {
		add(err)
	}
	if c.Relay.Pin == "" {
		add(errors.New("relay.pin: required"))
	}
	switch c.Relay.Lock {
	case "fail-secure", "fail-safe":
	default:
		add(fmt.Errorf("relay.lock %q: want fail-secure or fail-safe", c.Relay.Lock))
	}
	switch c.Relay.FailSafeHalt {
	case "locked":
	case "unlocked":
		if c.Relay.Lock != "fail-safe" {
			add(fmt.Errorf("relay.fail_safe_halt \"unlocked\": only a fail-safe lock (maglock) can be left unlocked; relay.lock %q always locks without power", c.Relay.Lock))
		}
	default:
		add(fmt.Errorf("relay.fail_safe_halt %q: want locked or unlocked", c.Relay.FailSafeHalt))
	}
	if err := c.Timing.check(c.isSet); err != nil {
		add(err)
	}
	if err := c.Security.check(c.isSet); err != nil {
		add(err)
	}
	if err := c.Journal.check(c.isSet); err != nil {
		add(err)
	}
	sched, err := c.UnlockSchedule.parse()
	if err != nil {
		add(err)
	}
	c.schedule = sched
	// The door's own checks (ids, mode, timing ranges), under our keys;
	// after problems of its own they would only repeat them.
	if len(errs) == 0 {
		if err := c.doorConfig().Check(); err != nil {
			add(doorConfigError(err))
		}
	}
	for _, err := range c.Keypad.checkExpander(c.isSet) {
		add(err)
	}
	switch c.Keypad.Type {
	case "":
		if store.Mode(c.Mode) != store.ModeCardOnly {
			add(fmt.Errorf("keypad.type: a keypad is required in mode %q", c.Mode))
		}
	case "matrix":
		if (len(c.Keypad.Rows) != 4) || (len(c.Keypad.Cols) != 3 && len(c.Keypad.Cols) != 4) {
			add(fmt.Errorf("keypad: a matrix needs 4 rows and 3 or 4 cols, have %d and %d", len(c.Keypad.Rows), len(c.Keypad.Cols)))
		}
		if l := c.Keypad.Layout; l != "" {
			if err := keypad.CheckLayout(l, len(c.Keypad.Rows), len(c.Keypad.Cols)); err != nil {
				add(fmt.Errorf("keypad.layout: %w", err))
			}
			for _, k := range "0123456789*#" {
				if !strings.ContainsRune(l, k) {
					add(fmt.Errorf("keypad.layout %q: no %q key; a PIN needs 0-9, * and #", l, k))
				}
			}
		}
	case "wiegand":
		if c.Keypad.D0 == "" || c.Keypad.D1 == "" {
			add(errors.New("keypad: wiegand needs d0 and d1"))
		}
		if c.Keypad.Layout != "" {
			add(errors.New("keypad.layout: only for a matrix keypad"))
		}
	default:
		add(fmt.Errorf("keypad.type %q: want matrix, wiegand or empty", c.Keypad.Type))
	}
	seen := map[string]string{}
	pins := c.pins()
	for _, name := range slices.Sorted(maps.Keys(pins)) {
		pin := pins[name]
		if pin == "" {
			continue
		}
		add(checkPinName(name, pin))
		if other, ok := seen[pin]; ok {
			add(fmt.Errorf("pin %s is used twice: %s and %s", pin, other, name))
		}
		seen[pin] = name
	}
	// I2C1's SDA and SCL are GPIO2 and GPIO3, with fixed pull-ups: a device
	// on I2C1 takes them.
	if user := c.i2c1User(); user != "" {
		for _, p := range []struct{ pin, line string }{{"GPIO2", "SDA"}, {"GPIO3", "SCL"}} {
			if name, ok := seen[p.pin]; ok {
				add(fmt.Errorf("%s %s: it is I2C1's %s, which %s uses", name, p.pin, p.line, user))
			}
		}
	}
	if !c.preview {
		add(c.MQTT.check(c.isSet))
	}
	c.Display.check(c.isSet, add)
	add(c.Metrics.check())
	return errors.Join(errs...)
}

// Pin and SPI names as periph.io names them on a Raspberry Pi: BCM GPIO
// numbers (the Pi's 40-pin header has GPIO0 to GPIO27; compute modules
// have more) and SPI buses with their chip selects.
var (
	pinName = regexp.MustCompile(`^GPIO([0-9]|[1-4][0-9]|5[0-3])$`)
	spiName = regexp.MustCompile(`^(SPI[0-6]\.[0-2]|/dev/spidev[0-6]\.[0-2])$`)
	i2cName = regexp.MustCompile(`^(I2C([0-9]|[1-2][0-9])|/dev/i2c-([0-9]|[1-2][0-9]))$`)
)

// DefaultI2C is the I²C bus on a Raspberry Pi's header (pins 3 and 5) that
// an expander or a display uses unless its section names another.
const DefaultI2C = "I2C1"

// checkI2CName checks the form of an I²C bus name given by key, without
// hardware.
func checkI2CName(key, name string) error {
	if !i2cName.MatchString(name) {
		return fmt.Errorf("%s %q: want I2C<bus>, bus 0 to 29 (e.g. \"I2C1\", header pins 3 and 5), or /dev/i2c-<bus>", key, name)
	}
	return nil
}

// checkI2CAddr checks a 7-bit I²C device address given by key. Addresses
// 0x00–0x07 and 0x78–0x7F are reserved by the I²C specification.
func checkI2CAddr(key string, addr int) error {
	if addr < 0x08 || addr > 0x77 {
		return fmt.Errorf("%s %#02x: want a 7-bit device address, 0x08 to 0x77", key, addr)
	}
	return nil
}

// checkPinName checks the form of a pin name, without hardware: the pin
// itself is looked up when the door starts.
func checkPinName(key, pin string) error {
	if !pinName.MatchString(pin) {
		return fmt.Errorf("%s %q: want a BCM GPIO name, GPIO0 to GPIO53 (e.g. \"GPIO17\", header pin 11)", key, pin)
	}
	return nil
}

// checkSPIName checks the form of an SPI port name, without hardware.
func checkSPIName(name string) error {
	if !spiName.MatchString(name) {
		return fmt.Errorf("reader.spi %q: want SPI<bus>.<chip select>, bus 0 to 6 and chip select 0 to 2 (e.g. \"SPI0.0\"), or /dev/spidev<bus>.<cs>", name)
	}
	return nil
}

// isSet reports whether the file sets key, a dotted path such as
// "security.max_bad_pins", even to zero.
func (c *Config) isSet(key string) bool {
	return c.defined != nil && c.defined(strings.Split(key, ".")...)
}

// check checks the timings: that none the file sets is 0, which the
// door's Config would take for "unset", and the inputs' debounce (the
// other ranges are door.Config.Check's). isSet tells a key the file sets
// to 0 from one it leaves out.
func (t TimingConfig) check(isSet func(key string) bool) error {
	for _, k := range []struct {
		key string
		v   time.Duration
	}{
		{"timing.unlock", t.Unlock.Duration},
		{"timing.extended_unlock", t.ExtendedUnlock.Duration},
		{"timing.held", t.Held.Duration},
		{"timing.pin", t.PIN.Duration},
		{"timing.inter_key", t.InterKey.Duration},
	} {
		if k.v == 0 && isSet(k.key) {
			return fmt.Errorf("%s 0s: want more than 0s (leave the key out for the default)", k.key)
		}
	}
	return checkRanges(isSet, []setting[time.Duration]{
		{"timing.debounce", t.Debounce.Duration, time.Millisecond, door.MaxDebounce},
	})
}

// setting is a numeric config value that must lie in [min, max] when the
// file sets it; left out, it is zero and keeps the default.
type setting[T int | int64 | time.Duration] struct {
	key      string
	v        T
	min, max T
}

// checkRanges checks settings in order; an error names the first key out of
// its range. A zero value is checked too when isSet says the file sets it:
// a 0 written out is not a key left out.
func checkRanges[T int | int64 | time.Duration](isSet func(key string) bool, settings []setting[T]) error {
	for _, s := range settings {
		if (s.v != 0 || isSet(s.key)) && (s.v < s.min || s.v > s.max) {
			return fmt.Errorf("%s %v: want %v to %v", s.key, s.v, s.min, s.max)
		}
	}
	return nil
}

// parseBrokerURL parses a broker URL, scheme://host:port, and says
// whether it connects with TLS.
func parseBrokerURL(s string) (u *url.URL, secure bool, err error) {
	u, err = url.Parse(s)
	if err != nil {
		return nil, false, err
	}
	secure, known := brokerScheme(u.Scheme)
	if !known {
		return nil, false, fmt.Errorf("scheme %q, want ssl:// (or tls://, mqtts://) or tcp://", u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return nil, false, errors.New("want scheme://host:port")
	}
	return u, secure, nil
}

// brokerScheme says whether a broker URL scheme connects with TLS, and
// whether the MQTT client knows it at all.
func brokerScheme(scheme string) (secure, known bool) {
	switch scheme {
	case "ssl", "tls", "mqtts":
		return true, true
	case "tcp", "mqtt":
		return false, true
	}
	return false, false
}

// check checks the MQTT settings without reading any file: the broker URL,
// that TLS settings go with a TLS broker and with each other, and the site
// keys. isSet tells a key the file sets to 0 from one it leaves out.
func (m *MQTTConfig) check(isSet func(key string) bool) error {
	if m.Broker == "" {
		for _, k := range []struct{ key, v string }{
			{"mqtt.ca", m.CA}, {"mqtt.cert", m.Cert}, {"mqtt.key", m.Key},
			{"mqtt.username", m.Username}, {"mqtt.password_file", m.PasswordFile},
		} {
			if k.v != "" {
				return fmt.Errorf("%s: set without mqtt.broker (a door without a broker runs offline)", k.key)
			}
		}
		if len(m.TrustedKeys) > 0 {
			return errors.New("mqtt.trusted_keys: set without mqtt.broker (a door without a broker runs offline)")
		}
		if m.StaleAfter.Duration != 0 || m.StalePolicy != "" || m.MaxRemoteUnlock.Duration != 0 ||
			isSet("mqtt.stale_after") || isSet("mqtt.max_remote_unlock") {
			return errors.New("mqtt.stale_after, mqtt.stale_policy, mqtt.max_remote_unlock: set without mqtt.broker (a door without a broker runs offline)")
		}
		return nil
	}
	u, secure, err := parseBrokerURL(m.Broker)
	if err != nil {
		return fmt.Errorf("mqtt.broker %q: %w", m.Broker, err)
	}
	if !secure {
		for _, k := range []struct{ key, v string }{{"mqtt.ca", m.CA}, {"mqtt.cert", m.Cert}, {"mqtt.key", m.Key}} {
			if k.v != "" {
				return fmt.Errorf("%s: TLS files need a TLS broker, and mqtt.broker %q is %s:// (use ssl://)", k.key, m.Broker, u.Scheme)
			}
		}
	}
	switch {
	case m.Cert != "" && m.Key == "":
		return errors.New("mqtt.cert: a client certificate needs its private key in mqtt.key")
	case m.Key != "" && m.Cert == "":
		return errors.New("mqtt.key: a private key needs its client certificate in mqtt.cert")
	case m.Cert != "" && m.CA == "":
		return errors.New("mqtt.cert: a client certificate needs mqtt.ca, the CA of the broker's certificate")
	case m.PasswordFile != "" && m.Username == "":
		return errors.New("mqtt.password_file: a password needs mqtt.username")
	}
	if err := m.checkSync(isSet); err != nil {
		return err
	}
	if len(m.TrustedKeys) == 0 {
		return errors.New("mqtt.trusted_keys: at least one site key is required with a broker")
	}
	_, err = parseTrustedKeys(m.TrustedKeys)
	return err
}

// Ranges of the sync settings.
const (
	minStaleAfter      = time.Hour
	maxStaleAfter      = 30 * 24 * time.Hour
	minMaxRemoteUnlock = time.Second
)

// checkSync checks the freshness and remote unlock settings.
func (m *MQTTConfig) checkSync(isSet func(key string) bool) error {
	if err := checkRanges(isSet, []setting[time.Duration]{
		{"mqtt.stale_after", m.StaleAfter.Duration, minStaleAfter, maxStaleAfter},
		{"mqtt.max_remote_unlock", m.MaxRemoteUnlock.Duration, minMaxRemoteUnlock, mqtt.MaxUnlockDuration},
	}); err != nil {
		return err
	}
	// mqtt.stale_policy is checked with the door's settings: the policy
	// is the door's (doorConfig).
	return nil
}

// parseTrustedKeys decodes the site's public keys; an error names the key.
func parseTrustedKeys(keys map[string]string) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(keys))
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		v := keys[kid]
		key := "mqtt.trusted_keys." + tomlKey(kid)
		k, err := mqtt.ParsePublicKeys(map[string]string{kid: v})
		switch {
		case err != nil && isPlaceholder(v):
			return nil, fmt.Errorf("%s = %q is a placeholder: put the site's public key here (base64 Ed25519, 44 characters)", key, v)
		case err != nil:
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out[kid] = k[kid]
	}
	return out, nil
}

// isPlaceholder reports a key that is not one but stands where one goes, as
// in the example config ("REPLACE-WITH-THE-SITE-PUBLIC-KEY").
func isPlaceholder(v string) bool {
	u := strings.ToUpper(strings.NewReplacer("-", "", "_", "", " ", "").Replace(v))
	for _, p := range []string{"REPLACE", "CHANGEME", "TODO", "<", "..."} {
		if strings.Contains(u, p) {
			return true
		}
	}
	return u == ""
}

// tomlKey writes k as it appears in a TOML dotted key: bare, or quoted.
func tomlKey(k string) string {
	bare := k != "" && strings.IndexFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0
	if bare {
		return k
	}
	return strconv.Quote(k)
}

// pins returns every configured pin by its config key.
func (c *Config) pins() map[string]string {
	m := map[string]string{
		"reader.reset":       c.Reader.Reset,
		"reader.irq":         c.Reader.IRQ,
		"keypad.d0":          c.Keypad.D0,
		"keypad.d1":          c.Keypad.D1,
		"keypad.interrupt":   c.Keypad.Interrupt,
		"relay.pin":          c.Relay.Pin,
		"inputs.contact":     c.Inputs.Contact,
		"inputs.exit_button": c.Inputs.ExitButton,
		"inputs.tamper":      c.Inputs.Tamper,
		"feedback.green":     c.Feedback.Green,
		"feedback.red":       c.Feedback.Red,
		"feedback.buzzer":    c.Feedback.Buzzer,
	}
	if c.Keypad.Expander != "" {
		// The rows and columns are the expander's pins (checkExpander).
		return m
	}
	for i, p := range c.Keypad.Rows {
		m[fmt.Sprintf("keypad.rows[%d]", i)] = p
	}
	for i, p := range c.Keypad.Cols {
		m[fmt.Sprintf("keypad.cols[%d]", i)] = p
	}
	return m
}
