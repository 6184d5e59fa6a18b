// Package site is the site's end of contract v2 (docs/mqtt.md): the
// service `latch serve` runs, speaking to the doors of package mqtt over a
// real broker through github.com/eclipse/paho.mqtt.golang, with everything
// it must not forget in the site database (package store/site).
//
// It is the allowlist authority: every change is committed to the
// database as the next global seq, and each approved door's view of the
// allowlist (the cards that open the door, their holders, and the
// revocations of both) moves along with it, with the door's own seq. A
// door whose view changed gets a delta signed by the site and sealed to
// the door's identity alone, on the door's own topic. The site answers
// the doors' signed sync requests with deltas, or with a snapshot of the
// view in chunks the door asks for; it publishes each door's retained
// heartbeat, signed commands, and the retained chain of its key
// rotations.
//
// It trusts a door only by the identity an admin approved (Site.Approve):
// a door announcing another identity gets nothing, and its events and
// sync requests are refused.
//
// It is also the event collector: it stores every approved door's events
// whose signature verifies, with each event's signature as the door's
// signed chain head, checks each door's chain as they arrive, records
// gaps, chain breaks, conflicts and rewrites as findings, and only then
// acknowledges the highest contiguous seq with a signed ack.
//
// What lives in memory is rebuilt from the database at New: the allowlist
// (for computing views), the doors' views (each at the seq the database
// recorded, with no deltas before it: a door behind it after a restart
// gets a snapshot), the approvals, and the collector's marks.
package site

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
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Options configure a Site.
type Options struct {
	// DB is the site database. The caller opens and closes it.
	DB *sitestore.DB
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
	// HeartbeatEvery publishes the heartbeats periodically while Run
	// runs, and at every connection to the broker, which tells the doors
	// what changed while the site was away (0: only when Heartbeat is
	// called).
	HeartbeatEvery time.Duration
	// ReconnectMax caps the back-off between connection attempts
	// (default 2 s).
	ReconnectMax time.Duration
	// GapGrace is how long a hole in a door's stored chain may stay open
	// before it is recorded as a gap (default 5 minutes): doors send again
	// what was not acknowledged, so most holes fill.
	GapGrace time.Duration
	// SyncWorkers is how many sync requests are answered at once (default
	// 4); SyncQueue how many more may wait (default 1024). A request that
	// finds the queue full is dropped: the door asks again.
	SyncWorkers, SyncQueue int
	// PublishWait bounds how long a publication waits for the broker's
	// acknowledgements (default 10 s). While the site is not connected,
	// nothing is published and nothing waits: doors learn what changed
	// from the heartbeats sent at every connection.
	PublishWait time.Duration
	// StatusFlush is how often, while Run runs, the doors' statuses
	// received meanwhile are written, in one transaction (default 100 ms;
	// the latest of each door is kept). Without Run, each status is
	// written as it is handled.
	StatusFlush time.Duration
}

