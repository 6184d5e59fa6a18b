package mqtt

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// DefaultChunkBytes is the plaintext budget of one snapshot chunk that
// PlanSnapshot uses when given 0: about 2,000 cards with PIN hashes, whose
// sealed and signed chunk stays under MaxChunkBytes.
const DefaultChunkBytes = 512 << 10

// chunkOverhead is room left in a chunk's plaintext for its JSON framing.
const chunkOverhead = 1024

// maxChunkPlain is the largest chunk budget whose sealed body, in base64,
// and envelope fit in MaxChunkBytes.
const maxChunkPlain = (MaxChunkBytes-4096)/4*3 - 64

// SnapshotPlan is a door's whole view split into chunks: the site plans a
// snapshot once and seals the chunks a door asks for (SealChunk) when it
// asks, so that a door resuming a transfer gets the same chunks again.
type SnapshotPlan struct {
	snap  store.Snapshot
	hash  string
	spans []span
}

// span is a range of the concatenated entry list: holders, then cards,
// then revocations.
type span struct{ from, to int }

// PlanSnapshot splits snap into chunks of at most chunkBytes of entries
// each (0 means DefaultChunkBytes). Entries go holders first, then cards,
// then revocations, each kind in snap's order: a door stores a card more
// compactly when its holder record is already there (see the store's
// schema), and each kind arriving in key order fills its pages whole. The
// plan keeps snap's slices; do not change them while it is in use.
func PlanSnapshot(snap store.Snapshot, chunkBytes int) (*SnapshotPlan, error) {
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	if chunkBytes < 2*chunkOverhead || chunkBytes > maxChunkPlain {
		return nil, fmt.Errorf("mqtt: plan snapshot %d: chunk size %d out of %d..%d", snap.Seq, chunkBytes, 2*chunkOverhead, maxChunkPlain)
	}
	budget := chunkBytes - chunkOverhead
	p := &SnapshotPlan{snap: snap, hash: store.HashSnapshot(snap)}
	total := len(snap.Cards) + len(snap.Holders) + len(snap.Revocations)
	from, size := 0, 0
	for i := range total {
		b, err := json.Marshal(p.entry(i))
		if err != nil {
			return nil, fmt.Errorf("mqtt: plan snapshot %d: entry %d: %w", snap.Seq, i, err)
		}
		n := len(b) + 1
		if n > budget {
			return nil, fmt.Errorf("mqtt: plan snapshot %d: entry %d has %d bytes, more than a chunk holds", snap.Seq, i, len(b))
		}
		if size+n > budget && i > from {
			p.spans = append(p.spans, span{from, i})
			from, size = i, 0
		}
		size += n
	}
	p.spans = append(p.spans, span{from, total})
	if len(p.spans) > MaxSnapshotChunks {
		return nil, fmt.Errorf("mqtt: plan snapshot %d: %d chunks, limit %d", snap.Seq, len(p.spans), MaxSnapshotChunks)
	}
	return p, nil
}

func (p *SnapshotPlan) entry(i int) any {
	s := &p.snap
	switch {
	case i < len(s.Holders):
		return &s.Holders[i]
	case i < len(s.Holders)+len(s.Cards):
		return &s.Cards[i-len(s.Holders)]
	}
	return &s.Revocations[i-len(s.Cards)-len(s.Holders)]
}

// Seq returns the snapshot's view seq.
func (p *SnapshotPlan) Seq() uint64 { return p.snap.Seq }

// Hash returns the snapshot's state hash.
func (p *SnapshotPlan) Hash() string { return p.hash }

// Chunks returns how many chunks the snapshot has.
func (p *SnapshotPlan) Chunks() int { return len(p.spans) }

// Chunk returns chunk i of the snapshot, for door of site, not sealed yet
// (see Signer.SealFor).
func (p *SnapshotPlan) Chunk(i int, site, door string, issuedAt time.Time) *SnapshotChunk {
	sp := p.spans[i]
	s := &p.snap
	nh, nc := len(s.Holders), len(s.Holders)+len(s.Cards)
	total := nc + len(s.Revocations)
	clip := func(lo, hi int) (int, int) {
		return min(max(sp.from, lo), hi) - lo, min(max(sp.to, lo), hi) - lo
	}
	c := &SnapshotChunk{
		Header:  Header{Site: site, Seq: s.Seq, IssuedAt: issuedAt},
		sealing: sealing{Door: door},
		Hash:    p.hash, Chunk: i, Chunks: len(p.spans),
	}
	if a, b := clip(0, nh); a < b {
		c.Holders = s.Holders[a:b]
	}
	if a, b := clip(nh, nc); a < b {
		c.Cards = s.Cards[a:b]
	}
	if a, b := clip(nc, total); a < b {
		c.Revocations = s.Revocations[a:b]
	}
	return c
}

// SealChunk seals chunk i of the plan to the door identity to.
func (s *Signer) SealChunk(p *SnapshotPlan, i int, site, door string, to PublicIdentity, issuedAt time.Time) ([]byte, error) {
	if i < 0 || i >= len(p.spans) {
		return nil, fmt.Errorf("mqtt: seal chunk %d of snapshot %d: it has %d", i, p.Seq(), len(p.spans))
	}
	return s.SealFor(to, p.Chunk(i, site, door, issuedAt))
}

// SealSnapshot plans snap (see PlanSnapshot) and seals every chunk to the
// door identity to.
func (s *Signer) SealSnapshot(site, door string, to PublicIdentity, snap store.Snapshot, issuedAt time.Time, chunkBytes int) ([][]byte, error) {
	p, err := PlanSnapshot(snap, chunkBytes)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, p.Chunks())
	for i := range out {
		if out[i], err = s.SealChunk(p, i, site, door, to, issuedAt); err != nil {
			return nil, err
		}
	}
	return out, nil
}
