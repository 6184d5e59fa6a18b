package site

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// Change is one committed change of the allowlist: the ops of global ACL
// seq Seq, who committed them and when.
type Change struct {
	store.Delta
	By string    `json:"by"` // the admin or tool that committed it
	At time.Time `json:"at"` // the site's clock at the commit
}

func readACLSeq(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keyACLSeq)
	if v == nil {
		return 0, fmt.Errorf("%w: the ACL seq is missing", ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("acl seq: %w", err)
	}
	return n, nil
}

// checkOp checks one op: first as a door's store does (store.CheckOp), so
// that the site never commits what a door would refuse, then the site's
// own rules: which fields its kind needs, UID lengths, ids.
func checkOp(op *store.Op) error {
	if err := store.CheckOp(op); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	need := func(card, holder, uid, holderID bool) error {
		switch {
		case (op.Card != nil) != card:
			return fmt.Errorf("%w: card field set or missing", ErrInvalid)
		case (op.Holder != nil) != holder:
			return fmt.Errorf("%w: holder field set or missing", ErrInvalid)
		case (len(op.UID) > 0) != uid:
			return fmt.Errorf("%w: uid field set or missing", ErrInvalid)
		case (op.HolderID != "") != holderID:
			return fmt.Errorf("%w: holder_id field set or missing", ErrInvalid)
		case len(op.Reason) > 1024 || !utf8.ValidString(op.Reason):
			return fmt.Errorf("%w: reason is over 1024 bytes or not UTF-8", ErrInvalid)
		}
		return nil
	}
	switch op.Kind {
	case store.OpUpsertCard:
		if err := need(true, false, false, false); err != nil {
			return err
		}
		return checkCard(op.Card)
	case store.OpUpsertHolder:
		if err := need(false, true, false, false); err != nil {
			return err
		}
		if err := checkID("holder id", op.Holder.ID); err != nil {
			return err
		}
		return checkPINHash("duress pin hash", op.Holder.DuressPINHash)
	case store.OpDeleteCard, store.OpRevokeCard, store.OpReinstateCard:
		if err := need(false, false, true, false); err != nil {
			return err
		}
		return checkUID(op.UID)
	case store.OpDeleteHolder, store.OpRevokeHolder, store.OpReinstateHolder:
		if err := need(false, false, false, true); err != nil {
			return err
		}
		return checkID("holder id", op.HolderID)
	}
	return fmt.Errorf("%w: unknown operation %q", ErrInvalid, op.Kind)
}

