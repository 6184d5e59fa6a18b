package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// syslogRun is a forwarder running against a database the test holds,
// on a poll clock the test ticks.
type syslogRun struct {
	db    *site.DB
	fw    *syslogForwarder
	ticks chan time.Time
	logs  chan string
}

func startSyslog(t *testing.T, rawURL string, edit func(*syslogForwarder)) *syslogRun {
	t.Helper()
	db, err := site.Open(filepath.Join(t.TempDir(), "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &syslogRun{db: db, ticks: make(chan time.Time), logs: make(chan string, 1000)}
	log := slog.New(slog.NewTextHandler(logLines(r.logs), nil))
	r.fw, err = newSyslogForwarder(rawURL, "site1", "latch", log)
	if err != nil {
		t.Fatal(err)
	}
	r.fw.clock = func() (<-chan time.Time, func()) { return r.ticks, func() {} }
	if edit != nil {
		edit(r.fw)
	}
	// Events stored before Run starts are not sent.
	addEvents(t, db, "front", doorEvents(t, "front", 1, 2, zeroHash, t0)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.fw.Run(ctx, db) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		db.Close()
	})
	r.tick(t) // Run has read where to start
	return r
}

func (r *syslogRun) tick(t *testing.T) {
	t.Helper()
	sendTick(t, r.ticks)
}

// events stores front's events 3 onwards: a grant, a refusal, a forced
// door, and a grant whose detail needs escaping.
func syslogEvents(t *testing.T) []store.Event {
	evs := doorEvents(t, "front", 1, 6, zeroHash, t0)[2:]
	evs[1].Reason, evs[1].HolderName = store.ReasonRevoked, ""
	evs[2].Type, evs[2].Reason, evs[2].UID, evs[2].Holder, evs[2].HolderName = store.TypeDoor, store.ReasonDoorForced, "", "", ""
	evs[3].Detail = "a \"quoted\" ]word[\nnext line"
	rehash(t, evs, doorEvents(t, "front", 1, 2, zeroHash, t0)[1].Hash)
	return evs
}

// wantSyslog is the message of front's event seq at cursor, with pri and
// the MSG text given.
func wantSyslog(pri int, e store.Event, cursor uint64, sd, text string) string {
	return fmt.Sprintf("<%d>1 %s site1 latch - %s [latch@32473 door=\"front\" seq=\"%d\" type=\"%s\" reason=\"%s\"%s cursor=\"%d\"] \uFEFF%s",
		pri, e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), e.Type, e.Seq, e.Type, e.Reason, sd, cursor, text)
}

func wantSyslogAll(fac int, evs []store.Event) []string {
	return []string{
		wantSyslog(fac*8+5, evs[0], 3, ` uid="04A1B2C3" holder="alice"`, `#3 access granted door=front uid=04A1B2C3 holder=alice name="ALICE"`),
		wantSyslog(fac*8+4, evs[1], 4, ` uid="04B0B0B0" holder="bob"`, `#4 access revoked door=front uid=04B0B0B0 holder=bob`),
		wantSyslog(fac*8+4, evs[2], 5, ``, `#5 door door_forced door=front`),
		wantSyslog(fac*8+5, evs[3], 6, ` uid="04B0B0B0" holder="bob"`, `#6 access granted door=front uid=04B0B0B0 holder=bob name="BOB" detail="a \"quoted\" ]word[\nnext line"`),
	}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := startSyslog(t, "udp://"+pc.LocalAddr().String(), nil)
	evs := syslogEvents(t)
	addEvents(t, r.db, "front", evs...)
	r.tick(t)
	if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for i, want := range wantSyslogAll(facilityAuthPriv, evs) {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != want {
			t.Errorf("datagram %d:\n%q\nwant\n%q", i, got, want)
		}
	}
}

