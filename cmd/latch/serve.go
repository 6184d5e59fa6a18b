package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// defaultSocket is where the service listens and the CLI looks.
const defaultSocket = "/run/latch/latch.sock"

// shutdownGrace is how long requests under way may run after a stop.
const shutdownGrace = 10 * time.Second

// cmdServe runs the site service until ctx ends.
func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := newFlags("serve")
	paths := sitePathFlags(fs, "the site database (made by latch init)", "the site signing key (made by latch init)")
	socket := fs.String("socket", socketDefault(e), "the unix socket to serve the API on")
	logLevel := fs.String("log-level", "info", "log level on standard error: debug, info, warn or error")
	broker := fs.String("broker", "", "the MQTT broker the doors use: tcp://HOST:PORT or ssl://HOST:PORT (none: changes are kept, not sent)")
	user := fs.String("broker-user", "", "the site's broker login")
	passFile := fs.String("broker-password-file", "", "a file holding the site's broker password (env LATCH_BROKER_PASSWORD)")
	caFile := fs.String("broker-ca", "", "the CA certificate (PEM) of an ssl:// broker, if not in the system's roots")
	certFile := fs.String("broker-cert", "", "the site's client certificate (PEM) for an ssl:// broker that asks for one")
	certKey := fs.String("broker-cert-key", "", "the private key (PEM) of --broker-cert")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "how often each door's signed heartbeat is published")
	gapGrace := fs.Duration("gap-grace", 5*time.Minute, "how long a hole in a door's collected chain may stay open before it is recorded as a gap")
	syslogURL := fs.String("syslog", "", "also send each collected event to syslog (RFC 5424): udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log, ?facility=auth|authpriv")
	dev := fs.String("dev", "", "a development site in this directory, made on first use, with an embedded broker: for trying latch on one machine")
	devAddr := fs.String("dev-broker", "127.0.0.1:1883", "with --dev, where the embedded broker listens (a taken port falls back to a free one)")
	devWeb := fs.String("dev-web", "127.0.0.1:8080", "with --dev and no [web] listen in --config, where the console listens (a taken port falls back to a free one)")
	config := fs.String("config", "", "a TOML file of settings: [web] listen, cert, key, session, idle (docs/console.md)")
	offlineAfter := fs.Duration("offline-after", 0, "raise an offline alarm for a door offline this long (default 2m, or alarms.offline_after in --config)")
	memLimit := fs.String("memory-limit", "256MiB", "a soft limit on the service's memory (Go's GOMEMLIMIT, which sets it when this flag is not given): the garbage collector works harder near it; 0: none")
	if _, err := parseFlags(e, fs, args, 0); err != nil {
		return err
	}
	limit, err := memoryLimit(e, *memLimit, flagGiven(fs, "memory-limit"))
	if err != nil {
		return err
	}
	var devDir string
	if *dev != "" {
		if *paths.db != "" || *paths.key != "" || *broker != "" {
			return usagef("--dev makes its own database, key and broker: drop --db, --key and --broker")
		}
		var err error
		if devDir, err = filepath.Abs(*dev); err != nil {
			return fmt.Errorf("--dev: %w", err)
		}
		if *paths.db, *paths.key, err = devSetup(devDir); err != nil {
			return err
		}
		if !flagGiven(fs, "socket") {
			*socket = filepath.Join(devDir, "latch.sock")
		}
	}
	if err := paths.check(); err != nil {
		return err
	}
	bo, err := brokerFlags(e, brokerFlagValues{url: *broker, user: *user, passFile: *passFile, caFile: *caFile,
		certFile: *certFile, certKey: *certKey, heartbeat: *heartbeat})
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	go watchHeap(ctx, limit, log)
	if *gapGrace < time.Second {
		return usagef("--gap-grace %v: want at least 1s", *gapGrace)
	}
	o := serveOptions{db: *paths.db, key: *paths.key, socket: *socket, pins: store.DefaultPINParams, broker: bo, gapGrace: *gapGrace}
	if *config != "" {
		cfg, err := loadServeConfig(*config)
		if err != nil {
			return err
		}
		o.web, o.alarms, o.notify = cfg.Web, cfg.Alarms, cfg.Notify
	}
	if *offlineAfter != 0 {
		o.alarms.OfflineAfter.Duration = *offlineAfter
		o.alarms.SilentAfter.Duration = max(o.alarms.SilentAfter.Duration, *offlineAfter)
	}
	if err := o.alarms.check(); err != nil {
		return usagef("--offline-after: %v", err)
	}
	if *syslogURL != "" {
		host, _ := os.Hostname()
		if o.syslog, err = newSyslogForwarder(*syslogURL, host, "latch", log); err != nil {
			return usagef("--syslog: %v", err)
		}
	}
	if devDir != "" {
		key, err := loadSiteKey(o.key)
		if err != nil {
			return err
		}
		b, join, err := startDev(devDir, *devAddr, key, log)
		if err != nil {
			return err
		}
		defer b.Close()
		o.broker = &brokerOptions{url: b.URL(), heartbeat: *heartbeat}
		if o.web.Listen == "" {
			o.web.Listen = freeOr(*devWeb)
		}
		var console string
		o.webReady = func(addr string) { console = "http://" + addr }
		o.ready = func() {
			fmt.Fprintf(e.stdout, `latch: development site %q in %s, broker %s (loopback, no login: never for a building)
latch: in another terminal, a simulated door:
    latchd -sim -join %s -door front -data %s
latch: then, with LATCH_SOCKET=%s:
    latch door approve front      # type yes if the fingerprint is the one latchd printed
    latch holder add alice
    latch enroll --door front --holder alice    # tap 04A1B2C3D4E5F6 at the door, then yes here
latch: the web console is at %s, once you made an account:
    latch user add admin --role admin           # prompts for its password
`, key.Site, devDir, b.Addr(), join, filepath.Join(devDir, "front"), o.socket, console)
		}
	}
	return serve(ctx, o, log)
}

