package store

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// aclTx applies allowlist changes inside one write transaction and keeps
// the holder index and the state sum in step with them.
type aclTx struct {
	tx                                        *bolt.Tx
	cards, holders, idx, revCards, revHolders *bolt.Bucket
	names                                     *nameTable
	sum                                       sum256

	// deferIdx collects holder index keys to insert in order at flushIdx
	// (snapshot entries) instead of one by one.
	deferIdx bool
	idxLater [][]byte
	// insertOnly refuses an entry whose key is already there: a snapshot
	// names each entry once, across all its chunks.
	insertOnly bool
}

// bucketParent holds allowlist buckets: a *bolt.Tx the live ones, the
// stage bucket those of a snapshot being received.
type bucketParent interface {
	Bucket(name []byte) *bolt.Bucket
}

func (s *Store) newACLTx(tx *bolt.Tx) (*aclTx, error) {
	sum, err := readSum(tx)
	if err != nil {
		return nil, err
	}
	return s.aclIn(tx, tx, sum), nil
}

// aclIn works on the allowlist buckets under p (tx, or the stage in tx),
// whose entries sum to sum.
func (s *Store) aclIn(tx *bolt.Tx, p bucketParent, sum sum256) *aclTx {
	return &aclTx{
		tx:         tx,
		cards:      p.Bucket(bucketCards),
		holders:    p.Bucket(bucketHolders),
		idx:        p.Bucket(bucketHolderCards),
		revCards:   p.Bucket(bucketRevokedCards),
		revHolders: p.Bucket(bucketRevokedHolders),
		names:      s.nameTable(tx),
		sum:        sum,
	}
}

// nameTable numbers door and group names in the write transaction tx.
func (s *Store) nameTable(tx *bolt.Tx) *nameTable {
	return &nameTable{tx: tx, b: tx.Bucket(bucketNames), added: func() { s.names.gen.Add(1) }}
}

// liveRefs are the buckets the live cards in tx refer to.
func liveRefs(tx *bolt.Tx) cardRefs {
	return cardRefs{holders: tx.Bucket(bucketHolders), names: tx.Bucket(bucketNames)}
}

// refs are the buckets the cards of a refer to.
func (a *aclTx) refs() cardRefs { return cardRefs{holders: a.holders, names: a.names.b} }

// flushIdx writes the deferred index keys in order.
func (a *aclTx) flushIdx() error {
	slices.SortFunc(a.idxLater, bytes.Compare)
	for _, k := range a.idxLater {
		if err := a.idx.Put(k, nil); err != nil {
			return err
		}
	}
	a.idxLater = nil
	return nil
}

// packIfAppended sets b to fill its pages whole (bbolt's FillPercent 1)
// when each of the n keys key(i) sorts after b's last key, and leaves the
// default (half full, room for inserts) otherwise.
func packIfAppended(b *bolt.Bucket, n int, key func(i int) []byte) {
	if n == 0 {
		return
	}
	last, _ := b.Cursor().Last()
	for i := range n {
		if last != nil && bytes.Compare(key(i), last) <= 0 {
			return
		}
	}
	b.FillPercent = 1
}

// finish writes deferred index keys and stores the updated state sum.
func (a *aclTx) finish() error {
	if err := a.flushIdx(); err != nil {
		return err
	}
	return a.tx.Bucket(bucketSync).Put(keyStateSum, encodeBytes(a.sum.bytes()))
}

// twice refuses an entry already present when a.insertOnly.
func (a *aclTx) twice(format string, args ...any) error {
	if !a.insertOnly {
		return nil
	}
	return fmt.Errorf("%w: %s appears twice in the snapshot", ErrInvalidOp, fmt.Sprintf(format, args...))
}

// insertSnapshot adds the entries of sn, checked by checkSnapshot, to
// allowlist buckets that hold none of them, and their holder index keys.
func (a *aclTx) insertSnapshot(sn *Snapshot) error {
	if err := a.insertEntries(sn); err != nil {
		return err
	}
	return a.flushIdx()
}

