package site

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// History is the site's allowlist in memory, as the database holds it: the
// whole allowlist and its global sequence, one step per commit. Doors never see
// it whole: each approved door gets its own view of it (see Site.View),
// with its own sequence. It applies operations with the store's
// semantics, so store.HashSnapshot of its state equals the state hash of
// a store that applied the same operations in the same deltas. It is safe
// for concurrent use; it changes only through Site.Commit and
// Site.Publish, which move the doors' views along with it.
type History struct {
	mu  sync.Mutex
	seq uint64
	st  aclState

	hashSeq uint64 // seq of hash, computed on demand
	hash    string
}

// aclState is a whole allowlist: the history's, keyed as the store keys
// it (cards and card revocations by UID as a string, holders and holder
// revocations by holder id).
type aclState struct {
	cards   map[string]store.Card
	holders map[string]store.Holder
	revCard map[string]store.Revocation
	revHold map[string]store.Revocation
}

func newACLState() aclState {
	return aclState{
		cards:   make(map[string]store.Card),
		holders: make(map[string]store.Holder),
		revCard: make(map[string]store.Revocation),
		revHold: make(map[string]store.Revocation),
	}
}

// snapshot returns the state at seq: cards in UID order, holders in id
// order, card revocations then holder revocations (as the store lists
// them).
func (a *aclState) snapshot(seq uint64) store.Snapshot {
	s := store.Snapshot{Seq: seq}
	for _, k := range slices.Sorted(maps.Keys(a.cards)) {
		s.Cards = append(s.Cards, a.cards[k])
	}
	for _, k := range slices.Sorted(maps.Keys(a.holders)) {
		s.Holders = append(s.Holders, a.holders[k])
	}
	for _, k := range slices.Sorted(maps.Keys(a.revCard)) {
		s.Revocations = append(s.Revocations, a.revCard[k])
	}
	for _, k := range slices.Sorted(maps.Keys(a.revHold)) {
		s.Revocations = append(s.Revocations, a.revHold[k])
	}
	return s
}

// touched names the entries a commit may have changed: card UIDs (the
// card and its revocation) and holder ids (the holder record, its
// revocation, and which views hold it). A card's holders before and after
// are touched with it.
type touched struct {
	cards   map[string]bool
	holders map[string]bool
}

func newTouched() touched {
	return touched{cards: make(map[string]bool), holders: make(map[string]bool)}
}

// all returns every card and holder key of the state as touched: what
// builds a view from nothing.
func (a *aclState) all() touched {
	t := newTouched()
	for k, c := range a.cards {
		t.cards[k] = true
		t.holders[c.HolderID] = true
	}
	for k := range a.holders {
		t.holders[k] = true
	}
	for k := range a.revCard {
		t.cards[k] = true
	}
	for k := range a.revHold {
		t.holders[k] = true
	}
	return t
}

// newHistory returns an empty history at seq 0.
func newHistory() *History {
	h := &History{st: newACLState()}
	h.hash = store.HashSnapshot(store.Snapshot{})
	return h
}

// loadHistory reads the allowlist from the database.
func loadHistory(db *sitestore.DB) (*History, error) {
	sn, err := db.Snapshot()
	if err != nil {
		return nil, err
	}
	h := newHistory()
	for _, c := range sn.Cards {
		h.st.cards[string(c.UID)] = c
	}
	for _, x := range sn.Holders {
		h.st.holders[x.ID] = x
	}
	for _, r := range sn.Revocations {
		if r.HolderID != "" {
			h.st.revHold[r.HolderID] = r
		} else {
			h.st.revCard[string(r.UID)] = r
		}
	}
	h.seq = sn.Seq
	return h, nil
}

// seqNow returns the global seq.
func (h *History) seqNow() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Head returns the global seq and state hash (store.HashSnapshot of the
// whole allowlist). A door's position is its view's (Site.Head), not this.
func (h *History) Head() (uint64, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hashSeq != h.seq {
		h.hash, h.hashSeq = store.HashSnapshot(h.st.snapshot(h.seq)), h.seq
	}
	return h.seq, h.hash
}

// Snapshot returns the whole allowlist at the global seq.
func (h *History) Snapshot() store.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st.snapshot(h.seq)
}

