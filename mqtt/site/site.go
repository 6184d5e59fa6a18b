// Package sitetest is a site for tests and simulations, speaking contract
// v2 (docs/mqtt.md) with the doors of package mqtt over a real broker,
// through github.com/eclipse/paho.mqtt.golang.
//
// It is the allowlist authority: a History of the whole allowlist with a
// global seq, and for each approved door a view of it (the cards that open
// the door, their holders, and the revocations of both) with the door's
// own seq, whose deltas it signs and seals to the door's identity alone,
// on the door's own topic. It answers the doors' signed sync requests
// with deltas, or with a snapshot of the view in chunks the door asks
// for; it publishes each door's retained heartbeat, signed commands, and
// the retained chain of its key rotations.
//
// It trusts a door only by the identity an admin approved (Options.Doors,
// Site.Approve): a door announcing another identity gets nothing, and
// its events and sync requests are refused.
//
// It is also the event collector: it stores every approved door's events
// whose signature verifies durably in a bbolt file, with the door's
// signed chain heads (from events and statuses), refuses any event or
// status that rewrites what the door signed, and acknowledges the highest
// contiguous seq with a signed ack.
//
// What the site knows of the allowlist and of approvals lives in memory;
// only the collector's events and heads outlive it.
package sitetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// Options configure a Site.
type Options struct {
	// Broker is the broker URL (tcp:// or ssl://).
	Broker string
	// Username and Password log in to the broker.
	Username, Password string
	// TLS is the site's TLS configuration for an ssl:// broker.
	TLS *tls.Config
	// ClientID is the site's MQTT client id (default latch-site-<site>).
	ClientID string
	// Site is the site id of the topic root.
	Site string
	// Signer signs everything the site publishes, until RotateKey.
	Signer *mqtt.Signer
	// DBPath is the collector's bbolt file.
	DBPath string
	// Now is the site's clock (default time.Now).
	Now func() time.Time
	// Logger receives the site's log (default: none).
	Logger *slog.Logger
	// DeltaLimit is the most deltas a sync request is answered with; a
	// door further behind gets a snapshot (default 50: keep it under the
	// broker's max_queued_messages).
	DeltaLimit int
	// ChunkBytes is the snapshot chunk size (default
	// mqtt.DefaultChunkBytes).
	ChunkBytes int
	// ChunkWindow is how many chunks of a new snapshot are sent to a door
	// whose request does not say (default 4).
	ChunkWindow int
	// HeartbeatEvery publishes the heartbeats periodically while Run runs
	// (0: only when Heartbeat is called).
	HeartbeatEvery time.Duration
	// ReconnectMax caps paho's reconnect back-off (default 2 s).
	ReconnectMax time.Duration
	// Doors are the approved door identities by door id. Other doors are
	// approved with Approve once their status has announced the identity.
	Doors map[string]mqtt.PublicIdentity
	// DoorGroups are the groups each door belongs to (door id → group
	// names): a card whose Doors list names one of them is in the door's
	// view.
	DoorGroups map[string][]string
}

// Stats count what the site has seen.
type Stats struct {
	Connected        bool                         // connected to the broker now
	Connects         int                          // connections made
	EventsReceived   int                          // attributed event messages received, repeats included
	EventsStored     int                          // distinct events stored
	Duplicates       int                          // events received again (same seq, same hash)
	Conflicts        int                          // events whose seq is stored with another hash (each also a rewrite)
	Rewrites         int                          // events and statuses contradicting what the door signed before: refused
	ChainBreaks      int                          // an event whose prev is not the hash of the one before
	Malformed        int                          // door messages that did not decode
	WrongDoor        int                          // door messages naming another door than their topic's
	Unattributed     int                          // events of a door not approved, or whose signature does not verify with its approved key
	AcksSent         int                          // signed event acknowledgements sent
	SyncRequests     int                          // verified sync requests of approved doors
	SyncRefused      int                          // sync requests of a door not approved, or whose signature does not verify
	SyncDeltas       int                          // deltas sent in answer to sync requests
	SyncSnapshots    int                          // snapshots started in answer to sync requests
	ChunksSent       int                          // snapshot chunks sent
	Rebases          int                          // views rebased above a door's seq
	HashMismatches   int                          // a door at its view's seq with another state hash (rebased)
	IdentityMismatch int                          // statuses of an approved door announcing another identity
	Pending          map[string]string            // doors awaiting approval: door → fingerprint of the identity announced
	PendingNext      map[string]string            // approved doors rotating their identity: door → fingerprint of the next one, vouched for by the approved key, awaiting ApproveNext
	LastStatus       map[string]*mqtt.Status      // each door's latest status
	LastSync         map[string]*mqtt.SyncRequest // each door's latest verified sync request
}