// Stats count what the site has seen since New.
type Stats struct {
	Connected        bool                         // connected to the broker now
	Connects         int                          // connections made
	EventsReceived   int                          // attributed event messages received, repeats included
	EventsStored     int                          // distinct events stored
	Duplicates       int                          // events received again (same seq, same hash)
	Conflicts        int                          // events whose seq is stored with another hash (each also a rewrite)
	Rewrites         int                          // events and statuses contradicting what the door signed before: refused
	ChainBreaks      int                          // an event whose prev is not the hash of the one before
	Gaps             int                          // holes in a door's stored chain that stayed open for GapGrace
	Malformed        int                          // door messages that did not decode
	WrongDoor        int                          // door messages naming another door than their topic's
	Unattributed     int                          // events of a door not approved, or whose signature does not verify with its approved key
	AcksSent         int                          // signed event acknowledgements sent
	SyncRequests     int                          // verified sync requests of approved doors
	SyncRefused      int                          // sync requests of a door not approved, or whose signature does not verify
	SyncDropped      int                          // verified sync requests dropped while the sync loop was busy (the door asks again)
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

// Site is the site service's MQTT side. Create it with New, run it with
// Run; changes (Commit, Publish), approvals and commands work whether or
// not it runs.
type Site struct {
	o      Options
	db     *sitestore.DB
	log    *slog.Logger
	topics mqtt.Topics
	hist   *History

	events   chan *mqtt.EventMsg
	syncs    chan *mqtt.SyncRequest
	stopped  chan struct{}   // closed when Run ends: handlers stop waiting on the loops
	runCtx   context.Context // Run's context, for the work a connection starts
	stopOnce sync.Once

	pubMu sync.Mutex       // Publish: commits go out in order
	acl   sync.Mutex       // the history's commits, the views, sealing
	views map[string]*view // approved doors' views (acl)

	doorsMu sync.Mutex // before mu
	book    doorBook
	groups  map[string][]string // door groups by door (doorsMu)

	refusals refusalLog // limits the log lines of refused messages

	rotMu     sync.Mutex
	rotations []json.RawMessage

	mu        sync.Mutex
	pc        paho.Client // the current connection's client (connectLoop), nil when Run does not run
	isRunning bool        // Run runs
	signer    *mqtt.Signer
	stats     Stats
	updated   chan struct{}
	holdAcks  bool
	contig    map[string]uint64               // highest contiguous stored seq per door
	latest    map[string]sitestore.SignedHead // the latest signed head held per door
	statusMax map[string]uint64               // the highest head seq held from a status per door
	statuses  statusBatch                     // statuses not written yet
	ids       *mqtt.IdentityCache             // door identities whose keys were checked
	gaps      map[string]*gapWatch            // holes being watched, per door (checkGaps' alone)
	cmdSeq    uint64

	// sink, when set, receives what the site publishes instead of the
	// broker: tests of the package drive the site without one.
	sink func(topic string, payload []byte, retained bool) error
}

// New loads the site's state from the database and returns a site that is
// not connected yet.
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
	if o.SyncWorkers <= 0 {
		o.SyncWorkers = 4
	}
	if o.SyncQueue <= 0 {
		o.SyncQueue = 1024
	}
	if o.StatusFlush <= 0 {
		o.StatusFlush = 100 * time.Millisecond
	}
	if o.PublishWait <= 0 {
		o.PublishWait = 10 * time.Second
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 2 * time.Second
	}
	if o.GapGrace == 0 {
		o.GapGrace = 5 * time.Minute
	}
	if o.ClientID == "" {
		o.ClientID = "latch-site-" + o.Site
	}
	if err := mqtt.CheckID("site", o.Site); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if o.DB == nil {
		return nil, errors.New("site: a database is required")
	}
	if o.Signer == nil {
		return nil, errors.New("site: a signer is required")
	}
	if o.ChunkWindow < 0 || o.ChunkWindow > mqtt.MaxChunkWindow {
		return nil, fmt.Errorf("site: chunk window %d, want 1..%d", o.ChunkWindow, mqtt.MaxChunkWindow)
	}
	if _, err := mqtt.PlanSnapshot(store.Snapshot{}, o.ChunkBytes); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	s := &Site{
		o: o, db: o.DB, log: o.Logger.With("site", o.Site), topics: mqtt.TopicsFor(o.Site),
		events:    make(chan *mqtt.EventMsg, 4096),
		syncs:     make(chan *mqtt.SyncRequest, o.SyncQueue),
		stopped:   make(chan struct{}),
		views:     make(map[string]*view),
		book:      newDoorBook(),
		groups:    make(map[string][]string),
		signer:    o.Signer,
		updated:   make(chan struct{}),
		contig:    make(map[string]uint64),
		latest:    make(map[string]sitestore.SignedHead),
		statusMax: make(map[string]uint64),
		ids:       mqtt.NewIdentityCache(identityCacheSize),
		gaps:      make(map[string]*gapWatch),
	}
	s.stats.Pending = make(map[string]string)
	s.stats.PendingNext = make(map[string]string)
	s.stats.LastStatus = make(map[string]*mqtt.Status)
	s.stats.LastSync = make(map[string]*mqtt.SyncRequest)
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("site: load %s: %w", o.DB.Path(), err)
	}
	return s, nil
}

