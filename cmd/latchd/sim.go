package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/spi"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/devbroker"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
	"github.com/latchdoor/latch/store"
)

// The demo site a fresh simulator data directory gets.
const (
	demoSite     = "demo"
	demoDoor     = "front"
	demoValidUID = "04A1B2C3D4E5F6"
	demoValidPIN = "1234"
	demoRevoked  = "04DEADBEEF0001"
	demoSeedKey  = "sim.demo-seeded"
	simKeyID     = "demo-site"
)

// simPressTime is how long the simulator holds the exit button or a switch:
// longer than the inputs' debounce time, as a finger would.
const simPressTime = 150 * time.Millisecond

// simHW is the emulated hardware the simulator runs on.
type simHW struct {
	chip    *pn532test.Chip
	keys    *keypadtest.Matrix
	relay   *gpiotest.Pin
	contact *gpiotest.Pin
	rex     *gpiotest.Pin
	tamper  *gpiotest.Pin
	green   *gpiotest.Pin
	red     *gpiotest.Pin
	buzzer  *gpiotest.Pin

	// seen receives the reader's presence events, so that tap and remove
	// return once the reader has noticed, as a person waits for the beep.
	seen chan pn532.TrackEvent
}

func newInputPin(name string) *gpiotest.Pin {
	return &gpiotest.Pin{N: name, L: gpio.High, EdgesChan: make(chan gpio.Level, 16)}
}

// newSimHW builds the emulated parts and the hardware view the daemon uses.
func newSimHW() (*simHW, *hardware, error) {
	keys, err := keypadtest.NewMatrix("123/456/789/*0#")
	if err != nil {
		return nil, nil, err
	}
	s := &simHW{
		chip:    pn532test.New(&pn532test.Opts{Latency: time.Millisecond}),
		keys:    keys,
		relay:   &gpiotest.Pin{N: "RELAY"},
		contact: newInputPin("CONTACT"),
		rex:     newInputPin("REX"),
		tamper:  newInputPin("TAMPER"),
		green:   &gpiotest.Pin{N: "LED_GREEN"},
		red:     &gpiotest.Pin{N: "LED_RED"},
		buzzer:  &gpiotest.Pin{N: "BUZZER"},
		seen:    make(chan pn532.TrackEvent, 16),
	}
	hw := &hardware{
		openSPI:    func() (spi.Port, func() error, error) { return s.chip, nil, nil },
		spiName:    "pn532test",
		keypadRows: keys.Rows(),
		keypadCols: keys.Cols(),
		relay:      s.relay,
		contact:    s.contact,
		rex:        s.rex,
		tamper:     s.tamper,
		green:      s.green,
		red:        s.red,
		buzzer:     s.buzzer,
	}
	return s, hw, nil
}

// simConfig is the zero-configuration door the simulator runs.
func simConfig(dataDir string) *Config {
	return &Config{
		Site:    demoSite,
		Door:    demoDoor,
		DataDir: dataDir,
		Mode:    string(store.ModeCardPIN),
		Reader:  ReaderConfig{SPI: "pn532test"},
		Keypad:  KeypadConfig{Type: "matrix"},
		Relay:   RelayConfig{Pin: "RELAY", ActiveLow: false, Lock: "fail-secure", FailSafeHalt: "locked"},
		Inputs:  InputsConfig{Contact: "CONTACT", ExitButton: "REX", Tamper: "TAMPER"},
	}
}

// seedDemo puts the demo holders and cards in a fresh store. It reports
// whether it did anything.
func seedDemo(st *store.Store) (bool, error) {
	_, err := st.State(demoSeedKey)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("demo: %w", err)
	}
	valid, _ := parseUID(demoValidUID)
	revoked, _ := parseUID(demoRevoked)
	hash, err := store.HashPIN([]byte(demoValidPIN), valid, store.DefaultPINParams)
	if err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	for _, h := range []store.Holder{{ID: "alice", Name: "Alice Demo"}, {ID: "bob", Name: "Bob Demo"}} {
		if err := st.PutHolder(h); err != nil {
			return false, fmt.Errorf("demo: %w", err)
		}
	}
	if err := st.PutCard(store.Card{UID: valid, HolderID: "alice", HolderName: "Alice Demo", PINHash: hash, Doors: []string{demoDoor}}); err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	if err := st.PutCard(store.Card{UID: revoked, HolderID: "bob", HolderName: "Bob Demo", PINHash: hash, Doors: []string{demoDoor}}); err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	if err := st.Revoke(store.Revocation{UID: revoked, Reason: "reported lost"}); err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	// The demo allowlist is the site's state as of now.
	if err := st.MarkSigned(time.Now(), time.Now()); err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	if err := st.PutState(demoSeedKey, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return false, fmt.Errorf("demo: %w", err)
	}
	return true, nil
}

// simOptions are the simulator's flags.
type simOptions struct {
	dataDir    string
	mqttURL    string
	brokerAddr string
	journal    JournalConfig // what the door does when it cannot write its journal
}

