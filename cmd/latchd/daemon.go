package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/store"
)

// dbFile is the name of the bbolt file in the data directory.
const dbFile = "latch.db"

// readerRetry is how long the daemon waits before trying again to bring up a
// reader that did not answer at start.
const readerRetry = 5 * time.Second

// maxAuditEntries is how many delivered audit entries the door keeps; the
// site keeps them all.
const maxAuditEntries = 1_000_000

// auditRetention bounds the audit log on the door. Only delivered entries
// are ever dropped: MaxUndelivered 0 keeps every entry the site has not
// acknowledged, since a dropped one would leave a gap in the chain that the
// site could never acknowledge. The outbox holds well over 100,000 of them.
func auditRetention() store.Retention {
	return store.Retention{MaxEntries: maxAuditEntries, MaxUndelivered: 0}
}

// pruneEvery is how often the audit log is pruned.
const pruneEvery = time.Hour

// daemon is one door: its store, controller and the drivers feeding it.
type daemon struct {
	systemd *notifier // systemd's notify protocol; does nothing outside systemd
	cfg     *Config
	hw      *hardware
	relay   *door.Relay
	st      *store.Store
	log     *slog.Logger
	trust   clockTrust
	boot    string
	ctrl    *door.Controller

	closeSPI func() error
	display  displayConn // the display the controller shows on, if any

	// identity is the door's keys (contract v2).
	identity *mqtt.Identity
	// floor and floorAt cache timeFloor; the controller's goroutine alone
	// uses them.
	floor, floorAt time.Time

	// journal writes every audit event; build opens it, run closes it.
	journal *store.Journal
	// notify is the MQTT client the journal hands stored events to, once
	// it exists (the journal runs before it is built).
	notify atomic.Pointer[mqtt.Client]

	// mqttOpts, when set, connect the door to the site.
	mqttOpts *mqtt.Options
	client   *mqtt.Client

	// reader is the reader's fault as last reported to the controller.
	reader readerFault
	// safe stops the run when a part panics.
	safe *failsafe

	// ready is closed when the controller is ready (its Ready hook).
	ready chan struct{}

	// onEvent, if set, is called after every audit event is stored.
	onEvent func(store.Event)
	// onTrack, if set, sees every reader event after the controller has it.
	onTrack func(pn532.TrackEvent)
	// metrics serves /metrics and /healthz; nil without metrics.listen.
	metrics *metrics
}

// storeFault handles a database that cannot be opened. A damaged file, one
// written by a newer latchd, or a data directory that cannot be written
// (read-only file system, no permission, no space left: see
// dataDirUnwritable) will not heal by restarting: the door stays locked
// (the relay was set before), the reader's red LED blinks and its buzzer
// chirps until the service is stopped, and then the error is returned. Any
// other error (another latchd holds the file, say) is returned at once.
func storeFault(ctx context.Context, cfg *Config, hw *hardware, err error, clock door.Clock, log *slog.Logger, nt *notifier) error {
	switch {
	case errors.Is(err, store.ErrLocked):
		return err
	case errors.Is(err, store.ErrCorrupt), errors.Is(err, store.ErrSchemaTooNew):
		log.Error("store: the database cannot be used; the door stays locked and shows a fault until latchd is stopped", "err", err)
	case errors.Is(err, errIdentity):
		log.Error("identity: the door cannot prove who it is; the door stays locked and shows a fault until latchd is stopped", "err", err)
	case dataDirUnwritable(err):
		log.Error("store: the data directory cannot be written; the door stays locked and shows a fault until latchd is stopped", "data_dir", cfg.DataDir, "err", err)
	default:
		return err
	}
	nt.fault(ctx, err.Error())
	fb, ferr := newFeedback(cfg, hw)
	switch {
	case ferr != nil:
		log.Error("feedback: cannot show the fault", "err", ferr)
		<-ctx.Done()
	case fb == nil:
		<-ctx.Done()
	default:
		if ferr := fb.ShowFault(ctx, clock); ferr != nil {
			log.Error("feedback: showing the fault", "err", ferr)
		}
	}
	return err
}

// newFeedback builds the LED and buzzer outputs; nil when none is wired.
func newFeedback(c *Config, hw *hardware) (*door.Feedback, error) {
	if hw.green == nil && hw.red == nil && hw.buzzer == nil {
		return nil, nil
	}
	f, err := door.NewFeedback(hw.green, hw.red, hw.buzzer, &door.FeedbackOpts{ActiveLow: c.Feedback.ActiveLow, OnPattern: hw.onPattern})
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	return f, nil
}

