package mqtt

import (
	"errors"
	"slices"

	"github.com/latchdoor/latch/store"
)

// maxPendingEvents bounds the audit events kept in memory while the store
// fails to append them.
const maxPendingEvents = 64

// event appends one of the client's audit events (type sync) to the store
// and sends it. If the store fails, the event is kept and appended again on
// the next tick, with its original time.
func (c *Client) event(reason store.Reason, detail string) {
	e := store.Event{
		Time:   c.o.Now(),
		Clock:  c.clock(),
		BootID: c.o.BootID,
		Door:   c.o.Door,
		Type:   store.TypeSync,
		Reason: reason,
		Detail: detail,
	}
	if len(c.pending) > 0 {
		// The store failed a moment ago: wait for the tick, behind the
		// events already waiting.
		c.keep(e)
		return
	}
	if c.appendEvent(e) {
		c.fill()
	}
}

// alarm reports whether events of reason are ones an operator must see:
// refused messages, a stale allowlist, commands carried out. They are
// appended first and dropped last while the store fails; the others
// (allowlist applied) are also told by the allowlist's seq and hash.
func alarm(reason store.Reason) bool {
	switch reason {
	case store.ReasonACLRejected, store.ReasonCommandRejected, store.ReasonACLStale, store.ReasonCommandApplied:
		return true
	}
	return false
}

// appendEvent appends e, and keeps it for later if the store fails for a
// reason that may pass.
func (c *Client) appendEvent(e store.Event) bool {
	_, err := c.st.Append(e)
	if err == nil {
		return true
	}
	c.update(func(s *Stats) { s.AuditFailures++ })
	c.storeErr("append "+string(e.Reason), err)
	if c.fatal != nil || errors.Is(err, store.ErrInvalidArgument) {
		c.lose(e, err.Error())
		return false
	}
	c.keep(e)
	return false
}

// keep queues e for the next tick: alarms ahead of the other events, each
// kind in order. When the queue is full the last one (the newest of the
// lowest kind) is lost.
func (c *Client) keep(e store.Event) {
	i := len(c.pending)
	if alarm(e.Reason) {
		i = slices.IndexFunc(c.pending, func(p store.Event) bool { return !alarm(p.Reason) })
		if i < 0 {
			i = len(c.pending)
		}
	}
	c.pending = slices.Insert(c.pending, i, e)
	if len(c.pending) > maxPendingEvents {
		last := c.pending[len(c.pending)-1]
		c.pending = c.pending[:len(c.pending)-1]
		c.lose(last, "too many events waiting for the store")
	}
	c.update(func(s *Stats) { s.AuditPending = len(c.pending) })
}

// lose logs an audit event that will never reach the store, so that at
// least the log has it.
func (c *Client) lose(e store.Event, why string) {
	c.log.Error("mqtt: audit event lost", "why", why, "time", e.Time, "reason", e.Reason, "detail", e.Detail)
	c.update(func(s *Stats) { s.AuditLost++ })
}

// retryPending appends the events the store failed to append, in queue
// order, until the store fails again.
func (c *Client) retryPending() {
	if len(c.pending) == 0 {
		return
	}
	n := 0
	for n < len(c.pending) && c.fatal == nil {
		if _, err := c.st.Append(c.pending[n]); err != nil {
			c.update(func(s *Stats) { s.AuditFailures++ })
			c.storeErr("append "+string(c.pending[n].Reason), err)
			if c.fatal == nil && !errors.Is(err, store.ErrInvalidArgument) {
				break
			}
			c.lose(c.pending[n], err.Error())
		}
		n++
	}
	c.pending = slices.Delete(c.pending, 0, n)
	if c.fatal != nil {
		for _, e := range c.pending {
			c.lose(e, "the store failed")
		}
		c.pending = nil
	}
	c.update(func(s *Stats) { s.AuditPending = len(c.pending) })
	c.fill()
}
