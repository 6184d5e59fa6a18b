package site

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// The collector keeps, in the site database, every event an approved door
// signed, and the door's signed chain heads: each stored event brings one
// (its signature), and each status with an identity announces the latest.
// A head held commits the door: an event later sent for that seq with
// another hash, or a status that signs another hash there, is a rewrite
// of the door's file, refused and recorded, and the original kept.

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
			s.log.Error("site: store events", "err", err)
			continue
		}
		for _, d := range doors {
			s.ack(d)
		}
	}
}

// attribute returns the events of batch that their door signed, each with
// its signature when that signature itself was checked (else none), and
// counts the others as unattributed. A door's signature of its chain head
// at an event covers every event its hash chain links to, so in each run
// of a door's events that link to one another (after sorting them by
// seq) only the last one's signature is checked; when it does not verify,
// each event of the run is checked on its own. This is what lets the
// collector keep up with many doors: the signature check is most of the
// cost of an event.
func (s *Site) attribute(batch []*mqtt.EventMsg) []*mqtt.EventMsg {
	byDoor := make(map[string][]*mqtt.EventMsg)
	var doors []string
	for _, m := range batch {
		if _, ok := byDoor[m.Door]; !ok {
			doors = append(doors, m.Door)
		}
		byDoor[m.Door] = append(byDoor[m.Door], m)
	}
	out := make([]*mqtt.EventMsg, 0, len(batch))
	refused := 0
	for _, door := range doors {
		evs := byDoor[door]
		id, ok := s.Approved(door)
		if !ok {
			refused += len(evs)
			continue
		}
		slices.SortStableFunc(evs, func(a, b *mqtt.EventMsg) int { return cmp.Compare(a.Event.Seq, b.Event.Seq) })
		for start := 0; start < len(evs); {
			end := start + 1
			for end < len(evs) && links(evs[end-1], evs[end]) {
				end++
			}
			run := evs[start:end]
			start = end
			last := run[len(run)-1]
			if s.verifyDoor(door, id, last.VerifySig) == nil {
				for _, m := range run[:len(run)-1] {
					if m.Event.Hash != last.Event.Hash {
						c := *m
						c.Sig = "" // attributed through the chain, its own signature unchecked
						m = &c
					}
					out = append(out, m)
				}
				out = append(out, last)
				continue
			}
			for _, m := range run {
				if err := s.verifyDoor(door, id, m.VerifySig); err != nil {
					s.refusals.warn(s.log, s.o.Now(), door, "site: event not attributable to the door", "seq", m.Event.Seq, "err", err)
					refused++
					continue
				}
				out = append(out, m)
			}
		}
	}
	if refused > 0 {
		s.update(func(st *Stats) { st.Unattributed += refused })
	}
	return out
}

// links reports whether b follows a in a door's chain: the next seq,
// linking to a's hash, or the same event again.
func links(a, b *mqtt.EventMsg) bool {
	if b.Event.Seq == a.Event.Seq {
		return b.Event.Hash == a.Event.Hash
	}
	return b.Event.Seq == a.Event.Seq+1 && b.Event.Prev == a.Event.Hash
}

// store writes a batch of attributed events with their signatures and
// returns the doors it touched. What the database found wrong (conflicts,
// rewrites, chain breaks, gaps) is recorded there as findings, logged and
// counted.
func (s *Site) store(batch []*mqtt.EventMsg) ([]string, error) {
	if batch = s.attribute(batch); len(batch) == 0 {
		return nil, nil
	}
	in := make([]sitestore.Signed, len(batch))
	for i, m := range batch {
		in[i] = sitestore.Signed{Door: m.Door, Event: m.Event, Sig: m.Sig}
	}
	c, err := s.db.Collect(in, s.o.Now())
	if err != nil {
		return nil, fmt.Errorf("site: store %d events: %w", len(batch), err)
	}
	var conflicts, rewrites, breaks, invalid int
	for _, f := range c.Findings {
		switch f.Reason {
		case sitestore.FindingConflict:
			conflicts++
			rewrites++
		case sitestore.FindingRewrite:
			rewrites++
		case sitestore.FindingChainBreak:
			breaks++
		default:
			invalid++
		}
		s.log.Warn("site: "+string(f.Reason), "door", f.Door, "seq", f.Seq, "detail", f.Detail)
	}
	// The latest head of each door: the signature of its highest signed
	// event in the batch that the database holds (one read per door,
	// unless that event was refused).
	signed := make(map[string][]*mqtt.EventMsg)
	for _, m := range batch {
		if m.Sig != "" {
			signed[m.Door] = append(signed[m.Door], m)
		}
	}
	latest := make(map[string]sitestore.SignedHead)
	for door, ms := range signed {
		slices.SortFunc(ms, func(a, b *mqtt.EventMsg) int { return cmp.Compare(b.Event.Seq, a.Event.Seq) })
		for _, m := range ms {
			if h, err := s.db.Head(door, m.Event.Seq); err == nil && h.Hash == m.Event.Hash {
				latest[door] = h
				break
			}
		}
	}
	// The marks move in the same update as the counts of the batch, so
	// that whoever sees a door's events stored also sees any conflict or
	// chain break among them.
	s.update(func(st *Stats) {
		for d, n := range c.Contiguous {
			s.contig[d] = n
		}
		for d, h := range latest {
			if h.Seq >= s.latest[d].Seq {
				s.latest[d] = h
			}
		}
		st.EventsReceived += len(batch)
		st.EventsStored += c.Stored
		st.Duplicates += c.Dup
		st.Conflicts += conflicts
		st.Rewrites += rewrites
		st.ChainBreaks += breaks
		st.Malformed += invalid
	})
	return c.Doors, nil
}

