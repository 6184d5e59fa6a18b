// Package devbroker is an embedded MQTT broker for development modes (the
// door simulator, a site run for development): it listens on a loopback
// address only and lets any local client in, without a password or an
// ACL. It is never a production broker: a site and its doors in
// production use a real one (mosquitto; see docs/mqtt.md), where each door
// logs in and may use its own topics only.
//
// Nothing on the broker is trusted by the contract anyway: only the site's
// signatures change an allowlist or open a door, and only an approved
// door's signature makes an event the site accepts.
package devbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running embedded broker.
type Broker struct {
	srv   *mochi.Server
	addr  string
	close sync.Once
}

// Start starts a broker listening on addr, host:port, whose host is a
// loopback address (127.0.0.1, ::1 or localhost); port 0 picks a free
// port. When addr cannot be listened on (the port is taken), it falls back
// to a free port on the same host: Addr says where it listens. log
// receives the broker's own log, its warnings as information: they are
// about clients (a keepalive shorter than mochi recommends, a connection
// closed as the broker stops), which are no news on a development broker.
// log may be nil.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("devbroker: %w", err)
	}
	if !loopback(host) {
		return nil, fmt.Errorf("devbroker: %s: not a loopback address (the development broker lets any client in)", addr)
	}
	h := slog.DiscardHandler
	if log != nil {
		h = demoted{log.Handler()}
	}
	srv := mochi.New(&mochi.Options{Logger: slog.New(h)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("devbroker: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "dev", Address: addr})
	if err := srv.AddListener(l); err != nil {
		// A listener that failed to listen is not kept: try another.
		l = listeners.NewTCP(listeners.Config{ID: "dev", Address: net.JoinHostPort(host, "0")})
		if err2 := srv.AddListener(l); err2 != nil {
			return nil, fmt.Errorf("devbroker: listen on %s: %w", addr, errors.Join(err, err2))
		}
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("devbroker: %w", err)
	}
	return &Broker{srv: srv, addr: l.Address()}, nil
}

// demoted is a log handler that passes warnings on as information.
type demoted struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l == slog.LevelWarn {
		return slog.LevelInfo
	}
	return l
}

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, demote(l))
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(name string) slog.Handler    { return demoted{d.h.WithGroup(name)} }

// loopback reports whether host names this machine only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr returns the host:port the broker listens on (with the port picked,
// when Start was given port 0 or fell back).
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker's URL for clients: tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Close stops the broker and disconnects its clients. Closing it again
// does nothing.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() {
		if cerr := b.srv.Close(); cerr != nil {
			err = fmt.Errorf("devbroker: close: %w", cerr)
		}
	})
	return err
}
