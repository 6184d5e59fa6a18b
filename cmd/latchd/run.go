package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// run is latchd without the process around it: it parses args, runs until
// ctx ends or the work fails, and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("latchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sim         = fs.Bool("sim", false, "run on emulated hardware with a demo site in the same process (or -join a site); commands on standard input")
		configPath  = fs.String("config", "", "config file (TOML) for a real door; with -sim, the door's settings to preview on emulated hardware")
		checkConfig = fs.Bool("check-config", false, "check the -config file and the files it names, then exit")
		checkDB     = fs.Bool("check-db", false, "run the full check of the door's database (in data_dir of -config, or -data with -sim), print what it found and exit: 0 sound, 1 damaged, 2 not checked")
		showID      = fs.Bool("show-identity", false, "print the door's public keys and fingerprint (from data_dir, or -data with -sim), then exit")
		newID       = fs.Bool("new-identity", false, "make the door a new identity on purpose (the old file is kept aside; the site must approve it again), then exit")
		rotateID    = fs.Bool("rotate-identity", false, "make the identity the door rotates to: announced vouched for by the current one, taken when the site approves it; then exit")
		dataDir     = fs.String("data", "./latch-data", "data directory (with -sim)")
		mqttURL     = fs.String("mqtt", "", "MQTT broker URL (with -sim; default: an embedded broker on 127.0.0.1; with -join: the join file's)")
		join        = fs.String("join", "", "with -sim: join the site this file names (latch serve --dev writes it) instead of running a demo site")
		doorID      = fs.String("door", demoDoor, "with -sim -join: the id of the door that joins the site")
		brokerAddr  = fs.String("broker-addr", "127.0.0.1:1883", "where the embedded broker listens (with -sim): a loopback host:port; a taken port falls back to a free one")
		unrecorded  = fs.String("unrecorded-grant", "refuse", "with -sim: a grant whose record cannot be written is refused, or the door opens anyway (open)")
		reserveMiB  = fs.Int("journal-reserve-mib", defaultReserveMiB, "with -sim: MiB kept free for the journal in the data directory (0: no reserve)")
		metricsAddr = fs.String("metrics", "", "with -sim: serve /metrics and /healthz on this host:port (port 0: a free port; the URL is printed)")
		logFormat   = fs.String("log-format", "text", "how events are printed: text or json")
		logLevel    = fs.String("log-level", "warn", "operational log level on standard error: debug, info, warn or error")
		version     = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "latchd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, "latchd", buildVersion())
		return 0
	}
	if msg := flagMisuse(fs, *sim); msg != "" {
		fmt.Fprintf(stderr, "latchd: %s\n", msg)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "latchd: -log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	out, err := newPrinter(stdout, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "latchd: %v\n", err)
		return 2
	}

	switch {
	case *checkDB && *sim:
		return checkDatabase(*dataDir, stdout, stderr, log)
	case *checkDB && *configPath != "":
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "latchd: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return checkNotChecked
		}
		return checkDatabase(cfg.DataDir, stdout, stderr, log)
	case (*showID || *newID || *rotateID) && *sim:
		err = identityCommand(*dataDir, identityMode(*newID, *rotateID), stdout, log)
	case (*showID || *newID || *rotateID) && *configPath != "":
		var cfg *Config
		if cfg, err = loadConfig(*configPath); err == nil {
			err = identityCommand(cfg.DataDir, identityMode(*newID, *rotateID), stdout, log)
		}
	case *sim:
		err = runSim(ctx, simOptions{config: *configPath, dataDir: *dataDir, mqttURL: *mqttURL, brokerAddr: *brokerAddr, join: *join, door: *doorID,
			journal: JournalConfig{ReserveMiB: reserveMiB, Unrecorded: *unrecorded}, metrics: *metricsAddr}, stdin, out, log)
	case *configPath == "":
		fmt.Fprintln(stderr, "latchd: -config FILE is required (or -sim to try it without a Pi)")
		return 2
	case *checkConfig:
		var cfg *Config
		if cfg, err = checkConfigFile(*configPath); err == nil {
			b, onBoard := thisBoard()
			err = checkOnBoard(*configPath, cfg, b, onBoard, stdout)
		}
		if err == nil {
			fmt.Fprintf(stdout, "latchd: %s is valid\n", *configPath)
		}
	default:
		err = runPi(ctx, *configPath, out, log)
	}
	if err != nil {
		// One line, even for several errors joined.
		fmt.Fprintf(stderr, "latchd: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	return 0
}

// flagMisuse says what is wrong when a flag of the simulator is given for
// a real door or one of a real door for the simulator, or "".
func flagMisuse(fs *flag.FlagSet, sim bool) string {
	var msg string
	fs.Visit(func(f *flag.Flag) {
		if msg != "" {
			return
		}
		switch {
		case sim && f.Name == "check-config":
			msg = "-check-config checks a -config file; the simulator has none"
		case f.Name == "check-db" && (fs.Lookup("check-config").Value.String() == "true" || fs.Lookup("show-identity").Value.String() == "true" ||
			fs.Lookup("new-identity").Value.String() == "true" || fs.Lookup("rotate-identity").Value.String() == "true"):
			msg = "-check-db excludes -check-config and the identity flags"
		case (f.Name == "show-identity" || f.Name == "new-identity") && fs.Lookup("rotate-identity").Value.String() == "true",
			f.Name == "show-identity" && fs.Lookup("new-identity").Value.String() == "true":
			msg = "-show-identity, -new-identity and -rotate-identity exclude each other"
		case !sim && f.Name == "data":
			msg = "-data is for -sim; a door's data directory is data_dir in its config"
		case !sim && f.Name == "mqtt":
			msg = "-mqtt is for -sim; a door's broker is mqtt.broker in its config"
		case !sim && f.Name == "broker-addr":
			msg = "-broker-addr is for -sim, whose embedded broker it places"
		case !sim && f.Name == "join":
			msg = "-join is for -sim; a door joins its site through mqtt.broker and mqtt.trusted_keys in its config"
		case f.Name == "door" && fs.Lookup("join").Value.String() == "":
			msg = "-door names the door that -sim -join adds to a site; the simulator's own demo door is " + demoDoor
		case f.Name == "broker-addr" && fs.Lookup("join").Value.String() != "":
			msg = "-join and -broker-addr exclude each other: a door that joins a site uses the site's broker"
		case !sim && f.Name == "metrics":
			msg = "-metrics is for -sim; a door sets listen in the [metrics] table of its config"
		case !sim && (f.Name == "unrecorded-grant" || f.Name == "journal-reserve-mib"):
			msg = "-" + f.Name + " is for -sim; a door sets it in the [journal] table of its config"
		}
	})
	return msg
}

// buildVersion is the module version, or "devel".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// checkConfigFile loads and checks what a door loads at start, short of the
// hardware and the store: the config file, the data directory, and the
// MQTT password and TLS files.
func checkConfigFile(path string) (*Config, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.MQTT.Broker != "" {
		if _, err := mqttOptions(cfg, cfg.MQTT.Broker, slog.New(slog.DiscardHandler), ""); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	return cfg, nil
}

// checkOnBoard prints the config's warnings and, on a board, resolves its
// pins and SPI port there; each problem carries the file and the line of
// its key.
func checkOnBoard(path string, cfg *Config, b board, onBoard bool, stdout io.Writer) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if w := cfg.warnings(); len(w) > 0 {
		for _, e := range unjoin(withLines(src, errors.Join(w...))) {
			fmt.Fprintf(stdout, "latchd: warning: config %s: %v\n", path, e)
		}
	}
	if !onBoard {
		fmt.Fprintln(stdout, "latchd: not on a Raspberry Pi: pin and SPI names checked for their form only")
		return nil
	}
	if err := b.resolve(cfg); err != nil {
		var list []error
		for _, e := range unjoin(withLines(src, err)) {
			list = append(list, fmt.Errorf("config %s: %w", path, e))
		}
		return errors.Join(list...)
	}
	return nil
}

// unjoin returns the errors err joins, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkDataDir checks that the data directory is there: the store makes
// its file in it but not the directory.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data_dir %s: not a directory", dir)
	}
	return nil
}