func checkUID(uid []byte) error {
	if err := store.CheckCardKey(uid); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func checkPINHash(what, h string) error {
	if h != "" && (len(h) > 512 || !strings.HasPrefix(h, "$argon2id$")) {
		return fmt.Errorf("%w: %s is not an argon2id PHC string", ErrInvalid, what)
	}
	return nil
}

func checkCard(c *store.Card) error {
	if err := checkUID(c.UID); err != nil {
		return err
	}
	if err := checkID("holder id", c.HolderID); err != nil {
		return err
	}
	if err := checkPINHash("pin hash", c.PINHash); err != nil {
		return err
	}
	if len(c.Doors) > 256 {
		return fmt.Errorf("%w: card lists %d doors, limit 256", ErrInvalid, len(c.Doors))
	}
	for _, d := range c.Doors {
		if err := checkID("door or group", d); err != nil {
			return err
		}
	}
	if !c.ValidFrom.IsZero() && !c.ValidUntil.IsZero() && !c.ValidFrom.Before(c.ValidUntil) {
		return fmt.Errorf("%w: valid_from is not before valid_until", ErrInvalid)
	}
	for day, ws := range c.Schedule.Weekly {
		for _, w := range ws {
			if w.From >= w.To || w.To > 24*60 {
				return fmt.Errorf("%w: %s window %d-%d: want 0 <= from < to <= 1440 minutes", ErrInvalid, time.Weekday(day), w.From, w.To)
			}
		}
	}
	for _, h := range c.Schedule.Holidays {
		if t, err := time.Parse(time.DateOnly, h); err != nil || t.Format(time.DateOnly) != h {
			return fmt.Errorf("%w: holiday %q is not a YYYY-MM-DD date", ErrInvalid, h)
		}
	}
	return nil
}

func holderCardKey(holder string, uid []byte) []byte {
	return append(holderCardPrefix(holder), uid...)
}

func holderCardPrefix(holder string) []byte {
	return append([]byte{uint8(len(holder))}, holder...)
}

// aclTx applies ops to the allowlist buckets of one write transaction.
type aclTx struct {
	tx                                        *bolt.Tx
	cards, holders, idx, revCards, revHolders *bolt.Bucket
}

func newACLTx(tx *bolt.Tx) *aclTx {
	return &aclTx{tx: tx, cards: tx.Bucket(bucketCards), holders: tx.Bucket(bucketHolders), idx: tx.Bucket(bucketHolderCards),
		revCards: tx.Bucket(bucketRevCards), revHolders: tx.Bucket(bucketRevHolders)}
}

// apply performs one checked op with the door store's semantics: upserts
// replace, deleting or reinstating what is absent is no error, and a
// holder who still has cards cannot be deleted.
func (a *aclTx) apply(op *store.Op) error {
	switch op.Kind {
	case store.OpUpsertCard:
		c := op.Card
		if old := a.cards.Get(c.UID); old != nil {
			var oc store.Card
			if err := decodeJSON(old, &oc); err != nil {
				return fmt.Errorf("card %X: %w", c.UID, err)
			}
			if err := a.idx.Delete(holderCardKey(oc.HolderID, oc.UID)); err != nil {
				return err
			}
		}
		v, err := encodeJSON(c)
		if err != nil {
			return err
		}
		if err := a.cards.Put(bytes.Clone(c.UID), v); err != nil {
			return err
		}
		return a.idx.Put(holderCardKey(c.HolderID, c.UID), nil)
	case store.OpDeleteCard:
		old := a.cards.Get(op.UID)
		if old == nil {
			return nil
		}
		var oc store.Card
		if err := decodeJSON(old, &oc); err != nil {
			return fmt.Errorf("card %X: %w", op.UID, err)
		}
		if err := a.idx.Delete(holderCardKey(oc.HolderID, oc.UID)); err != nil {
			return err
		}
		return a.cards.Delete(op.UID)
	case store.OpUpsertHolder:
		v, err := encodeJSON(op.Holder)
		if err != nil {
			return err
		}
		return a.holders.Put([]byte(op.Holder.ID), v)
	case store.OpDeleteHolder:
		p := holderCardPrefix(op.HolderID)
		if k, _ := a.idx.Cursor().Seek(p); k != nil && bytes.HasPrefix(k, p) {
			return fmt.Errorf("%w: holder %q still has cards; delete them first", ErrInvalid, op.HolderID)
		}
		// Its SCIM memberships go with it: a later holder of the same id
		// is not a member.
		if err := dropSCIMHolder(a.tx, op.HolderID); err != nil {
			return err
		}
		return a.holders.Delete([]byte(op.HolderID))
	case store.OpRevokeCard:
		v, err := encodeJSON(store.Revocation{UID: op.UID, Reason: op.Reason})
		if err != nil {
			return err
		}
		return a.revCards.Put(bytes.Clone(op.UID), v)
	case store.OpReinstateCard:
		return a.revCards.Delete(op.UID)
	case store.OpRevokeHolder:
		v, err := encodeJSON(store.Revocation{HolderID: op.HolderID, Reason: op.Reason})
		if err != nil {
			return err
		}
		return a.revHolders.Put([]byte(op.HolderID), v)
	case store.OpReinstateHolder:
		return a.revHolders.Delete([]byte(op.HolderID))
	}
	return fmt.Errorf("%w: unknown operation %q", ErrInvalid, op.Kind)
}

// Commit applies ops in order as the next global ACL seq, in one
// transaction, and appends them to the change history under that seq. One
// invalid op (a *store.OpError wrapping ErrInvalid) or a failed write
// changes nothing. by names who committed; now is the site's clock.
func (d *DB) Commit(ops []store.Op, by string, now time.Time) (uint64, error) {
	if len(ops) == 0 {
		return 0, fmt.Errorf("site: commit: %w: no operations", ErrInvalid)
	}
	for i := range ops {
		if err := checkOp(&ops[i]); err != nil {
			return 0, fmt.Errorf("site: commit: %w", &store.OpError{Index: i, Kind: ops[i].Kind, Err: err})
		}
	}
	var seq uint64
	err := d.update(func(tx *bolt.Tx) error {
		cur, err := readACLSeq(tx)
		if err != nil {
			return err
		}
		seq = cur + 1
		a := newACLTx(tx)
		for i := range ops {
			if err := a.apply(&ops[i]); err != nil {
				return &store.OpError{Seq: seq, Index: i, Kind: ops[i].Kind, Err: err}
			}
		}
		v, err := encodeJSON(Change{Delta: store.Delta{Seq: seq, Ops: ops}, By: by, At: now.UTC()})
		if err != nil {
			return err
		}
		deltas := tx.Bucket(bucketDeltas)
		deltas.FillPercent = 1.0 // keys only grow
		if err := deltas.Put(be64(seq), v); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyACLSeq, encodeU64(seq))
	})
	if err != nil {
		return 0, fmt.Errorf("site: commit: %w", err)
	}
	return seq, nil
}

