package site

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

var t0 = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "door.db"), &store.Options{SkipCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// expectView derives a door's view from the whole allowlist the plain
// way, independently of view.diff: the cards that open the door as
// store.Decide reads a card's Doors list (with that list narrowed to the
// door and the door's groups it names), their holders, and the revocations of those cards and holders.
func expectView(all store.Snapshot, door string, groups []string) store.Snapshot {
	var out store.Snapshot
	holders := map[string]bool{}
	uids := map[string]bool{}
	for _, c := range all.Cards {
		if slices.Contains(c.Doors, "*") || slices.Contains(c.Doors, door) || slices.ContainsFunc(c.Doors, func(d string) bool { return slices.Contains(groups, d) }) {
			narrowed := []string{door}
			for _, d := range c.Doors {
				if slices.Contains(groups, d) && !slices.Contains(narrowed, d) {
					narrowed = append(narrowed, d)
				}
			}
			c.Doors = narrowed
			out.Cards = append(out.Cards, c)
			holders[c.HolderID] = true
			uids[string(c.UID)] = true
		}
	}
	for _, h := range all.Holders {
		if holders[h.ID] {
			out.Holders = append(out.Holders, h)
		}
	}
	for _, r := range all.Revocations {
		if (len(r.UID) > 0 && uids[string(r.UID)]) || (r.HolderID != "" && holders[r.HolderID]) {
			out.Revocations = append(out.Revocations, r)
		}
	}
	return out
}

func hashAt(s store.Snapshot, seq uint64) string {
	s.Seq = seq
	return store.HashSnapshot(s)
}

// stateOf returns a store's applied seq and state hash.
func stateOf(t testing.TB, st *store.Store) (uint64, string) {
	t.Helper()
	ss, err := st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	return ss.AppliedSeq, ss.SnapshotHash
}

// applySnapshot stages plan's chunks into st, one by one, and commits it,
// as a door does.
func applySnapshot(t testing.TB, st *store.Store, p *mqtt.SnapshotPlan) {
	t.Helper()
	if err := st.BeginSnapshot(p.Seq(), p.Hash(), p.Chunks()); err != nil {
		t.Fatal(err)
	}
	for i := range p.Chunks() {
		if err := st.StageChunk(p.Seq(), i, p.Chunk(i, "hq", "x", t0).StorePart()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CommitSnapshot(p.Seq()); err != nil {
		t.Fatal(err)
	}
}

type viewDoor struct {
	name   string
	groups []string
}

// Every door's view follows the history: after every commit, the view is
// what expectView derives from the whole allowlist; a door whose view did
// not change keeps its seq; one whose view changed moves one seq, and a
// store that applies its delta (as the door does) ends with the view's
// state hash. A door approved late starts from its view as a first delta,
// and a snapshot of a view planned in small chunks gives the same state.
func TestViewsMatchStores(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { testViewsMatchStores(t, seed) })
	}
}

func testViewsMatchStores(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	gen := opGen{rng: rng, uids: 24, holders: 6, doors: []string{"front", "back", "side", "lobby", "lab", "*", "gone"}}
	doors := []viewDoor{{"front", []string{"lobby"}}, {"back", []string{"lobby", "lab"}}, {"side", nil}}
	h := newHistory()
	type rig struct {
		viewDoor
		v    *view
		st   *store.Store
		seen map[uint64]string // the store's hash at each view seq
	}
	var rigs []*rig
	h.read(func(_ uint64, st *aclState) {
		for _, d := range doors {
			rigs = append(rigs, &rig{viewDoor: d, v: newView(d.name, d.groups, st, t0), st: openStore(t),
				seen: map[uint64]string{0: store.HashSnapshot(store.Snapshot{})}})
		}
	})
	var moved, still, refused, snapshots int
	for i := range 300 {
		ops := gen.ops(1 + rng.IntN(5))
		_, tch, err := h.commit(ops)
		if err != nil {
			refused++
			continue
		}
		all := h.Snapshot()
		for _, r := range rigs {
			before := r.v.seq
			prev := expectView(r.v.snapshot(), r.name, r.groups)
			var changed bool
			h.read(func(_ uint64, st *aclState) { changed = r.v.update(st, tch, t0) })
			want := expectView(all, r.name, r.groups)
			if got := r.v.snapshot(); hashAt(got, 0) != hashAt(want, 0) {
				t.Fatalf("commit %d: view of %s:\n got %+v\nwant %+v", i, r.name, got, want)
			}
			if !changed {
				if r.v.seq != before || hashAt(prev, 0) != hashAt(want, 0) {
					t.Fatalf("commit %d: view of %s changed without a new seq", i, r.name)
				}
				still++
				continue
			}
			if r.v.seq != before+1 || hashAt(prev, 0) == hashAt(want, 0) {
				t.Fatalf("commit %d: view of %s at seq %d (was %d) changed %v", i, r.name, r.v.seq, before, hashAt(prev, 0) != hashAt(want, 0))
			}
			moved++
			d := r.v.deltas[r.v.seq]
			if err := r.st.ApplyDelta(store.Delta{Seq: r.v.seq, Ops: d.ops}); err != nil {
				t.Fatalf("commit %d: door %s refuses its delta %d %+v: %v", i, r.name, r.v.seq, d.ops, err)
			}
			seq, hash := stateOf(t, r.st)
			if seq != r.v.seq || hash != r.v.hash() || hash != store.HashSnapshot(r.v.snapshot()) {
				t.Fatalf("commit %d: door %s at %d %s, view at %d %s", i, r.name, seq, hash, r.v.seq, r.v.hash())
			}
			r.seen[seq] = hash
			// The hash at an earlier seq, worked out again from the
			// steps since.
			old := rng.Uint64N(seq + 1)
			delete(r.v.hashes, old)
			if got, ok := r.v.hashAt(old); !ok || got != r.seen[old] {
				t.Fatalf("commit %d: view of %s at %d: hash %s %v, the store had %s", i, r.name, old, got, ok, r.seen[old])
			}
		}
		if i%50 == 49 {
			// A door approved now, and a door brought up by a snapshot.
			for _, d := range doors {
				st := openStore(t)
				var v *view
				h.read(func(_ uint64, s *aclState) { v = newView(d.name, d.groups, s, t0) })
				if v.seq > 0 {
					if err := st.ApplyDelta(store.Delta{Seq: 1, Ops: v.deltas[1].ops}); err != nil {
						t.Fatalf("commit %d: new door %s refuses its first delta: %v", i, d.name, err)
					}
				}
				if seq, hash := stateOf(t, st); seq != v.seq || hash != v.hash() {
					t.Fatalf("commit %d: new door %s at %d %s, view at %d %s", i, d.name, seq, hash, v.seq, v.hash())
				}
				var r *rig
				for _, x := range rigs {
					if x.name == d.name {
						r = x
					}
				}
				if r.v.seq == 0 {
					continue
				}
				p, err := mqtt.PlanSnapshot(r.v.snapshot(), 2048)
				if err != nil {
					t.Fatal(err)
				}
				st2 := openStore(t)
				applySnapshot(t, st2, p)
				if seq, hash := stateOf(t, st2); seq != r.v.seq || hash != r.v.hash() {
					t.Fatalf("commit %d: snapshot of %s gives %d %s, view at %d %s", i, d.name, seq, hash, r.v.seq, r.v.hash())
				}
				snapshots++
			}
		}
	}
	t.Logf("%d view changes, %d commits that left a view alone, %d commits refused, %d snapshots", moved, still, refused, snapshots)
	if moved == 0 || still == 0 || refused == 0 || snapshots == 0 {
		t.Fatal("a path went untested")
	}
}

func card(n byte, holder string, doors ...string) store.Op {
	return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{4, 0, 0, n}, HolderID: holder, Doors: doors}}
}

