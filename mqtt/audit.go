package mqtt

import (
	"fmt"

	"github.com/latchdoor/latch/store"
)

// event hands one of the client's audit events (type sync) to the journal,
// which writes it in order with the door's events, keeps it while the disk
// fails and counts it if it is lost. The client sends it once Notify says
// it is stored.
func (c *Client) event(reason store.Reason, detail string) {
	c.j.Add(store.JournalEntry{Events: []store.Event{{
		Time:   c.o.Now(),
		Clock:  c.clock(),
		BootID: c.o.BootID,
		Door:   c.o.Door,
		Type:   store.TypeSync,
		Reason: reason,
		Detail: detail,
	}}})
}

// drainRejects writes the summaries of the refusals the rate limits held
// back, whether or not their window is over: at a stop, so that no count
// is lost.
func (c *Client) drainRejects() {
	for _, lim := range []*limiter{&c.rejACL, &c.rejCmd} {
		if n := lim.suppressed; n > 0 {
			lim.suppressed = 0
			c.event(lim.reason, fmt.Sprintf("%d more messages refused in the last %s, not logged one by one", n, lim.window))
		}
	}
}