// load reads the allowlist, the doors, the collector's marks and the key
// chain from the database and builds the views.
func (s *Site) load() error {
	var err error
	if s.hist, err = loadHistory(s.db); err != nil {
		return err
	}
	doors, err := s.db.ListDoors()
	if err != nil {
		return err
	}
	now := s.o.Now()
	fresh := make(map[string]uint64) // views built now that the database has no seq of
	for _, d := range doors {
		if err := s.book.load(&d); err != nil {
			return fmt.Errorf("door %s: %w", d.ID, err)
		}
		s.groups[d.ID] = slices.Clone(d.Groups)
		if d.Approved != nil {
			var v *view
			s.hist.read(func(_ uint64, st *aclState) { v = newView(d.ID, d.Groups, st, now) })
			v.maxSteps = s.o.DeltaLimit
			if d.ViewSeq > 0 {
				// The view as it is now, at the seq the door was last
				// given: a door that applied it has its hash, and any
				// other is sent a snapshot.
				v.rebase(d.ViewSeq)
			} else if v.seq > 0 {
				fresh[d.ID] = v.seq
			}
			s.views[d.ID] = v
		}
		if s.contig[d.ID], err = s.db.Contiguous(d.ID); err != nil {
			return err
		}
		switch h, err := s.db.LatestHead(d.ID); {
		case err == nil:
			s.latest[d.ID] = h
		case !errors.Is(err, sitestore.ErrNotFound):
			return err
		}
		s.statusMax[d.ID] = d.StatusHeadSeq
	}
	s.stats.Pending = s.book.pendingFingerprints()
	s.stats.PendingNext = s.book.nextFingerprints()
	if err := s.db.SetViews(fresh, s.hist.seqNow()); err != nil {
		return err
	}
	if s.rotations, err = s.db.KeyChain(); err != nil {
		return err
	}
	return nil
}

// History returns the site's allowlist authority, to read.
func (s *Site) History() *History { return s.hist }

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
	st.PendingNext = maps.Clone(s.stats.PendingNext)
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
// sync requests and records statuses, and connects again when the
// connection is lost.
func (s *Site) Run(ctx context.Context) error {
	o := paho.NewClientOptions().
		AddBroker(s.o.Broker).
		SetClientID(s.o.ClientID).
		SetUsername(s.o.Username).
		SetPassword(s.o.Password).
		SetTLSConfig(s.o.TLS).
		// A clean session: nothing the site needs is lost with it (doors
		// send again the events it did not acknowledge and the sync
		// requests it did not answer, statuses are retained, and a door
		// that missed a delta asks for it at the next heartbeat).
		SetCleanSession(true).
		SetProtocolVersion(4).
		// Each connection is a new client (connectLoop): paho's own
		// reconnect resumes the publishes in flight, and that resume
		// races with its writer (eclipse-paho/paho.mqtt.golang#703).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(5 * time.Second).
		SetPingTimeout(2 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(false).
		SetOnConnectHandler(s.onConnect)
	s.mu.Lock()
	s.runCtx, s.isRunning = ctx, true
	s.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { s.connectLoop(ctx, o) })
	wg.Go(func() { s.storeLoop(ctx) })
	wg.Go(func() { s.syncLoop(ctx) })
	wg.Go(func() { every(ctx, max(s.o.GapGrace/5, time.Second), func() { s.checkGaps(s.o.Now()) }) })
	wg.Go(func() { every(ctx, s.o.StatusFlush, s.flushStatuses) })
	if s.o.HeartbeatEvery > 0 {
		wg.Go(func() {
			every(ctx, s.o.HeartbeatEvery, func() {
				if err := s.Heartbeat(ctx); err != nil {
					s.log.Debug("site: heartbeat", "err", err)
				}
			})
		})
	}
	<-ctx.Done()
	s.stopOnce.Do(func() { close(s.stopped) })
	wg.Wait()
	s.mu.Lock()
	pc := s.pc
	s.pc, s.isRunning = nil, false
	s.mu.Unlock()
	if pc != nil {
		pc.Disconnect(100)
	}
	// What came in since the last flush; a status handled from now on is
	// written as it comes.
	s.flushStatuses()
	return nil
}

