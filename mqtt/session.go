package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// session is one MQTT connection. Its publisher goroutine hands queued
// messages to paho in order, so that a connection going down (when paho's
// Publish can block for WriteTimeout) never stalls Run.
type session struct {
	pc    paho.Client
	since time.Time
	q     chan outMsg
	quit  chan struct{}
}

type outMsg struct {
	topic    string
	payload  []byte
	retained bool
}

func (s *session) publisher() {
	for {
		select {
		case <-s.quit:
			return
		case m := <-s.q:
			select {
			case <-s.quit:
				return
			default:
			}
			s.pc.Publish(m.topic, 1, m.retained, m.payload)
		}
	}
}

type connKind int

const (
	connUp connKind = iota
	connLost
	connFailed
)

type connEvent struct {
	gen  uint64
	kind connKind
	pc   paho.Client
	err  error
}

// inbound is a message decoded by the paho handler, handed to Run.
type inbound struct {
	topic    string
	cmd      bool // on the command topic (rejections are command_rejected)
	msg      Signed
	kid      string
	keys     []*KeyRotation // the rotations of a key chain applied in decode (msg is nil)
	size     int
	retained bool
	err      error
	cost     int // bytes held against Options.MaxInboundBytes until Run has handled it
}

// inboundOverhead is what a message handed to Run costs beyond its
// payload (decoded fields, the error of a refused one).
const inboundOverhead = 512

// byteBudget bounds the bytes of the messages handed to Run and not
// handled yet.
type byteBudget struct {
	mu      sync.Mutex
	max     int
	used    int
	waiting int           // acquire calls waiting for bytes
	freed   chan struct{} // closed and replaced when bytes are released to waiters
}

func newByteBudget(max int) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{})}
}

// tryAcquire takes n bytes if they are free.
func (b *byteBudget) tryAcquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// acquire takes n bytes, waiting for them until timeout or done.
func (b *byteBudget) acquire(n int, timeout <-chan time.Time, done <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.waiting++
		b.mu.Unlock()
		var ok bool
		select {
		case <-freed:
			ok = true
		case <-timeout:
		case <-done:
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if !ok {
			return false
		}
	}
}

// release gives n bytes back.
func (b *byteBudget) release(n int) {
	b.mu.Lock()
	b.used -= n
	if b.waiting > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// dialBroker starts one connection attempt in the background; its outcome
// comes back on c.conn tagged with gen.
func (c *Client) dialBroker(ctx context.Context, gen uint64) {
	// paho finishes Connect (resuming its store) after it has started the
	// on-connect handler; nothing may be published before that.
	connected := make(chan struct{})
	will, err := marshal("status", c.offlineStatus())
	if err != nil {
		c.sendConn(connEvent{gen: gen, kind: connFailed, err: err})
		return
	}
	o := paho.NewClientOptions().
		AddBroker(c.o.Broker).
		SetClientID(c.o.ClientID).
		SetUsername(c.o.Username).
		SetPassword(c.o.Password).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetProtocolVersion(4).
		SetKeepAlive(c.o.KeepAlive).
		SetPingTimeout(c.o.PingTimeout).
		SetConnectTimeout(c.o.ConnectTimeout).
		SetWriteTimeout(c.o.WriteTimeout).
		SetBinaryWill(c.topics.Status(c.o.Door), will, 1, true).
		SetDefaultPublishHandler(c.onMessage).
		SetCustomOpenConnectionFn(c.openConn).
		SetOnConnectHandler(func(pc paho.Client) { c.onConnect(ctx, gen, pc, connected) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.sendConn(connEvent{gen: gen, kind: connLost, err: err})
		})
	pc := paho.NewClient(o)
	tok := pc.Connect()
	go func() {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				c.sendConn(connEvent{gen: gen, kind: connFailed, err: err})
				return
			}
			close(connected)
		case <-ctx.Done():
			<-tok.Done()
			pc.Disconnect(0)
		}
	}()
}

