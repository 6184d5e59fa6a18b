package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// MetricsConfig is the [metrics] table: where latchd serves its Prometheus
// metrics (/metrics) and its health check (/healthz). docs/metrics.md
// describes both.
type MetricsConfig struct {
	// Listen is the host:port to serve on, such as "127.0.0.1:9102" (this
	// host only) or ":9102" (every interface); empty: no endpoint.
	Listen string `toml:"listen"`

	// key names Listen in errors; "" means metrics.listen.
	key string
}

// check checks the form of Listen without opening anything.
func (m MetricsConfig) check() error {
	if m.Listen == "" {
		return nil
	}
	return checkListen(m.keyName(), m.Listen, false)
}

func (m MetricsConfig) keyName() string {
	if m.key == "" {
		return "metrics.listen"
	}
	return m.key
}

// simMetrics is the simulator's [metrics] table from its -metrics flag,
// which may ask for a free port (0).
func simMetrics(addr string) (MetricsConfig, error) {
	c := MetricsConfig{Listen: addr, key: "-metrics"}
	if addr == "" {
		return c, nil
	}
	return c, checkListen(c.key, addr, true)
}

// hostName is a DNS host name (RFC 1123 labels).
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// checkListen checks the form of a listen address given by key: host:port,
// the host an IP address, a host name or empty (every interface), the port
// 1 to 65535 (or 0, a free port, when zeroPort).
func checkListen(key, addr string, zeroPort bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port, e.g. \"127.0.0.1:9102\" or \":9102\"", key, addr)
	}
	low := 1
	if zeroPort {
		low = 0
	}
	if n, err := strconv.Atoi(port); err != nil || n < low || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Errorf("%s %q: port %q: want a number from %d to 65535", key, addr, port, low)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return fmt.Errorf("%s %q: host %q: want an IP address, a host name, or nothing for every interface", key, addr, host)
	}
	return nil
}

// Health check timing.
const (
	// healthAliveEvery is how often the controller's loop reports that
	// it runs when systemd's watchdog does not ask for more often.
	healthAliveEvery = 5 * time.Second
	// healthAliveMissed is how many of those reports may be missed
	// before /healthz calls the loop stuck.
	healthAliveMissed = 3
)

// decisionReasons are the reasons of grants and denials, counted from 0
// so that a rate over any of them starts at the first scrape.
var decisionReasons = []store.Reason{
	store.ReasonGranted, store.ReasonGrantedDuress, store.ReasonUnknownCard, store.ReasonRevoked,
	store.ReasonExpired, store.ReasonNotYetValid, store.ReasonOutsideSchedule, store.ReasonWrongDoor,
	store.ReasonPINRequired, store.ReasonPINTimeout, store.ReasonBadPIN, store.ReasonLockedOut,
	store.ReasonLockdown, store.ReasonRandomUID, door.ReasonDecisionError, store.ReasonJournalFault,
}

// alarmKinds are the door's alarms, each reported 0 or 1.
var alarmKinds = []store.Reason{store.ReasonDoorForced, store.ReasonDoorHeld, store.ReasonTamper}

// decisionBuckets fit both kinds of allowlist question: a card lookup
// takes tens of microseconds, a PIN check (argon2) 100-700 ms on a Pi;
// a question unanswered after 30 s is a decision_error.
var decisionBuckets = []float64{
	25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 50e-3,
	0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1, 2.5, 10, 30,
}

// metrics is the daemon's Prometheus registry and its HTTP endpoint. The
// counters are the ones only an event can make (decisions, answers,
// reader faults); everything else is read when scraped, from the
// controller's status, the store, the journal and the MQTT client.
type metrics struct {
	d   *daemon
	log *slog.Logger
	reg *prometheus.Registry
	// now is the clock of the health check and of the allowlist's age.
	now func() time.Time

	decisions        *prometheus.CounterVec
	answers          *prometheus.HistogramVec
	readerFaults     prometheus.Counter
	readerRecoveries prometheus.Counter

	aliveAt     atomic.Int64  // UnixNano of the controller's last Alive; 0 before the first
	aliveWithin time.Duration // the loop is stuck when it has not been alive for longer

	addr string // the configured address
	key  string // its name in errors
	ln   net.Listener
	srv  *http.Server
}