// insertEntries adds the entries of sn as insertSnapshot does, but leaves
// the holder index keys of its cards in a.idxLater. Each kind is inserted
// in key order: bbolt splits nodes only at commit, so random-order inserts
// into one transaction cost O(n^2) copying.
func (a *aclTx) insertEntries(sn *Snapshot) error {
	a.deferIdx, a.insertOnly = true, true
	// Where every key of this part comes after the bucket's last key (a
	// snapshot sent in key order, chunk after chunk), the bucket's pages
	// are never written into again: fill them whole instead of half.
	packIfAppended(a.holders, len(sn.Holders), func(i int) []byte { return []byte(sn.Holders[i].ID) })
	packIfAppended(a.cards, len(sn.Cards), func(i int) []byte { return sn.Cards[i].UID })
	var revCards, revHolders []int
	for i := range sn.Revocations {
		if len(sn.Revocations[i].UID) > 0 {
			revCards = append(revCards, i)
		} else {
			revHolders = append(revHolders, i)
		}
	}
	packIfAppended(a.revCards, len(revCards), func(i int) []byte { return sn.Revocations[revCards[i]].UID })
	packIfAppended(a.revHolders, len(revHolders), func(i int) []byte { return []byte(sn.Revocations[revHolders[i]].HolderID) })
	for _, i := range sortedBy(len(sn.Holders), func(i int) []byte { return []byte(sn.Holders[i].ID) }) {
		if err := a.putHolder(&sn.Holders[i]); err != nil {
			return err
		}
	}
	for _, i := range sortedBy(len(sn.Cards), func(i int) []byte { return sn.Cards[i].UID }) {
		if err := a.putCard(&sn.Cards[i]); err != nil {
			return err
		}
	}
	for _, i := range sortedBy(len(sn.Revocations), func(i int) []byte { return revocationKey(&sn.Revocations[i]) }) {
		if err := a.revoke(&sn.Revocations[i]); err != nil {
			return err
		}
	}
	return nil
}

func (a *aclTx) putCard(c *Card) error {
	uid := bytes.Clone(c.UID)
	if old := a.cards.Get(uid); old != nil {
		if err := a.twice("card %X", uid); err != nil {
			return err
		}
		oc, err := decodeCard(uid, old, a.refs())
		if err != nil {
			return err
		}
		a.sum.sub(entryHash(tagCard, cardBody(&oc)))
		if oc.HolderID != c.HolderID {
			if err := a.idx.Delete(holderCardKey(oc.HolderID, uid)); err != nil {
				return err
			}
		}
	}
	name, err := a.holderName(c.HolderID)
	if err != nil {
		return err
	}
	doors, err := a.names.ids(c.Doors)
	if err != nil {
		return err
	}
	rec, err := encodeCard(c, name, doors)
	if err != nil {
		return fmt.Errorf("card %X: %w: %w", uid, ErrInvalidOp, err)
	}
	if err := a.cards.Put(uid, rec); err != nil {
		return err
	}
	a.sum.add(entryHash(tagCard, cardBody(c)))
	if a.deferIdx {
		a.idxLater = append(a.idxLater, holderCardKey(c.HolderID, uid))
		return nil
	}
	return a.idx.Put(holderCardKey(c.HolderID, uid), nil)
}

// holderName is the name in the record of holder id, "" when there is
// none.
func (a *aclTx) holderName(id string) (string, error) {
	v := a.holders.Get([]byte(id))
	if v == nil {
		return "", nil
	}
	r, err := parseHolderRec([]byte(id), v)
	if err != nil {
		return "", err
	}
	return string(r.name), nil
}

