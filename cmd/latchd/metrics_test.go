package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
	"github.com/latchdoor/latch/store"
)

// get fetches url over loopback and returns the status code and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: hangGuard}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// wantLines checks that the exposition text has each of the lines.
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	have := strings.Split(text, "\n")
	for _, l := range lines {
		if !slices.Contains(have, l) {
			t.Errorf("no line %q in /metrics", l)
		}
	}
}

// The simulator serves /metrics and /healthz on the -metrics address: a
// grant (card, then PIN: two allowlist questions) and a denial (one)
// show in the counters and the latency histogram, and the gauges read
// the door's connection, outbox and allowlist.
func TestSimMetrics(t *testing.T) {
	sim := startSim(t, "-metrics", "127.0.0.1:0")
	line := sim.out.next("the metrics URL", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "latchd: metrics on ")
	})["msg"].(string)
	url := regexp.MustCompile(`^latchd: metrics on (http://127\.0\.0\.1:[0-9]+/metrics), health check on (http://127\.0\.0\.1:[0-9]+/healthz)$`).FindStringSubmatch(line)
	if url == nil {
		t.Fatalf("metrics line %q", line)
	}
	sim.out.next("the demo hint", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "latchd: try:")
	})

	sim.send("tap 04A1B2C3D4E5F6")
	sim.send("key 1234#")
	sim.out.event("granted")
	sim.out.relay("unlocked") // the grant is counted before the relay moves
	sim.send("remove")
	sim.send("tap 01020304")
	sim.out.event("unknown_card")
	sim.send("remove")
	sim.status("the site's acknowledgements and the broker", func(s string) bool {
		return field(s, "outbox") == "0" && field(s, "mqtt") == "connected" && field(s, "acl_seq") == "1"
	})

	code, text := get(t, url[1])
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, text)
	}
	wantLines(t, text,
		`latch_decisions_total{reason="granted"} 1`,
		`latch_decisions_total{reason="unknown_card"} 1`,
		`latch_decisions_total{reason="bad_pin"} 0`,
		`latch_decision_duration_seconds_count{stage="card"} 2`,
		`latch_decision_duration_seconds_count{stage="pin"} 1`,
		`latch_decision_duration_seconds_bucket{stage="card",le="30"} 2`,
		`latch_mqtt_connected 1`,
		`latch_mqtt_connects_total 1`,
		`latch_outbox_depth 0`,
		`latch_acl_seq 1`,
		`latch_acl_stale 0`,
		`latch_journal_ok 1`,
		`latch_journal_pending_events 0`,
		`latch_reader_ok 1`,
		`latch_reader_faults_total 0`,
		`latch_lockdown 0`,
		`latch_alarm_active{kind="door_forced"} 0`,
		`latch_healthy 1`,
	)
	for _, prefix := range []string{"latch_acl_age_seconds ", "go_goroutines ", "process_resident_memory_bytes ", "latch_relay_locked "} {
		if !strings.Contains(text, "\n"+prefix) {
			t.Errorf("no %s in /metrics", strings.TrimSpace(prefix))
		}
	}

	if code, body := get(t, url[2]); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	sim.quit()
}

// manualNow is a clock the test moves.
type manualNow struct{ ns atomic.Int64 }

func newManualNow(t time.Time) *manualNow {
	c := &manualNow{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *manualNow) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *manualNow) advance(d time.Duration) { c.ns.Add(int64(d)) }

// wantHealth checks what /healthz answers.
func wantHealth(t *testing.T, m *metrics, code int, body string) {
	t.Helper()
	if c, b := get(t, m.url("/healthz")); c != code || b != body {
		t.Fatalf("/healthz: %d %q, want %d %q", c, b, code, body)
	}
}

