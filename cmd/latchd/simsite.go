package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/devbroker"
	"github.com/latchdoor/latch/store"
)

// simSite plays the site's admin for the simulator: it signs messages with
// the demo site key and publishes them on the embedded broker, so that the
// door's signed-message paths (heartbeat, unlock and lockdown commands,
// revocation deltas) can be tried by hand.
type simSite struct {
	signer *mqtt.Signer
	broker *devbroker.Broker
	st     *store.Store
	topics mqtt.Topics
	site   string
	door   string
	to     mqtt.PublicIdentity // the door's identity, which its view is sealed to

	mu     sync.Mutex
	cmdSeq uint64
}

func newSimSite(key ed25519.PrivateKey, b *devbroker.Broker, st *store.Store, site, door string, to mqtt.PublicIdentity) (*simSite, error) {
	s, err := mqtt.NewSigner(simKeyID, key)
	if err != nil {
		return nil, err
	}
	return &simSite{signer: s, broker: b, st: st, topics: mqtt.TopicsFor(site), site: site, door: door, to: to}, nil
}

func (s *simSite) header() mqtt.Header {
	return mqtt.Header{Site: s.site, IssuedAt: time.Now().UTC()}
}

func (s *simSite) publish(topic string, m mqtt.Signed, retained bool) error {
	b, err := s.signer.Seal(m)
	if err != nil {
		return err
	}
	return s.publishRaw(topic, b, retained)
}

func (s *simSite) publishRaw(topic string, b []byte, retained bool) error {
	return s.broker.Publish(topic, b, retained, 1)
}

// heartbeat publishes the site's retained heartbeat at the door's applied
// allowlist seq (the simulator's site has no history of its own).
func (s *simSite) heartbeat() error {
	ss, err := s.st.SyncState()
	if err != nil {
		return err
	}
	h := &mqtt.Heartbeat{Header: s.header(), Door: s.door}
	h.Seq = ss.AppliedSeq
	return s.publish(s.topics.Heartbeat(s.door), h, true)
}

// command publishes a signed command for the door, valid for 30 s.
func (s *simSite) command(action mqtt.Action, dur time.Duration, on *bool) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	s.mu.Lock()
	// Command seqs only grow, across restarts too.
	seq := uint64(time.Now().UnixMilli())
	if seq <= s.cmdSeq {
		seq = s.cmdSeq + 1
	}
	s.cmdSeq = seq
	s.mu.Unlock()
	c := &mqtt.Command{Header: s.header(), Door: s.door, ID: "sim-" + hex.EncodeToString(id[:]), Action: action, On: on}
	c.Seq = seq
	c.ExpiresAt = c.IssuedAt.Add(30 * time.Second)
	if action == mqtt.ActionUnlock {
		c.DurationMS = dur.Milliseconds()
	}
	return s.publish(s.topics.Cmd(s.door), c, false)
}

// delta publishes one allowlist operation as the next delta after the
// door's applied seq, sealed to the door.
func (s *simSite) delta(op store.Op) error {
	ss, err := s.st.SyncState()
	if err != nil {
		return err
	}
	h := s.header()
	b, err := s.signer.SealFor(s.to, mqtt.NewDelta(s.site, s.door, ss.AppliedSeq+1, h.IssuedAt, []store.Op{op}))
	if err != nil {
		return err
	}
	return s.publishRaw(s.topics.DoorACL(s.door), b, false)
}