// ACLSeq returns the global ACL seq: that of the last committed change.
func (d *DB) ACLSeq() (uint64, error) {
	var seq uint64
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		seq, err = readACLSeq(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("site: acl seq: %w", err)
	}
	return seq, nil
}

// DeltasAfter returns the committed changes after seq, oldest first, at
// most max of them (0: all).
func (d *DB) DeltasAfter(seq uint64, max int) ([]Change, error) {
	var out []Change
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDeltas).Cursor()
		for k, v := c.Seek(be64(seq + 1)); k != nil && (max <= 0 || len(out) < max); k, v = c.Next() {
			var ch Change
			if err := decodeJSON(v, &ch); err != nil {
				return fmt.Errorf("change %X: %w", k, err)
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: deltas after %d: %w", seq, err)
	}
	return out, nil
}

// Snapshot returns the whole allowlist at the global ACL seq, in the door
// store's order: cards by UID, holders by id, card revocations by UID then
// holder revocations by id. store.HashSnapshot of it is the state hash a
// door that applied every change would report.
func (d *DB) Snapshot() (store.Snapshot, error) {
	var sn store.Snapshot
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		if sn.Seq, err = readACLSeq(tx); err != nil {
			return err
		}
		if err := forEachJSON(tx, bucketCards, func(c store.Card) { sn.Cards = append(sn.Cards, c) }); err != nil {
			return err
		}
		if err := forEachJSON(tx, bucketHolders, func(h store.Holder) { sn.Holders = append(sn.Holders, h) }); err != nil {
			return err
		}
		add := func(r store.Revocation) { sn.Revocations = append(sn.Revocations, r) }
		if err := forEachJSON(tx, bucketRevCards, add); err != nil {
			return err
		}
		return forEachJSON(tx, bucketRevHolders, add)
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("site: snapshot: %w", err)
	}
	return sn, nil
}

// forEachJSON decodes every record of the bucket name in tx, in key
// order.
func forEachJSON[T any](tx *bolt.Tx, name []byte, fn func(T)) error {
	return tx.Bucket(name).ForEach(func(k, v []byte) error {
		var x T
		if err := decodeJSON(v, &x); err != nil {
			return fmt.Errorf("%s %X: %w", name, k, err)
		}
		fn(x)
		return nil
	})
}

// getJSON reads the record under k into v, or returns ErrNotFound.
func (d *DB) getJSON(bucket, k []byte, v any) error {
	return d.view(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucket).Get(k)
		if rec == nil {
			return ErrNotFound
		}
		return decodeJSON(rec, v)
	})
}

// Card returns the card with this UID, or ErrNotFound.
func (d *DB) Card(uid []byte) (store.Card, error) {
	var c store.Card
	if err := d.getJSON(bucketCards, uid, &c); err != nil {
		return store.Card{}, fmt.Errorf("site: card %X: %w", uid, err)
	}
	return c, nil
}

// Holder returns the holder with this id, or ErrNotFound.
func (d *DB) Holder(id string) (store.Holder, error) {
	var h store.Holder
	if err := d.getJSON(bucketHolders, []byte(id), &h); err != nil {
		return store.Holder{}, fmt.Errorf("site: holder %q: %w", id, err)
	}
	return h, nil
}

// Revoked returns the revocation of the card uid, or ErrNotFound.
func (d *DB) Revoked(uid []byte) (store.Revocation, error) {
	var r store.Revocation
	if err := d.getJSON(bucketRevCards, uid, &r); err != nil {
		return store.Revocation{}, fmt.Errorf("site: revocation of card %X: %w", uid, err)
	}
	return r, nil
}