// Site is a test site. Create it with New, run it with Run.
type Site struct {
	o      Options
	log    *slog.Logger
	topics mqtt.Topics
	db     *bolt.DB
	hist   *History
	groups map[string][]string

	events chan *mqtt.EventMsg
	syncs  chan *mqtt.SyncRequest

	pubMu sync.Mutex       // Publish: commits go out in order
	acl   sync.Mutex       // the history's commits, the views, sealing
	views map[string]*view // approved doors' views (acl)

	doorsMu sync.Mutex // before mu
	book    doorBook

	rotMu     sync.Mutex
	rotations []json.RawMessage

	mu        sync.Mutex
	pc        paho.Client
	signer    *mqtt.Signer
	stats     Stats
	updated   chan struct{}
	holdAcks  bool
	contig    map[string]uint64     // highest contiguous stored seq per door
	latest    map[string]SignedHead // the latest signed head held per door
	statusMax map[string]uint64     // the highest head seq held from a status per door
	cmdSeq    uint64

	// sink, when set, receives what the site publishes instead of the
	// broker: tests of the package drive the site without one.
	sink func(topic string, payload []byte, retained bool) error
}

// New opens the collector's file and returns a site that is not connected
// yet.
func New(opts Options) (*Site, error) {
	o := opts
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DeltaLimit == 0 {
		o.DeltaLimit = 50
	}
	if o.ChunkWindow == 0 {
		o.ChunkWindow = 4
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 2 * time.Second
	}
	if o.ClientID == "" {
		o.ClientID = "latch-site-" + o.Site
	}
	if err := mqtt.CheckID("site", o.Site); err != nil {
		return nil, fmt.Errorf("sitetest: %w", err)
	}
	if o.Signer == nil {
		return nil, errors.New("sitetest: a signer is required")
	}
	if o.ChunkWindow < 0 || o.ChunkWindow > mqtt.MaxChunkWindow {
		return nil, fmt.Errorf("sitetest: chunk window %d, want 1..%d", o.ChunkWindow, mqtt.MaxChunkWindow)
	}
	if _, err := mqtt.PlanSnapshot(store.Snapshot{}, o.ChunkBytes); err != nil {
		return nil, fmt.Errorf("sitetest: %w", err)
	}
	for _, d := range slices.Sorted(maps.Keys(o.Doors)) {
		if err := mqtt.CheckID("door", d); err != nil {
			return nil, fmt.Errorf("sitetest: approved doors: %w", err)
		}
		if err := o.Doors[d].Check("door " + d); err != nil {
			return nil, fmt.Errorf("sitetest: approved doors: %w", err)
		}
	}
	groups := make(map[string][]string, len(o.DoorGroups))
	for _, d := range slices.Sorted(maps.Keys(o.DoorGroups)) {
		if err := mqtt.CheckID("door", d); err != nil {
			return nil, fmt.Errorf("sitetest: door groups: %w", err)
		}
		for _, g := range o.DoorGroups[d] {
			if g == "" || g == "*" {
				return nil, fmt.Errorf("sitetest: door groups of %s: group %q", d, g)
			}
		}
		groups[d] = slices.Clone(o.DoorGroups[d])
	}
	db, err := bolt.Open(o.DBPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("sitetest: open %s: %w", o.DBPath, err)
	}
	s := &Site{
		o: o, log: o.Logger.With("site", o.Site), topics: mqtt.TopicsFor(o.Site), db: db,
		hist: newHistory(), groups: groups,
		events:    make(chan *mqtt.EventMsg, 4096),
		syncs:     make(chan *mqtt.SyncRequest, 64),
		views:     make(map[string]*view),
		book:      newDoorBook(o.Doors),
		signer:    o.Signer,
		updated:   make(chan struct{}),
		contig:    make(map[string]uint64),
		latest:    make(map[string]SignedHead),
		statusMax: make(map[string]uint64),
	}
	s.stats.Pending = make(map[string]string)
	s.stats.LastStatus = make(map[string]*mqtt.Status)
	s.stats.LastSync = make(map[string]*mqtt.SyncRequest)
	now := o.Now()
	s.hist.read(func(_ uint64, st *aclState) {
		for d := range o.Doors {
			s.views[d] = newView(d, groups[d], st, now)
		}
	})
	if err := createBuckets(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sitetest: %s: %w", o.DBPath, err)
	}
	if err := s.loadCollector(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sitetest: %s: %w", o.DBPath, err)
	}
	return s, nil
}

