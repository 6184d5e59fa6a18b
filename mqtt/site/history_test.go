package site

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/latchdoor/latch/store"
)

// The History applies operations exactly as the store does: after every
// commit its state hash equals that of a store that applied the same
// operations as one delta, and it refuses what the store refuses.
func TestHistoryMatchesStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "door.db"), &store.Options{SkipCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHistory()
	rng := rand.New(rand.NewPCG(1, 2))
	gen := opGen{rng: rng, uids: 40, holders: 8, doors: []string{"front"}}
	refused := 0
	for i := range 500 {
		ops := gen.ops(1 + rng.IntN(4))
		before, _ := h.Head()
		seq, _, herr := h.commit(ops)
		serr := st.ApplyDelta(store.Delta{Seq: before + 1, Ops: ops})
		if (herr == nil) != (serr == nil) {
			t.Fatalf("delta %d: history %v, store %v", i, herr, serr)
		}
		if serr != nil {
			if !errors.Is(serr, store.ErrInvalidOp) {
				t.Fatal(serr)
			}
			refused++
			continue
		}
		ss, err := st.SyncState()
		if err != nil {
			t.Fatal(err)
		}
		if _, hash := h.Head(); ss.AppliedSeq != seq || ss.SnapshotHash != hash {
			t.Fatalf("delta %d: store at %d %s, history at %d %s", i, ss.AppliedSeq, ss.SnapshotHash, seq, hash)
		}
	}
	if refused == 0 {
		t.Fatal("no delta was refused: the refusal path went untested")
	}
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if store.HashSnapshot(snap) != store.HashSnapshot(h.Snapshot()) {
		t.Fatal("snapshots differ")
	}
}

// opGen makes random allowlist operations over a few UIDs, holders and
// door names, some of which the store refuses (a holder deleted while it
// has cards).
type opGen struct {
	rng     *rand.Rand
	uids    int      // distinct card UIDs
	holders int      // distinct holder ids
	doors   []string // names a card's Doors list picks from (door ids, groups, "*")
}

func (g *opGen) uid() []byte    { return []byte{4, 0, 0, byte(g.rng.IntN(g.uids))} }
func (g *opGen) holder() string { return fmt.Sprintf("h%d", g.rng.IntN(g.holders)) }
func (g *opGen) reason() string { return []string{"lost", "stolen", "left"}[g.rng.IntN(3)] }
func (g *opGen) name() string   { return []string{"Ada", "Bo", "Cy"}[g.rng.IntN(3)] }
func (g *opGen) doorList() []string {
	var out []string
	for _, d := range g.doors {
		if g.rng.IntN(3) == 0 {
			out = append(out, d)
		}
	}
	return out
}

func (g *opGen) op() store.Op {
	switch g.rng.IntN(9) {
	case 0, 1:
		return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: g.uid(), HolderID: g.holder(), HolderName: g.name(), Doors: g.doorList()}}
	case 2:
		return store.Op{Kind: store.OpDeleteCard, UID: g.uid()}
	case 3:
		return store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: g.holder(), Name: g.name()}}
	case 4:
		return store.Op{Kind: store.OpDeleteHolder, HolderID: g.holder()}
	case 5:
		return store.Op{Kind: store.OpRevokeCard, UID: g.uid(), Reason: g.reason()}
	case 6:
		return store.Op{Kind: store.OpReinstateCard, UID: g.uid()}
	case 7:
		return store.Op{Kind: store.OpRevokeHolder, HolderID: g.holder(), Reason: g.reason()}
	default:
		return store.Op{Kind: store.OpReinstateHolder, HolderID: g.holder()}
	}
}

func (g *opGen) ops(n int) []store.Op {
	out := make([]store.Op, n)
	for i := range out {
		out[i] = g.op()
	}
	return out
}