func (a *aclTx) deleteCard(uid []byte) error {
	old := a.cards.Get(uid)
	if old == nil {
		return nil
	}
	oc, err := decodeCard(uid, old, a.refs())
	if err != nil {
		return err
	}
	a.sum.sub(entryHash(tagCard, cardBody(&oc)))
	if err := a.idx.Delete(holderCardKey(oc.HolderID, uid)); err != nil {
		return err
	}
	return a.cards.Delete(uid)
}

func (a *aclTx) putHolder(h *Holder) error {
	key := []byte(h.ID)
	if old := a.holders.Get(key); old != nil {
		if err := a.twice("holder %q", h.ID); err != nil {
			return err
		}
		oh, err := decodeHolder(key, old)
		if err != nil {
			return err
		}
		a.sum.sub(entryHash(tagHolder, holderBody(&oh)))
		if oh.Name != h.Name {
			if err := a.keepCardNames(h.ID); err != nil {
				return err
			}
		}
	}
	rec, err := encodeHolder(h)
	if err != nil {
		return fmt.Errorf("holder %q: %w: %w", h.ID, ErrInvalidOp, err)
	}
	if err := a.holders.Put(key, rec); err != nil {
		return err
	}
	a.sum.add(entryHash(tagHolder, holderBody(h)))
	return nil
}

// keepCardNames rewrites the cards of holder id that leave their holder
// name to the holder record so that they hold it themselves: the holder
// record is about to change its name, and a card's name does not change
// with it.
func (a *aclTx) keepCardNames(id string) error {
	prefix := holderCardPrefix(id)
	c := a.idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		uid := k[len(prefix):]
		v := a.cards.Get(uid)
		if v == nil {
			return fmt.Errorf("%w: holder index names card %X, which is not there", ErrCorrupt, uid)
		}
		r, err := parseCardRec(uid, v)
		if err != nil {
			return err
		}
		if r.flags&recHolderName == 0 {
			continue
		}
		card, err := decodeCard(uid, v, a.refs())
		if err != nil {
			return err
		}
		doors, err := a.names.ids(card.Doors)
		if err != nil {
			return err
		}
		rec, err := encodeCard(&card, "", doors)
		if err != nil {
			return err
		}
		if err := a.cards.Put(bytes.Clone(uid), rec); err != nil {
			return err
		}
	}
	return nil
}

// deleteHolder removes a holder record. It refuses while cards still name
// the holder: delete or move them first.
func (a *aclTx) deleteHolder(id string) error {
	prefix := holderCardPrefix(id)
	n := 0
	c := a.idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	if n > 0 {
		return fmt.Errorf("%w: holder %q still has %d card(s); delete them first", ErrInvalidOp, id, n)
	}
	key := []byte(id)
	old := a.holders.Get(key)
	if old == nil {
		return nil
	}
	oh, err := decodeHolder(key, old)
	if err != nil {
		return err
	}
	a.sum.sub(entryHash(tagHolder, holderBody(&oh)))
	return a.holders.Delete(key)
}

func (a *aclTx) revBucket(r *Revocation) (*bolt.Bucket, byte) {
	if len(r.UID) > 0 {
		return a.revCards, tagRevokedCard
	}
	return a.revHolders, tagRevokedHolder
}

func (a *aclTx) revoke(r *Revocation) error {
	b, tag := a.revBucket(r)
	key := bytes.Clone(revocationKey(r))
	if old := b.Get(key); old != nil {
		if err := a.twice("revocation of %s", revocationName(r)); err != nil {
			return err
		}
		or, err := decodeRevocation(key, old, tag == tagRevokedHolder)
		if err != nil {
			return err
		}
		a.sum.sub(entryHash(tag, revocationBody(&or)))
	}
	if err := b.Put(key, encodeRevocation(r)); err != nil {
		return err
	}
	a.sum.add(entryHash(tag, revocationBody(r)))
	return nil
}

func (a *aclTx) reinstate(r *Revocation) error {
	b, tag := a.revBucket(r)
	key := revocationKey(r)
	old := b.Get(key)
	if old == nil {
		return nil
	}
	or, err := decodeRevocation(key, old, tag == tagRevokedHolder)
	if err != nil {
		return err
	}
	a.sum.sub(entryHash(tag, revocationBody(&or)))
	return b.Delete(key)
}