// History returns the site's allowlist authority, to read.
func (s *Site) History() *History { return s.hist }

// Close closes the collector's file. Call it after Run has returned.
func (s *Site) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sitetest: close %s: %w", s.o.DBPath, err)
	}
	return nil
}

// Signer returns the signer the site signs with now.
func (s *Site) Signer() *mqtt.Signer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signer
}

// Stats returns a copy of the counters.
func (s *Site) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Pending = maps.Clone(s.stats.Pending)
	st.LastStatus = maps.Clone(s.stats.LastStatus)
	st.LastSync = maps.Clone(s.stats.LastSync)
	return st
}

// Updated returns a channel closed at the next change of Stats or of the
// stored events.
func (s *Site) Updated() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updated
}

func (s *Site) update(fn func(st *Stats)) {
	s.mu.Lock()
	fn(&s.stats)
	close(s.updated)
	s.updated = make(chan struct{})
	s.mu.Unlock()
}

// HoldAcks stops (true) or resumes (false) acknowledging events; events
// are still stored. Resuming acknowledges every door at once.
func (s *Site) HoldAcks(hold bool) {
	s.mu.Lock()
	s.holdAcks = hold
	doors := slices.Collect(maps.Keys(s.contig))
	s.mu.Unlock()
	if !hold {
		for _, d := range doors {
			s.ack(d)
		}
	}
}