// openStore opens the bbolt file in the configured data directory. Open
// checks what it needs to trust the file; the store checks the rest in the
// background, paced by a checkPacer on clock (see watchStore).
func openStore(c *Config, clock door.Clock, log *slog.Logger) (*store.Store, error) {
	untrusted, lockout := c.Security.storeOptions()
	pacer := &checkPacer{clock: clock}
	return store.Open(filepath.Join(c.DataDir, dbFile), &store.Options{
		Location:       c.location(),
		UntrustedClock: untrusted,
		Lockout:        lockout,
		Logger:         log,
		Retention:      auditRetention(),
		CheckPause:     pacer.pause,
	})
}

// newRelay builds the relay from the config. It is the first driver made, so
// the pin is at its locked level before anything else happens: the relay
// drives it even when it then refuses the options.
func newRelay(c *Config, hw *hardware, onChange func(bool)) (*door.Relay, error) {
	opts := door.RelayOpts{ActiveLow: c.Relay.ActiveLow, OnChange: onChange,
		ShutdownUnlocked: c.Relay.FailSafeHalt == "unlocked"}
	if c.Relay.Lock == "fail-safe" {
		opts.Lock = door.FailSafe
	}
	r, err := door.NewRelay(hw.relay, &opts)
	switch {
	case err == nil:
		return r, nil
	case hw.relay != nil && opts.ShutdownUnlocked && opts.Lock != door.FailSafe:
		return nil, fmt.Errorf("relay.fail_safe_halt %q with relay.lock %q: %w", c.Relay.FailSafeHalt, c.Relay.Lock, err)
	}
	return nil, fmt.Errorf("relay.pin %s: %w", c.Relay.Pin, err)
}

// doorKeys maps door.Config fields to the config keys that set them.
var doorKeys = map[string]string{
	"Door":            "door",
	"Mode":            "mode",
	"Unlock":          "timing.unlock",
	"ExtendedUnlock":  "timing.extended_unlock",
	"Held":            "timing.held",
	"PreAlarm":        "timing.held",
	"PINTimeout":      "timing.pin",
	"InterKey":        "timing.inter_key",
	"MaxRemoteUnlock": "timing.unlock",
	"UnlockSchedule":  "unlock_schedule",
	"FirstCardGroup":  "unlock_schedule.first_card_group",
	"StalePolicy":     "mqtt.stale_policy",
}

// doorConfigError names the config key behind a *door.ConfigError.
func doorConfigError(err error) error {
	var ce *door.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	key, ok := doorKeys[ce.Field]
	if !ok {
		key = "door." + ce.Field
	}
	return fmt.Errorf("%s %s", key, ce.Msg)
}

// doorConfig is the controller's part of the config.
func (c *Config) doorConfig() door.Config {
	return door.Config{
		Door:           c.Door,
		Groups:         c.Groups,
		Mode:           store.Mode(c.Mode),
		Lockdown:       c.Lockdown,
		Location:       c.location(),
		UnlockSchedule: c.schedule,
		FirstCardGroup: c.UnlockSchedule.FirstCardGroup,
		Unlock:         c.Timing.Unlock.Duration,
		ExtendedUnlock: c.Timing.ExtendedUnlock.Duration,
		Held:           c.Timing.Held.Duration,
		PINTimeout:     c.Timing.PIN.Duration,
		InterKey:       c.Timing.InterKey.Duration,
		OpenUnrecorded: c.Journal.Unrecorded == unrecordedOpen,
		StalePolicy:    door.StalePolicy(c.MQTT.StalePolicy),
	}
}

