// Package sitetest is a site for tests and simulations: the allowlist
// authority (a History of signed deltas, answering doors' sync requests
// with deltas or a snapshot, publishing heartbeats and commands) and an
// event collector that stores every door's audit events durably in a bbolt
// file and acknowledges the highest contiguous seq with a signed ack.
//
// It speaks the same wire format as the doors (package mqtt) over a real
// broker, through github.com/eclipse/paho.mqtt.golang.
package sitetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	// Username, Password and TLS log in to the broker.
	Username, Password string
	// TLS is the site's TLS configuration for an ssl:// broker.
	TLS *tls.Config
	// ClientID is the site's MQTT client id (default latch-site-<site>).
	ClientID string
	// Site is the site id of the topic root.
	Site string
	// Signer signs everything the site publishes.
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
	// ChunkBytes is the snapshot chunk size (default mqtt.DefaultChunkBytes).
	ChunkBytes int
	// HeartbeatEvery publishes a heartbeat periodically while Run runs (0:
	// only when Heartbeat is called).
	HeartbeatEvery time.Duration
	// ReconnectMax caps paho's reconnect back-off (default 2 s).
	ReconnectMax time.Duration
	// DoorKeys are the approved signing keys of doors by door id: the
	// events of a door listed here are stored only when they carry a
	// signature that verifies with its key (see mqtt.EventMsg.VerifySig);
	// the others are counted in Stats.Unattributed.
	DoorKeys map[string]ed25519.PublicKey
}

// Stats count what the site has seen.
type Stats struct {
	Connected      bool                         // connected to the broker now
	Connects       int                          // connections made
	EventsReceived int                          // event messages received, repeats included
	EventsStored   int                          // distinct events stored
	Duplicates     int                          // events received again (same seq, same hash)
	Conflicts      int                          // a seq received again with a different hash
	ChainBreaks    int                          // an event whose prev is not the hash of the one before
	Malformed      int                          // door messages that did not decode
	Unattributed   int                          // events of a door with a known key whose signature was missing or wrong
	AcksSent       int                          // signed event acknowledgements sent
	SyncRequests   int                          // sync requests answered
	SyncDeltas     int                          // deltas sent in answer to sync requests
	SyncSnapshots  int                          // snapshots sent in answer to sync requests
	HashMismatches int                          // a door at the head seq with another state hash
	LastStatus     map[string]*mqtt.Status      // each door's latest status
	LastSync       map[string]*mqtt.SyncRequest // each door's latest sync request
}

// Site is a test site. Create it with New, run it with Run.
type Site struct {
	o      Options
	log    *slog.Logger
	topics mqtt.Topics
	db     *bolt.DB
	hist   *History

	events chan *mqtt.EventMsg
	syncs  chan *mqtt.SyncRequest

	mu       sync.Mutex
	pc       paho.Client
	stats    Stats
	updated  chan struct{}
	holdAcks bool
	contig   map[string]uint64 // highest contiguous stored seq per door
	cmdSeq   uint64
}

var bucketEvents = []byte("events")

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
	db, err := bolt.Open(o.DBPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("sitetest: open %s: %w", o.DBPath, err)
	}
	s := &Site{
		o: o, log: o.Logger.With("site", o.Site), topics: mqtt.TopicsFor(o.Site), db: db, hist: NewHistory(),
		events:  make(chan *mqtt.EventMsg, 4096),
		syncs:   make(chan *mqtt.SyncRequest, 64),
		updated: make(chan struct{}),
		contig:  make(map[string]uint64),
	}
	s.stats.LastStatus = make(map[string]*mqtt.Status)
	s.stats.LastSync = make(map[string]*mqtt.SyncRequest)
	if err := s.loadContig(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// History returns the site's allowlist authority.
func (s *Site) History() *History { return s.hist }

// Close closes the collector's file. Call it after Run has returned.
func (s *Site) Close() error { return s.db.Close() }

// Stats returns a copy of the counters.
func (s *Site) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.LastStatus = make(map[string]*mqtt.Status, len(s.stats.LastStatus))
	for k, v := range s.stats.LastStatus {
		st.LastStatus[k] = v
	}
	st.LastSync = make(map[string]*mqtt.SyncRequest, len(s.stats.LastSync))
	for k, v := range s.stats.LastSync {
		st.LastSync[k] = v
	}
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
	doors := make([]string, 0, len(s.contig))
	for d := range s.contig {
		doors = append(doors, d)
	}
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
	wg.Add(2)
	go func() { defer wg.Done(); s.storeLoop(ctx) }()
	go func() { defer wg.Done(); s.syncLoop(ctx) }()
	if s.o.HeartbeatEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}
	<-ctx.Done()
	wg.Wait()
	pc.Disconnect(100)
	return nil
}

