package main

import (
	"errors"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// simBroker is the MQTT broker the simulator embeds when -mqtt names none. It
// listens on loopback only and lets any local client in: it is a development
// aid, never a production broker.
type simBroker struct {
	srv  *mochi.Server
	addr string
}

// startSimBroker starts a broker on addr (host:port; port 0 picks a free one).
// When addr is taken it falls back to a free port on the same host.
func startSimBroker(addr string, log *slog.Logger) (*simBroker, error) {
	srv := mochi.New(&mochi.Options{Logger: log, InlineClient: true})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "sim", Address: addr})
	if err := srv.AddListener(l); err != nil {
		srv.Close()
		srv = mochi.New(&mochi.Options{Logger: log, InlineClient: true})
		if err2 := srv.AddHook(new(auth.AllowHook), nil); err2 != nil {
			return nil, fmt.Errorf("broker: %w", err2)
		}
		l = listeners.NewTCP(listeners.Config{ID: "sim", Address: "127.0.0.1:0"})
		if err2 := srv.AddListener(l); err2 != nil {
			return nil, fmt.Errorf("broker: listen on %s: %w", addr, errors.Join(err, err2))
		}
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &simBroker{srv: srv, addr: l.Address()}, nil
}

// Close stops the broker.
func (b *simBroker) Close() error { return b.srv.Close() }
