package sitetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/latchdoor/latch/store"
)

// The History applies operations exactly as the store does: after every
// delta its state hash equals the store's, and it refuses what the store
// refuses.
func TestHistoryMatchesStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "door.db"), &store.Options{SkipCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := NewHistory()
	rng := rand.New(rand.NewPCG(1, 2))
	uid := func() []byte { return []byte{4, 0, 0, byte(rng.IntN(40))} }
	holder := func() string { return fmt.Sprintf("h%d", rng.IntN(8)) }
	randomOp := func() store.Op {
		switch rng.IntN(8) {
		case 0:
			return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid(), HolderID: holder(), Doors: []string{"front"}}}
		case 1:
			return store.Op{Kind: store.OpDeleteCard, UID: uid()}
		case 2:
			return store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: holder(), Name: "N"}}
		case 3:
			return store.Op{Kind: store.OpDeleteHolder, HolderID: holder()}
		case 4:
			return store.Op{Kind: store.OpRevokeCard, UID: uid(), Reason: "lost"}
		case 5:
			return store.Op{Kind: store.OpReinstateCard, UID: uid()}
		case 6:
			return store.Op{Kind: store.OpRevokeHolder, HolderID: holder(), Reason: "left"}
		default:
			return store.Op{Kind: store.OpReinstateHolder, HolderID: holder()}
		}
	}
	refused := 0
	for i := range 500 {
		ops := make([]store.Op, 1+rng.IntN(4))
		for j := range ops {
			ops[j] = randomOp()
		}
		before, _ := h.Head()
		seq, _, herr := h.Commit(ops, func(uint64) ([]byte, error) { return []byte("signed"), nil })
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
	if got := len(h.Deltas(0)); uint64(got) != snap.Seq {
		t.Fatalf("%d deltas kept for seq %d", got, snap.Seq)
	}
}