// /healthz is 200 "ok" only while the controller's Alive hook ran within
// its bound, the store is open and the journal writes; otherwise 503 and
// a line per problem. The clock is the test's, and the loop does not run:
// the test calls the hook the controller would.
func TestMetricsHealthz(t *testing.T) {
	td := newTestDoor(t, func(d *daemon) { d.cfg.Metrics.Listen = "127.0.0.1:0" })
	m := td.d.metrics
	if err := m.listen(); err != nil {
		t.Fatal(err)
	}
	clock := newManualNow(time.Date(2026, 11, 5, 9, 0, 0, 0, time.UTC))
	m.now = clock.now
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	wantHealth(t, m, http.StatusServiceUnavailable, "door controller: not running\n")
	alive := td.d.aliveHook()
	alive()
	wantHealth(t, m, http.StatusOK, "ok\n")
	if m.aliveWithin != 15*time.Second {
		t.Errorf("bound %s, want 3 × 5s", m.aliveWithin)
	}
	clock.advance(m.aliveWithin)
	wantHealth(t, m, http.StatusOK, "ok\n")
	clock.advance(time.Millisecond)
	wantHealth(t, m, http.StatusServiceUnavailable, "door controller: its loop last ran 15.001s ago (more than 15s)\n")
	alive()
	wantHealth(t, m, http.StatusOK, "ok\n")

	// The store closed under the journal: the journal's next write fails.
	changed := td.d.journal.HealthChanges()
	if err := td.d.st.Close(); err != nil {
		t.Fatal(err)
	}
	td.d.journal.Add(store.JournalEntry{Events: []store.Event{{Time: clock.now(), Door: "front", Type: store.TypeSystem, Reason: store.ReasonStarted}}})
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for td.d.journal.Health().OK {
		select {
		case <-changed:
			changed = td.d.journal.HealthChanges()
		case <-guard.C:
			t.Fatal("the journal never reported the failed write")
		}
	}
	code, body := get(t, m.url("/healthz"))
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if code != http.StatusServiceUnavailable || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "store: cannot be read: ") || !strings.HasPrefix(lines[1], "journal: fault: ") {
		t.Fatalf("/healthz: %d %q, want 503 with the store and the journal", code, body)
	}
	_, text := get(t, m.url("/metrics"))
	wantLines(t, text, "latch_journal_ok 0", "latch_healthy 0")
	if strings.Contains(text, "\nlatch_outbox_depth ") {
		t.Error("an outbox depth from a closed store")
	}
	_ = td.d.closeJournal() // it cannot write: a closed store
}

// The controller's Alive period: systemd's alone without metrics (a
// 30 s watchdog is pinged every 15 s); with metrics at most 5 s, and
// systemd's when that is shorter.
func TestAliveEvery(t *testing.T) {
	for _, tc := range []struct {
		systemd, without, with time.Duration
	}{
		{0, 0, 5 * time.Second},
		{15 * time.Second, 15 * time.Second, 5 * time.Second},
		{2 * time.Second, 2 * time.Second, 2 * time.Second},
	} {
		nt := &notifier{on: true, watchdog: 2 * tc.systemd}
		d := &daemon{systemd: nt, cfg: &Config{}}
		if got := d.aliveEvery(); got != tc.without {
			t.Errorf("watchdog %s without metrics: every %s, want %s", nt.watchdog, got, tc.without)
		}
		d.cfg.Metrics.Listen = "127.0.0.1:0"
		d.log = slog.New(slog.DiscardHandler)
		d.metrics = newMetrics(d)
		if got := d.aliveEvery(); got != tc.with {
			t.Errorf("watchdog %s with metrics: every %s, want %s", nt.watchdog, got, tc.with)
		}
		if d.metrics.aliveWithin != 3*tc.with {
			t.Errorf("watchdog %s: stuck after %s, want %s", nt.watchdog, d.metrics.aliveWithin, 3*tc.with)
		}
	}
}

// A taken port fails the start with an error naming the key.
func TestMetricsListenTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	d := &daemon{cfg: &Config{Metrics: MetricsConfig{Listen: addr}}, log: slog.New(slog.DiscardHandler)}
	err = newMetrics(d).listen()
	if err == nil || !strings.HasPrefix(err.Error(), `metrics.listen "`+addr+`": listen tcp`) {
		t.Fatalf("error %v, want metrics.listen and the listen error", err)
	}

	code, _, stderr := runArgs(t, "-sim", "-data", t.TempDir(), "-broker-addr", "127.0.0.1:0", "-metrics", addr)
	if code != 1 || !strings.Contains(stderr, `-metrics "`+addr+`": listen tcp`) {
		t.Fatalf("exit %d, stderr %q, want 1 and the -metrics address", code, stderr)
	}
}

