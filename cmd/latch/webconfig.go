package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// serveConfig is latch serve's configuration file (--config), TOML:
//
//	[web]
//	listen  = "127.0.0.1:8080"  # the console's address; none: no console
//	cert    = "/etc/latch/console.crt"  # with key: HTTPS
//	key     = "/etc/latch/console.key"
//	session = "8h"   # a login lasts at most this long
//	idle    = "30m"  # and ends after this long without a request
//
// The console listens only on a loopback address unless it has a
// certificate and key: a password and a session cookie never cross a
// network in clear.
type serveConfig struct {
	Web    webConfig    `toml:"web"`
	Alarms alarmConfig  `toml:"alarms"` // alarms.go
	Notify notifyConfig `toml:"notify"` // notify.go
}

// webConfig is the console's section.
type webConfig struct {
	Listen  string   `toml:"listen"`
	Cert    string   `toml:"cert"`
	Key     string   `toml:"key"`
	Session duration `toml:"session"`
	Idle    duration `toml:"idle"`
}

// Console session defaults and bounds.
const (
	defaultSessionTTL = 8 * time.Hour
	defaultIdle       = 30 * time.Minute
	maxSessionTTL     = 7 * 24 * time.Hour
	maxConfigBytes    = 1 << 20
)

// duration is a time.Duration written as "30m" in TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30m or 8h", b)
	}
	d.Duration = v
	return nil
}

// loadServeConfig reads and checks a configuration file.
func loadServeConfig(path string) (serveConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return serveConfig{}, fmt.Errorf("config: %w", err)
	}
	c, err := parseServeConfig(b)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parseServeConfig decodes and checks a configuration; an unknown key is
// an error that names it, so that a misspelt setting is not ignored.
func parseServeConfig(b []byte) (serveConfig, error) {
	var c serveConfig
	if len(b) > maxConfigBytes {
		return c, fmt.Errorf("%d bytes, limit %d", len(b), maxConfigBytes)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			return c, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return c, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("unknown setting %s", strings.Join(keys, ", "))
	}
	return c, errors.Join(c.Web.check(), c.Alarms.check(), c.Notify.check(true))
}

// check checks the console's settings and fills in the defaults.
func (w *webConfig) check() error {
	if w.Session.Duration == 0 {
		w.Session.Duration = defaultSessionTTL
	}
	if w.Idle.Duration == 0 {
		w.Idle.Duration = defaultIdle
	}
	if w.Session.Duration < time.Minute || w.Session.Duration > maxSessionTTL {
		return fmt.Errorf("web.session %v: want 1m to %v", w.Session.Duration, maxSessionTTL)
	}
	if w.Idle.Duration < time.Minute || w.Idle.Duration > w.Session.Duration {
		return fmt.Errorf("web.idle %v: want 1m to web.session (%v)", w.Idle.Duration, w.Session.Duration)
	}
	if (w.Cert == "") != (w.Key == "") {
		return errors.New("web.cert and web.key go together")
	}
	if w.Listen == "" {
		if w.Cert != "" {
			return errors.New("web.cert is set but web.listen is not: the console is off")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(w.Listen)
	if err != nil {
		return fmt.Errorf("web.listen %q: want HOST:PORT, e.g. 127.0.0.1:8080", w.Listen)
	}
	if port == "" {
		return fmt.Errorf("web.listen %q: the port is missing", w.Listen)
	}
	if w.Cert == "" && !loopbackHost(host) {
		return fmt.Errorf("web.listen %q is not a loopback address: give web.cert and web.key so that passwords and sessions go over HTTPS", w.Listen)
	}
	return nil
}

// loopbackHost reports whether host names only this machine.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
