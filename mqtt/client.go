package mqtt

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/latchdoor/latch/store"
)

// Door is what the client needs from the door controller. The daemon
// adapts the controller to it. The client calls Unlock and SetLockdown only
// for a valid signed command addressed to this door, never because of a
// change of connection state. Status is called from the client's goroutine
// and must be safe for concurrent use; all methods must return promptly.
type Door interface {
	// Unlock energises the lock for d (momentary), by naming the command.
	Unlock(ctx context.Context, d time.Duration, by string) error
	// SetLockdown turns lockdown on or off.
	SetLockdown(ctx context.Context, on bool, by string) error
	// SetStale reports that the allowlist became stale (true) or fresh
	// again (false); the door applies its stale policy meanwhile.
	SetStale(ctx context.Context, stale bool) error
	// Status returns the door's state for the retained status message.
	Status() DoorStatus
}

// DoorStatus is the door's part of the status message, as the door
// controller reports it. The client writes it on the wire (Status).
type DoorStatus struct {
	Contact  Contact        // what the door contact says
	Unlocked bool           // the relay holds the door unlocked
	Alarms   []store.Reason // the alarms in force: door_forced, door_held, tamper
	Lockdown bool           // lockdown is on
	Reader   Health         // the card reader
	Journal  Health         // the journal ("reserve in use: …", "fault: …")
	// StalePolicy is what the door does while its allowlist is stale
	// ("keep-going", "card+pin", "override-only").
	StalePolicy string
	Clock       store.TimeQuality // whether the door's clock is synced
	Mode        store.Mode        // the mode in force: card, card+pin or card-or-pin
	TZ          string            // the IANA time zone of the door's schedules
}

// Contact is what the door contact says.
type Contact string

// The door contact's states.
const (
	ContactUnknown Contact = "unknown" // it has not reported since the door started
	ContactOpen    Contact = "open"
	ContactClosed  Contact = "closed"
)

// State is the door's state in one word list, for Status.DoorState: the
// contact, then "unlocked" while unlocked, then the alarms in force, comma
// separated ("closed", "open,unlocked", "open,door_held").
func (d DoorStatus) State() string {
	s := string(d.Contact)
	if s == "" {
		s = string(ContactUnknown)
	}
	if d.Unlocked {
		s += ",unlocked"
	}
	for _, a := range d.Alarms {
		s += "," + string(a)
	}
	return s
}

// Health is the state of one of the door's parts: working or not, and in
// words for the status message.
type Health struct {
	OK bool // the part works
	// Detail is the part's state in words ("fault: …", "reserve in use:
	// …"), at most 256 bytes on one line; empty means just "ok" or
	// "fault".
	Detail string
}

// String returns h's words for the status message: the detail, or "ok" or
// "fault" when there is none.
func (h Health) String() string {
	switch {
	case h.Detail != "":
		return h.Detail
	case h.OK:
		return "ok"
	}
	return "fault"
}

// Store is what the client needs from the door's database: what each of
// its parts needs (syncStore, freshStore, cmdStore, outboxStore) and a
// little more. *store.Store satisfies it.
type Store interface {
	syncStore
	freshStore
	cmdStore
	outboxStore
	// State and PutState read and write a small value of the door's state
	// (store.ErrNotFound when absent): the site keys learnt from
	// rotations.
	State(key string) ([]byte, error)
	PutState(key string, val []byte) error
	// OutboxDepth returns how many events are not acknowledged yet.
	OutboxDepth() (int, error)
	// AuditHead returns the audit chain's last sequence and its hash.
	AuditHead() (uint64, string, error)
}

var _ Store = (*store.Store)(nil)

// Journal is the door's one writer of audit events: the client hands it
// its events (type sync) and goes on. The daemon tells the client of every
// stored event with Notify. *store.Journal satisfies it.
type Journal interface {
	Add(store.JournalEntry)
}

var _ Journal = (*store.Journal)(nil)