// build opens the journal and makes the controller and the MQTT client.
// On error the journal is closed again.
func (d *daemon) build() (err error) {
	c := d.cfg
	fb, err := newFeedback(c, d.hw)
	if err != nil {
		return err
	}
	d.safe = newFailsafe(d.log, d.relay)
	d.ready = make(chan struct{})
	d.metrics = newMetrics(d)
	if err := d.openJournal(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.closeDisplay()
			err = errors.Join(err, d.closeJournal())
		}
	}()
	ctrl, err := door.New(c.doorConfig(), door.Deps{
		Allowlist:    guardedAllowlist{st: d.st, safe: d.safe},
		Journal:      d.journal,
		State:        d.st,
		Relay:        d.relay,
		Feedback:     fb,
		Display:      d.openDisplay(),
		ClockTrusted: d.trust.trusted,
		TimeFloor:    d.timeFloor,
		BootID:       d.boot,
		Logger:       d.log,
		Ready: func() {
			d.systemd.ready(fmt.Sprintf("door %s ready, relay locked", c.Door))
			close(d.ready)
		},
		Alive:      d.aliveHook(),
		AliveEvery: d.aliveEvery(),
		Meter:      d.meter(),
	})
	if err != nil {
		return doorConfigError(err)
	}
	d.ctrl = ctrl
	if d.mqttOpts != nil {
		opts := *d.mqttOpts
		opts.Identity = d.identity
		// A damaged next identity stops the rotation, not the door.
		next, err := nextIdentity(c.DataDir)
		if err != nil {
			d.log.Error("door identity: the next identity is unusable; not rotating", "err", err)
		}
		if next != nil {
			opts.NextIdentity, opts.PromoteIdentity = next, promoter(c.DataDir, d.st, d.log)
			d.log.Warn("door identity: rotating; the status announces the next one until the site approves it",
				"current", d.identity.Public().Fingerprint(), "next", next.Public().Fingerprint())
		}
		cl, err := mqtt.New(d.st, d.journal, d.mqttDoor(), &opts)
		if err != nil {
			return err
		}
		d.client = cl
		d.notify.Store(cl)
	}
	return nil
}

// floorRead is how often the controller's view of the time floor is read
// from the store: it moves with signed messages, at most about once a
// minute (mqtt.Options.MarkSignedInterval), so a card's path does not pay
// for a read transaction.
const floorRead = 10 * time.Second

// timeFloor is the latest signed site time the store recorded, for the
// controller's unlock schedule; zero when it cannot be read. The
// controller calls it on its own goroutine at every step; it reads the
// store every floorRead.
func (d *daemon) timeFloor() time.Time {
	now := time.Now()
	if !d.floorAt.IsZero() && now.Sub(d.floorAt) < floorRead {
		return d.floor
	}
	d.floorAt = now
	if ss, err := d.st.SyncState(); err == nil {
		d.floor = ss.LastIssuedAt
	}
	return d.floor
}

// run runs the controller and every driver until ctx ends or one of them
// fails. The controller puts the relay in its safe state on the way out;
// then the journal writes what it holds and stops. Asked to stop, the
// parts return nil; what run returns then is a real failure, such as a
// relay that could not be put in its safe state or events the journal
// could not write. A part that panics stops the run as one that fails does
// (see failsafe).
func (d *daemon) run(ctx context.Context) (err error) {
	defer func() { err = errors.Join(err, d.closeJournal()) }()
	defer d.closeDisplay()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(d.safe.goroutine("door controller", func() error { return d.ctrl.Run(gctx) }))
	g.Go(d.safe.goroutine("journal health", func() error { return d.watchJournal(gctx) }))
	g.Go(d.safe.goroutine("store check", func() error { return d.watchStore(gctx) }))
	g.Go(d.safe.goroutine("status watch", func() error { return d.newWatcher().run(gctx, d.ready) }))
	// A panic caught in a callback, on another package's goroutine, stops
	// the run here.
	g.Go(func() error { return d.safe.wait(gctx) })
	for _, start := range []func(context.Context, *errgroup.Group) error{d.startInputs, d.startKeypad} {
		if err := start(gctx, g); err != nil {
			cancel()
			return errors.Join(err, g.Wait())
		}
	}
	g.Go(d.safe.goroutine("card reader", func() error { return d.runReader(gctx) }))
	g.Go(d.safe.goroutine("audit log pruning", func() error { d.prune(gctx); return nil }))
	if d.metrics != nil {
		g.Go(d.safe.goroutine("metrics", func() error { return d.metrics.serve(gctx) }))
	}
	if d.client != nil {
		g.Go(d.safe.goroutine("mqtt", func() error {
			if err := d.client.Run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("mqtt: %w", err)
			}
			return nil
		}))
	}
	err = g.Wait()
	if perr := d.safe.err(); perr != nil && !errors.Is(err, perr) {
		err = errors.Join(err, perr)
	}
	return err
}

