package sitetest

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// The collector's file holds, per door:
//
//	events        door, 0, seq (8 bytes BE) → the event, JSON (store.Event)
//	heads         door, 0, seq (8 bytes BE) → a signed head, JSON (headRec)
//	status_heads  door → the highest seq of a head held from a status (8 bytes BE)
//
// A signed head is the door's Ed25519 signature of its audit chain at one
// seq (its hash there): each event the site stores brings one, and each
// status with an identity announces the latest. A head held commits the
// door: an event later sent for that seq with another hash, or a status
// that signs another hash there, is a rewrite of the door's file, refused
// and counted, and the original kept.
var (
	bucketEvents      = []byte("events")
	bucketHeads       = []byte("heads")
	bucketStatusHeads = []byte("status_heads")
)

// Where a held head came from.
const (
	HeadFromEvent  = "event"  // the signature of a stored event
	HeadFromStatus = "status" // the signed head of a status
)

// SignedHead is a door's audit chain head as the door signed it.
type SignedHead struct {
	Seq  uint64 // the chain's seq
	Hash string // its hash there
	Sig  string // the door's Ed25519 signature of the head (see mqtt.Status.VerifyHead), base64
	From string // HeadFromEvent or HeadFromStatus
}

// Verify checks the head's signature as door of site with the door's key.
func (h SignedHead) Verify(site, door string, key ed25519.PublicKey) error {
	st := mqtt.Status{Site: site, Door: door, HeadSeq: h.Seq, HeadHash: h.Hash, HeadSig: h.Sig}
	if err := st.VerifyHead(key); err != nil {
		return fmt.Errorf("sitetest: head %d of door %s: %w", h.Seq, door, err)
	}
	return nil
}

// headRec is a held head's stored form.
type headRec struct {
	Hash string `json:"hash"`
	Sig  string `json:"sig"`
	From string `json:"from"`
}

func eventKey(door string, seq uint64) []byte {
	k := make([]byte, 0, len(door)+9)
	k = append(k, door...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// splitKey returns the door and seq of an events or heads key.
func splitKey(k []byte) (string, uint64, bool) {
	if len(k) < 10 || k[len(k)-9] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

func createBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketHeads, bucketStatusHeads} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

// loadCollector reads the contiguous marks, the latest heads and the
// status heads of a collector file written before.
func (s *Site) loadCollector() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEvents).ForEach(func(k, _ []byte) error {
			door, seq, ok := splitKey(k)
			if ok && seq == s.contig[door]+1 {
				s.contig[door] = seq
			}
			return nil
		}); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if err := tx.Bucket(bucketHeads).ForEach(func(k, v []byte) error {
			door, seq, ok := splitKey(k)
			if !ok {
				return nil
			}
			var h headRec
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("head %d of door %s: %w", seq, door, err)
			}
			s.latest[door] = SignedHead{Seq: seq, Hash: h.Hash, Sig: h.Sig, From: h.From}
			return nil
		}); err != nil {
			return fmt.Errorf("heads: %w", err)
		}
		return tx.Bucket(bucketStatusHeads).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				s.statusMax[string(k)] = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
}

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
			s.log.Error("sitetest: store events", "err", err)
			continue
		}
		for _, d := range doors {
			s.ack(d)
		}
	}
}