// Options configure a Client. Site, Door, Broker, TrustedKeys and Identity
// are required; zero values of the rest take the defaults given. New copies the
// options and never writes to them.
type Options struct {
	// Broker is the broker URL: tcp://host:1883, or ssl://host:8883 for
	// TLS (tls:// and mqtts:// are the same).
	Broker string
	// Site and Door are the ids in the topic root latch/v2/<site>/ and in
	// door/<door>/.
	Site, Door string
	// ClientID is the MQTT client id; it must be stable for the door, as the
	// broker keeps the door's session under it (default latch-<site>-<door>).
	ClientID string
	// Username and Password log in to the broker (optional).
	Username, Password string
	// TLS is used for ssl:// brokers: the site's CA and the door's client
	// certificate (see LoadTLS). Nil means the system roots and no client
	// certificate.
	TLS *tls.Config
	// TrustedKeys are the site's Ed25519 public keys by key id; only
	// messages signed by one of them, or by a key they rotated to, are
	// accepted.
	TrustedKeys map[string]ed25519.PublicKey
	// Identity is the door's identity: its public keys are announced in
	// the status, so that the site can show the fingerprint for approval;
	// it signs the door's events, status and sync requests, and opens the
	// allowlist view the site seals to the door.
	Identity *Identity
	// NextIdentity is the identity the door rotates to (optional; see
	// NextIdentityFile): the status announces it vouched for by Identity,
	// and the first message the site seals to it, which it does once an
	// admin approved it, promotes it: PromoteIdentity is called, and the
	// client signs and opens with it from then on.
	NextIdentity *Identity
	// PromoteIdentity makes the next identity the door's for good (the
	// daemon renames the file and records the fingerprint); the client
	// switches only when it returns nil. Required with NextIdentity.
	PromoteIdentity func(next *Identity) error

	// Logger receives the client's log (default: none).
	Logger *slog.Logger
	// Clock is the client's clock: the door's time, for command expiry,
	// freshness and event times, and the intervals of its timers (default
	// SystemClock).
	Clock Clock
	// Version is the firmware version reported in the status.
	Version string
	// BootID is copied into the client's audit events.
	BootID string

	// KeepAlive is the MQTT keepalive, whole seconds (default 15 s), and
	// PingTimeout how long a ping may go unanswered (default 5 s): a link
	// that silently stops carrying packets is noticed within KeepAlive +
	// 2*PingTimeout (25 s with the defaults).
	KeepAlive, PingTimeout time.Duration
	// ConnectTimeout bounds the TCP, TLS and MQTT handshake and the
	// subscription (default 10 s).
	ConnectTimeout time.Duration
	// WriteTimeout bounds every write to the network (default 5 s).
	WriteTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the back-off between connection
	// attempts: it starts at ReconnectMin (default 1 s) and doubles after
	// each failed attempt or short-lived session up to ReconnectMax
	// (default 30 s), with ±50% jitter under the cap, so that the doors of
	// a broker that went away do not come back in step. A session that lasted
	// KeepAlive starts it again from ReconnectMin.
	ReconnectMin, ReconnectMax time.Duration

	// StaleAfter is how long the door may go without a fresh signed message
	// before its allowlist is stale (default 24 h).
	StaleAfter time.Duration
	// MaxUnlock is the longest momentary unlock a command may ask for
	// (default 30 s, at most MaxUnlockDuration).
	MaxUnlock time.Duration
	// ClockSkew is how far in the future a signed message's issued_at may
	// be by the door's clock (default 30 s). While the door's clock is
	// synced, a message issued further ahead does not count as fresh and
	// does not move the clock floor; a command issued further ahead is
	// refused, but for lockdown on.
	ClockSkew time.Duration

	// EventWindow is how many events may await the site's acknowledgement
	// at once (default 64). Keep it under the broker's max_queued_messages
	// for the site's collector.
	EventWindow int
	// LiveWindow is how many fresh events (passed to Notify) may be sent
	// ahead of a draining backlog (default 16).
	LiveWindow int
	// AckTimeout is how long events may go unacknowledged before they are
	// sent again from the cursor (default 10 s).
	AckTimeout time.Duration
	// SyncRetry is the shortest time between two sync requests, and how
	// long the door waits for an answer before asking again (default 5 s).
	SyncRetry time.Duration
	// SnapshotTimeout asks anew for a snapshot whose chunks stop coming
	// (default 2 min); what is staged is kept if the site still sends the
	// same snapshot.
	SnapshotTimeout time.Duration
	// ChunkWindow is how many snapshot chunks the door asks for ahead of
	// the one it stages (default 4, at most MaxChunkWindow): the messages
	// the broker queues for the door stay this few, whatever the size of
	// the snapshot.
	ChunkWindow int
	// MaxInboundBytes bounds the messages received and waiting for the
	// client, by their size plus 512 bytes each (default 16 MiB); besides,
	// at most 1024 wait. A message that finds no room within WriteTimeout
	// is dropped and counted in Stats.Dropped.
	MaxInboundBytes int
	// StatusInterval is the shortest time between two status messages
	// (default 1 s); StatusRefresh republishes an unchanged status (default
	// 5 min).
	StatusInterval, StatusRefresh time.Duration
	// CheckInterval is how often timers (staleness, retries, status) are
	// checked (default 1 s).
	CheckInterval time.Duration
	// RejectBurst rejected messages per RejectWindow are written to the
	// audit log (default 10 per minute, per kind: allowlist and commands);
	// the rest are counted and summarised in one event per window.
	RejectBurst int
	// RejectWindow is the window RejectBurst counts over (default 1 min).
	RejectWindow time.Duration
	// MarkSignedInterval is how often the time of the last signed message
	// is written to the store while messages keep coming (default 1 min).
	MarkSignedInterval time.Duration
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if r.ClientID == "" {
		r.ClientID = "latch-" + r.Site + "-" + r.Door
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Clock == nil {
		r.Clock = SystemClock()
	}
	def(&r.KeepAlive, 15*time.Second)
	def(&r.PingTimeout, 5*time.Second)
	def(&r.ConnectTimeout, 10*time.Second)
	def(&r.WriteTimeout, 5*time.Second)
	def(&r.ReconnectMin, time.Second)
	def(&r.ReconnectMax, 30*time.Second)
	def(&r.StaleAfter, 24*time.Hour)
	def(&r.MaxUnlock, 30*time.Second)
	def(&r.ClockSkew, 30*time.Second)
	defInt(&r.EventWindow, 64)
	defInt(&r.LiveWindow, 16)
	def(&r.AckTimeout, 10*time.Second)
	def(&r.SyncRetry, 5*time.Second)
	def(&r.SnapshotTimeout, 2*time.Minute)
	defInt(&r.ChunkWindow, 4)
	defInt(&r.MaxInboundBytes, 16<<20)
	def(&r.StatusInterval, time.Second)
	def(&r.StatusRefresh, 5*time.Minute)
	def(&r.CheckInterval, time.Second)
	defInt(&r.RejectBurst, 10)
	def(&r.RejectWindow, time.Minute)
	def(&r.MarkSignedInterval, time.Minute)

	if err := CheckID("site", r.Site); err != nil {
		return r, err
	}
	if err := CheckID("door", r.Door); err != nil {
		return r, err
	}
	u, err := url.Parse(r.Broker)
	if err != nil {
		return r, fmt.Errorf("broker %q: %w", r.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return r, fmt.Errorf("broker %q: scheme %q, want tcp or ssl", r.Broker, u.Scheme)
	}
	if u.Host == "" || u.Port() == "" {
		return r, fmt.Errorf("broker %q: want scheme://host:port", r.Broker)
	}
	if len(r.ClientID) > 128 {
		return r, fmt.Errorf("client id of %d bytes, limit 128", len(r.ClientID))
	}
	switch {
	case r.KeepAlive < time.Second || r.KeepAlive%time.Second != 0:
		return r, fmt.Errorf("keepalive %s: want whole seconds, at least 1 s", r.KeepAlive)
	case r.MaxUnlock < 0 || r.MaxUnlock > MaxUnlockDuration:
		return r, fmt.Errorf("max unlock %s: want at most %s", r.MaxUnlock, MaxUnlockDuration)
	case r.ReconnectMax < r.ReconnectMin:
		return r, fmt.Errorf("reconnect back-off: max %s below min %s", r.ReconnectMax, r.ReconnectMin)
	case r.EventWindow < 1 || r.LiveWindow < 0 || r.RejectBurst < 0 || r.MaxInboundBytes < 1:
		return r, errors.New("event window, live window, reject burst and inbound bytes must be positive")
	case r.ChunkWindow < 1 || r.ChunkWindow > MaxChunkWindow:
		return r, fmt.Errorf("chunk window %d: want 1..%d", r.ChunkWindow, MaxChunkWindow)
	case r.Identity == nil:
		return r, errors.New("the door's identity is required (see CreateIdentity)")
	case r.NextIdentity != nil && r.PromoteIdentity == nil:
		return r, errors.New("a next identity needs PromoteIdentity")
	}
	for _, d := range []time.Duration{r.PingTimeout, r.ConnectTimeout, r.WriteTimeout, r.ReconnectMin,
		r.StaleAfter, r.ClockSkew, r.AckTimeout, r.SyncRetry, r.SnapshotTimeout, r.StatusInterval,
		r.StatusRefresh, r.CheckInterval, r.RejectWindow, r.MarkSignedInterval} {
		if d < 0 {
			return r, fmt.Errorf("negative duration %s", d)
		}
	}
	return r, nil
}

// Stats are the client's counters and state, for status displays and
// tests.
type Stats struct {
	Connected        bool     // subscribed and serving
	Connects         uint64   // sessions established
	Disconnects      uint64   // sessions lost
	LastError        string   // why the last session ended or the last attempt failed
	AppliedSeq       uint64   // allowlist seq applied
	SnapshotHash     string   // state hash at AppliedSeq
	SiteSeq          uint64   // highest ACL seq the site is known to have
	DeltasApplied    uint64   // signed deltas applied
	SnapshotsApplied uint64   // snapshots applied
	ChunksStaged     uint64   // snapshot chunks staged in the store
	Staging          bool     // a snapshot is being staged
	StaleACL         uint64   // signed ACL messages already applied (duplicates, older snapshots)
	ACLRejected      uint64   // allowlist, heartbeat and ack messages refused
	CommandsApplied  uint64   // signed commands carried out by the door
	CommandsRejected uint64   // commands refused, by the client or by the door
	Unlocks          uint64   // calls to Door.Unlock
	SyncRequests     uint64   // sync requests published
	EventsPublished  uint64   // event messages published (including repeats)
	Resends          uint64   // times the outbox was sent again from the cursor
	Acked            uint64   // outbox cursor
	Dropped          uint64   // inbound messages dropped because the client was busy (too many or too many bytes waiting)
	FutureIssued     uint64   // signed messages issued beyond ClockSkew ahead of the synced clock, not counted as fresh
	ACLStale         bool     // the allowlist is stale
	StatusPublished  uint64   // status messages published
	SiteKeys         []string // the ids of the site keys trusted now
}

// Client is the door's MQTT client. Create it with New, run it with Run.
//
// Run's goroutine owns the client's parts, each with its own state: the
// syncer (the allowlist), the freshness (stale allowlist, clock floor),
// the commander (signed commands), the outbox (events out) and the
// session (the connection, see session.go). They share the core (options,
// clock, log, Stats, audit events) and reach the session through the
// publisher interface.
type Client struct {
	*core
	st     Store
	v      *Verifier
	topics Topics
	start  time.Time // monotonic, for uptime
	// failing is why the last connection attempt failed or the last
	// session ended ("" while connected or before the first attempt),
	// so that a failure is logged once per reason, not at every retry.
	failing string

	in      chan inbound
	inBytes *byteBudget // bytes of the messages in c.in and in hand
	notify  chan store.Event
	poke    chan struct{}
	conn    chan connEvent
	done    chan struct{}
	ran     atomic.Bool

	// dial starts one connection attempt whose outcome comes back on conn
	// (dialBroker; tests drive the loop without a broker).
	dial func(ctx context.Context, gen uint64)

	// Everything below belongs to the Run goroutine.
	sess *session
	gen  uint64

	sync  *syncer
	fresh *freshness
	cmd   *commander
	out   *outbox

	lastStatus   Status
	lastStatusAt time.Time // monotonic
}

// New returns a client for the door with the given store, journal and
// door. It does not connect; Run does.
func New(st Store, j Journal, door Door, opts *Options) (*Client, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mqtt: options: %w", err)
	}
	if st == nil || j == nil || door == nil {
		return nil, errors.New("mqtt: options: a store, a journal and a door are required")
	}
	v, err := NewDoorVerifier(o.Site, o.Door, o.TrustedKeys, o.Identity)
	if err != nil {
		return nil, err
	}
	v.SetNext(o.NextIdentity)
	c := &Client{
		core: newCore(&o, j, door), st: st, v: v,
		topics:  TopicsFor(o.Site),
		in:      make(chan inbound, 1024),
		inBytes: newByteBudget(o.MaxInboundBytes),
		notify:  make(chan store.Event, 256),
		poke:    make(chan struct{}, 1),
		conn:    make(chan connEvent, 8),
		done:    make(chan struct{}),
	}
	c.status = c.maybeStatus
	c.dial = c.dialBroker
	c.sync = newSyncer(c.core, st, c, c.topics.Sync(o.Door))
	c.out = newOutbox(c.core, st, c, c.topics.Events(o.Door))
	return c, nil
}

// Notify tells the client that e was appended to the store (pass what
// Append returned). It never blocks. While a backlog drains, up to
// LiveWindow such events are sent ahead of it; the rest follow in order.
func (c *Client) Notify(e store.Event) {
	select {
	case c.notify <- e:
	default:
		select {
		case c.poke <- struct{}{}:
		default:
		}
	}
}

// Stats returns a copy of the client's counters and state.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Updated returns a channel that is closed at the next change of Stats.
// Read it before Stats to wait for a condition without missing a change.
func (c *Client) Updated() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updated
}