func (s *Site) onConnect(pc paho.Client) {
	filters := map[string]byte{
		s.topics.AllDoors("events"): 1,
		s.topics.AllDoors("sync"):   1,
		s.topics.AllDoors("status"): 1,
	}
	tok := pc.SubscribeMultiple(filters, s.onMessage)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		s.log.Error("sitetest: subscribe", "err", tok.Error())
		return
	}
	s.update(func(st *Stats) { st.Connected = true; st.Connects++ })
}

// onMessage decodes door messages and hands them off.
func (s *Site) onMessage(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	switch {
	case s.topics.DoorOf(topic, "events") != "":
		door := s.topics.DoorOf(topic, "events")
		e, err := mqtt.DecodeEvent(m.Payload(), s.o.Site, door)
		if err != nil {
			s.log.Warn("sitetest: bad event", "topic", topic, "err", err)
			s.update(func(st *Stats) { st.Malformed++ })
			return
		}
		if key, ok := s.o.DoorKeys[door]; ok {
			if err := e.VerifySig(key); err != nil {
				s.log.Warn("sitetest: event not attributable to the door", "topic", topic, "err", err)
				s.update(func(st *Stats) { st.Unattributed++ })
				return
			}
		}
		s.events <- e
	case s.topics.DoorOf(topic, "sync") != "":
		door := s.topics.DoorOf(topic, "sync")
		r, err := mqtt.DecodeSyncRequest(m.Payload(), s.o.Site, door)
		if err != nil {
			s.log.Warn("sitetest: bad sync request", "topic", topic, "err", err)
			s.update(func(st *Stats) { st.Malformed++ })
			return
		}
		s.update(func(st *Stats) { st.SyncRequests++; st.LastSync[door] = r })
		s.syncs <- r
	case s.topics.DoorOf(topic, "status") != "":
		door := s.topics.DoorOf(topic, "status")
		st, err := mqtt.DecodeStatus(m.Payload(), s.o.Site, door)
		if err != nil {
			s.log.Warn("sitetest: bad status", "topic", topic, "err", err)
			s.update(func(x *Stats) { x.Malformed++ })
			return
		}
		s.update(func(x *Stats) { x.LastStatus[door] = st })
	}
}

// publish sends one QoS 1 message and waits for the broker's PUBACK.
func (s *Site) publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
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
		return ctx.Err()
	}
}

// PublishRaw publishes payload as is: for forged and replayed messages.
func (s *Site) PublishRaw(ctx context.Context, topic string, payload []byte, retained bool) error {
	return s.publish(ctx, topic, payload, retained)
}

// Commit signs ops as the next delta and records it, without publishing.
func (s *Site) Commit(ops ...store.Op) (uint64, []byte, error) {
	issued := s.o.Now()
	return s.hist.Commit(ops, func(seq uint64) ([]byte, error) {
		return s.o.Signer.Seal(&mqtt.Delta{Header: mqtt.Header{Site: s.o.Site, Seq: seq, IssuedAt: issued}, Ops: ops})
	})
}

// Publish commits ops as the next delta and publishes it to every door.
func (s *Site) Publish(ctx context.Context, ops ...store.Op) (uint64, error) {
	seq, signed, err := s.Commit(ops...)
	if err != nil {
		return 0, err
	}
	return seq, s.publish(ctx, s.topics.ACL(), signed, false)
}

// Heartbeat publishes the retained signed heartbeat with the head seq.
func (s *Site) Heartbeat(ctx context.Context) error {
	seq, _ := s.hist.Head()
	b, err := s.o.Signer.Seal(&mqtt.Heartbeat{Header: mqtt.Header{Site: s.o.Site, Seq: seq, IssuedAt: s.o.Now()}})
	if err != nil {
		return err
	}
	return s.publish(ctx, s.topics.Heartbeat(), b, true)
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
			return nil, nil, err
		}
		c.ID = hex.EncodeToString(id[:])
	}
	b, err := s.o.Signer.Seal(&c)
	return &c, b, err
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

