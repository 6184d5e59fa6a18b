package devbroker

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// guard bounds every wait: it turns a hang into a failure and says nothing
// about speed.
const guard = 10 * time.Second

func start(t *testing.T, addr string) *Broker {
	t.Helper()
	b, err := Start(addr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

func connect(t *testing.T, b *Broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", b.URL(), tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// A client publishes and another receives through the broker on a port
// it picked; Addr names the port it listens on.
func TestPublishReceive(t *testing.T) {
	b := start(t, "127.0.0.1:0")
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("Addr %q (%v), want 127.0.0.1 and the port picked", b.Addr(), err)
	}
	if b.URL() != "tcp://"+b.Addr() {
		t.Errorf("URL %q, want tcp://%s", b.URL(), b.Addr())
	}

	got := make(chan paho.Message, 1)
	sub := connect(t, b, "sub")
	if tok := sub.Subscribe("latch/test", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := connect(t, b, "pub")
	if tok := pub.Publish("latch/test", 1, false, []byte("hello")); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-got:
		if string(m.Payload()) != "hello" || m.Topic() != "latch/test" {
			t.Fatalf("received %q on %s, want hello on latch/test", m.Payload(), m.Topic())
		}
	case <-time.After(guard):
		t.Fatal("the message was not received")
	}
}

// A taken address falls back to a free port on the same host.
func TestTakenAddress(t *testing.T) {
	first := start(t, "127.0.0.1:0")
	second := start(t, first.Addr())
	host, _, _ := net.SplitHostPort(second.Addr())
	if second.Addr() == first.Addr() || host != "127.0.0.1" {
		t.Fatalf("second broker on %s, first on %s: want another port on 127.0.0.1", second.Addr(), first.Addr())
	}
	connect(t, second, "c")
}

// Only a loopback address is taken.
func TestLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:1883", "example.com:1883", "nonsense"} {
		if b, err := Start(addr, slog.New(slog.DiscardHandler)); err == nil {
			b.Close()
			t.Errorf("Start(%q) listened on %s; want it refused", addr, b.Addr())
		} else if !strings.HasPrefix(err.Error(), "devbroker: ") {
			t.Errorf("Start(%q): %v, want an error naming devbroker", addr, err)
		}
	}
}

// Closing twice is no error.
func TestCloseTwice(t *testing.T) {
	b, err := Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// The broker's warnings come out as information.
func TestWarningsDemoted(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(demoted{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})})
	log.Warn("keepalive below the minimum")
	log.Error("listener failed")
	if got := buf.String(); strings.Contains(got, "keepalive") || !strings.Contains(got, "level=ERROR") {
		t.Errorf("log at warn level:\n%s\nwant the error only", got)
	}
	buf.Reset()
	log = slog.New(demoted{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.With("listener", "dev").Warn("keepalive below the minimum")
	if got := buf.String(); !strings.Contains(got, "level=INFO") || !strings.Contains(got, "listener=dev") {
		t.Errorf("log at info level: %q, want the warning as information", got)
	}
}