// sendConn hands a connection event to Run; once Run has returned, a
// session that came up is closed instead.
func (c *Client) sendConn(ev connEvent) {
	select {
	case c.conn <- ev:
	case <-c.done:
		if ev.pc != nil {
			ev.pc.Disconnect(0)
		}
	}
}

// onConnect runs in a paho goroutine after each successful CONNECT: it
// (re)subscribes, then tells Run the session is up.
func (c *Client) onConnect(ctx context.Context, gen uint64, pc paho.Client, connected <-chan struct{}) {
	t := c.topics
	d := c.o.Door
	filters := map[string]byte{
		t.Keys(): 1, t.Heartbeat(d): 1,
		t.DoorACL(d): 1, t.Cmd(d): 1, t.EventsAck(d): 1,
	}
	tok := pc.SubscribeMultiple(filters, c.onMessage)
	timer := c.clock.NewTimer(c.o.ConnectTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-tok.Done():
		err = tok.Error()
		if err == nil {
			select {
			case <-connected:
			case <-timer.C():
				err = fmt.Errorf("connect not complete within %s", c.o.ConnectTimeout)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			for topic, qos := range tok.(*paho.SubscribeToken).Result() {
				if qos == 0x80 {
					err = errors.Join(err, fmt.Errorf("broker refused the subscription to %s (check its ACL)", topic))
				}
			}
		}
	case <-timer.C():
		err = fmt.Errorf("no SUBACK within %s", c.o.ConnectTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		pc.Disconnect(0)
		c.sendConn(connEvent{gen: gen, kind: connFailed, err: fmt.Errorf("subscribe: %w", err)})
		return
	}
	c.sendConn(connEvent{gen: gen, kind: connUp, pc: pc})
}

// openConn dials the broker and wraps the connection so that every write,
// keepalive pings included, has a deadline.
func (c *Client) openConn(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: c.o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.o.TLS != nil {
			cfg = c.o.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = uri.Hostname()
		}
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, cfg)
	default:
		err = fmt.Errorf("scheme %q", uri.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: dial %s: %w", uri.Redacted(), err)
	}
	return &deadlineConn{Conn: conn, timeout: c.o.WriteTimeout}, nil
}

// deadlineConn sets a write deadline before every write. A socket's
// deadline is on the system's clock, the one the network poller keeps, not
// on the door's: this is the one time the client reads time.Now itself.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (dc *deadlineConn) Write(b []byte) (int, error) {
	if err := dc.Conn.SetWriteDeadline(time.Now().Add(dc.timeout)); err != nil {
		return 0, err
	}
	return dc.Conn.Write(b)
}

// onMessage is the paho handler: it decodes and verifies, then hands the
// result to Run. The messages waiting for Run are bounded in number (the
// channel) and in bytes (Options.MaxInboundBytes): a full queue of signed
// 1 MiB messages must not take a Pi's memory. If Run is busy for long, the
// message is dropped rather than stalling the connection: the allowlist is
// pulled by sequence and commands expire, so a dropped message costs a
// retry, never state.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	in := c.decode(m.Topic(), m.Payload(), m.Retained())
	in.cost = inboundOverhead
	if in.msg != nil {
		in.cost += in.size
	}
	// A message larger than the whole budget waits for all of it.
	in.cost = min(in.cost, c.o.MaxInboundBytes)
	held := c.inBytes.tryAcquire(in.cost)
	if held {
		select {
		case c.in <- in:
			return
		default:
		}
	}
	t := c.clock.NewTimer(c.o.WriteTimeout)
	defer t.Stop()
	if !held && !c.inBytes.acquire(in.cost, t.C(), c.done) {
		c.dropped(in)
		return
	}
	select {
	case c.in <- in:
	case <-c.done:
		c.inBytes.release(in.cost)
	case <-t.C():
		c.inBytes.release(in.cost)
		c.dropped(in)
	}
}