// answer sends a door the deltas it lacks, or a snapshot.
func (s *Site) answer(ctx context.Context, r *mqtt.SyncRequest) error {
	head, hash := s.hist.Head()
	topic := s.topics.DoorACL(r.Door)
	switch {
	case r.AppliedSeq == head:
		if r.SnapshotHash != hash {
			s.update(func(st *Stats) { st.HashMismatches++ })
			s.log.Warn("sitetest: door at head with another state hash", "door", r.Door, "seq", head)
		}
		return nil
	case r.AppliedSeq > head:
		s.log.Warn("sitetest: door ahead of the site", "door", r.Door, "door_seq", r.AppliedSeq, "site_seq", head)
		return nil
	case r.Want != mqtt.WantSnapshot && head-r.AppliedSeq <= uint64(s.o.DeltaLimit):
		ds := s.hist.Deltas(r.AppliedSeq)
		for _, d := range ds {
			if err := s.publish(ctx, topic, d, false); err != nil {
				return err
			}
		}
		s.update(func(st *Stats) { st.SyncDeltas += len(ds) })
		return nil
	}
	snap := s.hist.Snapshot()
	chunks, err := s.o.Signer.SealSnapshot(s.o.Site, snap, s.o.Now(), s.o.ChunkBytes)
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if err := s.publish(ctx, topic, c, false); err != nil {
			return err
		}
	}
	s.update(func(st *Stats) { st.SyncSnapshots++ })
	return nil
}

// storeLoop writes events in batches, one transaction each, then
// acknowledges.
func (s *Site) storeLoop(ctx context.Context) {
	for {
		var batch []*mqtt.EventMsg
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			batch = append(batch, e)
		}
	gather:
		for len(batch) < 1000 {
			select {
			case e := <-s.events:
				batch = append(batch, e)
			default:
				break gather
			}
		}
		doors, err := s.store(batch)
		if err != nil {
			s.log.Error("sitetest: store events", "err", err)
			continue
		}
		for _, d := range doors {
			s.ack(d)
		}
	}
}

func eventKey(door string, seq uint64) []byte {
	k := make([]byte, 0, len(door)+9)
	k = append(k, door...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// store writes a batch and returns the doors it touched.
func (s *Site) store(batch []*mqtt.EventMsg) ([]string, error) {
	var dup, conflict, breaks, stored int
	touched := map[string]bool{}
	s.mu.Lock()
	contig := make(map[string]uint64, len(s.contig))
	for k, v := range s.contig {
		contig[k] = v
	}
	s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		for _, m := range batch {
			touched[m.Door] = true
			k := eventKey(m.Door, m.Event.Seq)
			if old := b.Get(k); old != nil {
				var prev store.Event
				if err := json.Unmarshal(old, &prev); err != nil {
					return err
				}
				if prev.Hash == m.Event.Hash {
					dup++
				} else {
					conflict++
				}
				continue
			}
			v, err := json.Marshal(m.Event)
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
			stored++
		}
		// Advance the contiguous marks and check the chain on the way.
		for door := range touched {
			c := contig[door]
			prevHash := ""
			if c > 0 {
				var e store.Event
				if err := json.Unmarshal(b.Get(eventKey(door, c)), &e); err != nil {
					return err
				}
				prevHash = e.Hash
			}
			for {
				v := b.Get(eventKey(door, c+1))
				if v == nil {
					break
				}
				var e store.Event
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				if prevHash != "" && e.Prev != prevHash {
					breaks++
				}
				prevHash = e.Hash
				c++
			}
			contig[door] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The marks move in the same update as the counts of the batch, so
	// that whoever sees a door's events stored also sees any conflict or
	// chain break among them.
	s.update(func(st *Stats) {
		s.contig = contig
		st.EventsReceived += len(batch)
		st.EventsStored += stored
		st.Duplicates += dup
		st.Conflicts += conflict
		st.ChainBreaks += breaks
	})
	out := make([]string, 0, len(touched))
	for d := range touched {
		out = append(out, d)
	}
	return out, nil
}

// loadContig finds the contiguous marks of a collector file written before.
func (s *Site) loadContig() error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) < 9 {
				return nil
			}
			door := string(k[:len(k)-9])
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			if seq == s.contig[door]+1 {
				s.contig[door] = seq
			}
			return nil
		})
	})
}

// ack publishes a signed ack of door's contiguous seq.
func (s *Site) ack(door string) {
	s.mu.Lock()
	hold, seq := s.holdAcks, s.contig[door]
	s.mu.Unlock()
	if hold || seq == 0 {
		return
	}
	b, err := s.o.Signer.Seal(&mqtt.EventsAck{Header: mqtt.Header{Site: s.o.Site, Seq: seq, IssuedAt: s.o.Now()}, Door: door})
	if err != nil {
		s.log.Error("sitetest: seal ack", "err", err)
		return
	}
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	// Not waiting for the PUBACK: a lost ack is repeated with the next
	// batch or when the door sends again.
	pc.Publish(s.topics.EventsAck(door), 1, false, b)
	s.update(func(st *Stats) { st.AcksSent++ })
}

// Events returns the events stored for door, in seq order.
func (s *Site) Events(door string) ([]store.Event, error) {
	var out []store.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		prefix := append([]byte(door), 0)
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Contiguous returns the highest seq of door stored with every seq before
// it.
func (s *Site) Contiguous(door string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.contig[door]
}