// Run connects to the broker and serves until ctx is done, reconnecting
// with back-off whenever the connection is lost. It returns nil when ctx is
// cancelled (after publishing an offline status), and an error when the
// store fails in a way the client cannot go on from (closed or damaged).
// Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return errors.New("mqtt: Run called twice")
	}
	defer close(c.done)
	if err := c.loadState(); err != nil {
		return err
	}
	c.start = c.mono()
	c.fresh.check(ctx)
	c.log.Info("mqtt: connecting", "broker", c.o.Broker)

	tick := c.clock.NewTicker(c.o.CheckInterval)
	defer tick.Stop()
	redial := c.clock.NewTimer(0)
	defer redial.Stop()
	backoff := c.o.ReconnectMin

	for c.fatal == nil {
		select {
		case <-ctx.Done():
			c.shutdown()
			return nil
		case <-redial.C():
			c.gen++
			c.dial(ctx, c.gen)
		case ev := <-c.conn:
			if ev.gen != c.gen {
				if ev.pc != nil {
					ev.pc.Disconnect(0)
				}
				continue
			}
			switch ev.kind {
			case connUp:
				c.sessionUp(ctx, ev)
			case connLost, connFailed:
				c.gen++ // whatever else comes from this attempt is stale
				// A session that lasted a keepalive period was healthy:
				// start the back-off again. One that broke at once (a
				// broker accepting and dropping) keeps it growing.
				if c.sess != nil && c.mono().Sub(c.sess.since) >= c.o.KeepAlive {
					backoff = c.o.ReconnectMin
				}
				c.sessionDown(ev)
				redial.Reset(min(jitter(backoff), c.o.ReconnectMax))
				backoff = min(2*backoff, c.o.ReconnectMax)
			}
		case in := <-c.in:
			c.handle(ctx, in)
			c.inBytes.release(in.cost)
		case e := <-c.notify:
			c.out.notify(e)
		case <-c.poke:
			c.out.fill()
		case <-tick.C():
			c.onTick(ctx)
		}
	}
	c.shutdown()
	return c.fatal
}