// connectLoop connects, with a new client each time, until ctx ends: after
// a lost connection or a failed attempt it waits 100 ms, doubling up to
// ReconnectMax while attempts fail, each wait ±50% so that a site and its
// broker restarting together do not fall into step.
func (s *Site) connectLoop(ctx context.Context, o *paho.ClientOptions) {
	const first = 100 * time.Millisecond
	wait := first
	// failing is the last failed attempt's error, so that a broker that
	// stays unreachable is reported once per reason, not at every retry.
	failing := ""
	for {
		lost := make(chan struct{})
		var once sync.Once
		co := *o
		co.SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.log.Info("site: connection lost", "err", err)
			s.update(func(st *Stats) { st.Connected = false })
			once.Do(func() { close(lost) })
		})
		pc := paho.NewClient(&co)
		s.mu.Lock()
		s.pc = pc // not connected yet: publications get errNotConnected
		s.mu.Unlock()
		tok := pc.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return // Run disconnects it
		}
		if err := tok.Error(); err != nil {
			if err.Error() != failing {
				s.log.Warn("site: cannot connect to the broker; retrying", "broker", o.Servers, "err", err)
			}
			failing = err.Error()
		} else {
			if failing != "" {
				s.log.Info("site: connected to the broker", "broker", o.Servers)
			}
			failing = ""
			wait = first
			select {
			case <-lost:
			case <-ctx.Done():
				return
			}
		}
		d := wait/2 + mrand.N(wait)
		wait = min(2*wait, s.o.ReconnectMax)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
	}
}

// every runs fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func (s *Site) onConnect(pc paho.Client) {
	filters := map[string]byte{
		s.topics.AllDoors("events"): 1,
		s.topics.AllDoors("sync"):   1,
		s.topics.AllDoors("status"): 1,
	}
	tok := pc.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { s.handle(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		s.log.Error("site: subscribe", "err", tok.Error())
		return
	}
	s.update(func(st *Stats) { st.Connected = true; st.Connects++ })
	// What changed while the site was not connected was committed but
	// not sent: every door's heartbeat says its view's seq, and a door
	// behind it asks.
	s.mu.Lock()
	ctx := s.runCtx
	s.mu.Unlock()
	if s.o.HeartbeatEvery <= 0 {
		return
	}
	go func() {
		if err := s.Heartbeat(ctx); err != nil {
			s.log.Warn("site: heartbeats at connection", "err", err)
		}
	}()
}

// refused counts a door message that did not decode: WrongDoor when it
// names another door than its topic's, else Malformed.
func (s *Site) refused(what, topic string, err error) {
	s.refusals.warn(s.log, s.o.Now(), s.topics.DoorOf(topic, lastLevel(topic)), "site: bad "+what, "topic", topic, "err", err)
	if errors.Is(err, mqtt.ErrWrongDoor) {
		s.update(func(st *Stats) { st.WrongDoor++ })
		return
	}
	s.update(func(st *Stats) { st.Malformed++ })
}

// lastLevel is the last level of a topic.
func lastLevel(topic string) string {
	if i := strings.LastIndexByte(topic, '/'); i >= 0 {
		return topic[i+1:]
	}
	return topic
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

// onEvent hands an event of an approved door to the store loop, which
// checks its signature.
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
	if _, ok := s.Approved(door); !ok {
		// Debug only: the door's pending identity is logged once.
		s.log.Debug("site: event of a door not approved; refused", "door", door, "seq", e.Event.Seq)
		s.update(func(st *Stats) { st.Unattributed++ })
		return
	}
	// The store loop checks the signature (see attribute). Waiting here
	// holds the broker back while the loop is busy; once Run ends, the
	// event is dropped (the door sends it again).
	select {
	case s.events <- e:
	case <-s.stopped:
	}
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
		s.log.Debug("site: sync request of a door not approved; refused", "door", door)
		s.update(func(st *Stats) { st.SyncRefused++ })
		return
	}
	if err := s.verifyDoor(door, id, r.VerifySig); err != nil {
		s.refusals.warn(s.log, s.o.Now(), door, "site: sync request not signed by the door's approved key; refused", "err", err)
		s.update(func(st *Stats) { st.SyncRefused++ })
		return
	}
	s.update(func(st *Stats) { st.SyncRequests++; st.LastSync[door] = r })
	// Never waiting: a door whose request is dropped asks again, and a
	// flood of replayed requests must not hold up the events.
	select {
	case s.syncs <- r:
	default:
		s.log.Debug("site: sync request dropped: the sync loop is busy", "door", door)
		s.update(func(st *Stats) { st.SyncDropped++ })
	}
}