// runPi runs a real door from its config file. Whatever ends it, the relay
// is put in its safe state and the store closed; a failure of either makes
// the error.
func runPi(ctx context.Context, path string, out *printer, log *slog.Logger) (err error) {
	nt := newNotifier(log)
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	for _, w := range cfg.warnings() {
		log.Warn("config: " + w.Error())
	}
	relayPin, err := openPiRelay(cfg)
	if err != nil {
		return err
	}
	hw := &hardware{relay: relayPin}
	// The relay first: the pin is at its locked level before anything else.
	relay, err := newRelay(cfg, hw, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, haltRelay(relay, log)) }()
	hw, err = openPiHardware(cfg, relayPin)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, hw.close()) }()
	if err := checkDataDir(cfg.DataDir); err != nil {
		return err
	}
	st, err := openStore(cfg, door.SystemClock{}, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	defer func() { err = errors.Join(err, closeStore(st, log)) }()
	id, err := doorIdentity(cfg.DataDir, st, log)
	if err != nil {
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	d := &daemon{cfg: cfg, hw: hw, relay: relay, st: st, log: log, trust: clockTrust{floor: clockFloor(), kernel: true}, boot: bootID(), onEvent: out.event, identity: id, systemd: nt}
	if cfg.MQTT.Broker != "" {
		if d.mqttOpts, err = mqttOptions(cfg, cfg.MQTT.Broker, log, d.boot); err != nil {
			return err
		}
	}
	if err := d.build(); err != nil {
		// The journal's files cannot be made (a full or read-only disk):
		// the door waits locked with the fault shown, as for the store.
		return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
	}
	if err := d.listenMetrics(out); err != nil {
		return err
	}
	return storeFaultAfterRun(ctx, cfg, hw, d.run(ctx), log, nt)
}

// identityMode names what an identity flag asks for.
func identityMode(renew, rotate bool) string {
	switch {
	case renew:
		return "new"
	case rotate:
		return "rotate"
	}
	return "show"
}

// identityCommand carries out -show-identity, -new-identity or
// -rotate-identity (mode show, new or rotate) for the door whose data
// directory is dir.
func identityCommand(dir, mode string, out io.Writer, log *slog.Logger) error {
	switch mode {
	case "show":
		return showIdentity(dir, out)
	case "rotate":
		return rotateIdentity(dir, out)
	}
	st, err := store.Open(filepath.Join(dir, dbFile), &store.Options{Logger: log})
	if err != nil {
		return err
	}
	return errors.Join(newIdentity(dir, st, time.Now(), out), st.Close())
}
