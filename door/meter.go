package door

import (
	"time"

	"github.com/latchdoor/latch/store"
)

// Meter is told what the controller decides, for counters and latency
// histograms. The controller calls it from its own goroutine only, so its
// methods must return at once: no I/O, no locks held for long.
type Meter interface {
	// Decision is told the reason of each grant or denial, once, as the
	// decision's audit event goes to the journal. A grant counts once its
	// record is written; a grant whose record fails counts as what the
	// door records instead (journal_fault, or the grant recorded late).
	Decision(reason store.Reason)
	// Answered is told, for each allowlist question, how long it took
	// from the controller asking to the answer reaching the controller,
	// on the controller's clock. pin is true for a question with a PIN
	// (the PIN stage, or a code typed without a card).
	Answered(took time.Duration, pin bool)
}

// meterState is what the controller keeps for its Meter; Run owns it.
type meterState struct {
	asked    uint64 // the id of the last question asked
	askedAt  time.Time
	askedPIN bool
	// grants are the reasons of grants whose record is being written,
	// by decision id.
	grants map[uint64]store.Reason
}

// meterAsked notes an allowlist question being asked.
func (c *Controller) meterAsked(a actDecide) {
	if c.meter == nil {
		return
	}
	c.mt.asked, c.mt.askedAt, c.mt.askedPIN = a.id, c.clock.Now(), a.req.PIN != nil
}

// meterEvent reports the answer to the last question asked and a grant
// whose record was written.
func (c *Controller) meterEvent(e event) {
	if c.meter == nil {
		return
	}
	switch e := e.(type) {
	case evDecided:
		if e.id == c.mt.asked && !c.mt.askedAt.IsZero() {
			c.meter.Answered(c.clock.Now().Sub(c.mt.askedAt), c.mt.askedPIN)
			c.mt.askedAt = time.Time{}
		}
	case evRecorded:
		r, ok := c.mt.grants[e.id]
		if !ok {
			return
		}
		delete(c.mt.grants, e.id)
		if e.err == nil {
			c.meter.Decision(r)
		}
	}
}

// meterLogged reports an access event the loop hands to the journal.
func (c *Controller) meterLogged(ev store.Event) {
	if c.meter != nil && ev.Type == store.TypeAccess {
		c.meter.Decision(ev.Reason)
	}
}

// meterGranting notes a grant whose record is being written: it counts
// when the record is.
func (c *Controller) meterGranting(a actRecordGrant) {
	if c.meter == nil {
		return
	}
	if c.mt.grants == nil {
		c.mt.grants = make(map[uint64]store.Reason)
	}
	c.mt.grants[a.id] = a.ev.Reason
}
