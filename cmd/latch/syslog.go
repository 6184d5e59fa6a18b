package main

// Syslog output of collected events, RFC 5424.
//
// How serve wires it: cmdServe's flag --syslog URL (udp://HOST:PORT,
// tcp://HOST:PORT or unix:///dev/log, ?facility=auth or authpriv) makes
// the forwarder with newSyslogForwarder(url, the host's name, "latch",
// log), a bad URL being a usage error (exit 2), and serve runs fw.Run(ctx,
// db) in a goroutine of its own once the database is open. Run returns
// when ctx ends; serve waits for it before it closes the database. The
// forwarder starts at the last event stored when it starts and sends
// every event stored after it, in the order stored.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

const (
	// syslogPoll is how often the forwarder looks for new events.
	syslogPoll = time.Second
	// syslogBackoffMin and syslogBackoffMax bound the wait between two
	// attempts to reach the receiver; it doubles from one to the other.
	syslogBackoffMin = 500 * time.Millisecond
	syslogBackoffMax = 30 * time.Second
	// syslogTimeout bounds a connect and a write.
	syslogTimeout = 10 * time.Second
	// syslogUDPMax is the largest datagram sent over UDP: RFC 5426 says
	// receivers should take 2048 octets. A longer message is cut.
	syslogUDPMax = 2048
	// syslogSDID names the structured data element; 32473 is the
	// enterprise number RFC 5612 sets aside for examples and
	// documentation.
	syslogSDID = "latch@32473"
	// Facilities and severities of RFC 5424.
	facilityAuth     = 4
	facilityAuthPriv = 10
	severityWarning  = 4
	severityNotice   = 5
)

// syslogTarget is where syslog messages go.
type syslogTarget struct {
	network  string // "udp", "tcp" or "unixgram"
	addr     string // HOST:PORT, or the socket's path
	facility int    // facilityAuth or facilityAuthPriv
}

// String is the target as a URL, as parseSyslogURL reads it.
func (t syslogTarget) String() string {
	f := "authpriv"
	if t.facility == facilityAuth {
		f = "auth"
	}
	u := url.URL{Scheme: t.network, Host: t.addr, RawQuery: "facility=" + f}
	if t.network == "unixgram" {
		u.Scheme, u.Host, u.Path = "unix", "", t.addr
	}
	return u.String()
}

// parseSyslogURL reads a syslog URL strictly: udp://HOST:PORT,
// tcp://HOST:PORT or unix:///PATH (a datagram socket such as /dev/log),
// with an optional ?facility=auth or ?facility=authpriv (the default: the
// events name people and their cards). Anything else is refused.
func parseSyslogURL(s string) (syslogTarget, error) {
	t := syslogTarget{facility: facilityAuthPriv}
	bad := func(format string, args ...any) (syslogTarget, error) {
		return syslogTarget{}, fmt.Errorf("syslog URL %q: %s; want udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH, and optionally ?facility=auth or authpriv",
			s, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("%v", errors.Unwrap(err))
	}
	switch {
	case u.Opaque != "":
		return bad("no // after the scheme")
	case u.User != nil:
		return bad("it names a user")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return bad("it has a fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("its query: %v", err)
	}
	for k, v := range q {
		switch {
		case k != "facility":
			return bad("unknown parameter %q", k)
		case len(v) != 1:
			return bad("facility given %d times", len(v))
		case v[0] == "auth":
			t.facility = facilityAuth
		case v[0] != "authpriv":
			return bad("facility %q: want auth or authpriv", v[0])
		}
	}
	switch u.Scheme {
	case "udp", "tcp":
		if u.Path != "" {
			return bad("a %s address has no path", u.Scheme)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return bad("want HOST:PORT after %s://", u.Scheme)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return bad("port %q: want 1 to 65535", port)
		}
		t.network, t.addr = u.Scheme, u.Host
	case "unix":
		if u.Host != "" {
			return bad("a unix socket has no host (three slashes: unix:///dev/log)")
		}
		if !path.IsAbs(u.Path) || path.Clean(u.Path) != u.Path {
			return bad("want an absolute, clean path")
		}
		t.network, t.addr = "unixgram", u.Path
	default:
		return bad("scheme %q", u.Scheme)
	}
	return t, nil
}

// syslogForwarder sends each collected event to a syslog receiver as one
// RFC 5424 message: PRI of the auth or authpriv facility, severity notice
// for the ordinary run of things and warning for a refusal or an alarm;
// the door's time of the event; structured data naming door, seq, type,
// reason, card UID, holder and arrival cursor; the event in people's words
// as MSG. Over TCP messages are octet-counted (RFC 6587). A failed write
// closes the connection and the message is sent again on a new one,
// after a wait that doubles up to syslogBackoffMax, until it goes through.
type syslogForwarder struct {
	target   syslogTarget
	hostname string // HOSTNAME: the site service's host
	app      string // APP-NAME
	log      *slog.Logger

	clock pollClock                                        // when to look for new events; nil: every syslogPoll
	dial  func(ctx context.Context) (net.Conn, error)      // connects to the target
	sleep func(ctx context.Context, d time.Duration) error // waits d, or until ctx ends

	conn net.Conn // nil until connected
}

// newSyslogForwarder returns a forwarder to the syslog URL (see
// parseSyslogURL), naming hostname and app in its messages.
func newSyslogForwarder(rawURL, hostname, app string, log *slog.Logger) (*syslogForwarder, error) {
	t, err := parseSyslogURL(rawURL)
	if err != nil {
		return nil, err
	}
	if hostname == "" {
		hostname = "-"
	}
	if !printASCII(hostname, 255) {
		return nil, fmt.Errorf("syslog: hostname %q: want 1 to 255 printable ASCII characters", hostname)
	}
	if !printASCII(app, 48) {
		return nil, fmt.Errorf("syslog: app name %q: want 1 to 48 printable ASCII characters", app)
	}
	f := &syslogForwarder{target: t, hostname: hostname, app: app, log: log}
	f.dial = func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: syslogTimeout}
		return d.DialContext(ctx, t.network, t.addr)
	}
	f.sleep = func(ctx context.Context, d time.Duration) error {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tm.C:
			return nil
		}
	}
	return f, nil
}