// prune trims the audit log once the store's background check has ended,
// and every pruneEvery then, until ctx ends. The first prune reads the
// oldest audit entries, whose pages only that check reads before it.
func (d *daemon) prune(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-d.st.CheckDone():
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if r, err := d.st.Prune(time.Now()); err != nil {
			d.log.Error("audit log: prune", "err", err)
		} else {
			d.log.Debug("audit log pruned", "result", fmt.Sprintf("%+v", r))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startInputs starts the door contact, exit button and tamper switch.
func (d *daemon) startInputs(ctx context.Context, g *errgroup.Group) error {
	c := d.cfg
	debounce := c.Timing.Debounce.Duration
	inputs := []struct {
		key string
		pin gpio.PinIn
		nc  bool
		fn  func(ctx context.Context, active bool) error
	}{
		{"inputs.contact", d.hw.contact, c.Inputs.ContactNC, d.ctrl.DoorContact},
		{"inputs.exit_button", d.hw.rex, c.Inputs.ExitButtonNC, d.ctrl.ExitButton},
		{"inputs.tamper", d.hw.tamper, c.Inputs.TamperNC, d.ctrl.Tamper},
	}
	for _, in := range inputs {
		if in.pin == nil {
			continue
		}
		drv, err := door.NewInput(in.pin, &door.InputOpts{NormallyClosed: in.nc, PullDown: c.Inputs.ActiveHighInput, Debounce: debounce, Logger: d.log})
		if err != nil {
			return fmt.Errorf("%s: %w", in.key, err)
		}
		fn := in.fn
		key := in.key
		g.Go(d.safe.goroutine(key, func() error {
			err := drv.Run(ctx, func(active bool, _ time.Time) {
				if err := fn(ctx, active); err != nil && ctx.Err() == nil {
					d.log.Warn("input not delivered", "input", key, "err", err)
				}
			})
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			return nil
		}))
	}
	return nil
}

// startKeypad starts the configured keypad, if any.
func (d *daemon) startKeypad(ctx context.Context, g *errgroup.Group) error {
	onKey := func(k keypad.Key) {
		if !k.IsPIN() {
			return
		}
		if err := d.ctrl.KeyPressed(ctx, rune(k)); err != nil && ctx.Err() == nil {
			d.log.Warn("key not delivered", "err", err)
		}
	}
	switch d.cfg.Keypad.Type {
	case "matrix":
		m, err := keypad.NewMatrix(d.hw.keypadRows, d.hw.keypadCols, &keypad.MatrixOpts{Layout: d.cfg.Keypad.Layout, Expander: d.hw.keypadExpander, Logger: d.log})
		if err != nil {
			return fmt.Errorf("keypad: %w", err)
		}
		g.Go(d.safe.goroutine("keypad", func() error {
			defer func() {
				if err := m.Halt(); err != nil {
					d.log.Warn("keypad: halt", "err", err)
				}
			}()
			if err := m.Run(ctx, onKey); err != nil && ctx.Err() == nil {
				return fmt.Errorf("keypad: %w", err)
			}
			return nil
		}))
	case "wiegand":
		w, err := keypad.NewWiegand(d.hw.wiegandD0, d.hw.wiegandD1, &keypad.WiegandOpts{Logger: d.log})
		if err != nil {
			return fmt.Errorf("keypad: %w", err)
		}
		onCard := func(c keypad.Card) {
			if err := d.ctrl.CardPresented(ctx, c.UID, false); err != nil && ctx.Err() == nil {
				d.log.Warn("card not delivered", "err", err)
				return
			}
			// A Wiegand reader sends a card once per presentation: it has
			// left by the time it is read. Were the removal lost, the door
			// would take the next read of the same card for the card still
			// in the field and not decide it again.
			if err := d.ctrl.CardRemoved(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("card removal not delivered", "err", err)
			}
		}
		g.Go(d.safe.goroutine("keypad", func() error {
			defer func() {
				if err := w.Halt(); err != nil {
					d.log.Warn("keypad: halt", "err", err)
				}
			}()
			if err := w.Run(ctx, onKey, onCard); err != nil && ctx.Err() == nil {
				return fmt.Errorf("keypad: %w", err)
			}
			return nil
		}))
	}
	return nil
}

// openReader opens the SPI port and brings up the PN532 on it. A port that
// failed is closed, since periph connects a port only once.
func (d *daemon) openReader(opts *pn532.Opts) (*pn532.Dev, error) {
	p, closePort, err := d.hw.openSPI()
	if err != nil {
		return nil, fmt.Errorf("reader.spi %s: %w", d.hw.spiName, err)
	}
	dev, err := pn532.NewSPI(p, opts)
	if err != nil {
		if closePort != nil {
			_ = closePort()
		}
		return nil, err
	}
	d.closeSPI = closePort
	return dev, nil
}

// readerOpts are the PN532 driver's options: its defaults, with the
// configured bus clock and pins.
func (d *daemon) readerOpts() pn532.Opts {
	opts := pn532.DefaultOpts
	opts.Reset = d.hw.readerReset
	opts.IRQ = d.hw.readerIRQ
	if d.cfg.Reader.SpeedHz != 0 {
		opts.Clock = physic.Frequency(d.cfg.Reader.SpeedHz) * physic.Hertz
	}
	opts.Logger = d.log
	return opts
}

// runReader brings up the PN532 and turns its presence events into
// controller inputs, retrying a reader that does not answer.
func (d *daemon) runReader(ctx context.Context) error {
	opts := d.readerOpts()
	var dev *pn532.Dev
	faulted := false
	for {
		dv, err := d.openReader(&opts)
		if err == nil {
			dev = dv
			break
		}
		d.log.Error("card reader not ready", "spi", d.hw.spiName, "err", err)
		if !faulted {
			faulted = true
			if err := d.readerHealth(ctx, false, err); err != nil && ctx.Err() == nil {
				d.log.Warn("reader fault not delivered", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(readerRetry):
		}
	}
	defer func() {
		if err := dev.Halt(); err != nil {
			d.log.Warn("card reader: halt", "err", err)
		}
		if d.closeSPI != nil {
			if err := d.closeSPI(); err != nil {
				d.log.Warn("card reader: close the SPI port", "err", err)
			}
		}
	}()
	d.log.Info("card reader ready", "reader", dev.String(), "firmware", dev.FirmwareVersion().String())
	if faulted {
		if err := d.readerHealth(ctx, true, nil); err != nil && ctx.Err() == nil {
			d.log.Warn("reader recovery not delivered", "err", err)
		}
	}
	tr := pn532.NewTracker(dev, &pn532.TrackerOpts{Logger: d.log})
	err := tr.Run(ctx, func(ev pn532.TrackEvent) {
		var err error
		switch e := ev.(type) {
		case pn532.Presented:
			err = d.ctrl.CardPresented(ctx, e.Target.UID, e.Target.RandomUID)
		case pn532.Removed:
			err = d.ctrl.CardRemoved(ctx)
		case pn532.Fault:
			err = d.readerHealth(ctx, false, e.Err)
		case pn532.Recovered:
			err = d.readerHealth(ctx, true, nil)
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn("reader event not delivered", "err", err)
		}
		if d.onTrack != nil {
			d.onTrack(ev)
		}
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("reader: %w", err)
	}
	return nil
}

// mqttDoor is the door as the MQTT client sees it.
func (d *daemon) mqttDoor() mqttDoor {
	return mqttDoor{ctrl: d.ctrl, reader: &d.reader, safe: d.safe, tz: d.cfg.location().String()}
}

// readerHealth tells the controller whether the reader works and, when it
// does not, why. The detail is made one line of at most maxDetail bytes, as
// the audit log and the MQTT status take it, so that a long driver error
// cannot lose the fault.
func (d *daemon) readerHealth(ctx context.Context, ok bool, why error) error {
	detail := ""
	if !ok {
		detail = "reader fault"
		if why != nil {
			if s := oneLine(why.Error(), maxDetail); s != "" {
				detail = s
			}
		}
	}
	d.reader.set(detail)
	d.metrics.readerHealth(ok)
	return d.ctrl.ReaderHealth(ctx, ok, detail)
}

// haltRelay puts the relay in its safe state when latchd ends, whatever the
// controller did on its way out. A failure is logged, and returned so that
// latchd exits non-zero.
func haltRelay(relay *door.Relay, log *slog.Logger) error {
	if err := relay.Halt(); err != nil {
		log.Error("relay: not in its safe state", "err", err)
		return fmt.Errorf("relay not in its safe state: %w", err)
	}
	return nil
}

// closeStore closes the store when latchd ends. A failure is logged, and
// returned so that latchd exits non-zero.
func closeStore(st io.Closer, log *slog.Logger) error {
	if err := st.Close(); err != nil {
		log.Error("store: close", "err", err)
		return fmt.Errorf("store not closed cleanly: %w", err)
	}
	return nil
}