// CheckOp checks one operation on its own, as the store does before it
// applies it (field shapes, id and text limits, PIN hash parameters,
// schedules): what it refuses, a door refuses. The site checks each change
// with it before it commits, so that it never sends a door what the door
// would refuse.
func CheckOp(op *Op) error { return checkOp(op) }

// checkOp validates one operation on its own.
func checkOp(op *Op) error {
	want := func(card, holder, uid, holderID bool) error {
		switch {
		case (op.Card != nil) != card:
			return fmt.Errorf("card field: want it %s", setOrNot(card))
		case (op.Holder != nil) != holder:
			return fmt.Errorf("holder field: want it %s", setOrNot(holder))
		case (len(op.UID) > 0) != uid:
			return fmt.Errorf("uid field: want it %s", setOrNot(uid))
		case (op.HolderID != "") != holderID:
			return fmt.Errorf("holder_id field: want it %s", setOrNot(holderID))
		}
		return checkText("reason", op.Reason, maxNameLen)
	}
	switch op.Kind {
	case OpUpsertCard:
		if err := want(true, false, false, false); err != nil {
			return err
		}
		return checkCard(op.Card)
	case OpUpsertHolder:
		if err := want(false, true, false, false); err != nil {
			return err
		}
		return checkHolder(op.Holder)
	case OpDeleteCard, OpRevokeCard, OpReinstateCard:
		if err := want(false, false, true, false); err != nil {
			return err
		}
		return CheckCardKey(op.UID)
	case OpDeleteHolder, OpRevokeHolder, OpReinstateHolder:
		if err := want(false, false, false, true); err != nil {
			return err
		}
		return checkID("holder id", op.HolderID)
	}
	return fmt.Errorf("unknown operation %q", op.Kind)
}

func setOrNot(b bool) string {
	if b {
		return "set"
	}
	return "empty"
}

// apply performs a checked operation.
func (a *aclTx) apply(op *Op) error {
	switch op.Kind {
	case OpUpsertCard:
		return a.putCard(op.Card)
	case OpDeleteCard:
		return a.deleteCard(op.UID)
	case OpUpsertHolder:
		return a.putHolder(op.Holder)
	case OpDeleteHolder:
		return a.deleteHolder(op.HolderID)
	case OpRevokeCard:
		return a.revoke(&Revocation{UID: op.UID, Reason: op.Reason})
	case OpReinstateCard:
		return a.reinstate(&Revocation{UID: op.UID})
	case OpRevokeHolder:
		return a.revoke(&Revocation{HolderID: op.HolderID, Reason: op.Reason})
	case OpReinstateHolder:
		return a.reinstate(&Revocation{HolderID: op.HolderID})
	}
	return fmt.Errorf("unknown operation %q", op.Kind)
}

// OpError says which operation of a delta was refused. It wraps
// ErrInvalidOp (or the storage error that stopped it).
type OpError struct {
	Seq   uint64 // the delta
	Index int    // position of the operation in Delta.Ops
	Kind  OpKind // what the operation was
	Err   error  // why it was refused
}

// Error says which delta and operation failed, and why.
func (e *OpError) Error() string {
	return fmt.Sprintf("delta %d op %d (%s): %v", e.Seq, e.Index, e.Kind, e.Err)
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// modifyACL runs fn over an aclTx in one write transaction.
func (s *Store) modifyACL(fn func(a *aclTx) error) error {
	return s.update(func(tx *bolt.Tx) error {
		a, err := s.newACLTx(tx)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
		return a.finish()
	})
}

// PutCard adds or replaces a card. It does not move the applied sequence:
// a local change makes the door's state hash differ from the site's, which
// then sends a snapshot. Changes from the site go through ApplyDelta.
func (s *Store) PutCard(c Card) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: put card: %w", err)
	}
	if err := checkCard(&c); err != nil {
		return fmt.Errorf("store: put card %X: %w: %w", c.UID, ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.putCard(&c) }); err != nil {
		return fmt.Errorf("store: put card %X: %w", c.UID, err)
	}
	return nil
}