// A revocation reaches every door whose view holds the card or holder,
// and no other; a card with an empty Doors list is in no view, one with
// "*" in every view; a holder revocation travels with the holder's card
// into a view it enters.
func TestRevocationReach(t *testing.T) {
	h := newHistory()
	views := map[string]*view{}
	h.read(func(_ uint64, st *aclState) {
		views["front"] = newView("front", []string{"lobby"}, st, t0)
		views["back"] = newView("back", nil, st, t0)
		views["side"] = newView("side", nil, st, t0)
	})
	commit := func(ops ...store.Op) map[string][]store.Op {
		t.Helper()
		_, tch, err := h.commit(ops)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]store.Op{}
		h.read(func(_ uint64, st *aclState) {
			for d, v := range views {
				if v.update(st, tch, t0) {
					out[d] = v.deltas[v.seq].ops
				}
			}
		})
		return out
	}
	kinds := func(ops []store.Op) []store.OpKind {
		var out []store.OpKind
		for _, op := range ops {
			out = append(out, op.Kind)
		}
		return out
	}
	got := commit(
		store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "ada", Name: "Ada"}},
		card(1, "ada", "lobby"), card(2, "ada", "back"), card(3, "bo"), card(4, "cy", "*"))
	if len(got) != 3 || len(got["front"]) != 3 || len(got["back"]) != 3 || len(got["side"]) != 1 {
		t.Fatalf("first commit: %v", got)
	}
	if k := kinds(got["front"]); !slices.Equal(k, []store.OpKind{store.OpUpsertHolder, store.OpUpsertCard, store.OpUpsertCard}) {
		t.Fatalf("front: %v", k)
	}

	got = commit(store.Op{Kind: store.OpRevokeCard, UID: []byte{4, 0, 0, 3}, Reason: "lost"})
	if len(got) != 0 {
		t.Fatalf("revocation of a card in no view reached %v", got)
	}
	got = commit(store.Op{Kind: store.OpRevokeHolder, HolderID: "ada", Reason: "left"})
	if len(got) != 2 || got["front"][0].Kind != store.OpRevokeHolder || got["back"][0].Kind != store.OpRevokeHolder {
		t.Fatalf("holder revocation reached %v", got)
	}
	got = commit(store.Op{Kind: store.OpRevokeCard, UID: []byte{4, 0, 0, 4}, Reason: "stolen"})
	if len(got) != 3 {
		t.Fatalf("revocation of a card for every door reached %v", got)
	}
	// Card 2 moves to side: back loses the card, its holder and the
	// holder's revocation; side gets them, revocations before the card.
	got = commit(card(2, "ada", "side"))
	if k := kinds(got["side"]); !slices.Equal(k, []store.OpKind{store.OpUpsertHolder, store.OpRevokeHolder, store.OpUpsertCard}) {
		t.Fatalf("side: %v", k)
	}
	if k := kinds(got["back"]); !slices.Equal(k, []store.OpKind{store.OpReinstateHolder, store.OpDeleteCard, store.OpDeleteHolder}) {
		t.Fatalf("back: %v", k)
	}
	if _, ok := got["front"]; ok {
		t.Fatalf("front changed: %v", got["front"])
	}
	for d, v := range views {
		for _, c := range v.snapshot().Cards {
			if bytes.Equal(c.UID, []byte{4, 0, 0, 3}) {
				t.Fatalf("door %s holds card 3, which opens no door", d)
			}
		}
	}
}