// readFrame reads one octet-counted message.
func readFrame(br *bufio.Reader) (string, error) {
	n, err := br.ReadString(' ')
	if err != nil {
		return "", err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil {
		return "", fmt.Errorf("frame length %q: %w", n, err)
	}
	b := make([]byte, size)
	_, err = io.ReadFull(br, b)
	return string(b), err
}

// Over TCP: octet counting, and a receiver that closes the connection
// gets the next message on a new one, none lost or sent twice.
func TestSyslogTCPReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := startSyslog(t, "tcp://"+ln.Addr().String()+"?facility=auth", nil)
	evs := syslogEvents(t)
	want := wantSyslogAll(facilityAuth, evs)
	addEvents(t, r.db, "front", evs[:2]...)
	r.tick(t)
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c1)
	for i := range 2 {
		if got, err := readFrame(br); err != nil || got != want[i] {
			t.Fatalf("message %d: %q, %v\nwant %q", i, got, err, want[i])
		}
	}
	c1.Close()

	addEvents(t, r.db, "front", evs[2:]...)
	r.tick(t)
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br = bufio.NewReader(c2)
	for i := 2; i < 4; i++ {
		if got, err := readFrame(br); err != nil || got != want[i] {
			t.Fatalf("message %d on the new connection: %q, %v\nwant %q", i, got, err, want[i])
		}
	}
}

// A receiver that cannot be reached is tried again after waits that
// double; the message goes through once it can.
func TestSyslogBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var waits []time.Duration
	fails := 3
	r := startSyslog(t, "tcp://"+ln.Addr().String(), func(f *syslogForwarder) {
		dial := f.dial
		f.dial = func(ctx context.Context) (net.Conn, error) {
			if fails > 0 {
				fails--
				return nil, errors.New("connection refused")
			}
			return dial(ctx)
		}
		f.sleep = func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			return nil
		}
	})
	evs := syslogEvents(t)
	addEvents(t, r.db, "front", evs[0])
	r.tick(t)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := readFrame(bufio.NewReader(c)); err != nil || got != wantSyslogAll(facilityAuthPriv, evs)[0] {
		t.Fatalf("message: %q, %v", got, err)
	}
	r.tick(t) // the forwarder is past the sleeps
	if fmt.Sprint(waits) != "[500ms 1s 2s]" {
		t.Errorf("waits %v, want [500ms 1s 2s]", waits)
	}
	var warned, restored int
	for len(r.logs) > 0 {
		l := <-r.logs
		if strings.Contains(l, "syslog output failed; retrying") {
			warned++
		}
		if strings.Contains(l, "syslog output restored") && strings.Contains(l, "attempts=4") {
			restored++
		}
	}
	if warned != 1 || restored != 1 {
		t.Errorf("logged %d warnings and %d restorations, want 1 and 1", warned, restored)
	}
}