// onStatus records a status, learns the identity it announces, and holds
// its signed head when the door is approved with that identity. A change
// of the door's identities is written at once; the status itself and its
// head join the batch written every StatusFlush (see flushStatuses).
func (s *Site) onStatus(door, topic string, payload []byte) {
	st, err := mqtt.DecodeStatusWith(payload, s.o.Site, door, s.ids)
	if err != nil {
		s.refused("status", topic, err)
		return
	}
	now := s.o.Now()
	up := sitestore.StatusUpdate{Status: statusJSON(st), AppliedSeq: st.ACLSeq, Offline: !st.Online, LastSeen: now}
	if st.Fingerprint == "" {
		s.queueStatus(door, up)
		s.update(func(x *Stats) { x.LastStatus[door] = st })
		return
	}
	id, err := st.Identity()
	if err != nil { // DecodeStatus checked it
		s.refused("status", topic, err)
		return
	}
	var next *mqtt.PublicIdentity
	if st.NextFingerprint != "" {
		// DecodeStatus checked that the announced key vouched for it.
		next, _ = st.NextIdentity()
	}
	var v verdict
	var changed, nextChanged bool
	err = s.changeDoorIf(door, func(b *doorBook) error {
		v, changed = b.announce(door, *id)
		if v == verdictApproved && next != nil {
			nextChanged = b.vouched(door, *next)
		}
		return nil
	}, nil, true, nil)
	if err != nil {
		s.log.Error("site: record status", "door", door, "err", err)
	}
	s.doorsMu.Lock()
	pending, pendingNext := s.book.pendingFingerprints(), s.book.nextFingerprints()
	s.doorsMu.Unlock()
	switch v {
	case verdictPending:
		if changed {
			s.log.Warn("site: door awaits approval", "door", door, "fingerprint", st.Fingerprint)
		}
	case verdictMismatch:
		s.log.Error("site: approved door announces another identity; not trusted until approved", "door", door, "fingerprint", st.Fingerprint)
	}
	if nextChanged {
		s.log.Warn("site: door asks to rotate its identity; awaiting approval", "door", door, "next", st.NextFingerprint)
	}
	var why string
	if (v == verdictApproved || v == verdictFormer) && st.HeadSig != "" {
		// DecodeStatus verified the head with the announced key, which
		// is the approved one.
		s.mu.Lock()
		most := s.statusMax[door]
		s.mu.Unlock()
		if st.HeadSeq < most {
			why = fmt.Sprintf("status head %d is behind head %d of an earlier status", st.HeadSeq, most)
		} else {
			up.Head = &sitestore.SignedHead{Seq: st.HeadSeq, Hash: st.HeadHash, Sig: st.HeadSig, From: sitestore.HeadFromStatus}
		}
	}
	if b := s.queueStatus(door, up); b != "" {
		why = b
	}
	if why != "" {
		s.log.Warn("site: status rewrites what the door signed; head not kept", "door", door, "seq", st.HeadSeq, "why", why)
	}
	s.update(func(x *Stats) {
		x.LastStatus[door] = st
		x.Pending, x.PendingNext = pending, pendingNext
		if v == verdictMismatch {
			x.IdentityMismatch++
		}
		if why != "" {
			x.Rewrites++
		}
	})
}

// identityCacheSize bounds the door identities whose checked keys the
// site remembers: every door's current and next, with room to spare.
const identityCacheSize = 100_000

// queueStatus puts a door's status in the batch (statusBatch.add, whose
// answer it returns); without Run, nothing flushes the batch, so it is
// written at once.
func (s *Site) queueStatus(door string, up sitestore.StatusUpdate) (behind string) {
	behind = s.statuses.add(door, up)
	if !s.running() {
		s.flushStatuses()
	}
	return behind
}

// running reports whether Run runs.
func (s *Site) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isRunning
}

// outMsg is one message the site publishes.
type outMsg struct {
	topic    string
	payload  []byte
	retained bool
}

// errNotConnected is a publication's error while the site is not
// connected to the broker.
var errNotConnected = errors.New("site: not connected to the broker; the doors learn of it from the heartbeats at the next connection")

// publish sends one QoS 1 message and waits for the broker's PUBACK (see
// publishAll).
func (s *Site) publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	return s.publishAll(ctx, []outMsg{{topic, payload, retained}})
}