// jitter spreads d by ±50%: a thousand doors that lost their broker at
// the same instant come back over a second, then over two, four…, the
// windows of successive attempts overlapping, rather than all at once.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// loadState reads the allowlist and freshness state from the store and
// builds the parts that start from it.
func (c *Client) loadState() error {
	ss, err := c.st.SyncState()
	if err != nil {
		return fmt.Errorf("mqtt: load sync state: %w", err)
	}
	c.fresh = newFreshness(c.core, c.st, ss)
	c.cmd = newCommander(c.core, c.st, c.fresh.floorNow, c.sync.resync, ss.CommandSeqMax)
	if err := c.loadKeys(); err != nil {
		return err
	}
	c.sync.load(ss)
	return c.fatal
}

// handle acts on one message from the paho handler.
func (c *Client) handle(ctx context.Context, in inbound) {
	if in.msg == nil {
		// A key chain: what it applied is recorded even when a later link
		// was refused.
		c.onKeys(in)
	}
	if in.err != nil {
		c.reject(in, in.err)
		return
	}
	if in.msg == nil {
		return
	}
	c.maybePromote(in)
	// Every authentic message of this site counts for freshness, whatever
	// happens to it next, as long as it is newer than anything seen and not
	// from the future.
	c.fresh.signed(ctx, in)
	switch m := in.msg.(type) {
	case *Delta:
		c.sync.onDelta(in, m)
	case *SnapshotChunk:
		c.sync.onChunk(in, m)
	case *Heartbeat:
		c.sync.onHeartbeat(in, m)
	case *Command:
		c.cmd.handle(ctx, in, m)
	case *EventsAck:
		c.out.onAck(in, m)
	}
}