func TestSyslogUnixDatagram(t *testing.T) {
	dir, err := os.MkdirTemp("", "sl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "log")
	pc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := startSyslog(t, "unix://"+sock, nil)
	evs := syslogEvents(t)
	addEvents(t, r.db, "front", evs[0])
	r.tick(t)
	if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != wantSyslogAll(facilityAuthPriv, evs)[0] {
		t.Errorf("datagram %q, %v", buf[:n], err)
	}
}

// A message over UDP is cut to 2048 bytes, on a character boundary; an
// event's odd fields cannot break the header or the structured data.
func TestSyslogMessageLimits(t *testing.T) {
	f, err := newSyslogForwarder("udp://127.0.0.1:514", "site1", "latch", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e := doorEvents(t, "front", 1, 1, zeroHash, t0)[0]
	e.Detail = strings.Repeat("é", 3000)
	e.Type = "bad type"
	e.Holder = `x"]\y`
	msg := f.message(&site.Arrival{Cursor: 9, Door: "front", Event: e})
	if len(msg) > syslogUDPMax || len(msg) < syslogUDPMax-1 || !utf8.Valid(msg) {
		t.Errorf("message of %d bytes, valid UTF-8 %v", len(msg), utf8.Valid(msg))
	}
	if !strings.Contains(string(msg), ` - - [latch@32473 `) || !strings.Contains(string(msg), ` holder="x\"\]\\y" `) {
		t.Errorf("message %.200q", msg)
	}
	e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if msg := f.message(&site.Arrival{Cursor: 9, Door: "front", Event: e}); !strings.HasPrefix(string(msg), "<85>1 - site1 ") {
		t.Errorf("a time beyond RFC 5424's years: %.40q", msg)
	}
	for _, tc := range []struct{ host, app, want string }{
		{"site 1", "latch", "hostname"},
		{"site1", "", "app name"},
		{"site1", strings.Repeat("a", 49), "app name"},
	} {
		if _, err := newSyslogForwarder("udp://127.0.0.1:514", tc.host, tc.app, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("host %q app %q: %v", tc.host, tc.app, err)
		}
	}
}

func TestParseSyslogURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want syslogTarget
	}{
		{"udp://127.0.0.1:514", syslogTarget{"udp", "127.0.0.1:514", facilityAuthPriv}},
		{"tcp://logs.example.com:6514?facility=auth", syslogTarget{"tcp", "logs.example.com:6514", facilityAuth}},
		{"udp://[::1]:514?facility=authpriv", syslogTarget{"udp", "[::1]:514", facilityAuthPriv}},
		{"unix:///dev/log", syslogTarget{"unixgram", "/dev/log", facilityAuthPriv}},
	} {
		got, err := parseSyslogURL(tc.url)
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
	for url, want := range map[string]string{
		"":                                    `scheme ""`,
		"127.0.0.1:514":                       "want udp://HOST:PORT",
		"http://127.0.0.1:514":                `scheme "http"`,
		"udp://127.0.0.1":                     "want HOST:PORT",
		"udp://:514":                          "want HOST:PORT",
		"udp://127.0.0.1:0":                   `port "0"`,
		"udp://127.0.0.1:65536":               `port "65536"`,
		"udp://127.0.0.1:514/x":               "has no path",
		"tcp://u:p@127.0.0.1:514":             "names a user",
		"tcp://127.0.0.1:514#x":               "fragment",
		"tcp://127.0.0.1:514?fac=auth":        `unknown parameter "fac"`,
		"tcp://127.0.0.1:514?facility=":       `facility "": want auth or authpriv`,
		"tcp://127.0.0.1:514?facility=local0": `facility "local0"`,
		"tcp://127.0.0.1:514?facility=auth&facility=auth": "given 2 times",
		"unix://dev/log":       "has no host",
		"unix:dev/log":         "no // after the scheme",
		"unix:///dev/../log":   "clean path",
		"unix://":              "absolute",
		"udp://127.0.0.1:514%": "",
	} {
		_, err := parseSyslogURL(url)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "syslog URL") {
			t.Errorf("%q: %v, want an error with %q", url, err, want)
		}
	}
}

func FuzzParseSyslogURL(f *testing.F) {
	for _, s := range []string{"udp://127.0.0.1:514", "tcp://h:1?facility=auth", "unix:///dev/log", "unix:///a/../b",
		"udp://[::1]:514", "udp://[fe80::1%25eth0]:514", "tcp://h:0", "tcp://h:1?facility=auth&facility=x", "udp://u@h:1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseSyslogURL(s)
		if err != nil {
			return
		}
		if (tg.network != "udp" && tg.network != "tcp" && tg.network != "unixgram") || tg.addr == "" ||
			(tg.facility != facilityAuth && tg.facility != facilityAuthPriv) {
			t.Fatalf("%q accepted as %+v", s, tg)
		}
		again, err := parseSyslogURL(tg.String())
		if err != nil || again != tg {
			t.Fatalf("round trip of %q (%+v): %+v, %v", s, tg, again, err)
		}
	})
}