// runSim runs latchd on emulated hardware, taking commands from in.
func runSim(ctx context.Context, o simOptions, in io.Reader, out *printer, log *slog.Logger) (err error) {
	cfg := simConfig(o.dataDir)
	cfg.Journal = o.journal
	if err := cfg.Journal.check(cfg.isSet); err != nil {
		return err
	}
	sim, hw, err := newSimHW()
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	// The relay first: it is at its locked level before anything else.
	relay, err := newRelay(cfg, hw, func(unlocked bool) { out.relay(time.Now(), unlocked) })
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, haltRelay(relay, log)) }()
	out.relay(time.Now(), relay.Unlocked())

	// A data directory that cannot be made (read-only, no permission) is a
	// fault as a damaged database is: the door stays locked and shows it.
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return storeFault(ctx, cfg, hw, fmt.Errorf("-data %s: %w", o.dataDir, err), door.SystemClock{}, log)
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log)
	}
	defer func() { err = errors.Join(err, closeStore(st, log)) }()
	id, err := doorIdentity(o.dataDir, st, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log)
	}

	key, _, err := loadOrCreateSiteKey(o.dataDir)
	if err != nil {
		return err
	}
	seeded, err := seedDemo(st)
	if err != nil {
		return err
	}

	brokerURL := o.mqttURL
	var site *simSite
	if brokerURL == "" {
		b, err := devbroker.Start(o.brokerAddr, log)
		if err != nil {
			return err
		}
		defer b.Close()
		brokerURL = b.URL()
		out.line("latchd: MQTT broker listening on %s", b.Addr())
		if site, err = newSimSite(key, b, st, demoSite, demoDoor, id.Public()); err != nil {
			return err
		}
		if err := site.heartbeat(); err != nil {
			return fmt.Errorf("sim site: %w", err)
		}
	}

	d := &daemon{cfg: cfg, hw: hw, relay: relay, st: st, log: log, trust: clockTrust{floor: clockFloor()}, boot: bootID(), onEvent: out.event, identity: id}
	d.onTrack = func(ev pn532.TrackEvent) {
		select {
		case sim.seen <- ev:
		default:
		}
	}
	pub := key.Public().(ed25519.PublicKey)
	cfg.MQTT.TrustedKeys = map[string]string{simKeyID: base64.StdEncoding.EncodeToString(pub)}
	if d.mqttOpts, err = mqttOptions(cfg, brokerURL, log, d.boot); err != nil {
		return err
	}
	if err := d.build(); err != nil {
		// The journal's files cannot be made (a full or read-only disk):
		// the door waits locked with the fault shown, as for the store.
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log)
	}

	if seeded {
		out.line("latchd: new demo site %q, door %q, in %s", demoSite, demoDoor, o.dataDir)
	}
	out.line("latchd: site %q door %q, site key %s = %s", demoSite, demoDoor, simKeyID, base64.StdEncoding.EncodeToString(pub))
	out.line("latchd: demo cards: %s (PIN %s), %s (revoked)", demoValidUID, demoValidPIN, demoRevoked)
	out.line("latchd: try: tap %s, then key %s#; type help for every command", demoValidUID, demoValidPIN)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	if site != nil {
		// The site's heartbeat keeps the door's allowlist fresh.
		go func() {
			t := time.NewTicker(time.Hour)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := site.heartbeat(); err != nil {
						log.Warn("sim site heartbeat", "err", err)
					}
				}
			}
		}()
	}

	lines := make(chan simInput)
	go readSimInput(ctx, in, lines)

	for {
		select {
		case err := <-done:
			return err
		case line, ok := <-lines:
			if !ok {
				// End of input stops the simulator as quit does.
				cancel()
				return <-done
			}
			if line.err != nil {
				out.line("error: %v", line.err)
				continue
			}
			c, err := parseSimCmd(line.text)
			if err != nil {
				out.line("error: %v", err)
				continue
			}
			if c.op == opQuit {
				cancel()
				return <-done
			}
			if err := sim.do(ctx, c, d, site, out); err != nil {
				out.line("error: %v", err)
			}
		}
	}
}

