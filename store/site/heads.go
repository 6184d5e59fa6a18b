package site

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Where a held head came from.
const (
	HeadFromEvent  = "event"  // the signature that came with a stored event
	HeadFromStatus = "status" // the signed head of a door's status
)

// SignedHead is a door's audit chain head as the door signed it: its
// chain's hash at Seq. A head held commits the door: an event later sent
// for that seq with another hash is a rewrite.
type SignedHead struct {
	Seq  uint64 `json:"-"`    // the chain's seq (the key)
	Hash string `json:"hash"` // the chain's hash there, 64 hex digits
	Sig  string `json:"sig"`  // the door's signature of the head, base64
	From string `json:"from"` // HeadFromEvent or HeadFromStatus
}

// PutHead holds a signed head of door, whose signature the caller has
// verified. A head at the same seq with the same hash is kept as it was;
// one with another hash than the head or the event held there is refused
// with ErrConflict (the caller records the rewrite).
func (d *DB) PutHead(door string, h SignedHead) error {
	if err := checkDoorID(door); err != nil {
		return fmt.Errorf("site: put head of door %q: %w", door, err)
	}
	if h.Seq == 0 || !hexHash(h.Hash) {
		return fmt.Errorf("site: put head of door %s: %w: want seq > 0 and a hash of 64 lower-case hex digits", door, ErrInvalid)
	}
	err := d.update(func(tx *bolt.Tx) error { return putHead(tx, door, h) })
	if err != nil {
		return fmt.Errorf("site: put head %d of door %s: %w", h.Seq, door, err)
	}
	return nil
}

// putHead is PutHead in tx.
func putHead(tx *bolt.Tx, door string, h SignedHead) error {
	k := eventKey(door, h.Seq)
	if v := tx.Bucket(bucketEvents).Get(k); v != nil {
		e, err := decodeEvent(v)
		if err != nil {
			return err
		}
		if e.Hash != h.Hash {
			return fmt.Errorf("%w: head %d has hash %s, the stored event %s", ErrConflict, h.Seq, h.Hash, e.Hash)
		}
	}
	hb := tx.Bucket(bucketHeads)
	if v := hb.Get(k); v != nil {
		var old SignedHead
		if err := decodeJSON(v, &old); err != nil {
			return err
		}
		if old.Hash != h.Hash {
			return fmt.Errorf("%w: head %d has hash %s, the head held from a %s %s", ErrConflict, h.Seq, h.Hash, old.From, old.Hash)
		}
		return nil
	}
	v, err := encodeJSON(&h)
	if err != nil {
		return err
	}
	return hb.Put(k, v)
}

// Head returns door's signed head at seq, or ErrNotFound.
func (d *DB) Head(door string, seq uint64) (SignedHead, error) {
	var h SignedHead
	if err := d.getJSON(bucketHeads, eventKey(door, seq), &h); err != nil {
		return SignedHead{}, fmt.Errorf("site: head %d of door %s: %w", seq, door, err)
	}
	h.Seq = seq
	return h, nil
}

// LatestHead returns door's signed head of the highest seq held, or
// ErrNotFound.
func (d *DB) LatestHead(door string) (SignedHead, error) {
	var h SignedHead
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHeads).Cursor()
		pfx := doorKey(door)
		k, v := c.Seek(eventKey(door, ^uint64(0)))
		switch {
		case k == nil:
			k, v = c.Last()
		case !bytes.Equal(k, eventKey(door, ^uint64(0))):
			k, v = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, pfx) || len(k) != len(pfx)+8 {
			return ErrNotFound
		}
		_, h.Seq, _ = splitEventKey(k)
		return decodeJSON(v, &h)
	})
	if err != nil {
		return SignedHead{}, fmt.Errorf("site: latest head of door %s: %w", door, err)
	}
	return h, nil
}