// DeleteCard removes a card (its revocation, if any, stays). Deleting a
// card that does not exist is not an error.
func (s *Store) DeleteCard(uid []byte) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: delete card: %w", err)
	}
	if err := CheckCardKey(uid); err != nil {
		return fmt.Errorf("store: delete card %X: %w: %w", uid, ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.deleteCard(uid) }); err != nil {
		return fmt.Errorf("store: delete card %X: %w", uid, err)
	}
	return nil
}

// PutHolder adds or replaces a holder (name and duress PIN hash).
func (s *Store) PutHolder(h Holder) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: put holder: %w", err)
	}
	if err := checkHolder(&h); err != nil {
		return fmt.Errorf("store: put holder %q: %w: %w", h.ID, ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.putHolder(&h) }); err != nil {
		return fmt.Errorf("store: put holder %q: %w", h.ID, err)
	}
	return nil
}

// DeleteHolder removes a holder record; it refuses (ErrInvalidOp) while
// cards still belong to the holder.
func (s *Store) DeleteHolder(id string) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: delete holder: %w", err)
	}
	if err := checkID("holder id", id); err != nil {
		return fmt.Errorf("store: delete holder: %w: %w", ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.deleteHolder(id) }); err != nil {
		return fmt.Errorf("store: delete holder %q: %w", id, err)
	}
	return nil
}

// Revoke revokes a card UID or a holder (all their cards, present and
// future). A revocation wins over the allowlist until Reinstate.
func (s *Store) Revoke(r Revocation) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: revoke: %w", err)
	}
	if err := checkRevocation(&r); err != nil {
		return fmt.Errorf("store: revoke: %w: %w", ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.revoke(&r) }); err != nil {
		return fmt.Errorf("store: revoke %s: %w", revocationName(&r), err)
	}
	return nil
}

// Reinstate lifts the revocation of r.UID or r.HolderID (r.Reason is
// ignored). Reinstating what is not revoked is not an error.
func (s *Store) Reinstate(r Revocation) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: reinstate: %w", err)
	}
	r.Reason = ""
	if err := checkRevocation(&r); err != nil {
		return fmt.Errorf("store: reinstate: %w: %w", ErrInvalidArgument, err)
	}
	if err := s.modifyACL(func(a *aclTx) error { return a.reinstate(&r) }); err != nil {
		return fmt.Errorf("store: reinstate %s: %w", revocationName(&r), err)
	}
	return nil
}

func revocationName(r *Revocation) string {
	if len(r.UID) > 0 {
		return fmt.Sprintf("card %X", r.UID)
	}
	return fmt.Sprintf("holder %q", r.HolderID)
}

// Card returns the card with this UID, or ErrNotFound.
func (s *Store) Card(uid []byte) (Card, error) {
	if err := s.waitPages(); err != nil {
		return Card{}, fmt.Errorf("store: card: %w", err)
	}
	var c Card
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCards).Get(uid)
		if v == nil {
			return ErrNotFound
		}
		var err error
		c, err = decodeCard(uid, v, liveRefs(tx))
		return err
	})
	if err != nil {
		return Card{}, fmt.Errorf("store: card %X: %w", uid, err)
	}
	return c, nil
}

// Holder returns the holder with this id, or ErrNotFound.
func (s *Store) Holder(id string) (Holder, error) {
	if err := s.waitPages(); err != nil {
		return Holder{}, fmt.Errorf("store: holder: %w", err)
	}
	var h Holder
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketHolders).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		h, err = decodeHolder([]byte(id), v)
		return err
	})
	if err != nil {
		return Holder{}, fmt.Errorf("store: holder %q: %w", id, err)
	}
	return h, nil
}