// do carries out one command on the emulated hardware.
func (s *simHW) do(ctx context.Context, c simCmd, d *daemon, site *simSite, out *printer) error {
	switch c.op {
	case opUnlock, opLockdown, opRevoke, opReinstate:
		if site == nil {
			return errors.New("the site's commands need the embedded broker (run without -mqtt)")
		}
		// Messages to the door are not kept for a door that has not
		// subscribed yet: wait for it, as an admin waits for a door online.
		if err := waitConnected(ctx, d); err != nil {
			return err
		}
		switch c.op {
		case opUnlock:
			return site.command(mqtt.ActionUnlock, c.dur, nil)
		case opLockdown:
			on := c.on
			return site.command(mqtt.ActionLockdown, 0, &on)
		case opRevoke:
			return site.delta(store.Op{Kind: store.OpRevokeCard, UID: c.uid, Reason: "revoked from the simulator"})
		default:
			return site.delta(store.Op{Kind: store.OpReinstateCard, UID: c.uid})
		}
	case 0:
		return nil
	case opTap:
		s.drainSeen()
		if err := s.chip.Present(pn532test.Card{UID: c.uid}); err != nil {
			return err
		}
		return s.await(ctx, "the reader did not see the card", func(ev pn532.TrackEvent) bool {
			p, ok := ev.(pn532.Presented)
			return ok && bytes.Equal(p.Target.UID, c.uid)
		})
	case opRemove:
		s.drainSeen()
		s.chip.Remove()
		return s.await(ctx, "the reader did not see the card leave", func(ev pn532.TrackEvent) bool {
			_, ok := ev.(pn532.Removed)
			return ok
		})
	case opKey:
		return s.keys.TypeKeys(ctx, c.keys)
	case opOpen:
		return hold(ctx, s.contact, gpio.Low)
	case opClose:
		return hold(ctx, s.contact, gpio.High)
	case opREX:
		if err := edge(ctx, s.rex, gpio.Low); err != nil {
			return err
		}
		if err := pn532.WaitTimer(ctx, simPressTime); err != nil {
			return err
		}
		return edge(ctx, s.rex, gpio.High)
	case opTamper:
		return hold(ctx, s.tamper, gpio.Low)
	case opStatus:
		out.line("%s", statusLine(d))
		return nil
	case opHelp:
		for _, l := range strings.Split(simHelp, "\n") {
			out.line("%s", l)
		}
		return nil
	}
	return fmt.Errorf("command %d not handled", c.op)
}

// waitConnected waits until the door's MQTT client is subscribed.
func waitConnected(ctx context.Context, d *daemon) error {
	t := time.NewTimer(readerWait)
	defer t.Stop()
	for {
		up := d.client.Updated()
		if d.client.Stats().Connected {
			return nil
		}
		select {
		case <-up:
		case <-t.C:
			return errors.New("the door is not connected to the broker")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readerWait bounds how long tap and remove wait for the reader.
const readerWait = 3 * time.Second

func (s *simHW) drainSeen() {
	for {
		select {
		case <-s.seen:
		default:
			return
		}
	}
}

// await waits until the reader reports an event that matches.
func (s *simHW) await(ctx context.Context, fail string, match func(pn532.TrackEvent) bool) error {
	t := time.NewTimer(readerWait)
	defer t.Stop()
	for {
		select {
		case ev := <-s.seen:
			if match(ev) {
				return nil
			}
		case <-t.C:
			return errors.New(fail)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hold sets an emulated switch to l and keeps it there past the debounce
// time, so that the change counts.
func hold(ctx context.Context, p *gpiotest.Pin, l gpio.Level) error {
	if err := edge(ctx, p, l); err != nil {
		return err
	}
	return pn532.WaitTimer(ctx, simPressTime)
}

// edge changes an emulated input's level as a switch would.
func edge(ctx context.Context, p *gpiotest.Pin, l gpio.Level) error {
	select {
	case p.EdgesChan <- l:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
		return errors.New("input not taken")
	}
}

// statusLine describes the door in one line.
func statusLine(d *daemon) string {
	s := d.ctrl.Status()
	var b strings.Builder
	lock := "locked"
	if !s.Locked {
		lock = "unlocked until " + s.UnlockedUntil.Format(time.TimeOnly)
	}
	door := "unknown"
	if s.ContactKnown {
		door = map[bool]string{true: "open", false: "closed"}[s.Open]
	}
	fmt.Fprintf(&b, "status door=%s mode=%s relay=%s contact=%s lockdown=%t reader_ok=%t awaiting_pin=%t clock_trusted=%t allowlist_stale=%t",
		s.Door, s.Mode, strings.ReplaceAll(lock, " ", "_"), door, s.Lockdown, s.ReaderOK, s.AwaitingPIN, s.ClockTrusted, s.Stale)
	if s.Stale {
		fmt.Fprintf(&b, " stale_policy=%s", s.StalePolicy)
	}
	if len(s.Alarms) > 0 {
		al := make([]string, len(s.Alarms))
		for i, a := range s.Alarms {
			al[i] = string(a)
		}
		fmt.Fprintf(&b, " alarms=%s", strings.Join(al, ","))
	}
	if ss, err := d.st.SyncState(); err == nil {
		fmt.Fprintf(&b, " acl_seq=%d", ss.AppliedSeq)
	}
	if n, err := d.st.OutboxDepth(); err == nil {
		fmt.Fprintf(&b, " outbox=%d", n)
	}
	if d.identity != nil {
		fmt.Fprintf(&b, " identity=%s", d.identity.Public().Fingerprint())
	}
	if j := d.journal; j != nil {
		h := j.Health()
		fmt.Fprintf(&b, " journal_ok=%t journal_reserve_used=%t journal_pending=%d journal_counted=%d", h.OK, h.Reserve, h.Pending, h.Recorded)
	}
	return b.String()
}