// connected reports whether a session is up.
func (c *Client) connected() bool { return c.sess != nil }

// publish queues one QoS 1 message for the current session's publisher.
// It never blocks: a full queue refuses the message, and the caller's
// timers send it again. Delivery is confirmed by the site, not by PUBACK.
func (c *Client) publish(topic string, payload []byte, retained bool) bool {
	if c.sess == nil {
		return false
	}
	select {
	case c.sess.q <- outMsg{topic: topic, payload: payload, retained: retained}:
		return true
	default:
		c.log.Debug("mqtt: publish queue full", "topic", topic)
		return false
	}
}

// shutdown writes what the rate limits still hold back, publishes the
// offline status and disconnects.
func (c *Client) shutdown() {
	c.fresh.persist(true)
	c.drainRejects()
	if c.sess == nil {
		return
	}
	sess := c.sess
	c.sess = nil
	close(sess.quit)
	b, err := marshal("status", c.offlineStatus())
	if err == nil {
		tok := sess.pc.Publish(c.topics.Status(c.o.Door), 1, true, b)
		t := c.clock.NewTimer(c.o.WriteTimeout)
		select {
		case <-tok.Done():
		case <-t.C():
		}
		t.Stop()
	}
	sess.pc.Disconnect(250)
	c.update(func(s *Stats) { s.Connected = false })
}

// onTick runs the timers.
func (c *Client) onTick(ctx context.Context) {
	now := c.mono()
	c.fresh.check(ctx)
	c.retireKeys()
	c.fresh.persist(false)
	c.flushRejects(now)
	c.sync.tick(now)
	c.out.tick(now)
	c.maybeStatus(false)
}
