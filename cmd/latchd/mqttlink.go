package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// guardedAllowlist is the store's allowlist with the daemon's failsafe
// around it: a panic while deciding stops the daemon with the relay locked.
type guardedAllowlist struct {
	st   *store.Store
	safe *failsafe
}

// Decide implements door.Allowlist.
func (g guardedAllowlist) Decide(req store.Request) (d store.Decision, err error) {
	// The controller asks on a goroutine of its own.
	defer g.safe.catch("allowlist", &err)
	return g.st.Decide(req)
}

// maxDetail bounds a text the door and the site receive from latchd: the
// detail of an audit event (the controller refuses a longer one) and the
// reader field of the MQTT status.
const maxDetail = 256

// oneLine makes s fit one line of at most n bytes of UTF-8: control
// characters (line breaks included) become spaces, invalid bytes become
// U+FFFD, and a longer text is cut at a character boundary and ends in "…".
func oneLine(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// readerFault is what the daemon last told the controller about the card
// reader: the detail of its fault, or "" while it works.
type readerFault struct {
	mu     sync.Mutex
	detail string
}

func (r *readerFault) set(detail string) {
	r.mu.Lock()
	r.detail = detail
	r.mu.Unlock()
}

func (r *readerFault) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.detail
}

// readerStatus is the status's reader field for a faulty reader: "fault",
// with the detail when there is one, in at most maxDetail bytes.
func readerStatus(detail string) string {
	if detail == "" {
		return "fault"
	}
	return oneLine("fault: "+detail, maxDetail)
}

// mqttDoor adapts the door controller to what the MQTT client needs.
// The client calls it on goroutines of its own.
type mqttDoor struct {
	ctrl   *door.Controller
	reader *readerFault
	safe   *failsafe
	tz     string // the time zone of the door's schedules
}

// Unlock implements mqtt.Door.
func (m mqttDoor) Unlock(ctx context.Context, d time.Duration, by string) (err error) {
	defer m.safe.catch("mqtt unlock", &err)
	return m.ctrl.RemoteUnlock(ctx, d, by, "signed command")
}

// SetLockdown implements mqtt.Door.
func (m mqttDoor) SetLockdown(ctx context.Context, on bool, by string) (err error) {
	defer m.safe.catch("mqtt lockdown", &err)
	return m.ctrl.RemoteLockdown(ctx, on, by, "signed command")
}

// SetStale implements mqtt.Door: the controller applies its stale policy.
func (m mqttDoor) SetStale(ctx context.Context, stale bool) (err error) {
	defer m.safe.catch("mqtt stale", &err)
	return m.ctrl.AllowlistStale(ctx, stale)
}

// Status implements mqtt.Door.
func (m mqttDoor) Status() (st mqtt.DoorStatus) {
	defer m.safe.catch("mqtt status", nil)
	s := m.ctrl.Status()
	st = mqtt.DoorStatus{
		Contact: mqtt.ContactClosed, Unlocked: !s.Locked, Alarms: s.Alarms, Lockdown: s.Lockdown,
		Reader: mqtt.Health{OK: s.ReaderOK}, Journal: mqtt.Health{OK: s.JournalOK, Detail: s.Journal},
		StalePolicy: string(m.ctrl.StalePolicy()), Clock: store.TimeSynced, Mode: s.Mode, TZ: m.tz,
	}
	switch {
	case !s.ContactKnown:
		st.Contact = mqtt.ContactUnknown
	case s.Open:
		st.Contact = mqtt.ContactOpen
	}
	if !s.ReaderOK {
		st.Reader.Detail = readerStatus(m.reader.get())
	}
	if !s.ClockTrusted {
		st.Clock = store.TimeUnsynced
	}
	return st
}

// mqttOptions builds the client's options from the config, for the broker
// at broker (the config's, or the simulator's). It reads the password file
// and the TLS files: an error names the config key.
func mqttOptions(c *Config, broker string, log *slog.Logger, boot string) (*mqtt.Options, error) {
	keys, err := parseTrustedKeys(c.MQTT.TrustedKeys)
	if err != nil {
		return nil, err
	}
	o := &mqtt.Options{
		Broker:      broker,
		Site:        c.Site,
		Door:        c.Door,
		Username:    c.MQTT.Username,
		TrustedKeys: keys,
		Logger:      log,
		Version:     buildVersion(),
		BootID:      boot,
		StaleAfter:  c.MQTT.StaleAfter.Duration,
		MaxUnlock:   c.MQTT.MaxRemoteUnlock.Duration,
	}
	if c.MQTT.PasswordFile != "" {
		b, err := os.ReadFile(c.MQTT.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.password_file: %w", err)
		}
		o.Password = strings.TrimSpace(string(b))
		if o.Password == "" {
			return nil, fmt.Errorf("mqtt.password_file %s: empty", c.MQTT.PasswordFile)
		}
	}
	// Without a CA, a TLS broker is checked against the system's roots.
	if c.MQTT.CA != "" {
		t, err := mqtt.LoadTLS(c.MQTT.CA, "", "")
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca: %w", err)
		}
		if c.MQTT.Cert != "" {
			if t, err = mqtt.LoadTLS(c.MQTT.CA, c.MQTT.Cert, c.MQTT.Key); err != nil {
				return nil, fmt.Errorf("mqtt.cert, mqtt.key: %w", err)
			}
		}
		o.TLS = t
	}
	return o, nil
}