// printASCII reports whether s is 1 to max characters of RFC 5424's
// PRINTUSASCII.
func printASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// Run sends every event stored after it starts, in the order stored,
// until ctx ends; then it closes its connection and returns nil. It
// returns early only if the database fails.
func (f *syslogForwarder) Run(ctx context.Context, db *site.DB) error {
	end, err := db.ArrivalEnd()
	if err != nil {
		return fmt.Errorf("syslog: %w", err)
	}
	ticks, stop := f.clock.start(syslogPoll)
	defer stop()
	defer f.close()
	f.log.Info("syslog output started", "to", f.target, "after_cursor", end)
	s := arrivalStream{db: db, after: end, ticks: ticks}
	err = s.run(ctx, func(as []site.Arrival) error {
		f.checkConn()
		for i := range as {
			if err := f.send(ctx, f.message(&as[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("syslog: %w", err)
}

// send writes one message, connecting first if need be. On a failure it
// closes the connection, waits, connects again and writes the message
// again, until it is written or ctx ends.
func (f *syslogForwarder) send(ctx context.Context, msg []byte) error {
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		err := f.write(ctx, msg)
		if err == nil {
			if attempt > 1 {
				f.log.Info("syslog output restored", "to", f.target, "attempts", attempt)
			}
			return nil
		}
		f.close()
		if attempt == 1 {
			f.log.Warn("syslog output failed; retrying", "to", f.target, "err", err)
		}
		wait = min(max(2*wait, syslogBackoffMin), syslogBackoffMax)
		if err := f.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func (f *syslogForwarder) write(ctx context.Context, msg []byte) error {
	if f.conn == nil {
		c, err := f.dial(ctx)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		f.conn = c
	}
	if err := f.conn.SetWriteDeadline(time.Now().Add(syslogTimeout)); err != nil {
		return err
	}
	_, err := f.conn.Write(msg)
	return err
}

// checkConn closes a TCP connection its receiver has closed. A syslog
// receiver sends nothing, so a read that does not time out means the
// connection ended; without this look the first message written after the
// receiver closed would be lost, since a write to a closed connection
// fails only at the next one.
func (f *syslogForwarder) checkConn() {
	if f.conn == nil || f.target.network != "tcp" {
		return
	}
	if err := f.conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		f.close()
		return
	}
	var b [64]byte
	_, err := f.conn.Read(b[:])
	if err != nil && !isTimeout(err) {
		f.log.Info("syslog receiver closed the connection; connecting again", "to", f.target, "err", err)
		f.close()
	}
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

func (f *syslogForwarder) close() {
	if f.conn != nil {
		_ = f.conn.Close()
		f.conn = nil
	}
}

// syslogSeverity is warning for a refusal (an access event that is not a
// plain grant) and for an alarm (store.Reason.Alarm), else notice.
func syslogSeverity(e *store.Event) int {
	if e.Reason.Alarm() || (e.Type == store.TypeAccess && e.Reason != store.ReasonGranted) {
		return severityWarning
	}
	return severityNotice
}

// message is the RFC 5424 message of an arrival, framed for the target's
// transport.
func (f *syslogForwarder) message(a *site.Arrival) []byte {
	e := &a.Event
	var b bytes.Buffer
	ts := "-"
	if y := e.Time.UTC().Year(); y >= 1 && y <= 9999 {
		ts = e.Time.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	msgID := string(e.Type)
	if !printASCII(msgID, 32) {
		msgID = "-"
	}
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s [%s", f.target.facility*8+syslogSeverity(e), ts, f.hostname, f.app, msgID, syslogSDID)
	for _, p := range [...]struct{ k, v string }{
		{"door", a.Door}, {"seq", strconv.FormatUint(e.Seq, 10)}, {"type", string(e.Type)}, {"reason", string(e.Reason)},
		{"uid", e.UID}, {"holder", e.Holder}, {"cursor", strconv.FormatUint(a.Cursor, 10)},
	} {
		if p.v != "" {
			fmt.Fprintf(&b, " %s=\"%s\"", p.k, sdEscape(p.v))
		}
	}
	b.WriteString("] \uFEFF")
	b.WriteString(eventText(a.Door, e))
	msg := b.Bytes()
	switch f.target.network {
	case "udp":
		if len(msg) > syslogUDPMax {
			msg = msg[:syslogUDPMax]
			for !utf8.Valid(msg) {
				msg = msg[:len(msg)-1]
			}
		}
	case "tcp":
		msg = append(strconv.AppendInt(nil, int64(len(msg)), 10), append([]byte{' '}, msg...)...)
	}
	return msg
}

// sdEscape makes s a PARAM-VALUE: valid UTF-8, with '"', '\' and ']'
// escaped by a backslash.
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(strings.ToValidUTF8(s, "\uFFFD"))
}