// dropped counts a message dropped because Run was busy.
func (c *Client) dropped(in inbound) {
	select {
	case <-c.done:
		return // Run has returned: nothing is lost that it would have handled
	default:
	}
	c.update(func(s *Stats) { s.Dropped++ })
	c.log.Warn("mqtt: busy, dropped a message", "topic", in.topic, "bytes", in.size)
}

// decode verifies a message and checks that its kind belongs on its topic.
func (c *Client) decode(topic string, payload []byte, retained bool) inbound {
	in := inbound{topic: topic, size: len(payload), retained: retained}
	t := c.topics
	d := c.o.Door
	var kinds []Kind
	switch topic {
	case t.Keys():
		in.keys, in.err = c.openKeyChain(payload)
		return in
	case t.DoorACL(d):
		kinds = []Kind{KindDelta, KindChunk}
	case t.Heartbeat(d):
		kinds = []Kind{KindHeartbeat}
	case t.Cmd(d):
		kinds = []Kind{KindCommand}
		in.cmd = true
	case t.EventsAck(d):
		kinds = []Kind{KindEventsAck}
	default:
		in.err = fmt.Errorf("mqtt: %w: message on unexpected topic", ErrWrongType)
		return in
	}
	in.msg, in.kid, in.err = c.v.Open(payload, kinds...)
	// A message for another door is refused here, before it counts for
	// anything (freshness, the clock floor).
	if d := addressedTo(in.msg); in.err == nil && d != "" && d != c.o.Door {
		in.msg, in.err = nil, fmt.Errorf("mqtt: %w: %s for door %q", ErrWrongDoor, kinds[0], d)
	}
	return in
}

// addressedTo returns the door a heartbeat, command or ack is for (sealed
// messages are checked as they are opened); "" is anyone's.
func addressedTo(m Signed) string {
	switch m := m.(type) {
	case *Heartbeat:
		return m.Door
	case *Command:
		return m.Door
	case *EventsAck:
		return m.Door
	}
	return ""
}

// LoadTLS builds the TLS configuration of a door: the site's CA (PEM) to
// check the broker, and the door's client certificate and key (PEM). certFile
// and keyFile may both be empty for a broker that needs no client
// certificate.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt: tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mqtt: tls: %s holds no PEM certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// sessionUp starts serving a new session: status, sync request, outbox.
func (c *Client) sessionUp(ctx context.Context, ev connEvent) {
	c.sess = &session{pc: ev.pc, since: c.mono(),
		q: make(chan outMsg, c.o.EventWindow+c.o.LiveWindow+64), quit: make(chan struct{})}
	go c.sess.publisher()
	c.log.Info("mqtt: connected", "broker", c.o.Broker)
	c.failing = ""
	c.update(func(s *Stats) { s.Connected = true; s.Connects++ })
	c.maybeStatus(true)
	c.sync.request(true)
	c.out.reset()
	c.fresh.check(ctx)
}

// sessionDown forgets the session after a loss or a failed attempt.
func (c *Client) sessionDown(ev connEvent) {
	was := c.sess != nil
	if was {
		close(c.sess.quit)
	}
	c.sess = nil
	msg := ""
	if ev.err != nil {
		msg = ev.err.Error()
	}
	switch {
	case was:
		c.log.Warn("mqtt: connection lost; reconnecting", "broker", c.o.Broker, "err", ev.err)
		c.failing = msg
	case msg != c.failing:
		// Once per reason, not at every retry: a door that cannot reach
		// its broker says so at the default level, and again only when
		// the reason changes.
		c.log.Warn("mqtt: cannot connect to the broker; retrying", "broker", c.o.Broker, "err", ev.err)
		c.failing = msg
	default:
		c.log.Debug("mqtt: connect failed", "err", ev.err)
	}
	c.update(func(s *Stats) {
		s.LastError = msg
		if was {
			s.Connected = false
			s.Disconnects++
		}
	})
}