// newMetrics builds the registry for d when its config asks for metrics;
// nil otherwise. Nothing listens until listen.
func newMetrics(d *daemon) *metrics {
	c := d.cfg.Metrics
	if c.Listen == "" {
		return nil
	}
	m := &metrics{
		d:    d,
		log:  d.log,
		reg:  prometheus.NewRegistry(),
		now:  time.Now,
		addr: c.Listen,
		key:  c.keyName(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_decisions_total",
			Help: "Grants and denials, by the reason of their audit event.",
		}, []string{"reason"}),
		answers: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latch_decision_duration_seconds",
			Help:    "Time from the controller asking the allowlist about a card (stage card) or a PIN (stage pin) to the answer.",
			Buckets: decisionBuckets,
		}, []string{"stage"}),
		readerFaults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_reader_faults_total",
			Help: "Card reader faults: the reader did not come up, or kept failing after the driver re-initialised it.",
		}),
		readerRecoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_reader_recoveries_total",
			Help: "Card reader recoveries after a fault.",
		}),
	}
	m.aliveWithin = healthAliveMissed * healthEvery(d.systemd.aliveEvery())
	for _, r := range decisionReasons {
		m.decisions.WithLabelValues(string(r))
	}
	m.answers.WithLabelValues("card")
	m.answers.WithLabelValues("pin")
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.decisions, m.answers, m.readerFaults, m.readerRecoveries,
		doorCollector{m},
	)
	return m
}

// Decision implements door.Meter.
func (m *metrics) Decision(r store.Reason) { m.decisions.WithLabelValues(string(r)).Inc() }

// Answered implements door.Meter.
func (m *metrics) Answered(took time.Duration, pin bool) {
	stage := "card"
	if pin {
		stage = "pin"
	}
	m.answers.WithLabelValues(stage).Observe(took.Seconds())
}

// readerHealth counts a reader fault or recovery; m may be nil.
func (m *metrics) readerHealth(ok bool) {
	switch {
	case m == nil:
	case ok:
		m.readerRecoveries.Inc()
	default:
		m.readerFaults.Inc()
	}
}

// alive notes that the controller's loop runs.
func (m *metrics) alive() { m.aliveAt.Store(m.now().UnixNano()) }

// meter is the controller's Meter: the metrics, or none.
func (d *daemon) meter() door.Meter {
	if d.metrics == nil {
		return nil
	}
	return d.metrics
}

// aliveHook is the controller's Alive: systemd's watchdog ping and the
// health check's note, either of them, both or none (nil).
func (d *daemon) aliveHook() func() {
	ping := d.systemd.aliveFunc()
	switch {
	case d.metrics == nil:
		return ping
	case ping == nil:
		return d.metrics.alive
	}
	return func() {
		ping()
		d.metrics.alive()
	}
}

// aliveEvery is how often the controller calls Alive: as systemd's
// watchdog asks (0: the controller's default) and, with metrics, at least
// every healthAliveEvery.
func (d *daemon) aliveEvery() time.Duration {
	e := d.systemd.aliveEvery()
	if d.metrics == nil {
		return e
	}
	return healthEvery(e)
}

// healthEvery is how often the controller calls Alive for the health
// check, given systemd's period (0: none).
func healthEvery(systemd time.Duration) time.Duration {
	if systemd > 0 && systemd < healthAliveEvery {
		return systemd
	}
	return healthAliveEvery
}

// problems says what /healthz finds wrong, one line each; none when the
// controller's loop ran within aliveWithin, the store is open and sound,
// and the journal writes.
func (m *metrics) problems() []string {
	var out []string
	switch at := m.aliveAt.Load(); {
	case at == 0:
		out = append(out, "door controller: not running")
	default:
		if ago := m.now().Sub(time.Unix(0, at)); ago > m.aliveWithin {
			out = append(out, fmt.Sprintf("door controller: its loop last ran %s ago (more than %s)", ago.Round(time.Millisecond), m.aliveWithin))
		}
	}
	if err := m.d.st.Fault(); err != nil {
		out = append(out, "store: "+oneLine(err.Error(), maxDetail))
	} else if _, err := m.d.st.SyncState(); err != nil {
		out = append(out, "store: cannot be read: "+oneLine(err.Error(), maxDetail))
	}
	if h := m.d.journal.Health(); !h.OK {
		out = append(out, "journal: "+oneLine(h.Detail(), maxDetail))
	}
	return out
}

// healthz serves /healthz: 200 "ok", or 503 and a line per problem.
func (m *metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	p := m.problems()
	if len(p) == 0 {
		_, _ = fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintln(w, strings.Join(p, "\n"))
}

// handler routes /metrics and /healthz.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      promLog{m.log},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	return mux
}

// promLog hands promhttp's errors (a value the store could not read) to
// the log.
type promLog struct{ log *slog.Logger }

func (p promLog) Println(v ...any) { p.log.Warn("metrics: " + fmt.Sprint(v...)) }

