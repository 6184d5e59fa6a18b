package site

import (
	"fmt"
	"sync"

	sitestore "github.com/latchdoor/latch/store/site"
)

// statusBatch holds the statuses received since the last flush: the
// latest of each door, with the highest signed head it carried. A
// thousand doors each sending a status a second cost a few transactions
// a second, not a thousand.
type statusBatch struct {
	mu  sync.Mutex
	ups map[string]sitestore.StatusUpdate
}

// add puts door's status u in the batch, in place of an earlier one. The
// head the batch holds for the door is kept if u carries none; a head
// behind it is not kept, and add says why.
func (b *statusBatch) add(door string, u sitestore.StatusUpdate) (behind string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ups == nil {
		b.ups = make(map[string]sitestore.StatusUpdate)
	}
	if old, ok := b.ups[door]; ok && old.Head != nil {
		switch {
		case u.Head == nil:
			u.Head = old.Head
		case u.Head.Seq < old.Head.Seq:
			behind = fmt.Sprintf("status head %d is behind head %d of an earlier status", u.Head.Seq, old.Head.Seq)
			u.Head = old.Head
		}
	}
	b.ups[door] = u
	return behind
}

// take empties the batch and returns what it held.
func (b *statusBatch) take() map[string]sitestore.StatusUpdate {
	b.mu.Lock()
	defer b.mu.Unlock()
	ups := b.ups
	b.ups = nil
	return ups
}

// putBack returns statuses that could not be written to the batch, unless
// a newer status of the same door came meanwhile.
func (b *statusBatch) putBack(ups map[string]sitestore.StatusUpdate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ups == nil {
		b.ups = make(map[string]sitestore.StatusUpdate, len(ups))
	}
	for d, u := range ups {
		if _, newer := b.ups[d]; !newer {
			b.ups[d] = u
		}
	}
}

// flushStatuses writes the batched statuses in one transaction and holds
// their heads. A head that contradicts what the door signed before is a
// rewrite: not held, counted and logged. When the database refuses the
// write, the statuses wait for the next flush.
func (s *Site) flushStatuses() {
	ups := s.statuses.take()
	if len(ups) == 0 {
		return
	}
	conflicts, err := s.db.RecordStatuses(ups)
	if err != nil {
		s.log.Error("site: record statuses", "doors", len(ups), "err", err)
		s.statuses.putBack(ups)
		return
	}
	s.mu.Lock()
	for door, u := range ups {
		if h := u.Head; h != nil && conflicts[door] == nil {
			s.statusMax[door] = max(s.statusMax[door], h.Seq)
			if h.Seq > s.latest[door].Seq {
				s.latest[door] = *h
			}
		}
	}
	s.mu.Unlock()
	for door, err := range conflicts {
		s.log.Warn("site: status rewrites what the door signed; head not kept", "door", door, "seq", ups[door].Head.Seq, "why", err)
	}
	// Waiters on Updated see the heads held.
	s.update(func(st *Stats) { st.Rewrites += len(conflicts) })
}
