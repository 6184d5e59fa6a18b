package brokertest

import (
	"errors"
	"net"
	"testing"
)

// A mosquitto that finds its port taken fails with errAddrInUse (the one
// failure Start and Restart try again), and starts once the port is free.
func TestStartPortTaken(t *testing.T) {
	b := Start(t, Config{})
	b.Stop()
	l, err := net.Listen("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := Mosquitto()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.start(bin); !errors.Is(err, errAddrInUse) {
		t.Fatalf("start on a taken port: %v", err)
	}
	l.Close()
	b.Restart()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("restarted broker: %v", err)
	}
	c.Close()
}