// Run connects and serves until ctx is done: it stores events, answers
// sync requests and records statuses. paho reconnects on its own.
func (s *Site) Run(ctx context.Context) error {
	o := paho.NewClientOptions().
		AddBroker(s.o.Broker).
		SetClientID(s.o.ClientID).
		SetUsername(s.o.Username).
		SetPassword(s.o.Password).
		SetTLSConfig(s.o.TLS).
		SetCleanSession(false).
		SetProtocolVersion(4).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(s.o.ReconnectMax).
		SetKeepAlive(5 * time.Second).
		SetPingTimeout(2 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(false).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.log.Info("sitetest: connection lost", "err", err)
			s.update(func(st *Stats) { st.Connected = false })
		})
	pc := paho.NewClient(o)
	s.mu.Lock()
	s.pc = pc
	s.mu.Unlock()
	pc.Connect() // retries until connected or disconnected

	var wg sync.WaitGroup
	wg.Go(func() { s.storeLoop(ctx) })
	wg.Go(func() { s.syncLoop(ctx) })
	if s.o.HeartbeatEvery > 0 {
		wg.Go(func() {
			t := time.NewTicker(s.o.HeartbeatEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := s.Heartbeat(ctx); err != nil {
						s.log.Debug("sitetest: heartbeat", "err", err)
					}
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	pc.Disconnect(100)
	s.mu.Lock()
	s.pc = nil
	s.mu.Unlock()
	return nil
}

func (s *Site) onConnect(pc paho.Client) {
	filters := map[string]byte{
		s.topics.AllDoors("events"): 1,
		s.topics.AllDoors("sync"):   1,
		s.topics.AllDoors("status"): 1,
	}
	tok := pc.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { s.handle(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		s.log.Error("sitetest: subscribe", "err", tok.Error())
		return
	}
	s.update(func(st *Stats) { st.Connected = true; st.Connects++ })
}

// refused counts a door message that did not decode: WrongDoor when it
// names another door than its topic's, else Malformed.
func (s *Site) refused(what, topic string, err error) {
	s.log.Warn("sitetest: bad "+what, "topic", topic, "err", err)
	if errors.Is(err, mqtt.ErrWrongDoor) {
		s.update(func(st *Stats) { st.WrongDoor++ })
		return
	}
	s.update(func(st *Stats) { st.Malformed++ })
}

// handle decodes a door message and acts on it or hands it off.
func (s *Site) handle(topic string, payload []byte) {
	switch {
	case s.topics.DoorOf(topic, "events") != "":
		s.onEvent(s.topics.DoorOf(topic, "events"), topic, payload)
	case s.topics.DoorOf(topic, "sync") != "":
		s.onSync(s.topics.DoorOf(topic, "sync"), topic, payload)
	case s.topics.DoorOf(topic, "status") != "":
		s.onStatus(s.topics.DoorOf(topic, "status"), topic, payload)
	}
}

// onEvent hands an event to the store loop when its door is approved and
// its signature verifies with the door's approved key.
func (s *Site) onEvent(door, topic string, payload []byte) {
	e, err := mqtt.DecodeEvent(payload, s.o.Site, door)
	if err != nil {
		s.refused("event", topic, err)
		return
	}
	if e.Event.Door != "" && e.Event.Door != door {
		s.refused("event", topic, fmt.Errorf("%w: event %d happened at door %q", mqtt.ErrWrongDoor, e.Event.Seq, e.Event.Door))
		return
	}
	id, ok := s.Approved(door)
	if !ok {
		// Debug only: the door's pending identity is logged once.
		s.log.Debug("sitetest: event of a door not approved; refused", "door", door, "seq", e.Event.Seq)
		s.update(func(st *Stats) { st.Unattributed++ })
		return
	}
	if err := s.verifyDoor(door, id, e.VerifySig); err != nil {
		s.log.Warn("sitetest: event not attributable to the door", "door", door, "err", err)
		s.update(func(st *Stats) { st.Unattributed++ })
		return
	}
	s.events <- e
}

// onSync hands a verified sync request of an approved door to the sync
// loop.
func (s *Site) onSync(door, topic string, payload []byte) {
	r, err := mqtt.DecodeSyncRequest(payload, s.o.Site, door)
	if err != nil {
		s.refused("sync request", topic, err)
		return
	}
	id, ok := s.Approved(door)
	if !ok {
		s.log.Debug("sitetest: sync request of a door not approved; refused", "door", door)
		s.update(func(st *Stats) { st.SyncRefused++ })
		return
	}
	if err := s.verifyDoor(door, id, r.VerifySig); err != nil {
		s.log.Warn("sitetest: sync request not signed by the door's approved key; refused", "door", door, "err", err)
		s.update(func(st *Stats) { st.SyncRefused++ })
		return
	}
	s.update(func(st *Stats) { st.SyncRequests++; st.LastSync[door] = r })
	s.syncs <- r
}

// onStatus records a status, learns the identity it announces, and holds
// its signed head when the door is approved with that identity.
func (s *Site) onStatus(door, topic string, payload []byte) {
	st, err := mqtt.DecodeStatus(payload, s.o.Site, door)
	if err != nil {
		s.refused("status", topic, err)
		return
	}
	if st.Fingerprint == "" {
		s.update(func(x *Stats) { x.LastStatus[door] = st })
		return
	}
	id, err := st.Identity()
	if err != nil { // DecodeStatus checked it
		s.refused("status", topic, err)
		return
	}
	s.doorsMu.Lock()
	v, changed := s.book.announce(door, *id)
	pending := s.book.pendingFingerprints()
	s.doorsMu.Unlock()
	switch v {
	case verdictPending:
		if changed {
			s.log.Warn("sitetest: door awaits approval", "door", door, "fingerprint", st.Fingerprint)
		}
	case verdictMismatch:
		s.log.Error("sitetest: approved door announces another identity; not trusted until approved", "door", door, "fingerprint", st.Fingerprint)
	}
	var why string
	if v == verdictApproved && st.NextFingerprint != "" {
		// DecodeStatus checked that the announced key, the approved one,
		// vouched for it.
		if next, err := st.NextIdentity(); err == nil {
			s.doorsMu.Lock()
			changed := s.book.vouched(door, *next)
			pendingNext := s.book.nextFingerprints()
			s.doorsMu.Unlock()
			if changed {
				s.log.Warn("sitetest: door asks to rotate its identity; awaiting approval", "door", door, "next", st.NextFingerprint)
			}
			s.update(func(x *Stats) { x.PendingNext = pendingNext })
		}
	}
	if (v == verdictApproved || v == verdictFormer) && st.HeadSig != "" {
		// DecodeStatus verified the head with the announced key, which
		// is the approved one.
		if why, err = s.holdStatusHead(st); err != nil {
			s.log.Error("sitetest: status head", "door", door, "err", err)
		} else if why != "" {
			s.log.Warn("sitetest: status rewrites what the door signed; head not kept", "door", door, "seq", st.HeadSeq, "why", why)
		}
	}
	s.update(func(x *Stats) {
		x.LastStatus[door] = st
		x.Pending = pending
		if v == verdictMismatch {
			x.IdentityMismatch++
		}
		if why != "" {
			x.Rewrites++
		}
	})
}

// publish sends one QoS 1 message and waits for the broker's PUBACK.
func (s *Site) publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	s.mu.Lock()
	pc, sink := s.pc, s.sink
	s.mu.Unlock()
	if sink != nil {
		return sink(topic, payload, retained)
	}
	if pc == nil {
		return errors.New("sitetest: not running")
	}
	tok := pc.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("sitetest: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sitetest: publish %s: %w", topic, ctx.Err())
	}
}

// send publishes one QoS 1 message without waiting for the PUBACK, when
// the site is running, and reports whether it did.
func (s *Site) send(topic string, payload []byte, retained bool) bool {
	s.mu.Lock()
	pc, sink := s.pc, s.sink
	s.mu.Unlock()
	switch {
	case sink != nil:
		if err := sink(topic, payload, retained); err != nil {
			s.log.Debug("sitetest: send", "topic", topic, "err", err)
			return false
		}
		return true
	case pc != nil:
		pc.Publish(topic, 1, retained, payload)
		return true
	}
	return false
}

// PublishRaw publishes payload as is: for forged and replayed messages.
func (s *Site) PublishRaw(ctx context.Context, topic string, payload []byte, retained bool) error {
	return s.publish(ctx, topic, payload, retained)
}

// SealCommand fills in a command for door (site, next command seq, a random
// id, issued now, expiring in 30 s unless ExpiresAt is set) and seals it.
func (s *Site) SealCommand(door string, c mqtt.Command) (*mqtt.Command, []byte, error) {
	s.mu.Lock()
	s.cmdSeq++
	seq := s.cmdSeq
	s.mu.Unlock()
	now := s.o.Now()
	c.Site, c.Seq, c.Door = s.o.Site, seq, door
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.IssuedAt.Add(30 * time.Second)
	}
	if c.ID == "" {
		var id [12]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, nil, fmt.Errorf("sitetest: command id: %w", err)
		}
		c.ID = hex.EncodeToString(id[:])
	}
	b, err := s.Signer().Seal(&c)
	if err != nil {
		return nil, nil, fmt.Errorf("sitetest: command for %s: %w", door, err)
	}
	return &c, b, nil
}