// publishAll sends QoS 1 messages all at once, in order, and then waits
// for the broker's PUBACKs, for PublishWait at most: a thousand doors'
// deltas cost one round trip, not a thousand. While the site is not
// connected it sends nothing and returns errNotConnected at once, rather
// than hold up the admin whose change is committed.
func (s *Site) publishAll(ctx context.Context, msgs []outMsg) error {
	s.mu.Lock()
	pc, sink := s.pc, s.sink
	s.mu.Unlock()
	if sink != nil {
		var errs []error
		for _, m := range msgs {
			errs = append(errs, sink(m.topic, m.payload, m.retained))
		}
		return errors.Join(errs...)
	}
	switch {
	case pc == nil && !s.running():
		return errors.New("site: not running")
	case len(msgs) == 0:
		return nil
	case pc == nil || !pc.IsConnectionOpen():
		return errNotConnected
	}
	toks := make([]paho.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = pc.Publish(m.topic, 1, m.retained, m.payload)
	}
	wait := time.NewTimer(s.o.PublishWait)
	defer wait.Stop()
	var errs []error
	for i, tok := range toks {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				errs = append(errs, fmt.Errorf("site: publish %s: %w", msgs[i].topic, err))
			}
		case <-wait.C:
			return errors.Join(append(errs, fmt.Errorf("site: %d of %d messages not acknowledged by the broker within %s (the first: %s)",
				len(toks)-i, len(toks), s.o.PublishWait, msgs[i].topic))...)
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("site: publish %s: %w", msgs[i].topic, ctx.Err()))...)
		}
	}
	return errors.Join(errs...)
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
			s.log.Debug("site: send", "topic", topic, "err", err)
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
	// Command seqs only grow, across restarts too (the door refuses a
	// seq it has seen): milliseconds of the site's clock, or one more
	// than the last.
	s.cmdSeq = max(s.cmdSeq+1, uint64(max(s.o.Now().UnixMilli(), 0)))
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
			return nil, nil, fmt.Errorf("site: command id: %w", err)
		}
		c.ID = hex.EncodeToString(id[:])
	}
	b, err := s.Signer().Seal(&c)
	if err != nil {
		return nil, nil, fmt.Errorf("site: command for %s: %w", door, err)
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
		return errors.New("site: rotate key: no next signer")
	}
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	cur := s.Signer()
	seq := uint64(len(s.rotations)) + 1
	link, err := cur.Rotation(s.o.Site, seq, next, s.o.Now(), retireAt)
	if err != nil {
		return fmt.Errorf("site: rotate key %s to %s: %w", cur.KeyID(), next.KeyID(), err)
	}
	chain := append(slices.Clone(s.rotations), json.RawMessage(link))
	kc := mqtt.KeyChain{V: mqtt.Version, Type: mqtt.KindKeys, Site: s.o.Site, Rotations: chain[max(0, len(chain)-mqtt.MaxRotations):]}
	b, err := json.Marshal(kc)
	if err != nil {
		return fmt.Errorf("site: rotate key: key chain: %w", err)
	}
	if len(b) > mqtt.MaxKeysBytes {
		return fmt.Errorf("site: rotate key: key chain of %d bytes, limit %d", len(b), mqtt.MaxKeysBytes)
	}
	if err := s.db.SetKeyChain(chain); err != nil {
		return fmt.Errorf("site: rotate key: %w", err)
	}
	if err := s.publish(ctx, s.topics.Keys(), b, true); err != nil {
		if rerr := s.db.SetKeyChain(s.rotations); rerr != nil {
			s.log.Error("site: rotate key: the key chain recorded is one rotation ahead of the one published", "err", rerr)
		}
		return fmt.Errorf("site: rotate key: %w", err)
	}
	s.rotations = chain
	s.mu.Lock()
	s.signer = next
	s.mu.Unlock()
	s.log.Info("site: site key rotated", "seq", seq, "retired", cur.KeyID(), "next", next.KeyID(), "retire_at", retireAt)
	return nil
}

// syncLoop answers sync requests, SyncWorkers at a time. A door's request
// that comes while another of its requests is being answered waits for
// it, so that a door gets its answers in order.
func (s *Site) syncLoop(ctx context.Context) {
	var (
		mu   sync.Mutex
		busy = make(map[string]*sync.Mutex)
		wg   sync.WaitGroup
	)
	doorLock := func(door string) func() {
		mu.Lock()
		l := busy[door]
		if l == nil {
			l = new(sync.Mutex)
			busy[door] = l
		}
		mu.Unlock()
		l.Lock()
		return l.Unlock
	}
	for range s.o.SyncWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case r := <-s.syncs:
					unlock := doorLock(r.Door)
					err := s.answer(ctx, r)
					unlock()
					if err != nil && ctx.Err() == nil {
						s.log.Warn("site: answer sync", "door", r.Door, "err", err)
					}
				}
			}
		})
	}
	wg.Wait()
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