// listenMetrics opens the metrics endpoint's socket, after build and
// before run, so that a taken port or an address that is not this
// machine's fails the start (and is not taken for a fault of the data
// directory, as build's errors are), and says on out where it listens.
// On error the journal build opened is closed.
func (d *daemon) listenMetrics(out *printer) error {
	if d.metrics == nil {
		return nil
	}
	if err := d.metrics.listen(); err != nil {
		return errors.Join(err, d.closeJournal())
	}
	out.line("latchd: metrics on %s, health check on %s", d.metrics.url("/metrics"), d.metrics.url("/healthz"))
	return nil
}

// listen opens the endpoint's socket.
func (m *metrics) listen() error {
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", m.key, m.addr, err)
	}
	m.ln = ln
	m.srv = &http.Server{
		Handler:           m.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// url is the endpoint's URL for path, with the port it listens on; a
// host left out (every interface) is shown as localhost.
func (m *metrics) url(path string) string {
	host, port, err := net.SplitHostPort(m.ln.Addr().String())
	if err != nil {
		return "http://" + m.ln.Addr().String() + path
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}

// metricsShutdown bounds how long a stopping daemon waits for scrapes in
// flight.
const metricsShutdown = 2 * time.Second

// serve serves the endpoint until ctx ends. A failure to serve is logged:
// the door works on without its metrics.
func (m *metrics) serve(ctx context.Context) error {
	if m.srv == nil {
		return errors.New("metrics: served before listen")
	}
	served := make(chan error, 1)
	go func() { served <- m.srv.Serve(m.ln) }()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics: the endpoint stopped; the door carries on without it", "err", err)
		}
		return nil
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		_ = m.srv.Close()
	}
	<-served
	return nil
}

// doorCollector reads the door's state when scraped.
type doorCollector struct{ m *metrics }

// Descriptions of the values read when scraped.
var (
	descBuildInfo      = prometheus.NewDesc("latch_build_info", "Always 1; the version of latchd in its label.", []string{"version"}, nil)
	descHealthy        = prometheus.NewDesc("latch_healthy", "1 when /healthz answers 200: the controller's loop runs, the store is sound and the journal writes.", nil, nil)
	descRelayLocked    = prometheus.NewDesc("latch_relay_locked", "1 when the relay holds the door locked.", nil, nil)
	descDoorOpen       = prometheus.NewDesc("latch_door_open", "1 when the door contact says open (0 as long as it has not reported).", nil, nil)
	descContactKnown   = prometheus.NewDesc("latch_door_contact_known", "1 once the door contact has reported since the start.", nil, nil)
	descLockdown       = prometheus.NewDesc("latch_lockdown", "1 while the door is in lockdown.", nil, nil)
	descClockTrusted   = prometheus.NewDesc("latch_clock_trusted", "1 when the clock has been synchronised.", nil, nil)
	descReaderOK       = prometheus.NewDesc("latch_reader_ok", "1 while the card reader works.", nil, nil)
	descAlarm          = prometheus.NewDesc("latch_alarm_active", "1 while the alarm of this kind is active.", []string{"kind"}, nil)
	descStale          = prometheus.NewDesc("latch_acl_stale", "1 while the allowlist is stale: no fresh signed word from the site for mqtt.stale_after.", nil, nil)
	descJournalOK      = prometheus.NewDesc("latch_journal_ok", "1 while the journal writes; 0 while writes fail and events wait in memory.", nil, nil)
	descJournalReserve = prometheus.NewDesc("latch_journal_reserve_used", "1 while the journal writes into its reserve: the disk was full.", nil, nil)
	descJournalPending = prometheus.NewDesc("latch_journal_pending_events", "Events held in memory, not written yet.", nil, nil)
	descJournalLost    = prometheus.NewDesc("latch_journal_lost_events", "Events known lost and not yet recorded as events_lost.", nil, nil)
	descOutbox         = prometheus.NewDesc("latch_outbox_depth", "Audit entries the site has not acknowledged yet.", nil, nil)
	descACLSeq         = prometheus.NewDesc("latch_acl_seq", "The allowlist sequence applied.", nil, nil)
	descACLSigned      = prometheus.NewDesc("latch_acl_last_signed_timestamp_seconds", "When (door clock, Unix time) the last valid signed message from the site arrived; absent before the first.", nil, nil)
	descACLIssued      = prometheus.NewDesc("latch_acl_last_issued_timestamp_seconds", "The site time (Unix) that last signed message was issued at; absent before the first.", nil, nil)
	descACLAge         = prometheus.NewDesc("latch_acl_age_seconds", "Time since the last valid signed message from the site arrived: how old the door's word from the site is; absent before the first.", nil, nil)
	descMQTTConnected  = prometheus.NewDesc("latch_mqtt_connected", "1 while the door is connected to the broker and subscribed; absent without mqtt.broker.", nil, nil)
	descMQTTConnects   = prometheus.NewDesc("latch_mqtt_connects_total", "Broker sessions established.", nil, nil)
	descMQTTDisconn    = prometheus.NewDesc("latch_mqtt_disconnects_total", "Broker sessions lost.", nil, nil)
	descMQTTSiteSeq    = prometheus.NewDesc("latch_mqtt_site_seq", "The highest allowlist sequence the site is known to have.", nil, nil)
	descMQTTRejected   = prometheus.NewDesc("latch_mqtt_rejected_total", "Allowlist, heartbeat and acknowledgement messages refused.", nil, nil)
	descMQTTCmdOK      = prometheus.NewDesc("latch_mqtt_commands_applied_total", "Signed commands carried out.", nil, nil)
	descMQTTCmdRefused = prometheus.NewDesc("latch_mqtt_commands_rejected_total", "Commands refused.", nil, nil)
	descMQTTDropped    = prometheus.NewDesc("latch_mqtt_dropped_total", "Inbound messages dropped because the client was busy.", nil, nil)
)