// CardsOf returns the UIDs of the holder's cards, in byte order.
func (s *Store) CardsOf(holderID string) ([][]byte, error) {
	if err := s.waitPages(); err != nil {
		return nil, fmt.Errorf("store: cards of holder: %w", err)
	}
	var uids [][]byte
	prefix := holderCardPrefix(holderID)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHolderCards).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			uids = append(uids, bytes.Clone(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: cards of %q: %w", holderID, err)
	}
	return uids, nil
}

// Snapshot returns the whole allowlist at the applied sequence: cards in
// UID order, holders in id order, card revocations then holder
// revocations. HashSnapshot of it equals SyncState().SnapshotHash.
func (s *Store) Snapshot() (Snapshot, error) {
	if err := s.waitPages(); err != nil {
		return Snapshot{}, fmt.Errorf("store: snapshot: %w", err)
	}
	var sn Snapshot
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if sn.Seq, err = readApplied(tx); err != nil {
			return err
		}
		refs := liveRefs(tx)
		if err := tx.Bucket(bucketCards).ForEach(func(k, v []byte) error {
			c, err := decodeCard(k, v, refs)
			sn.Cards = append(sn.Cards, c)
			return err
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketHolders).ForEach(func(k, v []byte) error {
			h, err := decodeHolder(k, v)
			sn.Holders = append(sn.Holders, h)
			return err
		}); err != nil {
			return err
		}
		for _, byHolder := range []bool{false, true} {
			b := tx.Bucket(bucketRevokedCards)
			if byHolder {
				b = tx.Bucket(bucketRevokedHolders)
			}
			if err := b.ForEach(func(k, v []byte) error {
				r, err := decodeRevocation(k, v, byHolder)
				sn.Revocations = append(sn.Revocations, r)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("store: snapshot: %w", err)
	}
	return sn, nil
}

// ApplyDelta applies a signed delta from the site: only when d.Seq is the
// applied sequence + 1 (else ErrSeqOld or ErrSeqGap, and the caller asks
// for a resync), all operations in one transaction. One invalid operation
// rejects the whole delta (an *OpError wrapping ErrInvalidOp) and nothing
// is applied. Deleting or reinstating something absent is not an error.
func (s *Store) ApplyDelta(d Delta) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: apply delta: %w", err)
	}
	for i := range d.Ops {
		if err := checkOp(&d.Ops[i]); err != nil {
			return fmt.Errorf("store: apply delta: %w", &OpError{Seq: d.Seq, Index: i, Kind: d.Ops[i].Kind, Err: fmt.Errorf("%w: %w", ErrInvalidOp, err)})
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		applied, err := readApplied(tx)
		if err != nil {
			return err
		}
		switch {
		case d.Seq <= applied:
			return fmt.Errorf("delta %d, applied %d: %w", d.Seq, applied, ErrSeqOld)
		case d.Seq != applied+1:
			return fmt.Errorf("delta %d, applied %d (missing %d..%d): %w", d.Seq, applied, applied+1, d.Seq-1, ErrSeqGap)
		}
		a, err := s.newACLTx(tx)
		if err != nil {
			return err
		}
		for i := range d.Ops {
			if err := a.apply(&d.Ops[i]); err != nil {
				return &OpError{Seq: d.Seq, Index: i, Kind: d.Ops[i].Kind, Err: err}
			}
		}
		if err := a.finish(); err != nil {
			return err
		}
		return tx.Bucket(bucketSync).Put(keyApplied, encodeU64(d.Seq))
	})
	if err != nil {
		return fmt.Errorf("store: apply delta: %w", err)
	}
	return nil
}

// ApplySnapshot replaces all cards, holders and revocations with the
// snapshot's, atomically, when sn.Seq is higher than the applied sequence
// (else ErrSeqOld). Invalid or duplicate entries reject it whole. Lockout
// state is kept (it belongs to the card UID, not to the allowlist).
func (s *Store) ApplySnapshot(sn Snapshot) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: apply snapshot: %w", err)
	}
	if err := checkSnapshot(&sn); err != nil {
		return fmt.Errorf("store: apply snapshot %d: %w: %w", sn.Seq, ErrInvalidOp, err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		if err := checkNewer(tx, sn.Seq); err != nil {
			return err
		}
		if err := replaceAllowlist(tx, nil); err != nil {
			return err
		}
		a := s.aclIn(tx, tx, sum256{})
		if err := a.insertSnapshot(&sn); err != nil {
			return err
		}
		return setApplied(tx, sn.Seq, a.sum)
	})
	if err != nil {
		return fmt.Errorf("store: apply snapshot %d: %w", sn.Seq, err)
	}
	return nil
}

