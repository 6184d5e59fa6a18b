package mqtt

import (
	"errors"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// outbox is the sending side of the store's outbox. Events are published
// in order from the store's cursor (the last seq the site acknowledged),
// at most EventWindow beyond it; the cursor moves only on the site's
// signed acknowledgement. Every new session starts again from the cursor,
// and so does a window that sees no acknowledgement for AckTimeout.
type outbox struct {
	*core
	st    outboxStore
	pub   publisher
	topic string // door/<door>/events

	acked    uint64          // the store's cursor
	sent     uint64          // highest seq published in order this session
	live     map[uint64]bool // seqs above sent published ahead of the backlog
	progress time.Time       // monotonic time of the last ack progress
}

// outboxStore is what the outbox needs from the store.
type outboxStore interface {
	// EventsAfter returns up to max (1..10000) events after seq, in order.
	EventsAfter(seq uint64, max int) ([]store.Event, error)
	// Acked returns the outbox cursor: the highest seq the site acknowledged.
	Acked() (uint64, error)
	// Ack moves the outbox cursor forward (store.ErrAckAhead beyond the head).
	Ack(seq uint64) error
}

func newOutbox(c *core, st outboxStore, pub publisher, topic string) *outbox {
	return &outbox{core: c, st: st, pub: pub, topic: topic, live: make(map[uint64]bool)}
}

// reset starts sending from the cursor (a new session).
func (c *outbox) reset() {
	acked, err := c.st.Acked()
	if err != nil {
		c.storeErr("outbox cursor", err)
		return
	}
	c.acked, c.sent, c.progress = acked, acked, c.mono()
	clear(c.live)
	c.update(func(s *Stats) { s.Acked = acked })
	c.fill()
}

// fill publishes events in order until the window is full.
func (c *outbox) fill() {
	if !c.pub.connected() || c.fatal != nil {
		return
	}
	for {
		room := c.o.EventWindow - int(c.sent-c.acked)
		if room <= 0 {
			return
		}
		ask := min(room, 1000)
		evs, err := c.st.EventsAfter(c.sent, ask)
		if err != nil {
			c.storeErr("read outbox", err)
			return
		}
		if c.sent == c.acked && len(evs) > 0 {
			c.progress = c.mono() // nothing was in flight: the ack clock starts now
		}
		for _, e := range evs {
			if c.live[e.Seq] {
				delete(c.live, e.Seq)
			} else if !c.publishEvent(e) {
				return
			}
			c.sent = e.Seq
		}
		if len(evs) < ask {
			return
		}
	}
}

// notify sends a freshly appended event at once: in order when the
// window has room, ahead of the backlog (up to LiveWindow) otherwise.
func (c *outbox) notify(e store.Event) {
	if !c.pub.connected() {
		return
	}
	if e.Seq == 0 || e.Seq <= c.sent || c.live[e.Seq] {
		c.fill()
		return
	}
	if e.Seq == c.sent+1 || int(c.sent-c.acked) < c.o.EventWindow {
		c.fill()
		if e.Seq <= c.sent {
			return
		}
	}
	if len(c.live) < c.o.LiveWindow && c.publishEvent(e) {
		c.live[e.Seq] = true
	}
}

// publishEvent publishes one event message.
func (c *outbox) publishEvent(e store.Event) bool {
	m := EventMsg{V: Version, Type: KindEvent, Site: c.o.Site, Door: c.o.Door, Event: e}
	sig, err := c.o.Identity.SignHead(c.o.Site, c.o.Door, e.Seq, e.Hash)
	if err != nil {
		c.log.Error("mqtt: sign event", "seq", e.Seq, "err", err)
		return false
	}
	m.Sig = sig
	b, err := marshal("event", m)
	if err != nil {
		c.log.Error("mqtt: event", "seq", e.Seq, "err", err)
		return false
	}
	if !c.pub.publish(c.topic, b, false) {
		return false
	}
	c.update(func(s *Stats) { s.EventsPublished++ })
	return true
}

// onAck moves the store's cursor on the site's signed acknowledgement.
func (c *outbox) onAck(in inbound, a *EventsAck) {
	if a.Door != c.o.Door {
		c.reject(in, fmt.Errorf("events ack: %w: for %q", ErrWrongDoor, a.Door))
		return
	}
	if a.Seq <= c.acked {
		return
	}
	if err := c.st.Ack(a.Seq); err != nil {
		if errors.Is(err, store.ErrAckAhead) {
			c.reject(in, fmt.Errorf("events ack %d: %w", a.Seq, err))
			return
		}
		c.storeErr("ack", err)
		return
	}
	c.acked = a.Seq
	c.progress = c.mono()
	if c.sent < a.Seq {
		c.sent = a.Seq
	}
	for seq := range c.live {
		if seq <= a.Seq {
			delete(c.live, seq)
		}
	}
	c.update(func(s *Stats) { s.Acked = a.Seq })
	c.fill()
}

// tick sends again from the cursor when acknowledgements stop
// coming while events are in flight, and sends what the daemon did not
// announce with Notify.
func (c *outbox) tick(now time.Time) {
	if !c.pub.connected() {
		return
	}
	inFlight := c.sent > c.acked || len(c.live) > 0
	if inFlight && now.Sub(c.progress) >= c.o.AckTimeout {
		c.log.Info("mqtt: no acknowledgement, sending the outbox again", "from", c.acked+1, "sent", c.sent)
		c.sent = c.acked
		clear(c.live)
		c.progress = now
		c.update(func(s *Stats) { s.Resends++ })
	}
	c.fill()
}