// Describe implements prometheus.Collector.
func (doorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descBuildInfo, descHealthy, descRelayLocked, descDoorOpen, descContactKnown, descLockdown, descClockTrusted,
		descReaderOK, descAlarm, descStale, descJournalOK, descJournalReserve, descJournalPending, descJournalLost,
		descOutbox, descACLSeq, descACLSigned, descACLIssued, descACLAge, descMQTTConnected, descMQTTConnects,
		descMQTTDisconn, descMQTTSiteSeq, descMQTTRejected, descMQTTCmdOK, descMQTTCmdRefused, descMQTTDropped,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the controller's
// status, the store, the journal and the MQTT client.
func (c doorCollector) Collect(ch chan<- prometheus.Metric) {
	m, d := c.m, c.m.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge(descBuildInfo, 1, buildVersion())
	gauge(descHealthy, bit(len(m.problems()) == 0))

	s := d.ctrl.Status()
	gauge(descRelayLocked, bit(s.Locked))
	gauge(descDoorOpen, bit(s.ContactKnown && s.Open))
	gauge(descContactKnown, bit(s.ContactKnown))
	gauge(descLockdown, bit(s.Lockdown))
	gauge(descClockTrusted, bit(s.ClockTrusted))
	gauge(descReaderOK, bit(s.ReaderOK))
	gauge(descStale, bit(s.Stale))
	for _, k := range alarmKinds {
		gauge(descAlarm, bit(slices.Contains(s.Alarms, k)), string(k))
	}
	for _, k := range s.Alarms {
		if !slices.Contains(alarmKinds, k) {
			gauge(descAlarm, 1, string(k))
		}
	}

	h := d.journal.Health()
	gauge(descJournalOK, bit(h.OK))
	gauge(descJournalReserve, bit(h.Reserve))
	gauge(descJournalPending, float64(h.Pending))
	gauge(descJournalLost, float64(h.Lost))

	if n, err := d.st.OutboxDepth(); err != nil {
		ch <- prometheus.NewInvalidMetric(descOutbox, fmt.Errorf("outbox depth: %w", err))
	} else {
		gauge(descOutbox, float64(n))
	}
	if ss, err := d.st.SyncState(); err != nil {
		ch <- prometheus.NewInvalidMetric(descACLSeq, fmt.Errorf("sync state: %w", err))
	} else {
		gauge(descACLSeq, float64(ss.AppliedSeq))
		if !ss.LastSignedAt.IsZero() {
			gauge(descACLSigned, unixSeconds(ss.LastSignedAt))
			gauge(descACLAge, max(m.now().Sub(ss.LastSignedAt).Seconds(), 0))
		}
		if !ss.LastIssuedAt.IsZero() {
			gauge(descACLIssued, unixSeconds(ss.LastIssuedAt))
		}
	}

	if d.client == nil {
		return
	}
	ms := d.client.Stats()
	gauge(descMQTTConnected, bit(ms.Connected))
	counter(descMQTTConnects, ms.Connects)
	counter(descMQTTDisconn, ms.Disconnects)
	gauge(descMQTTSiteSeq, float64(ms.SiteSeq))
	counter(descMQTTRejected, ms.ACLRejected)
	counter(descMQTTCmdOK, ms.CommandsApplied)
	counter(descMQTTCmdRefused, ms.CommandsRejected)
	counter(descMQTTDropped, ms.Dropped)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
