package site

import (
	"github.com/latchdoor/latch/mqtt"
)

// answer is what a sync request gets: deltas (the seqs to send, in
// order), or chunks of a snapshot plan, or nothing when the door is up to
// date.
type answer struct {
	deltas   []uint64           // the view's deltas to send, in order
	plan     *mqtt.SnapshotPlan // the snapshot whose chunks are sent
	chunks   []int              // those chunks, in order
	newSnap  bool               // the chunks start a snapshot (not a window of one under way)
	rebased  bool               // the view was rebased above the door's seq
	mismatch bool               // the door was at the view's seq with another hash
}

// answer decides what a verified sync request of the view's door gets,
// and rebases the view when the door is ahead of it or at its seq with
// another state: the snapshot that repairs the door must be newer than
// what it applied, or it would refuse it. A door is sent deltas when it is
// at most limit behind, its state hash at its seq is the view's at that
// seq, every delta after it is kept, and it did not ask for a snapshot;
// otherwise the first window chunks of a snapshot of the view. A request
// for chunks of the snapshot planned last, or of the one at the view's
// seq, gets exactly those chunks; a request for chunks of another gets
// the first chunks of the current one.
func (v *view) answer(r *mqtt.SyncRequest, limit, chunkBytes, window int) (answer, error) {
	if w := r.Chunks; w != nil {
		if p := v.plan; p != nil && p.Seq() == w.Seq && p.Hash() == w.Hash {
			return answer{plan: p, chunks: chunkSpan(w.From, w.Count, p.Chunks())}, nil
		}
		p, err := v.currentPlan(chunkBytes)
		if err != nil {
			return answer{}, err
		}
		if p.Seq() == w.Seq && p.Hash() == w.Hash {
			return answer{plan: p, chunks: chunkSpan(w.From, w.Count, p.Chunks())}, nil
		}
		return answer{plan: p, chunks: chunkSpan(0, w.Count, p.Chunks()), newSnap: true}, nil
	}
	var a answer
	switch {
	case r.AppliedSeq == v.seq && r.SnapshotHash == v.hash():
		return a, nil
	case r.AppliedSeq >= v.seq:
		a.mismatch = r.AppliedSeq == v.seq
		a.rebased = true
		v.rebase(r.AppliedSeq + 1)
	case r.Want != mqtt.WantSnapshot && v.seq-r.AppliedSeq <= uint64(limit):
		h, known := v.hashAt(r.AppliedSeq)
		if ds, ok := v.deltasAfter(r.AppliedSeq); ok && known && h == r.SnapshotHash {
			a.deltas = ds
			return a, nil
		}
	}
	p, err := v.currentPlan(chunkBytes)
	if err != nil {
		return answer{}, err
	}
	a.plan, a.chunks, a.newSnap = p, chunkSpan(0, window, p.Chunks()), true
	return a, nil
}

// snapshotAnswer is the first window chunks of a snapshot of the view at
// its seq.
func (v *view) snapshotAnswer(chunkBytes, window int) (answer, error) {
	p, err := v.currentPlan(chunkBytes)
	if err != nil {
		return answer{}, err
	}
	return answer{plan: p, chunks: chunkSpan(0, window, p.Chunks()), newSnap: true}, nil
}

// chunkSpan returns chunk indexes from to from+count-1 that a snapshot of
// n chunks has.
func chunkSpan(from, count, n int) []int {
	var out []int
	for i := max(from, 0); i < from+count && i < n; i++ {
		out = append(out, i)
	}
	return out
}
