package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchdoor/latch/store"
)

// DefaultChunkBytes is the payload budget of one snapshot chunk that
// SealSnapshot uses when given 0: about 1,000 cards with PIN hashes.
const DefaultChunkBytes = 256 << 10

// chunkOverhead is room left in a chunk for its header and envelope.
const chunkOverhead = 1024

// SealSnapshot splits snap into signed chunks of at most chunkBytes of
// entries each (0 means DefaultChunkBytes; at most MaxChunkBytes less 1
// KiB), all carrying snap.Seq, the chunk count and store.HashSnapshot(snap).
// Entries keep their order: cards, then holders, then revocations.
func (s *Signer) SealSnapshot(site string, snap store.Snapshot, issuedAt time.Time, chunkBytes int) ([][]byte, error) {
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	if chunkBytes < 2*chunkOverhead || chunkBytes > MaxChunkBytes-chunkOverhead {
		return nil, fmt.Errorf("mqtt: seal snapshot %d: chunk size %d out of %d..%d", snap.Seq, chunkBytes, 2*chunkOverhead, MaxChunkBytes-chunkOverhead)
	}
	budget := chunkBytes - chunkOverhead
	hash := store.HashSnapshot(snap)

	// Plan the chunks: each is a range of the concatenated entry list.
	type span struct{ from, to int }
	total := len(snap.Cards) + len(snap.Holders) + len(snap.Revocations)
	var spans []span
	from, size := 0, 0
	for i := range total {
		var v any
		switch {
		case i < len(snap.Cards):
			v = &snap.Cards[i]
		case i < len(snap.Cards)+len(snap.Holders):
			v = &snap.Holders[i-len(snap.Cards)]
		default:
			v = &snap.Revocations[i-len(snap.Cards)-len(snap.Holders)]
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("mqtt: seal snapshot %d: entry %d: %w", snap.Seq, i, err)
		}
		n := len(b) + 1
		if n > budget {
			return nil, fmt.Errorf("mqtt: seal snapshot %d: entry %d has %d bytes, more than a chunk holds", snap.Seq, i, len(b))
		}
		if size+n > budget && i > from {
			spans = append(spans, span{from, i})
			from, size = i, 0
		}
		size += n
	}
	spans = append(spans, span{from, total})
	if len(spans) > MaxSnapshotChunks {
		return nil, fmt.Errorf("mqtt: seal snapshot %d: %d chunks, limit %d", snap.Seq, len(spans), MaxSnapshotChunks)
	}

	nc, nh := len(snap.Cards), len(snap.Cards)+len(snap.Holders)
	clip := func(from, to, lo, hi int) (int, int) {
		return min(max(from, lo), hi) - lo, min(max(to, lo), hi) - lo
	}
	out := make([][]byte, 0, len(spans))
	for i, sp := range spans {
		c := &SnapshotChunk{
			Header: Header{Site: site, Seq: snap.Seq, IssuedAt: issuedAt},
			Hash:   hash, Chunk: i, Chunks: len(spans),
		}
		if a, b := clip(sp.from, sp.to, 0, nc); a < b {
			c.Cards = snap.Cards[a:b]
		}
		if a, b := clip(sp.from, sp.to, nc, nh); a < b {
			c.Holders = snap.Holders[a:b]
		}
		if a, b := clip(sp.from, sp.to, nh, total); a < b {
			c.Revocations = snap.Revocations[a:b]
		}
		env, err := s.Seal(c)
		if err != nil {
			return nil, err
		}
		out = append(out, env)
	}
	return out, nil
}

// Errors of snapshot assembly.
var (
	errSnapshotConflict = errors.New("chunks of two different snapshots with the same seq")
	errSnapshotHash     = errors.New("snapshot hash does not match its entries")
	errSnapshotSize     = errors.New("snapshot larger than the door accepts")
)

// assembler collects the chunks of one snapshot. The newest snapshot seen
// wins: a chunk of a higher seq discards a partial older one.
type assembler struct {
	maxBytes int

	seq     uint64
	hash    string
	chunks  int
	got     []*SnapshotChunk
	have    int
	bytes   int
	started time.Time // monotonic, for the assembly timeout
	last    time.Time // monotonic time of the last chunk taken
}

// reset drops any partial snapshot.
func (a *assembler) reset() {
	a.seq, a.hash, a.chunks, a.got, a.have, a.bytes = 0, "", 0, nil, 0, 0
}

// busy reports whether a snapshot is partly assembled, and since when.
func (a *assembler) busy() (bool, time.Time) { return a.seq != 0, a.started }

// add takes one verified chunk of size bytes on the wire. It returns the
// whole snapshot when this chunk completes it (its hash checked), nil while
// chunks are missing or when the chunk is older than the one in progress.
func (a *assembler) add(c *SnapshotChunk, size int, now time.Time) (*store.Snapshot, error) {
	switch {
	case a.seq == 0 || c.Seq > a.seq:
		a.reset()
		a.seq, a.hash, a.chunks = c.Seq, c.Hash, c.Chunks
		a.got = make([]*SnapshotChunk, c.Chunks)
		a.started = now
	case c.Seq < a.seq:
		return nil, nil
	case c.Hash != a.hash || c.Chunks != a.chunks:
		seq := a.seq
		a.reset()
		return nil, fmt.Errorf("snapshot %d: %w", seq, errSnapshotConflict)
	}
	if a.got[c.Chunk] != nil {
		return nil, nil
	}
	if a.bytes+size > a.maxBytes {
		seq := a.seq
		a.reset()
		return nil, fmt.Errorf("snapshot %d: %w (limit %d bytes)", seq, errSnapshotSize, a.maxBytes)
	}
	a.got[c.Chunk] = c
	a.last = now
	a.have++
	a.bytes += size
	if a.have < a.chunks {
		return nil, nil
	}
	snap := &store.Snapshot{Seq: a.seq}
	for _, g := range a.got {
		snap.Cards = append(snap.Cards, g.Cards...)
		snap.Holders = append(snap.Holders, g.Holders...)
		snap.Revocations = append(snap.Revocations, g.Revocations...)
	}
	want := a.hash
	a.reset()
	if got := store.HashSnapshot(*snap); got != want {
		return nil, fmt.Errorf("snapshot %d: %w: entries hash to %s, chunks say %s", snap.Seq, errSnapshotHash, got, want)
	}
	return snap, nil
}
