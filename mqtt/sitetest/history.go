package sitetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/latchdoor/latch/store"
)

// History is the site's allowlist authority in memory: the current state
// and every signed delta since seq 1, so that a door at any seq can be
// brought up to date with deltas or a snapshot. It applies operations
// with the store's semantics, so store.HashSnapshot of its state equals
// the state hash of a door that applied the same deltas. It is safe for
// concurrent use.
type History struct {
	mu      sync.Mutex
	seq     uint64
	cards   map[string]store.Card
	holders map[string]store.Holder
	revCard map[string]store.Revocation
	revHold map[string]store.Revocation
	deltas  map[uint64][]byte // signed delta by seq

	hashSeq uint64 // seq of hash, computed on demand
	hash    string
}

// NewHistory returns an empty history at seq 0.
func NewHistory() *History {
	h := &History{
		cards:   make(map[string]store.Card),
		holders: make(map[string]store.Holder),
		revCard: make(map[string]store.Revocation),
		revHold: make(map[string]store.Revocation),
		deltas:  make(map[uint64][]byte),
	}
	h.hash = store.HashSnapshot(store.Snapshot{})
	return h
}

// Head returns the current seq and state hash (store.HashSnapshot of the
// state).
func (h *History) Head() (uint64, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hashSeq != h.seq {
		h.hash, h.hashSeq = store.HashSnapshot(h.snapshotLocked()), h.seq
	}
	return h.seq, h.hash
}

// Commit applies ops as delta seq+1, stores its signed form made by seal,
// and returns the new seq and the signed delta. Operations are checked
// against the state the way the store checks them (a holder with cards
// cannot be deleted); an invalid one changes nothing.
func (h *History) Commit(ops []store.Op, seal func(seq uint64) ([]byte, error)) (uint64, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	for i := range ops {
		if err := h.apply(&ops[i], &undo); err != nil {
			rollback()
			return 0, nil, fmt.Errorf("sitetest: delta %d op %d (%s): %w", h.seq+1, i, ops[i].Kind, err)
		}
	}
	signed, err := seal(h.seq + 1)
	if err != nil {
		rollback()
		return 0, nil, err
	}
	h.seq++
	h.deltas[h.seq] = signed
	return h.seq, signed, nil
}

// Deltas returns the signed deltas after seq up to the head, in order.
func (h *History) Deltas(after uint64) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out [][]byte
	for s := after + 1; s <= h.seq; s++ {
		out = append(out, h.deltas[s])
	}
	return out
}

// Snapshot returns the state at the head: cards in UID order, holders in
// id order, card revocations then holder revocations (as the store lists
// them).
func (h *History) Snapshot() store.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshotLocked()
}

func (h *History) snapshotLocked() store.Snapshot {
	s := store.Snapshot{Seq: h.seq}
	for _, k := range slices.Sorted(maps.Keys(h.cards)) {
		s.Cards = append(s.Cards, h.cards[k])
	}
	for _, k := range slices.Sorted(maps.Keys(h.holders)) {
		s.Holders = append(s.Holders, h.holders[k])
	}
	for _, k := range slices.Sorted(maps.Keys(h.revCard)) {
		s.Revocations = append(s.Revocations, h.revCard[k])
	}
	for _, k := range slices.Sorted(maps.Keys(h.revHold)) {
		s.Revocations = append(s.Revocations, h.revHold[k])
	}
	return s
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

func validUID(uid []byte) error {
	if n := len(uid); n != 4 && n != 7 && n != 10 {
		return fmt.Errorf("uid has %d bytes, want 4, 7 or 10", n)
	}
	return nil
}

// apply performs one operation as the store does.
func (h *History) apply(op *store.Op, undo *[]func()) error {
	switch op.Kind {
	case store.OpUpsertCard:
		if op.Card == nil {
			return fmt.Errorf("no card")
		}
		if err := validUID(op.Card.UID); err != nil {
			return err
		}
		if op.Card.HolderID == "" {
			return fmt.Errorf("card without holder id")
		}
		set(h.cards, string(op.Card.UID), *op.Card, undo)
	case store.OpDeleteCard:
		if err := validUID(op.UID); err != nil {
			return err
		}
		del(h.cards, string(op.UID), undo)
	case store.OpUpsertHolder:
		if op.Holder == nil || op.Holder.ID == "" {
			return fmt.Errorf("no holder")
		}
		set(h.holders, op.Holder.ID, *op.Holder, undo)
	case store.OpDeleteHolder:
		for _, c := range h.cards {
			if c.HolderID == op.HolderID {
				return fmt.Errorf("holder %q still has cards", op.HolderID)
			}
		}
		del(h.holders, op.HolderID, undo)
	case store.OpRevokeCard:
		if err := validUID(op.UID); err != nil {
			return err
		}
		set(h.revCard, string(op.UID), store.Revocation{UID: bytes.Clone(op.UID), Reason: op.Reason}, undo)
	case store.OpReinstateCard:
		if err := validUID(op.UID); err != nil {
			return err
		}
		del(h.revCard, string(op.UID), undo)
	case store.OpRevokeHolder:
		if op.HolderID == "" {
			return fmt.Errorf("no holder id")
		}
		set(h.revHold, op.HolderID, store.Revocation{HolderID: op.HolderID, Reason: op.Reason}, undo)
	case store.OpReinstateHolder:
		del(h.revHold, op.HolderID, undo)
	default:
		return fmt.Errorf("unknown operation %q", op.Kind)
	}
	return nil
}
