package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
)

// sum256 is a 256-bit unsigned integer, most significant word first: the
// multiset sum of allowlist entry hashes, mod 2^256. Adding an entry adds
// its hash, removing subtracts it, so the sum follows every change in
// constant time and does not depend on the order of entries.
type sum256 [4]uint64

func sumFrom(b []byte) (sum256, error) {
	var s sum256
	if len(b) != 32 {
		return s, fmt.Errorf("%w: state sum of %d bytes, want 32", ErrCorrupt, len(b))
	}
	for i := range s {
		s[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return s, nil
}

func (s sum256) bytes() []byte {
	out := make([]byte, 0, 32)
	for _, w := range s {
		out = binary.BigEndian.AppendUint64(out, w)
	}
	return out
}

func (s *sum256) add(h [32]byte) {
	var carry uint64
	for i := 3; i >= 0; i-- {
		s[i], carry = bits.Add64(s[i], binary.BigEndian.Uint64(h[8*i:]), carry)
	}
}

func (s *sum256) sub(h [32]byte) {
	var borrow uint64
	for i := 3; i >= 0; i-- {
		s[i], borrow = bits.Sub64(s[i], binary.BigEndian.Uint64(h[8*i:]), borrow)
	}
}

// stateHash is the allowlist state hash at seq: hex SHA-256 of the text
// "latch acl state v1", the sequence as 8 bytes big-endian, and the 32-byte
// multiset sum.
func stateHash(seq uint64, s sum256) string {
	h := sha256.New()
	h.Write([]byte("latch acl state v1"))
	h.Write(be64(seq))
	h.Write(s.bytes())
	return hex.EncodeToString(h.Sum(nil))
}

// HashSnapshot computes the allowlist state hash of a snapshot, the value a
// door reports in SyncState.SnapshotHash once it has applied the same state
// at the same sequence, whether by this snapshot or by deltas.
//
// Definition: every card, holder and revocation is one entry; an entry's
// hash is SHA-256 of a tag byte (1 card, 2 holder, 3 revoked card, 4 revoked
// holder) followed by its canonical encoding (see the package comment); the
// entry hashes are added as 256-bit big-endian integers mod 2^256; the state
// hash is hex SHA-256("latch acl state v1" || uint64 big-endian seq || sum).
// Entries are not validated here; ApplySnapshot refuses invalid ones.
func HashSnapshot(s Snapshot) string {
	var sum sum256
	sum.addEntries(&s)
	return stateHash(s.Seq, sum)
}

// SnapshotHasher computes HashSnapshot of a snapshot given in parts, so
// that a snapshot too large to hold in memory (one sent in chunks) can be
// hashed a part at a time: the state hash is a sum over the entries, in
// any order.
type SnapshotHasher struct{ sum sum256 }

// Add adds every entry of part (its Seq is ignored).
func (h *SnapshotHasher) Add(part Snapshot) { h.sum.addEntries(&part) }

// Hash returns the state hash at seq of every entry added.
func (h *SnapshotHasher) Hash(seq uint64) string { return stateHash(seq, h.sum) }

// addEntries adds the hash of every entry of sn.
func (s *sum256) addEntries(sn *Snapshot) {
	for i := range sn.Cards {
		s.add(entryHash(tagCard, cardBody(&sn.Cards[i])))
	}
	for i := range sn.Holders {
		s.add(entryHash(tagHolder, holderBody(&sn.Holders[i])))
	}
	for i := range sn.Revocations {
		s.add(revocationEntryHash(&sn.Revocations[i]))
	}
}

func revocationEntryHash(r *Revocation) [32]byte {
	if len(r.UID) > 0 {
		return entryHash(tagRevokedCard, revocationBody(r))
	}
	return entryHash(tagRevokedHolder, revocationBody(r))
}

// computeStateSum recomputes the multiset sum from every entry in the
// allowlist buckets under p (the live ones or the stage's; names is the
// names bucket), checking each record on the way, and counts the entries;
// onCard, if set, sees each decoded card.
func computeStateSum(p bucketParent, names getter, onCard func(c *Card) error) (sum256, int, error) {
	var sum sum256
	n := 0
	refs := cardRefs{holders: p.Bucket(bucketHolders), names: names}
	walks := []struct {
		bucket []byte
		tag    byte
		body   func(k, v []byte) ([]byte, error)
	}{
		{bucketCards, tagCard, func(k, v []byte) ([]byte, error) {
			c, err := decodeCard(k, v, refs)
			if err == nil && onCard != nil {
				err = onCard(&c)
			}
			return cardBody(&c), err
		}},
		{bucketHolders, tagHolder, func(k, v []byte) ([]byte, error) {
			h, err := decodeHolder(k, v)
			return holderBody(&h), err
		}},
		{bucketRevokedCards, tagRevokedCard, func(k, v []byte) ([]byte, error) {
			r, err := decodeRevocation(k, v, false)
			return revocationBody(&r), err
		}},
		{bucketRevokedHolders, tagRevokedHolder, func(k, v []byte) ([]byte, error) {
			r, err := decodeRevocation(k, v, true)
			return revocationBody(&r), err
		}},
	}
	for _, w := range walks {
		err := p.Bucket(w.bucket).ForEach(func(k, v []byte) error {
			body, err := w.body(k, v)
			if err != nil {
				return err
			}
			sum.add(entryHash(w.tag, body))
			n++
			return nil
		})
		if err != nil {
			return sum, n, err
		}
	}
	return sum, n, nil
}