// Command seals a command for door and publishes it on the door's command
// topic.
func (s *Site) Command(ctx context.Context, door string, c mqtt.Command) (*mqtt.Command, error) {
	cmd, b, err := s.SealCommand(door, c)
	if err != nil {
		return nil, err
	}
	return cmd, s.publish(ctx, s.topics.Cmd(door), b, false)
}

// RotateKey rotates the site's key to next: it signs the rotation with
// the current key (seq: the rotations so far + 1; the current key ends at
// retireAt), publishes the retained key chain with it (the last
// mqtt.MaxRotations rotations, oldest first), and from then on signs
// everything with next. When the chain cannot be published, nothing
// changes.
func (s *Site) RotateKey(ctx context.Context, next *mqtt.Signer, retireAt time.Time) error {
	if next == nil {
		return errors.New("sitetest: rotate key: no next signer")
	}
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	cur := s.Signer()
	seq := uint64(len(s.rotations)) + 1
	link, err := cur.Rotation(s.o.Site, seq, next, s.o.Now(), retireAt)
	if err != nil {
		return fmt.Errorf("sitetest: rotate key %s to %s: %w", cur.KeyID(), next.KeyID(), err)
	}
	chain := append(slices.Clone(s.rotations), json.RawMessage(link))
	kc := mqtt.KeyChain{V: mqtt.Version, Type: mqtt.KindKeys, Site: s.o.Site, Rotations: chain[max(0, len(chain)-mqtt.MaxRotations):]}
	b, err := json.Marshal(kc)
	if err != nil {
		return fmt.Errorf("sitetest: rotate key: key chain: %w", err)
	}
	if len(b) > mqtt.MaxKeysBytes {
		return fmt.Errorf("sitetest: rotate key: key chain of %d bytes, limit %d", len(b), mqtt.MaxKeysBytes)
	}
	if err := s.publish(ctx, s.topics.Keys(), b, true); err != nil {
		return fmt.Errorf("sitetest: rotate key: %w", err)
	}
	s.rotations = chain
	s.mu.Lock()
	s.signer = next
	s.mu.Unlock()
	s.log.Info("sitetest: site key rotated", "seq", seq, "retired", cur.KeyID(), "next", next.KeyID(), "retire_at", retireAt)
	return nil
}

// syncLoop answers sync requests.
func (s *Site) syncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.syncs:
			if err := s.answer(ctx, r); err != nil && ctx.Err() == nil {
				s.log.Warn("sitetest: answer sync", "door", r.Door, "err", err)
			}
		}
	}
}

// verifyDoor checks a door's signature with its approved key, or with the
// key it had before a rotation until it announces the new one as its own.
func (s *Site) verifyDoor(door string, approved mqtt.PublicIdentity, verify func(ed25519.PublicKey) error) error {
	err := verify(approved.SignKey)
	if err == nil {
		return nil
	}
	s.doorsMu.Lock()
	former, ok := s.book.former(door)
	s.doorsMu.Unlock()
	if ok && verify(former.SignKey) == nil {
		return nil
	}
	return err
}
