package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store/site"
)

// smtpServer is a small SMTP server on loopback that offers STARTTLS with
// the test's certificate and hands each message it takes to mail.
type smtpServer struct {
	ln   net.Listener
	tls  *tls.Config
	mail chan string
	wg   sync.WaitGroup
}

func startSMTP(t *testing.T, pki *brokertest.PKI) *smtpServer {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, tls: &tls.Config{Certificates: []tls.Certificate{cert}}, mail: make(chan string, 16)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// serve speaks SMTP on one connection; mail is refused before STARTTLS.
func (s *smtpServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(hangGuard))
	r, w := bufio.NewReader(c), io.Writer(c)
	say := func(line string) { fmt.Fprintf(w, "%s\r\n", line) }
	say("220 127.0.0.1 test ESMTP")
	secure := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if secure {
				say("250 127.0.0.1")
			} else {
				say("250-127.0.0.1")
				say("250 STARTTLS")
			}
		case cmd == "STARTTLS":
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, r, w, secure = tc, bufio.NewReader(tc), tc, true
		case !secure:
			say("530 must issue STARTTLS first")
		case strings.HasPrefix(cmd, "MAIL FROM:"), strings.HasPrefix(cmd, "RCPT TO:"):
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			s.mail <- msg.String()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

// A forced door raises an alarm whose notification reaches the test's
// SMTP server (over STARTTLS), a webhook receiver (signed; its first
// answer a 500, so the delivery is tried again), and the site's alarms
// topic on the broker; the delivery log says how each went.
func TestNotificationsEndToEnd(t *testing.T) {
	pki := brokertest.NewPKI(t)
	mail := startSMTP(t, pki)
	const secret = "hook secret for the test"
	var (
		mu    sync.Mutex
		hooks []*http.Request
		body  [][]byte
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks, body = append(hooks, r), append(body, b)
		n := len(hooks)
		mu.Unlock()
		if n == 1 {
			http.Error(w, "try later", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(recv.Close)

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "serve.toml")
	cfg := fmt.Sprintf(`
[[notify.rule]]
name = "forced-mail"
alarms = ["door_forced"]
channel = "email:ops"

[[notify.rule]]
name = "forced-hook"
alarms = ["door_forced"]
doors = ["front"]
channel = "webhook:siem"

[[notify.rule]]
name = "forced-mqtt"
alarms = ["door_forced"]
channel = "mqtt"

[notify.webhook.siem]
url = %q
secret = %q

[notify.email.ops]
addr = %q
from = "latch@site.test"
to = ["ops@site.test"]
ca_file = %q
`, recv.URL, secret, mail.ln.Addr().String(), pki.CAFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := loadServeConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var eng *alarmEngine
	s, sv, front, _ := startE2EWith(t, serveOptions{notify: sc.Notify, alarmsReady: func(e *alarmEngine) { eng = e }})

	// A follower of the site's alarms topic.
	key, err := loadSiteKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	brokerURL := s.brokerURL(t)
	got := make(chan []byte, 4)
	pc := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID("automation"))
	if tok := pc.Connect(); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(100) })
	if tok := pc.Subscribe("latch/v2/"+key.Site+"/alarms", 1, func(_ paho.Client, m paho.Message) {
		if !m.Retained() {
			got <- m.Payload()
		}
	}); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	front.send("open")
	front.event("door_forced")
	al := waitAlarm(t, eng, sv.db, "door_forced at front", func(a *site.Alarm) bool { return a.Kind == site.AlarmDoorForced })

	select {
	case m := <-mail.mail:
		if !strings.Contains(m, fmt.Sprintf("alarm %d: door_forced at door front", al.ID)) || !strings.Contains(m, "To: ops@site.test") {
			t.Fatalf("mail:\n%s", m)
		}
	case <-time.After(hangGuard):
		t.Fatal("no mail")
	}
	select {
	case b := <-got:
		var n notification
		if err := json.Unmarshal(b, &n); err != nil || n.Alarm == nil || n.Alarm.ID != al.ID || n.Rule != "forced-mqtt" {
			t.Fatalf("alarms topic: %s (%v)", b, err)
		}
	case <-time.After(hangGuard):
		t.Fatal("nothing on the alarms topic")
	}
	eventually(t, "the webhook delivered on its second attempt", func() bool {
		ds, err := sv.db.Deliveries(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Channel == "webhook:siem" && d.Status == site.DeliveryDelivered {
				return d.Attempts == 2
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if len(hooks) != 2 || string(body[0]) != string(body[1]) {
		t.Fatalf("%d webhook requests, want the same body twice", len(hooks))
	}
	sig := hooks[1].Header.Get(signatureHeader)
	if want := sign(secret, body[1]); !hmac.Equal([]byte(sig), []byte(want)) || !strings.HasPrefix(sig, "sha256=") {
		t.Fatalf("signature %q, want %q", sig, want)
	}
	if ct := hooks[1].Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	out := s.ok(t, "", "notify", "deliveries")
	for _, ch := range []string{"email:ops", "webhook:siem", "mqtt"} {
		if !strings.Contains(out, ch) {
			t.Fatalf("delivery log lacks %s:\n%s", ch, out)
		}
	}
}

// hookRecorder is a webhook receiver on loopback that keeps the
// notifications it is sent; got returns them so far.
func hookRecorder(t testing.TB) (url string, got func() []notification) {
	t.Helper()
	var (
		mu    sync.Mutex
		hooks []notification
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("webhook body: %v: %s", err, b)
		}
		mu.Lock()
		hooks = append(hooks, n)
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)
	return recv.URL, func() []notification {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(hooks)
	}
}

// brokerURL is the broker of the doors' join file (startE2E).
func (s *testSite) brokerURL(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "join.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j joinFile
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j.Broker
}