// -metrics is the simulator's; its address is checked for its form, and a
// free port (0) is allowed.
func TestMetricsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-config", "door.toml", "-metrics", ":9102"}, 2, "-metrics is for -sim; a door sets listen in the [metrics] table"},
		{[]string{"-sim", "-data", t.TempDir(), "-metrics", "127.0.0.1"}, 1, `-metrics "127.0.0.1": want host:port`},
		{[]string{"-sim", "-data", t.TempDir(), "-metrics", "127.0.0.1:70000"}, 1, `-metrics "127.0.0.1:70000": port "70000": want a number from 0 to 65535`},
	} {
		code, _, stderr := runArgs(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// The emulated PN532 unplugged, then plugged again: the tracker's fault
// and recovery reach the counters and the reader gauge.
func TestMetricsReaderFaults(t *testing.T) {
	track := make(chan pn532.TrackEvent, 64)
	td := newTestDoor(t, func(d *daemon) {
		d.cfg.Metrics.Listen = "127.0.0.1:0"
		d.onTrack = func(ev pn532.TrackEvent) { track <- ev }
	})
	out, err := newPrinter(io.Discard, "text")
	if err != nil {
		t.Fatal(err)
	}
	if err := td.d.listenMetrics(out); err != nil {
		t.Fatal(err)
	}
	td.start()
	url := td.d.metrics.url("/metrics")
	await := func(what string, match func(pn532.TrackEvent) bool) {
		t.Helper()
		guard := time.NewTimer(hangGuard)
		defer guard.Stop()
		for {
			select {
			case ev := <-track:
				if match(ev) {
					return
				}
			case <-guard.C:
				t.Fatalf("no %s from the reader", what)
			}
		}
	}
	// A card seen shows that the reader is up and polled.
	if err := td.sim.chip.Present(pn532test.Card{UID: []byte{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	await("the card", func(ev pn532.TrackEvent) bool { _, ok := ev.(pn532.Presented); return ok })
	td.sim.chip.Unplug(0xff)
	await("fault", func(ev pn532.TrackEvent) bool { _, ok := ev.(pn532.Fault); return ok })
	td.status("the reader fault", func(s mqtt.DoorStatus) bool { return !s.Reader.OK })
	_, text := get(t, url)
	wantLines(t, text, "latch_reader_faults_total 1", "latch_reader_recoveries_total 0", "latch_reader_ok 0")
	td.sim.chip.Plug()
	await("recovery", func(ev pn532.TrackEvent) bool { _, ok := ev.(pn532.Recovered); return ok })
	td.status("the reader back", func(s mqtt.DoorStatus) bool { return s.Reader.OK })
	_, text = get(t, url)
	wantLines(t, text, "latch_reader_faults_total 1", "latch_reader_recoveries_total 1", "latch_reader_ok 1")
	if err := td.stop(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMetricsScrape is one scrape of /metrics over loopback from a
// running door, as Prometheus makes it: the time per scrape and the size
// of the (uncompressed) exposition.
func BenchmarkMetricsScrape(b *testing.B) {
	td := newTestDoor(b, func(d *daemon) { d.cfg.Metrics.Listen = "127.0.0.1:0" })
	out, err := newPrinter(io.Discard, "text")
	if err != nil {
		b.Fatal(err)
	}
	if err := td.d.listenMetrics(out); err != nil {
		b.Fatal(err)
	}
	td.start()
	url := td.d.metrics.url("/metrics")
	cl := &http.Client{Timeout: hangGuard}
	var size int64
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("scrape: %d, %v", resp.StatusCode, err)
		}
		size = n
	}
	b.ReportMetric(float64(size), "bytes/scrape")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/scrape")
}