// read runs fn on the state under the history's lock.
func (h *History) read(fn func(seq uint64, st *aclState)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h.seq, &h.st)
}

// commit applies ops as global seq+1 and returns the new seq and what it
// touched. Operations are checked against the state the way the store
// checks them (a holder with cards cannot be deleted); an invalid one
// changes nothing.
func (h *History) commit(ops []store.Op) (uint64, touched, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var undo []func()
	t := newTouched()
	for i := range ops {
		if err := h.apply(&ops[i], &undo, t); err != nil {
			for j := len(undo) - 1; j >= 0; j-- {
				undo[j]()
			}
			return 0, touched{}, fmt.Errorf("site: commit %d op %d (%s): %w", h.seq+1, i, ops[i].Kind, err)
		}
	}
	h.seq++
	return h.seq, t, nil
}

// set puts v at k in m, remembering how to undo it.
func set[V any](m map[string]V, k string, v V, undo *[]func()) {
	old, had := m[k]
	*undo = append(*undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	m[k] = v
}

// del deletes k from m, remembering how to undo it.
func del[V any](m map[string]V, k string, undo *[]func()) {
	old, had := m[k]
	if !had {
		return
	}
	*undo = append(*undo, func() { m[k] = old })
	delete(m, k)
}

// cloneCard returns a copy of c that shares no memory with it.
func cloneCard(c store.Card) store.Card {
	c.UID = bytes.Clone(c.UID)
	c.Doors = slices.Clone(c.Doors)
	for d := range c.Schedule.Weekly {
		c.Schedule.Weekly[d] = slices.Clone(c.Schedule.Weekly[d])
	}
	c.Schedule.Holidays = slices.Clone(c.Schedule.Holidays)
	return c
}

// apply performs one operation as the store does and records what it
// touched.
func (h *History) apply(op *store.Op, undo *[]func(), t touched) error {
	st := &h.st
	switch op.Kind {
	case store.OpUpsertCard:
		if op.Card == nil {
			return fmt.Errorf("no card")
		}
		if err := store.CheckCardKey(op.Card.UID); err != nil {
			return err
		}
		if op.Card.HolderID == "" {
			return fmt.Errorf("card without holder id")
		}
		k := string(op.Card.UID)
		if old, ok := st.cards[k]; ok {
			t.holders[old.HolderID] = true
		}
		set(st.cards, k, cloneCard(*op.Card), undo)
		t.cards[k] = true
		t.holders[op.Card.HolderID] = true
	case store.OpDeleteCard:
		if err := store.CheckCardKey(op.UID); err != nil {
			return err
		}
		k := string(op.UID)
		if old, ok := st.cards[k]; ok {
			t.holders[old.HolderID] = true
		}
		del(st.cards, k, undo)
		t.cards[k] = true
	case store.OpUpsertHolder:
		if op.Holder == nil || op.Holder.ID == "" {
			return fmt.Errorf("no holder")
		}
		set(st.holders, op.Holder.ID, *op.Holder, undo)
		t.holders[op.Holder.ID] = true
	case store.OpDeleteHolder:
		for _, c := range st.cards {
			if c.HolderID == op.HolderID {
				return fmt.Errorf("holder %q still has cards", op.HolderID)
			}
		}
		del(st.holders, op.HolderID, undo)
		t.holders[op.HolderID] = true
	case store.OpRevokeCard:
		if err := store.CheckCardKey(op.UID); err != nil {
			return err
		}
		set(st.revCard, string(op.UID), store.Revocation{UID: bytes.Clone(op.UID), Reason: op.Reason}, undo)
		t.cards[string(op.UID)] = true
	case store.OpReinstateCard:
		if err := store.CheckCardKey(op.UID); err != nil {
			return err
		}
		del(st.revCard, string(op.UID), undo)
		t.cards[string(op.UID)] = true
	case store.OpRevokeHolder:
		if op.HolderID == "" {
			return fmt.Errorf("no holder id")
		}
		set(st.revHold, op.HolderID, store.Revocation{HolderID: op.HolderID, Reason: op.Reason}, undo)
		t.holders[op.HolderID] = true
	case store.OpReinstateHolder:
		del(st.revHold, op.HolderID, undo)
		t.holders[op.HolderID] = true
	default:
		return fmt.Errorf("unknown operation %q", op.Kind)
	}
	return nil
}
