package brokertest

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// echo serves a line echo on loopback.
func echo(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != s+"\n" {
		t.Fatalf("echo %q: %q, %v", s, got, err)
	}
}

func TestProxy(t *testing.T) {
	p := NewProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "hello")

	// Cut closes the connection.
	if n := p.Cut(); n != 1 {
		t.Fatalf("cut %d connections", n)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("read after cut succeeded")
	}

	// A black hole swallows what is written and delivers nothing; healing
	// closes the stalled connection without having forwarded it.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	r2 := bufio.NewReader(c2)
	roundTrip(t, c2, r2, "before")
	p.BlackHole()
	if _, err := c2.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	p.Heal()
	if got, err := r2.ReadString('\n'); err == nil {
		t.Fatalf("read %q through a black hole", got)
	}

	// New connections work again.
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c3, bufio.NewReader(c3), "after")
	if p.Accepted() != 3 {
		t.Fatalf("accepted %d", p.Accepted())
	}
}