// HolderRevoked returns the revocation of the holder id, or ErrNotFound.
func (d *DB) HolderRevoked(id string) (store.Revocation, error) {
	var r store.Revocation
	if err := d.getJSON(bucketRevHolders, []byte(id), &r); err != nil {
		return store.Revocation{}, fmt.Errorf("site: revocation of holder %q: %w", id, err)
	}
	return r, nil
}

// page reads up to n records of b after the key after (from the first
// when nil), in key order.
func page[T any](d *DB, b []byte, after []byte, n int) ([]T, error) {
	var out []T
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(b).Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && (n <= 0 || len(out) < n); k, v = c.Next() {
			var x T
			if err := decodeJSON(v, &x); err != nil {
				return fmt.Errorf("%s %X: %w", b, k, err)
			}
			out = append(out, x)
		}
		return nil
	})
	return out, err
}

// ListCards returns up to n cards (0: all) in UID order, starting after
// the UID after (nil: from the first). Pass the last UID returned to get
// the next page.
func (d *DB) ListCards(after []byte, n int) ([]store.Card, error) {
	out, err := page[store.Card](d, bucketCards, after, n)
	if err != nil {
		return nil, fmt.Errorf("site: list cards: %w", err)
	}
	return out, nil
}

// ListHolders returns up to n holders (0: all) in id order, starting
// after the id after ("": from the first).
func (d *DB) ListHolders(after string, n int) ([]store.Holder, error) {
	var a []byte
	if after != "" {
		a = []byte(after)
	}
	out, err := page[store.Holder](d, bucketHolders, a, n)
	if err != nil {
		return nil, fmt.Errorf("site: list holders: %w", err)
	}
	return out, nil
}

// CardsOf returns the UIDs of the holder's cards, in byte order.
func (d *DB) CardsOf(holder string) ([][]byte, error) {
	var out [][]byte
	p := holderCardPrefix(holder)
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHolderCards).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			out = append(out, bytes.Clone(k[len(p):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: cards of %q: %w", holder, err)
	}
	return out, nil
}

// checkACL decodes every allowlist record and change, and checks the
// holder index against the cards and the history against the ACL seq.
func checkACL(tx *bolt.Tx) error {
	idx := tx.Bucket(bucketHolderCards)
	n := 0
	err := tx.Bucket(bucketCards).ForEach(func(k, v []byte) error {
		var c store.Card
		if err := decodeJSON(v, &c); err != nil {
			return fmt.Errorf("card %X: %w", k, err)
		}
		if !bytes.Equal(c.UID, k) {
			return fmt.Errorf("%w: card %X holds uid %X", ErrCorrupt, k, c.UID)
		}
		if idx.Get(holderCardKey(c.HolderID, c.UID)) == nil {
			return fmt.Errorf("%w: card %X is missing from the holder index", ErrCorrupt, k)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if k := idx.Stats().KeyN; k != n {
		return fmt.Errorf("%w: the holder index has %d entries for %d cards", ErrCorrupt, k, n)
	}
	for _, b := range [][]byte{bucketHolders, bucketRevCards, bucketRevHolders} {
		if err := tx.Bucket(b).ForEach(func(k, v []byte) error {
			var x map[string]any
			if err := decodeJSON(v, &x); err != nil {
				return fmt.Errorf("%s %X: %w", b, k, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	seq, err := readACLSeq(tx)
	if err != nil {
		return err
	}
	var next uint64 = 1
	c := tx.Bucket(bucketDeltas).Cursor()
	k, _ := c.First()
	if len(k) == 8 {
		next = bytesU64(k) // the history may start later if pruned
	}
	for ; k != nil; k, _ = c.Next() {
		var ch Change
		if err := decodeJSON(c.Bucket().Get(k), &ch); err != nil {
			return fmt.Errorf("change %X: %w", k, err)
		}
		if len(k) != 8 || bytesU64(k) != next || ch.Seq != next {
			return fmt.Errorf("%w: change history: key %X holds change %d, want %d", ErrCorrupt, k, ch.Seq, next)
		}
		next++
	}
	if next-1 != seq && !(next == 1 && seq == 0) {
		return fmt.Errorf("%w: the change history ends at %d, the ACL seq is %d", ErrCorrupt, next-1, seq)
	}
	return nil
}

var errStop = errors.New("stop")