// ack publishes a signed ack of door's contiguous seq.
func (s *Site) ack(door string) {
	s.mu.Lock()
	hold, seq := s.holdAcks, s.contig[door]
	s.mu.Unlock()
	if hold || seq == 0 {
		return
	}
	b, err := s.Signer().Seal(&mqtt.EventsAck{Header: mqtt.Header{Site: s.o.Site, Seq: seq, IssuedAt: s.o.Now()}, Door: door})
	if err != nil {
		s.log.Error("site: seal ack", "door", door, "err", err)
		return
	}
	// Not waiting for the PUBACK: a lost ack is repeated with the next
	// batch or when the door sends again.
	if s.send(s.topics.EventsAck(door), b, false) {
		s.update(func(st *Stats) { st.AcksSent++ })
	}
}

// Events returns the events stored for door, in seq order.
func (s *Site) Events(door string) ([]store.Event, error) {
	evs, err := s.db.EventsOf(door, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	return evs, nil
}

// Contiguous returns the highest seq of door stored with every seq before
// it.
func (s *Site) Contiguous(door string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.contig[door]
}

// Heads returns the latest signed head held for door: the highest seq
// that a stored event or a status signed, kept in the database.
func (s *Site) Heads(door string) (sitestore.SignedHead, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.latest[door]
	return h, ok
}

// statusJSON is a status as the database records it.
func statusJSON(st *mqtt.Status) json.RawMessage {
	b, err := json.Marshal(st)
	if err != nil {
		return nil
	}
	return b
}

// gapWatch is a hole in a door's stored chain being watched.
type gapWatch struct {
	from     uint64    // its first missing seq
	since    time.Time // when it was first seen
	reported bool      // recorded as a finding
}

// checkGaps looks at each door's stored chain for a hole (events missing
// below one stored): a hole that stays open for GapGrace is recorded as
// a FindingGap, once. A hole that fills is forgotten: doors send again
// what was not acknowledged, and events arrive out of order.
func (s *Site) checkGaps(now time.Time) {
	s.mu.Lock()
	doors := slices.Sorted(maps.Keys(s.contig))
	s.mu.Unlock()
	for _, door := range doors {
		from, to, ok, err := s.db.Hole(door)
		if err != nil {
			s.log.Error("site: check gaps", "door", door, "err", err)
			continue
		}
		w, watched := s.gaps[door]
		switch {
		case !ok:
			delete(s.gaps, door)
			continue
		case !watched || w.from != from:
			s.gaps[door] = &gapWatch{from: from, since: now}
			continue
		case w.reported || now.Sub(w.since) < s.o.GapGrace:
			continue
		}
		f, err := s.db.AddFinding(sitestore.Finding{Time: now, Door: door, Seq: from, Reason: sitestore.FindingGap,
			Detail: fmt.Sprintf("events %d..%d missing for %v while event %d is stored", from, to, now.Sub(w.since).Round(time.Second), to+1)})
		if err != nil {
			s.log.Error("site: record gap", "door", door, "err", err)
			continue
		}
		w.reported = true
		s.log.Warn("site: gap", "door", door, "seq", from, "detail", f.Detail)
		s.update(func(st *Stats) { st.Gaps++ })
	}
}