// checkNewer refuses a snapshot that is not newer than the applied
// allowlist.
func checkNewer(tx *bolt.Tx, seq uint64) error {
	applied, err := readApplied(tx)
	if err != nil {
		return err
	}
	if seq <= applied {
		return fmt.Errorf("snapshot %d, applied %d: %w", seq, applied, ErrSeqOld)
	}
	return nil
}

// replaceAllowlist deletes the live allowlist buckets and puts in their
// place the same-named buckets under stage, moved and not copied, or new
// empty ones when stage is nil. The state sum and applied sequence are the
// caller's to set (setApplied).
func replaceAllowlist(tx *bolt.Tx, stage *bolt.Bucket) error {
	for _, name := range allowlistBuckets() {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("clear %s: %w", name, err)
		}
		var err error
		if stage != nil {
			err = tx.MoveBucket(name, stage, nil)
		} else {
			_, err = tx.CreateBucket(name)
		}
		if err != nil {
			return fmt.Errorf("replace %s: %w", name, err)
		}
	}
	return nil
}

// setApplied records a whole new allowlist: its sequence and state sum.
func setApplied(tx *bolt.Tx, seq uint64, sum sum256) error {
	b := tx.Bucket(bucketSync)
	if err := b.Put(keyStateSum, encodeBytes(sum.bytes())); err != nil {
		return err
	}
	return b.Put(keyApplied, encodeU64(seq))
}

// sortedBy returns the indexes 0..n-1 ordered by key(i). Each key is
// taken once, not at every comparison.
func sortedBy(n int, key func(i int) []byte) []int {
	idx := make([]int, n)
	keys := make([][]byte, n)
	for i := range idx {
		idx[i], keys[i] = i, key(i)
	}
	slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	return idx
}

func checkSnapshot(sn *Snapshot) error {
	seen := make(map[string]bool, len(sn.Cards)+len(sn.Holders)+len(sn.Revocations))
	for i := range sn.Cards {
		c := &sn.Cards[i]
		if err := checkCard(c); err != nil {
			return fmt.Errorf("card %d (%X): %w", i, c.UID, err)
		}
		if k := "c" + string(c.UID); seen[k] {
			return fmt.Errorf("card %X appears twice", c.UID)
		} else {
			seen[k] = true
		}
	}
	for i := range sn.Holders {
		h := &sn.Holders[i]
		if err := checkHolder(h); err != nil {
			return fmt.Errorf("holder %d (%q): %w", i, h.ID, err)
		}
		if k := "h" + h.ID; seen[k] {
			return fmt.Errorf("holder %q appears twice", h.ID)
		} else {
			seen[k] = true
		}
	}
	for i := range sn.Revocations {
		r := &sn.Revocations[i]
		if err := checkRevocation(r); err != nil {
			return fmt.Errorf("revocation %d: %w", i, err)
		}
		k := "rh" + r.HolderID
		if len(r.UID) > 0 {
			k = "rc" + string(r.UID)
		}
		if seen[k] {
			return fmt.Errorf("revocation of %s appears twice", revocationName(r))
		}
		seen[k] = true
	}
	return nil
}
