package main

import (
	"bytes"
	"cmp"
	"context"
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
	"github.com/latchdoor/latch/reader/keypad"
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
	demoSeedKey  = "sim.demo-seeded" // in the door's store of a simulator that seeded it directly

	simKeyID = "demo-site"
)

// simPressTime is how long the simulator holds the exit button or a switch:
// longer than the inputs' debounce time, as a finger would.
const simPressTime = 150 * time.Millisecond

// simKeyGap is the time between two keys on an emulated Wiegand keypad:
// longer than the gap that ends a frame, as a person types.
const simKeyGap = 100 * time.Millisecond

// simHW is the emulated hardware the simulator runs on. Parts the
// configuration does not have are nil.
type simHW struct {
	chip    *pn532test.Chip
	relay   *gpiotest.Pin
	contact simSwitch
	rex     simSwitch
	tamper  simSwitch

	// displayText reads the emulated display's two lines; nil without one.
	displayText func() [2]string

	// typeKeys presses keys on the emulated keypad; nil without one.
	typeKeys func(ctx context.Context, keys string) error

	// seen receives the reader's presence events, so that tap and remove
	// return once the reader has noticed, as a person waits for the beep.
	seen chan pn532.TrackEvent
}

// simSwitch is an emulated switch input and the level it reads when the
// switch is active (door open, button pressed, tamper tripped).
type simSwitch struct {
	pin    *gpiotest.Pin
	active gpio.Level
	key    string // the config key, for the error when it is not fitted
}

// set moves the switch to active or back, as a hand would.
func (in simSwitch) set(ctx context.Context, active bool) error {
	if in.pin == nil {
		return fmt.Errorf("this door has no %s", in.key)
	}
	l := in.active
	if !active {
		l = !l
	}
	return hold(ctx, in.pin, l)
}

// newSimSwitch emulates the switch input that key names (nil when name is
// empty), at rest. Wired to ground with the pull-up (active-low), a normally
// open switch reads low when active; normally closed, or pulled down to an
// active-high switch, the levels swap.
func newSimSwitch(key, name string, normallyClosed, activeHigh bool) simSwitch {
	active := gpio.Level(normallyClosed != activeHigh)
	in := simSwitch{active: active, key: key}
	if name != "" {
		in.pin = &gpiotest.Pin{N: name, L: !active, EdgesChan: make(chan gpio.Level, 16)}
	}
	return in
}

// switchPin is an emulated input with a switch on it. A bare
// gpiotest.Pin takes the level of the pull that In sets; a switch closed
// at rest holds its pin at the level it connects, whatever the pull.
type switchPin struct{ *gpiotest.Pin }

// In sets the pull and keeps the level the switch gives the pin.
func (p switchPin) In(pull gpio.Pull, edge gpio.Edge) error {
	l := p.Read()
	err := p.Pin.In(pull, edge)
	_ = p.Out(l)
	return err
}

// outPin emulates an output that name names, or nil without a name.
func outPin(name string) *gpiotest.Pin {
	if name == "" {
		return nil
	}
	return &gpiotest.Pin{N: name}
}

