package site

import (
	"bytes"
	"maps"
	"slices"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// A door's view is the part of the allowlist that concerns it: the cards
// that open it (their Doors list names the door, one of its groups at the
// site, or "*", as store.Decide reads it; a card with an empty list opens
// no door and is in no view), each with its door list narrowed to the
// door's id and the door's own groups the card names (so that the door,
// which does not know its groups at the site, decides the same, and a
// first-card schedule can tell the cards of its group), the holder records of those cards, and the
// revocations of those cards and of those holders. Nothing else reaches
// the door, so a door's store holds no UID or PIN hash it has no use for.
//
// A view has its own sequence: 0 while it is empty and unchanged, then one
// step for each global commit that changes it. Each step keeps the ordered
// operations that move a door's store from the view before to the view
// after (its delta), and what those entries were before it, so that a door
// at any seq since the view's base is brought up to date with deltas, and
// a door whose hash at its seq is not the view's there is sent a snapshot.
// State hashes are computed when asked for (the view at an earlier seq is
// the current one with the entries of the later steps as they were) and
// kept: a commit costs what it changes, not the size of the view.

// viewDelta is one step of a view: its operations, the entries they
// changed as they were before, when it was made, and its sealed form once
// sealed (to the identity fp, signed by kid).
type viewDelta struct {
	ops      []store.Op
	before   []image
	issuedAt time.Time

	kid, fp string
	msg     []byte
}

// Kinds of view entries.
const (
	entryCard byte = iota
	entryHolder
	entryRevCard
	entryRevHolder
)

// entryKey names one entry of a view.
type entryKey struct {
	kind byte
	key  string
}

// image is an entry as it was before a step: absent (nil), or its value,
// a *store.Card, *store.Holder or *store.Revocation as the entry's kind
// says. A view keeps its last DeltaLimit steps' images: one value each,
// not room for all three kinds.
type image struct {
	entryKey
	val any
}

// view is one door's view of the allowlist.
type view struct {
	door   string
	groups []string

	seq       uint64
	cards     map[string]store.Card
	holders   map[string]store.Holder
	revCard   map[string]store.Revocation
	revHold   map[string]store.Revocation
	perHolder map[string]int // view cards per holder id

	base     uint64                // the oldest seq the view can tell the state hash of
	maxSteps int                   // how many steps the view keeps (0: all): the site's DeltaLimit
	hashes   map[uint64]string     // state hashes computed, by seq
	deltas   map[uint64]*viewDelta // the delta to each seq, when there is one
	plan     *mqtt.SnapshotPlan    // the latest snapshot planned

	before []image // the step being made (diff)
}

// newView returns door's view of st at seq 1 with a delta from the empty
// view, or an empty view at seq 0 when nothing in st concerns the door.
func newView(door string, groups []string, st *aclState, now time.Time) *view {
	v := &view{
		door: door, groups: slices.Clone(groups),
		cards: make(map[string]store.Card), holders: make(map[string]store.Holder),
		revCard: make(map[string]store.Revocation), revHold: make(map[string]store.Revocation),
		perHolder: make(map[string]int),
		hashes:    map[uint64]string{0: store.HashSnapshot(store.Snapshot{})},
		deltas:    make(map[uint64]*viewDelta),
	}
	v.update(st, st.all(), now)
	return v
}

// opens reports whether card c opens the door in the store's reading
// (store.Decide): its Doors list names "*", the door, or one of the
// door's groups.
func (v *view) opens(c *store.Card) bool {
	_, ok := opensVia(c.Doors, v.door, v.groups)
	return ok
}

// opensVia reports whether a card with the door list doors opens door,
// in groups, and through which entry of the list: "*", the door's id, or
// one of its groups. It is the rule of a door's view (and of
// store.Decide on the view).
func opensVia(doors []string, door string, groups []string) (string, bool) {
	for _, d := range doors {
		if d == "*" || d == door || slices.Contains(groups, d) {
			return d, true
		}
	}
	return "", false
}

// narrow returns the card as the door's view holds it: its door list is
// the door's id and the entries of the card's list that name one of the
// door's own groups (a first-card unlock schedule counts cards by such a
// group). The door decides by its own id, whatever group made the card
// open it, and learns no other door's or group's name.
func (v *view) narrow(c store.Card) store.Card {
	doors := []string{v.door}
	for _, d := range c.Doors {
		if d != v.door && slices.Contains(v.groups, d) && !slices.Contains(doors, d) {
			doors = append(doors, d)
		}
	}
	c.Doors = doors
	return c
}

// sameCard reports whether two cards are the same entry to a store: the
// same canonical encoding.
func sameCard(a, b *store.Card) bool {
	return store.HashSnapshot(store.Snapshot{Cards: []store.Card{*a}}) ==
		store.HashSnapshot(store.Snapshot{Cards: []store.Card{*b}})
}

// update brings the view in step with st after a commit that touched t:
// when the view changed, it takes the next seq, keeps the delta, and
// returns true.
func (v *view) update(st *aclState, t touched, now time.Time) bool {
	v.before = nil
	ops := v.diff(st, t)
	if len(ops) == 0 {
		return false
	}
	v.seq++
	v.deltas[v.seq] = &viewDelta{ops: ops, before: v.before, issuedAt: now}
	v.before = nil
	v.trim()
	return true
}

// sealedSteps is how many of its last steps a view keeps sealed.
const sealedSteps = 4

// trim drops the steps older than the last maxSteps, and the state hashes
// before them: a door further behind gets a snapshot (DeltaLimit), so
// they would only grow with every change for as long as the site runs.
// It drops the sealed form of the steps before the last sealedSteps.
func (v *view) trim() {
	// The sealed form is kept for the last few steps, which a door that
	// missed a message asks for again; older ones are sealed anew.
	if d := v.deltas[v.seq-min(v.seq, sealedSteps)]; d != nil {
		d.msg = nil
	}
	if v.maxSteps <= 0 || v.seq <= v.base+uint64(v.maxSteps) {
		return
	}
	base := v.seq - uint64(v.maxSteps)
	for s := v.base + 1; s <= base; s++ {
		delete(v.deltas, s)
	}
	for s := range v.hashes {
		if s < base {
			delete(v.hashes, s)
		}
	}
	v.base = base
}

// keep records the entry k as it is before the step changes it.
func (v *view) keep(k entryKey) {
	im := image{entryKey: k}
	switch k.kind {
	case entryCard:
		if c, ok := v.cards[k.key]; ok {
			im.val = &c
		}
	case entryHolder:
		if h, ok := v.holders[k.key]; ok {
			im.val = &h
		}
	case entryRevCard:
		if r, ok := v.revCard[k.key]; ok {
			im.val = &r
		}
	case entryRevHolder:
		if r, ok := v.revHold[k.key]; ok {
			im.val = &r
		}
	}
	v.before = append(v.before, im)
}

// diff moves the view's entries for the touched keys to what st says and
// returns the operations that do the same to a store holding the view.
// Their order is one a store accepts and that never lets a card open
// without its revocation: holders and revocations that enter or change
// first, then the cards that enter or change, then revocations that
// leave, cards that leave, and holders that leave last (a store refuses
// to delete a holder that cards still name). Within each group, keys are
// in order, so the delta is the same whatever the map order.
func (v *view) diff(st *aclState, t touched) []store.Op {
	holders := maps.Clone(t.holders)
	var holdUp, revUp, cardUp, revDown, cardDown, holdDown []store.Op
	for _, uid := range slices.Sorted(maps.Keys(t.cards)) {
		c, ok := st.cards[uid]
		in := ok && v.opens(&c)
		if in {
			c = v.narrow(c)
		}
		old, had := v.cards[uid]
		if had {
			holders[old.HolderID] = true
		}
		if ok {
			holders[c.HolderID] = true
		}
		switch {
		case in && (!had || !sameCard(&old, &c)):
			v.keep(entryKey{entryCard, uid})
			if had {
				v.dropHolderCard(old.HolderID)
			}
			v.perHolder[c.HolderID]++
			v.cards[uid] = c
			nc := cloneCard(c)
			cardUp = append(cardUp, store.Op{Kind: store.OpUpsertCard, Card: &nc})
		case !in && had:
			v.keep(entryKey{entryCard, uid})
			v.dropHolderCard(old.HolderID)
			delete(v.cards, uid)
			cardDown = append(cardDown, store.Op{Kind: store.OpDeleteCard, UID: []byte(uid)})
		}
		r, revoked := st.revCard[uid]
		oldR, hadR := v.revCard[uid]
		switch {
		case in && revoked && (!hadR || oldR.Reason != r.Reason):
			v.keep(entryKey{entryRevCard, uid})
			v.revCard[uid] = r
			revUp = append(revUp, store.Op{Kind: store.OpRevokeCard, UID: []byte(uid), Reason: r.Reason})
		case !(in && revoked) && hadR:
			v.keep(entryKey{entryRevCard, uid})
			delete(v.revCard, uid)
			revDown = append(revDown, store.Op{Kind: store.OpReinstateCard, UID: []byte(uid)})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(holders)) {
		in := v.perHolder[id] > 0
		h, ok := st.holders[id]
		old, had := v.holders[id]
		switch {
		case in && ok && (!had || old != h):
			v.keep(entryKey{entryHolder, id})
			v.holders[id] = h
			nh := h
			holdUp = append(holdUp, store.Op{Kind: store.OpUpsertHolder, Holder: &nh})
		case !(in && ok) && had:
			v.keep(entryKey{entryHolder, id})
			delete(v.holders, id)
			holdDown = append(holdDown, store.Op{Kind: store.OpDeleteHolder, HolderID: id})
		}
		r, revoked := st.revHold[id]
		oldR, hadR := v.revHold[id]
		switch {
		case in && revoked && (!hadR || oldR.Reason != r.Reason):
			v.keep(entryKey{entryRevHolder, id})
			v.revHold[id] = r
			revUp = append(revUp, store.Op{Kind: store.OpRevokeHolder, HolderID: id, Reason: r.Reason})
		case !(in && revoked) && hadR:
			v.keep(entryKey{entryRevHolder, id})
			delete(v.revHold, id)
			revDown = append(revDown, store.Op{Kind: store.OpReinstateHolder, HolderID: id})
		}
	}
	return slices.Concat(holdUp, revUp, cardUp, revDown, cardDown, holdDown)
}

// dropHolderCard counts one card fewer for holder id in the view.
func (v *view) dropHolderCard(id string) {
	if v.perHolder[id]--; v.perHolder[id] <= 0 {
		delete(v.perHolder, id)
	}
}

// snapshot returns the view at its seq, ordered as the store lists it.
func (v *view) snapshot() store.Snapshot {
	s := store.Snapshot{Seq: v.seq}
	for _, k := range slices.Sorted(maps.Keys(v.cards)) {
		s.Cards = append(s.Cards, cloneCard(v.cards[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(v.holders)) {
		s.Holders = append(s.Holders, v.holders[k])
	}
	for _, k := range slices.Sorted(maps.Keys(v.revCard)) {
		r := v.revCard[k]
		r.UID = bytes.Clone(r.UID)
		s.Revocations = append(s.Revocations, r)
	}
	for _, k := range slices.Sorted(maps.Keys(v.revHold)) {
		s.Revocations = append(s.Revocations, v.revHold[k])
	}
	return s
}

// hash returns the view's state hash at its seq.
func (v *view) hash() string {
	h, _ := v.hashAt(v.seq)
	return h
}

// hashAt returns the view's state hash at seq, or false when the view
// cannot tell it: seq is ahead of the view, before its base, or a step
// after seq has no delta.
func (v *view) hashAt(seq uint64) (string, bool) {
	if h, ok := v.hashes[seq]; ok {
		return h, true
	}
	if seq > v.seq || seq < v.base {
		return "", false
	}
	// The view at seq: the current entries, but those changed after seq
	// as they were before the first change (the oldest step wins).
	over := make(map[entryKey]*image)
	for s := v.seq; s > seq; s-- {
		d := v.deltas[s]
		if d == nil {
			return "", false
		}
		for i := range d.before {
			over[d.before[i].entryKey] = &d.before[i]
		}
	}
	sn := store.Snapshot{Seq: seq}
	for k, c := range v.cards {
		if over[entryKey{entryCard, k}] == nil {
			sn.Cards = append(sn.Cards, c)
		}
	}
	for k, h := range v.holders {
		if over[entryKey{entryHolder, k}] == nil {
			sn.Holders = append(sn.Holders, h)
		}
	}
	for k, r := range v.revCard {
		if over[entryKey{entryRevCard, k}] == nil {
			sn.Revocations = append(sn.Revocations, r)
		}
	}
	for k, r := range v.revHold {
		if over[entryKey{entryRevHolder, k}] == nil {
			sn.Revocations = append(sn.Revocations, r)
		}
	}
	for _, im := range over {
		switch x := im.val.(type) {
		case *store.Card:
			sn.Cards = append(sn.Cards, *x)
		case *store.Holder:
			sn.Holders = append(sn.Holders, *x)
		case *store.Revocation:
			sn.Revocations = append(sn.Revocations, *x)
		}
	}
	h := store.HashSnapshot(sn)
	v.hashes[seq] = h
	return h, true
}

// deltasAfter returns the deltas that bring a door at seq applied to the
// view's seq, or false when one of them is not kept (the view was built
// or rebased after it).
func (v *view) deltasAfter(applied uint64) ([]uint64, bool) {
	if applied < v.base {
		return nil, false
	}
	var out []uint64
	for s := applied + 1; s <= v.seq; s++ {
		if v.deltas[s] == nil {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// rebase moves the view to seq, which is above any seq a door has
// applied, dropping the deltas and hashes before it: a door that applied
// something the site does not know as the view's state at that seq
// accepts only a snapshot newer than it.
func (v *view) rebase(seq uint64) {
	v.seq, v.base = seq, seq
	clear(v.deltas)
	clear(v.hashes)
	v.plan = nil
}

// currentPlan returns the plan of the snapshot at the view's seq, planned
// once per seq and kept until the view moves on and another is asked for.
// (A view is rebased only to a seq it never had, so a plan of the seq is
// of the view at it.)
func (v *view) currentPlan(chunkBytes int) (*mqtt.SnapshotPlan, error) {
	if v.plan != nil && v.plan.Seq() == v.seq {
		return v.plan, nil
	}
	p, err := mqtt.PlanSnapshot(v.snapshot(), chunkBytes)
	if err != nil {
		return nil, err
	}
	v.plan = p
	v.hashes[p.Seq()] = p.Hash()
	return p, nil
}
