package door

import (
	"errors"
	"time"

	"github.com/latchdoor/latch/store"
)

// firstCardRecord is the value of the first-card record: when the started
// window ends; nil clears the record.
func firstCardRecord(until time.Time) []byte {
	if until.IsZero() {
		return nil
	}
	return []byte(until.UTC().Format(time.RFC3339Nano))
}

// firstCardRecorded reports whether the StateStore holds the start of a
// first-card window that has not ended at now, by a trusted clock. A record that is missing,
// unreadable or past keeps the door waiting for a card that counts: the
// safe side. The machine's first evaluation of the schedule ends a start
// whose window is closed.
func (c *Controller) firstCardRecorded(now time.Time) bool {
	if c.p.firstCard == "" {
		return false
	}
	rec, err := c.store.State(c.firstKey)
	switch {
	case errors.Is(err, store.ErrNotFound), err == nil && len(rec) == 0: // never written, or cleared
		return false
	case err != nil:
		c.log.Error("state: reading the first-card record; the schedule waits for a card", "err", err)
		return false
	}
	until, err := time.Parse(time.RFC3339Nano, string(rec))
	if err != nil {
		c.log.Error("state: first-card record does not parse; the schedule waits for a card", "record", string(rec), "err", err)
		return false
	}
	// A clock not yet synchronised (a Pi at 1970) cannot say that the
	// window is still the one recorded.
	return c.trusted() && now.Before(until)
}