// serveOptions is what serve needs.
type serveOptions struct {
	db, key, socket string
	pins            store.PINParams // the cost of PIN hashes (tests make it cheap)
	ready           func()          // called once the socket answers, if set
	broker          *brokerOptions  // nil: no broker
	// site, if set, edits the site's options (tests shorten its timers).
	site func(*mqttsite.Options)
	// siteReady, if set, is given the site once it is made.
	siteReady func(*mqttsite.Site)
	// gapGrace is mqtt/site's GapGrace (0: its default).
	gapGrace time.Duration
	// syslog, if set, sends every event collected from now on to syslog.
	syslog *syslogForwarder
	// web is the console's configuration; no listen address: no console.
	web webConfig
	// webReady, if set, is given the console's address once it listens.
	webReady func(addr string)
	// consoleReady, if set, is given the console once it is made (tests
	// tick its live pages).
	consoleReady func(*console)
	// alarms is the [alarms] configuration; alarmClock, if set, the
	// alarms' clock (default time.Now).
	alarms     alarmConfig
	notify     notifyConfig // notify.go
	alarmClock func() time.Time
	// alarmsReady, if set, is given the alarm engine once it is made.
	alarmsReady func(*alarmEngine)
}

// serve opens the database, serves the API on the socket until ctx ends,
// then stops taking requests, lets those under way finish, and closes the
// database.
func serve(ctx context.Context, o serveOptions, log *slog.Logger) (err error) {
	key, err := loadSiteKey(o.key)
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.db); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("site database %s does not exist; latch init makes one", o.db)
	}
	db, err := site.Open(o.db, nil)
	if errors.Is(err, site.ErrLocked) {
		return fmt.Errorf("site database %s is in use: is another latch serve running on it?", o.db)
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close site database: %w", cerr))
		}
	}()
	keys := &keyFile{path: o.key, key: key}
	if _, err := os.Stat(keys.nextPath()); err == nil {
		log.Warn("a site key rotation did not finish: if the doors are on its key, move the new key over the key file", "new_key", keys.nextPath(), "key_file", o.key)
	}
	sg, err := keys.signer()
	if err != nil {
		return fmt.Errorf("site key %s: %w", o.key, err)
	}
	so := mqttsite.Options{DB: db, Site: key.Site, Signer: sg, Logger: log, GapGrace: o.gapGrace}
	if b := o.broker; b != nil {
		so.Broker, so.Username, so.Password, so.TLS, so.HeartbeatEvery = b.url, b.user, b.password, b.tls, b.heartbeat
	}
	if o.site != nil {
		o.site(&so)
	}
	ms, err := mqttsite.New(so)
	if err != nil {
		return err
	}
	if o.siteReady != nil {
		o.siteReady(ms)
	}
	a := &api{db: db, log: log, now: time.Now, pins: o.pins, hashing: make(chan struct{}, maxHashing), site: ms, online: o.broker != nil, keys: keys}
	if a.alarms, err = startAlarms(o, db, key.Site, ms, log); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.handler(),
		ConnContext:       connContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(a.streams.stopAll)
	var web *http.Server
	var wln net.Listener
	if o.web.Listen != "" {
		if web, wln, err = startConsole(a, o, log); err != nil {
			return err
		}
	}
	ln, err := listenUnix(o.socket)
	if err != nil {
		if wln != nil {
			_ = wln.Close()
		}
		return err
	}
	mctx, stopSite := context.WithCancel(context.Background())
	siteDone := make(chan struct{})
	if o.broker != nil {
		go func() { defer close(siteDone); _ = ms.Run(mctx) }()
	} else {
		close(siteDone)
		log.Warn("no broker (--broker): changes are kept in the database and reach the doors once latch serve runs with one")
	}
	defer func() { stopSite(); <-siteDone }()
	alarmsDone := make(chan struct{})
	go func() { defer close(alarmsDone); a.alarms.run(mctx, ms.Updated) }()
	defer func() { stopSite(); <-alarmsDone }()
	visitsDone := make(chan struct{})
	go func() { defer close(visitsDone); newVisitWatch(a, log, a.alarms.visitorNotify()).run(mctx, ms.Updated) }()
	defer func() { stopSite(); <-visitsDone }()
	if o.syslog != nil {
		fwDone := make(chan struct{})
		go func() {
			defer close(fwDone)
			if err := o.syslog.Run(mctx, db); err != nil && mctx.Err() == nil {
				log.Error("syslog output stopped", "err", err)
			}
		}()
		// Deferred after the site's stop, so run before it: the forwarder
		// reads the database, which closes last.
		defer func() { stopSite(); <-fwDone }()
	}
	served := make(chan error, 2)
	if web != nil {
		go func() {
			serve := web.Serve
			if web.TLSConfig != nil {
				serve = func(ln net.Listener) error { return web.ServeTLS(ln, "", "") }
			}
			if err := serve(wln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				served <- fmt.Errorf("console %s: %w", o.web.Listen, err)
			}
		}()
		scheme := "http"
		if o.web.Cert != "" {
			scheme = "https"
		}
		log.Info("console listening", "url", scheme+"://"+wln.Addr().String())
		if o.webReady != nil {
			o.webReady(wln.Addr().String())
		}
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			served <- fmt.Errorf("serve %s: %w", o.socket, err)
		}
	}()
	seq, _ := db.ACLSeq()
	log.Info("latch serve started", "site", key.Site, "kid", key.Kid, "db", o.db, "socket", o.socket, "acl_seq", seq)
	if o.ready != nil {
		o.ready()
	}
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
	}
	// Both servers stop taking requests at once and let those under way
	// finish; then the site stops and the database closes (deferred).
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for name, s := range map[string]*http.Server{"API": srv, "console": web} {
		if s == nil {
			continue
		}
		wg.Go(func() {
			if err := s.Shutdown(sctx); err != nil {
				log.Warn("requests cut short at shutdown", "server", name, "err", err)
			}
		})
	}
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	log.Info("latch serve stopped")
	return nil
}

