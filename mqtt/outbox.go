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
	acked    uint64          // the store's cursor
	sent     uint64          // highest seq published in order this session
	live     map[uint64]bool // seqs above sent published ahead of the backlog
	progress time.Time       // monotonic time of the last ack progress
}

// outboxReset starts sending from the cursor (a new session).
func (c *Client) outboxReset() {
	acked, err := c.st.Acked()
	if err != nil {
		c.storeErr("outbox cursor", err)
		return
	}
	c.out = outbox{acked: acked, sent: acked, live: make(map[uint64]bool), progress: time.Now()}
	c.update(func(s *Stats) { s.Acked = acked })
	c.fill()
}

// fill publishes events in order until the window is full.
func (c *Client) fill() {
	if !c.connected() || c.fatal != nil {
		return
	}
	for {
		room := c.o.EventWindow - int(c.out.sent-c.out.acked)
		if room <= 0 {
			return
		}
		ask := min(room, 1000)
		evs, err := c.st.EventsAfter(c.out.sent, ask)
		if err != nil {
			c.storeErr("read outbox", err)
			return
		}
		if c.out.sent == c.out.acked && len(evs) > 0 {
			c.out.progress = time.Now() // nothing was in flight: the ack clock starts now
		}
		for _, e := range evs {
			if c.out.live[e.Seq] {
				delete(c.out.live, e.Seq)
			} else if !c.publishEvent(e) {
				return
			}
			c.out.sent = e.Seq
		}
		if len(evs) < ask {
			return
		}
	}
}

// onNotify sends a freshly appended event at once: in order when the
// window has room, ahead of the backlog (up to LiveWindow) otherwise.
func (c *Client) onNotify(e store.Event) {
	if !c.connected() {
		return
	}
	if e.Seq == 0 || e.Seq <= c.out.sent || c.out.live[e.Seq] {
		c.fill()
		return
	}
	if e.Seq == c.out.sent+1 || int(c.out.sent-c.out.acked) < c.o.EventWindow {
		c.fill()
		if e.Seq <= c.out.sent {
			return
		}
	}
	if len(c.out.live) < c.o.LiveWindow && c.publishEvent(e) {
		c.out.live[e.Seq] = true
	}
}

// publishEvent publishes one event message.
func (c *Client) publishEvent(e store.Event) bool {
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
	if !c.publish(c.topics.Events(c.o.Door), b, false) {
		return false
	}
	c.update(func(s *Stats) { s.EventsPublished++ })
	return true
}

// onAck moves the store's cursor on the site's signed acknowledgement.
func (c *Client) onAck(in inbound, a *EventsAck) {
	if a.Door != c.o.Door {
		c.reject(in, fmt.Errorf("events ack: %w: for %q", ErrWrongDoor, a.Door))
		return
	}
	if a.Seq <= c.out.acked {
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
	c.out.acked = a.Seq
	c.out.progress = time.Now()
	if c.out.sent < a.Seq {
		c.out.sent = a.Seq
	}
	for seq := range c.out.live {
		if seq <= a.Seq {
			delete(c.out.live, seq)
		}
	}
	c.update(func(s *Stats) { s.Acked = a.Seq })
	c.fill()
}

// outboxTimers sends again from the cursor when acknowledgements stop
// coming while events are in flight, and sends what the daemon did not
// announce with Notify.
func (c *Client) outboxTimers(now time.Time) {
	if !c.connected() {
		return
	}
	inFlight := c.out.sent > c.out.acked || len(c.out.live) > 0
	if inFlight && now.Sub(c.out.progress) >= c.o.AckTimeout {
		c.log.Info("mqtt: no acknowledgement, sending the outbox again", "from", c.out.acked+1, "sent", c.out.sent)
		c.out.sent = c.out.acked
		clear(c.out.live)
		c.out.progress = now
		c.update(func(s *Stats) { s.Resends++ })
	}
	c.fill()
}