// newSimHW builds the emulated parts of the door c describes and the
// hardware view the daemon uses.
func newSimHW(c *Config) (*simHW, *hardware, error) {
	s := &simHW{
		chip:    pn532test.New(&pn532test.Opts{Latency: time.Millisecond}),
		relay:   &gpiotest.Pin{N: c.Relay.Pin},
		contact: newSimSwitch("door contact (inputs.contact)", c.Inputs.Contact, c.Inputs.ContactNC, c.Inputs.ActiveHighInput),
		rex:     newSimSwitch("exit button (inputs.exit_button)", c.Inputs.ExitButton, c.Inputs.ExitButtonNC, c.Inputs.ActiveHighInput),
		tamper:  newSimSwitch("tamper switch (inputs.tamper)", c.Inputs.Tamper, c.Inputs.TamperNC, c.Inputs.ActiveHighInput),
		seen:    make(chan pn532.TrackEvent, 16),
	}
	hw := &hardware{
		openSPI: func() (spi.Port, func() error, error) { return s.chip, nil, nil },
		spiName: "pn532test",
		// The emulated chip's IRQ line is wired, as on a door built to
		// docs/wiring.md: the reader waits for a card on its edge.
		readerIRQ: s.chip.IRQ(),
		relay:     s.relay,
		green:     orNil(outPin(c.Feedback.Green)),
		red:       orNil(outPin(c.Feedback.Red)),
		buzzer:    orNil(outPin(c.Feedback.Buzzer)),
	}
	for _, in := range []struct {
		sim simSwitch
		to  *gpio.PinIn
	}{{s.contact, &hw.contact}, {s.rex, &hw.rex}, {s.tamper, &hw.tamper}} {
		if in.sim.pin != nil {
			*in.to = switchPin{in.sim.pin}
		}
	}
	bus, text, err := newSimDisplay(c.Display)
	if err != nil {
		return nil, nil, err
	}
	if bus != nil {
		hw.openI2C, s.displayText = simI2C(bus), text
	}
	switch c.Keypad.Type {
	case "matrix":
		if c.Keypad.Expander != "" {
			x, err := newSimExpander(&c.Keypad)
			if err != nil {
				return nil, nil, err
			}
			if err := hw.wireExpanderKeypad(&c.Keypad, x.Bus, x.Interrupt); err != nil {
				return nil, nil, err
			}
			s.typeKeys = x.Keys.TypeKeys
			break
		}
		layout := c.Keypad.Layout
		if layout == "" {
			layout = keypad.Layout3x4
			if len(c.Keypad.Cols) == 4 {
				layout = keypad.Layout4x4
			}
		}
		keys, err := keypadtest.NewMatrix(layout)
		if err != nil {
			return nil, nil, err
		}
		hw.keypadRows, hw.keypadCols, s.typeKeys = keys.Rows(), keys.Cols(), keys.TypeKeys
	case "wiegand":
		w := keypadtest.NewWiegand()
		hw.wiegandD0, hw.wiegandD1 = w.D0(), w.D1()
		// A Wiegand keypad sends each key as a 4-bit frame; the reader
		// ends a frame after 25 ms of silence, and a person types slower.
		s.typeKeys = func(ctx context.Context, keys string) error {
			for _, k := range keys {
				bits, err := keypadtest.KeyBits(keypad.Key(k), 4)
				if err != nil {
					return err
				}
				if err := w.Send(ctx, bits); err != nil {
					return err
				}
				if err := pn532.WaitTimer(ctx, simKeyGap); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return s, hw, nil
}

// orNil turns a nil *gpiotest.Pin into a nil gpio.PinOut, which the
// daemon takes for "not fitted".
func orNil(p *gpiotest.Pin) gpio.PinOut {
	if p == nil {
		return nil
	}
	return p
}

// simConfig is the zero-configuration door the simulator runs.
func simConfig(dataDir string) *Config {
	return &Config{
		Site:     demoSite,
		Door:     demoDoor,
		DataDir:  dataDir,
		Mode:     string(store.ModeCardPIN),
		Reader:   ReaderConfig{SPI: "pn532test"},
		Keypad:   KeypadConfig{Type: "matrix"},
		Relay:    RelayConfig{Pin: "RELAY", ActiveLow: false, Lock: "fail-secure", FailSafeHalt: "locked"},
		Inputs:   InputsConfig{Contact: "CONTACT", ExitButton: "REX", Tamper: "TAMPER"},
		Feedback: FeedbackConfig{Green: "LED_GREEN", Red: "LED_RED", Buzzer: "BUZZER"},
		Display:  DisplayConfig{Type: displayLCD},
	}
}

// previewConfig is the door a config file describes, as the simulator
// runs it: every setting of the file that the door's behaviour depends on,
// with the simulator's site, door id and data directory, no MQTT settings
// of the file (the simulator's site, or the one it joins, stands in), and
// the emulated reader. The pins keep their names; the simulator emulates
// each one the file wires, and only those.
func previewConfig(file *Config, dataDir string) *Config {
	c := *file
	c.Site, c.Door, c.DataDir = demoSite, demoDoor, dataDir
	c.Groups = nil
	c.MQTT = MQTTConfig{}
	c.Reader = ReaderConfig{SPI: "pn532test"}
	return &c
}

// simOwnerKey is the store state naming whose simulated door a data
// directory holds (simOwner).
const simOwnerKey = "sim/door"

// simOwner names a simulated door: its site and id, and whether the site
// runs in the simulator's process or the door joined it.
func simOwner(joined bool, site, door string) string {
	how := "run here"
	if joined {
		how = "joined"
	}
	return fmt.Sprintf("site %s door %s (%s)", site, door, how)
}

// claimSimDir records in the door's store whose simulated door the data
// directory dir holds (owner, see simOwner), and refuses one that holds
// another: a door's allowlist, identity and audit chain belong to one
// site, and the demo site of one simulator is not the site another joins.
func claimSimDir(st *store.Store, dir, owner string) error {
	had, err := st.State(simOwnerKey)
	if errors.Is(err, store.ErrNotFound) {
		// A directory of a simulator that did not record it is the demo
		// door if it was seeded, and new otherwise.
		had, err = nil, nil
		switch _, serr := st.State(demoSeedKey); {
		case serr == nil:
			had = []byte(simOwner(false, demoSite, demoDoor))
		case !errors.Is(serr, store.ErrNotFound):
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("-data %s: %w", dir, err)
	}
	if had != nil && string(had) != owner {
		return fmt.Errorf("-data %s holds the simulated door of %s, not of %s: give this door a data directory of its own with -data", dir, had, owner)
	}
	if err := st.PutState(simOwnerKey, []byte(owner)); err != nil {
		return fmt.Errorf("-data %s: %w", dir, err)
	}
	return nil
}

// simOptions are the simulator's flags.
type simOptions struct {
	config     string // a door's config file to preview: its settings on emulated hardware
	dataDir    string
	mqttURL    string
	brokerAddr string
	join       string        // a join file: the door joins the site it names
	door       string        // the door's id, with join
	journal    JournalConfig // what the door does when it cannot write its journal
	metrics    string        // where to serve /metrics and /healthz; "" for nowhere
}

// siteReady bounds how long the standalone simulator waits for its door
// to apply the site's allowlist before it takes commands.
const siteReady = 30 * time.Second

// runSim runs latchd on emulated hardware, taking commands from in. On
// its own it runs the demo site in the same process, on an embedded
// broker unless o.mqttURL names one; with o.join the door joins the site
// the join file names instead.
func runSim(ctx context.Context, o simOptions, in io.Reader, out *printer, log *slog.Logger) (err error) {
	nt := newNotifier(log)
	cfg := simConfig(o.dataDir)
	cfg.Journal = o.journal
	if err := cfg.Journal.check(cfg.isSet); err != nil {
		return err
	}
	if o.config != "" {
		file, err := loadPreviewConfig(o.config)
		if err != nil {
			return err
		}
		cfg = previewConfig(file, o.dataDir)
		site := "the simulator's own site"
		if o.join != "" {
			site = "the site it joins"
		}
		out.line("latchd: previewing %s on emulated hardware: its mode, keypad, display, feedback, inputs, relay, timings and security; %s and the simulator's data directory", o.config, site)
	}
	if cfg.Metrics, err = simMetrics(o.metrics); err != nil {
		return err
	}
	var join *joinFile
	if o.join != "" {
		if join, err = loadJoinFile(o.join); err != nil {
			return err
		}
		if err := mqtt.CheckID("door", o.door); err != nil {
			return fmt.Errorf("-door: %w", err)
		}
		cfg.Site, cfg.Door = join.Site, o.door
	}
	sim, hw, err := newSimHW(cfg)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	defer func() { err = errors.Join(err, hw.close()) }()
	hw.onPattern = func(p door.Pattern) { out.feedback(time.Now(), p) }
	if sim.displayText != nil {
		var last [2]string
		hw.onShown = func() {
			// Called from the controller's display goroutine only.
			if t := sim.displayText(); t != last {
				last = t
				out.display(time.Now(), [2]string{strings.TrimRight(t[0], " "), strings.TrimRight(t[1], " ")})
			}
		}
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
		return storeFault(ctx, cfg, hw, fmt.Errorf("-data %s: %w", o.dataDir, err), door.SystemClock{}, log, nt)
	}
	st, err := openStore(cfg, door.SystemClock{}, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	defer func() { err = errors.Join(err, closeStore(st, log)) }()
	id, err := doorIdentity(o.dataDir, st, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	if err := claimSimDir(st, o.dataDir, simOwner(join != nil, cfg.Site, cfg.Door)); err != nil {
		return err
	}

	d := &daemon{cfg: cfg, hw: hw, relay: relay, st: st, log: log, trust: clockTrust{floor: clockFloor()}, boot: bootID(), onEvent: out.event, identity: id, systemd: nt}
	d.onTrack = func(ev pn532.TrackEvent) {
		select {
		case sim.seen <- ev:
		default:
		}
	}
	var site *localSite
	var admin siteAdmin
	var broker string
	if join == nil {
		if site, err = openLocalSite(o, demoDoor, id.Public(), out, log); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, site.close()) }()
		broker, admin = site.url, site.admin(d)
		cfg.MQTT.TrustedKeys = map[string]string{simKeyID: site.key}
	} else {
		broker, admin = cmp.Or(o.mqttURL, join.Broker), joinAdmin(cfg.Door)
		cfg.MQTT.TrustedKeys, cfg.MQTT.Username = join.TrustedKeys, join.Username
		fp := id.Public().Fingerprint()
		out.line("latchd: door %q joins site %q on %s", cfg.Door, cfg.Site, broker)
		out.lineWith(map[string]string{"door": cfg.Door, "fingerprint": fp},
			"latchd: door %s has the identity %s; approve it at the site: latch door approve %s --fingerprint %s", cfg.Door, fp, cfg.Door, fp)
		out.line("latchd: the door gets its allowlist from the site once approved; type help for every command")
	}
	if d.mqttOpts, err = mqttOptions(cfg, broker, log, d.boot); err != nil {
		return err
	}
	if join != nil {
		d.mqttOpts.Password = join.Password
	}
	if err := d.build(); err != nil {
		// The journal's files cannot be made (a full or read-only disk):
		// the door waits locked with the fault shown, as for the store.
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	if err := d.listenMetrics(out); err != nil {
		return err
	}

	// The site, when it runs here, listens before the door speaks, and
	// the door has its allowlist before the first command is read.
	ready := time.NewTimer(siteReady)
	defer ready.Stop()
	var siteErr error
	if site != nil {
		site.start(ctx)
		siteErr = site.connected(ctx, ready.C)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- d.run(runCtx)
		cancel() // ends the wait below
	}()
	if site != nil {
		if siteErr == nil {
			siteErr = site.applied(runCtx, d, ready.C)
		}
		if siteErr != nil && runCtx.Err() == nil {
			out.line("error: %v; taps are decided on the allowlist the door has", siteErr)
		}
		out.line("latchd: try: tap %s, then key %s#; type help for every command", demoValidUID, demoValidPIN)
	}
	return storeFaultAfterRun(ctx, cfg, hw, prompt(runCtx, cancel, done, in, sim, d, admin, out), log, nt)
}

// prompt carries out the commands read from in until quit, the end of in,
// or the door's run ending (done), whose error it returns.
func prompt(ctx context.Context, cancel context.CancelFunc, done <-chan error, in io.Reader, sim *simHW, d *daemon, admin siteAdmin, out *printer) error {
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
			if err := sim.do(ctx, c, d, admin, out); err != nil {
				out.line("error: %v", err)
			}
		}
	}
}

// do carries out one command on the emulated hardware, or through the
// site.
func (s *simHW) do(ctx context.Context, c simCmd, d *daemon, admin siteAdmin, out *printer) error {
	switch c.op {
	case opUnlock, opLockdown, opRevoke, opReinstate:
		return admin(ctx, c)
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
		if s.typeKeys == nil {
			return errors.New("this door has no keypad (keypad.type)")
		}
		return s.typeKeys(ctx, c.keys)
	case opOpen:
		return s.contact.set(ctx, true)
	case opClose:
		return s.contact.set(ctx, false)
	case opREX:
		if s.rex.pin == nil {
			return fmt.Errorf("this door has no %s", s.rex.key)
		}
		if err := edge(ctx, s.rex.pin, s.rex.active); err != nil {
			return err
		}
		if err := pn532.WaitTimer(ctx, simPressTime); err != nil {
			return err
		}
		return edge(ctx, s.rex.pin, !s.rex.active)
	case opTamper:
		return s.tamper.set(ctx, c.on)
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
	err := waitFor(ctx, t.C, d.client.Updated, func() bool { return d.client.Stats().Connected })
	if errors.Is(err, errTimedOut) {
		return errors.New("the door is not connected to the broker")
	}
	return err
}

// errTimedOut is waitFor's error when its time is up.
var errTimedOut = errors.New("timed out")

// waitFor waits until cond holds, woken by the channel wake returns (taken
// before cond is asked, so that no change is missed), until timeout fires
// (errTimedOut) or ctx ends.
func waitFor(ctx context.Context, timeout <-chan time.Time, wake func() <-chan struct{}, cond func() bool) error {
	for {
		ch := wake()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-timeout:
			return errTimedOut
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
	if d.client != nil {
		ms := d.client.Stats()
		conn := "disconnected"
		if ms.Connected {
			conn = "connected"
		}
		fmt.Fprintf(&b, " mqtt=%s", conn)
		if !ms.Connected && ms.LastError != "" {
			fmt.Fprintf(&b, " mqtt_error=%q", oneLine(ms.LastError, 120))
		}
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