// A view keeps its last maxSteps steps and the hashes from there on: a door
// that far behind still gets deltas, one further behind a snapshot, and
// the view's memory does not grow with every change.
func TestViewKeepsLastSteps(t *testing.T) {
	h := newHistory()
	var v *view
	h.read(func(_ uint64, st *aclState) { v = newView("front", nil, st, t0) })
	v.maxSteps = 3
	for n := range 10 {
		_, tch, err := h.commit([]store.Op{card(byte(n+1), "ada", "front")})
		if err != nil {
			t.Fatal(err)
		}
		h.read(func(_ uint64, st *aclState) {
			if !v.update(st, tch, t0) {
				t.Fatalf("commit %d left the view alone", n)
			}
		})
		v.hash()
	}
	if v.seq != 10 || v.base != 7 || len(v.deltas) != 3 {
		t.Fatalf("view at %d, base %d, %d deltas kept", v.seq, v.base, len(v.deltas))
	}
	for s := range v.hashes {
		if s < v.base {
			t.Errorf("hash of seq %d kept, before the base %d", s, v.base)
		}
	}
	if ds, ok := v.deltasAfter(7); !ok || !slices.Equal(ds, []uint64{8, 9, 10}) {
		t.Errorf("deltas after 7: %v %v", ds, ok)
	}
	if _, ok := v.deltasAfter(6); ok {
		t.Error("deltas after 6, a step no longer kept")
	}
	if _, ok := v.hashAt(7); !ok {
		t.Error("no hash at the base")
	}
}
