package mqtt

import (
	"fmt"

	"github.com/latchdoor/latch/store"
)

// maybePromote promotes the door's next identity when the site has sealed
// a message to it: the site seals to the next identity only once an admin
// approved it, so from then on the door is known by it.
func (c *Client) maybePromote(in inbound) {
	next := c.o.NextIdentity
	sm, ok := in.msg.(sealedMsg)
	if next == nil || !ok {
		return
	}
	fp := next.Public().Fingerprint()
	if sm.sealed().To != fp {
		return
	}
	old := c.o.Identity.Public().Fingerprint()
	if err := c.o.PromoteIdentity(next); err != nil {
		// The message opened with the next identity all the same; the
		// promotion is tried again at the next one.
		c.log.Error("mqtt: the site approved the door's next identity, but it could not be made the door's", "fingerprint", fp, "err", err)
		return
	}
	c.o.Identity, c.o.NextIdentity = next, nil
	c.v.Promote()
	c.event(store.ReasonKeyRotated, fmt.Sprintf("door identity %s replaced by %s, approved at the site", old, fp))
	c.log.Warn("mqtt: door identity rotated", "old", old, "new", fp)
	if c.status != nil {
		c.status(true)
	}
}