// store writes a batch of attributed events with their signed heads and
// returns the doors it touched. An event at a seq already stored with
// another hash, or whose seq has a held head with another hash, is a
// rewrite: refused, the original kept.
func (s *Site) store(batch []*mqtt.EventMsg) ([]string, error) {
	type rewrite struct {
		door     string
		seq      uint64
		old, new string
		what     string
	}
	var dup, conflict, breaks, stored int
	var rewrites []rewrite
	touched := map[string]bool{}
	s.mu.Lock()
	contig := make(map[string]uint64, len(s.contig))
	for k, v := range s.contig {
		contig[k] = v
	}
	latest := make(map[string]SignedHead)
	for _, m := range batch {
		if h, ok := s.latest[m.Door]; ok {
			latest[m.Door] = h
		}
	}
	s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		evb, hb := tx.Bucket(bucketEvents), tx.Bucket(bucketHeads)
		for _, m := range batch {
			touched[m.Door] = true
			k := eventKey(m.Door, m.Event.Seq)
			if old := evb.Get(k); old != nil {
				var prev store.Event
				if err := json.Unmarshal(old, &prev); err != nil {
					return fmt.Errorf("event %d of door %s: %w", m.Event.Seq, m.Door, err)
				}
				if prev.Hash == m.Event.Hash {
					dup++
				} else {
					conflict++
					rewrites = append(rewrites, rewrite{m.Door, m.Event.Seq, prev.Hash, m.Event.Hash, "a stored event"})
				}
				continue
			}
			if old := hb.Get(k); old != nil {
				var h headRec
				if err := json.Unmarshal(old, &h); err != nil {
					return fmt.Errorf("head %d of door %s: %w", m.Event.Seq, m.Door, err)
				}
				if h.Hash != m.Event.Hash {
					rewrites = append(rewrites, rewrite{m.Door, m.Event.Seq, h.Hash, m.Event.Hash, "a signed head from a " + h.From})
					continue
				}
			}
			v, err := json.Marshal(m.Event)
			if err != nil {
				return fmt.Errorf("event %d of door %s: %w", m.Event.Seq, m.Door, err)
			}
			if err := evb.Put(k, v); err != nil {
				return fmt.Errorf("event %d of door %s: %w", m.Event.Seq, m.Door, err)
			}
			if err := putHead(hb, k, headRec{Hash: m.Event.Hash, Sig: m.Sig, From: HeadFromEvent}); err != nil {
				return fmt.Errorf("head %d of door %s: %w", m.Event.Seq, m.Door, err)
			}
			if m.Event.Seq >= latest[m.Door].Seq {
				latest[m.Door] = SignedHead{Seq: m.Event.Seq, Hash: m.Event.Hash, Sig: m.Sig, From: HeadFromEvent}
			}
			stored++
		}
		// Advance the contiguous marks and check the chain on the way.
		for door := range touched {
			c := contig[door]
			prevHash := ""
			if c > 0 {
				var e store.Event
				if err := json.Unmarshal(evb.Get(eventKey(door, c)), &e); err != nil {
					return fmt.Errorf("event %d of door %s: %w", c, door, err)
				}
				prevHash = e.Hash
			}
			for {
				v := evb.Get(eventKey(door, c+1))
				if v == nil {
					break
				}
				var e store.Event
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("event %d of door %s: %w", c+1, door, err)
				}
				if prevHash != "" && e.Prev != prevHash {
					breaks++
				}
				prevHash = e.Hash
				c++
			}
			contig[door] = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sitetest: store %d events: %w", len(batch), err)
	}
	for _, r := range rewrites {
		s.log.Warn("sitetest: event rewrites what the door signed; refused, the original kept",
			"door", r.door, "seq", r.seq, "held_hash", r.old, "sent_hash", r.new, "against", r.what)
	}
	// The marks move in the same update as the counts of the batch, so
	// that whoever sees a door's events stored also sees any conflict or
	// chain break among them.
	s.update(func(st *Stats) {
		s.contig = contig
		for d, h := range latest {
			if h.Seq >= s.latest[d].Seq {
				s.latest[d] = h
			}
		}
		st.EventsReceived += len(batch)
		st.EventsStored += stored
		st.Duplicates += dup
		st.Conflicts += conflict
		st.Rewrites += len(rewrites)
		st.ChainBreaks += breaks
	})
	out := make([]string, 0, len(touched))
	for d := range touched {
		out = append(out, d)
	}
	return out, nil
}

func putHead(b *bolt.Bucket, k []byte, h headRec) error {
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// holdStatusHead keeps the signed head of an approved door's status, whose
// signature verified with the approved key. It returns why the head is a
// rewrite ("" when it is not): its seq is below that of a head held from
// an earlier status (the chain went back), or a head or an event held at
// its seq has another hash. A rewrite is not kept.
func (s *Site) holdStatusHead(st *mqtt.Status) (string, error) {
	door := st.Door
	var why string
	var held SignedHead
	err := s.db.Update(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStatusHeads)
		var most uint64
		if v := sb.Get([]byte(door)); len(v) == 8 {
			most = binary.BigEndian.Uint64(v)
		}
		if st.HeadSeq < most {
			why = fmt.Sprintf("status head %d is behind head %d of an earlier status", st.HeadSeq, most)
			return nil
		}
		k := eventKey(door, st.HeadSeq)
		if v := tx.Bucket(bucketEvents).Get(k); v != nil {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", st.HeadSeq, err)
			}
			if e.Hash != st.HeadHash {
				why = fmt.Sprintf("status head %d has hash %s, the stored event %s", st.HeadSeq, st.HeadHash, e.Hash)
				return nil
			}
		}
		hb := tx.Bucket(bucketHeads)
		if v := hb.Get(k); v != nil {
			var h headRec
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("head %d: %w", st.HeadSeq, err)
			}
			if h.Hash != st.HeadHash {
				why = fmt.Sprintf("status head %d has hash %s, the head held from a %s %s", st.HeadSeq, st.HeadHash, h.From, h.Hash)
				return nil
			}
		} else if err := putHead(hb, k, headRec{Hash: st.HeadHash, Sig: st.HeadSig, From: HeadFromStatus}); err != nil {
			return fmt.Errorf("head %d: %w", st.HeadSeq, err)
		}
		held = SignedHead{Seq: st.HeadSeq, Hash: st.HeadHash, Sig: st.HeadSig, From: HeadFromStatus}
		return sb.Put([]byte(door), binary.BigEndian.AppendUint64(nil, st.HeadSeq))
	})
	if err != nil {
		return "", fmt.Errorf("sitetest: hold status head %d of door %s: %w", st.HeadSeq, door, err)
	}
	if why == "" {
		s.mu.Lock()
		s.statusMax[door] = held.Seq
		if held.Seq > s.latest[door].Seq {
			s.latest[door] = held
		}
		s.mu.Unlock()
	}
	return why, nil
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
		s.log.Error("sitetest: seal ack", "door", door, "err", err)
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
	var out []store.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(door), 0)
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sitetest: events of door %s: %w", door, err)
	}
	return out, nil
}

// Contiguous returns the highest seq of door stored with every seq before
// it.
func (s *Site) Contiguous(door string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.contig[door]
}

// Heads returns the latest signed head held for door: the highest seq
// that a stored event or a status signed, kept in the collector's file.
func (s *Site) Heads(door string) (SignedHead, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.latest[door]
	return h, ok
}