// freeOr returns addr if a listener can take it now, else the same host
// with port 0: a free port.
func freeOr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, "0")
	}
	_ = ln.Close()
	return addr
}

// startConsole makes the console and its server, and listens on its
// address; the caller serves.
func startConsole(a *api, o serveOptions, log *slog.Logger) (*http.Server, net.Listener, error) {
	if err := o.web.check(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	con, err := newConsole(a, o.web, log)
	if err != nil {
		return nil, nil, err
	}
	if o.consoleReady != nil {
		o.consoleReady(con)
	}
	tc, err := consoleTLS(o.web)
	if err != nil {
		return nil, nil, err
	}
	wln, err := net.Listen("tcp", o.web.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	web := &http.Server{
		TLSConfig:         tc,
		Handler:           con.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	web.RegisterOnShutdown(a.streams.stopAll)
	return web, wln, nil
}

// listenUnix listens on a unix socket at path, mode 0660. A socket file
// left by a service that is gone is removed; one a service answers on is
// not, and neither is anything that is not a socket.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("socket %s: a file that is not a socket is there", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("socket %s: another service answers on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: remove a stale socket: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// The socket is made with the process's umask; narrow or widen it to
	// owner and group. Put the socket in a directory only they can enter
	// (systemd's RuntimeDirectory) so the moment before this does not count.
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// socketDefault is LATCH_SOCKET, else defaultSocket.
func socketDefault(e *env) string {
	if s := e.getenv("LATCH_SOCKET"); s != "" {
		return s
	}
	return defaultSocket
}

// brokerOptions is how the site reaches the broker.
type brokerOptions struct {
	url, user, password string
	tls                 *tls.Config
	heartbeat           time.Duration
}

// brokerFlagValues are the broker flags as given.
type brokerFlagValues struct {
	url, user, passFile, caFile, certFile, certKey string
	heartbeat                                      time.Duration
}

// brokerFlags checks the broker flags; no broker URL is no broker.
func brokerFlags(e *env, f brokerFlagValues) (*brokerOptions, error) {
	if f.url == "" {
		if f.user != "" || f.passFile != "" || f.caFile != "" || f.certFile != "" || f.certKey != "" {
			return nil, usagef("--broker-user, --broker-password-file, --broker-ca and --broker-cert need --broker")
		}
		return nil, nil
	}
	if !strings.HasPrefix(f.url, "tcp://") && !strings.HasPrefix(f.url, "ssl://") {
		return nil, usagef("--broker %q: want tcp://HOST:PORT or ssl://HOST:PORT", f.url)
	}
	if f.heartbeat < time.Second {
		return nil, usagef("--heartbeat %v: want at least 1s", f.heartbeat)
	}
	if (f.certFile == "") != (f.certKey == "") {
		return nil, usagef("--broker-cert and --broker-cert-key go together")
	}
	b := &brokerOptions{url: f.url, user: f.user, password: e.getenv("LATCH_BROKER_PASSWORD"), heartbeat: f.heartbeat}
	if f.passFile != "" {
		p, err := os.ReadFile(f.passFile)
		if err != nil {
			return nil, fmt.Errorf("--broker-password-file: %w", err)
		}
		b.password = strings.TrimRight(string(p), "\r\n")
	}
	if !strings.HasPrefix(f.url, "ssl://") {
		if f.caFile != "" || f.certFile != "" {
			return nil, usagef("--broker-ca and --broker-cert need an ssl:// broker")
		}
		return b, nil
	}
	b.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--broker-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--broker-ca %s: no PEM certificate in it", f.caFile)
		}
		b.tls.RootCAs = pool
	}
	if f.certFile != "" {
		c, err := tls.LoadX509KeyPair(f.certFile, f.certKey)
		if err != nil {
			return nil, fmt.Errorf("--broker-cert: %w", err)
		}
		b.tls.Certificates = []tls.Certificate{c}
	}
	return b, nil
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
