package store

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Door ids and group names that cards list are stored once each, in the
// names bucket, and a card record lists their numbers: a site's cards name
// the same few doors and groups over and over.
//
//	'n' + name        v1 uint64: its number (1, 2, ...)
//	'i' + uint32 BE   v1 the name
//
// "*" (every door) is number 0 and has no entry. Numbers are never reused
// or removed, so a number read once stays right for the life of the file.
const (
	namePrefix   = 'n'
	idPrefix     = 'i'
	wildcardID   = 0
	maxNameID    = 1<<32 - 1
	wildcardDoor = "*"
)

func nameKey(name string) []byte {
	return append([]byte{namePrefix}, name...)
}

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint32([]byte{idPrefix}, uint32(id))
}

// nameTable numbers names inside a write transaction.
type nameTable struct {
	tx    *bolt.Tx
	b     *bolt.Bucket
	added func() // called once the transaction that added a name commits
	hook  bool   // added is registered with tx
}

// id returns the number of name, giving it the next one if it has none.
func (t *nameTable) id(name string) (uint64, error) {
	if name == wildcardDoor {
		return wildcardID, nil
	}
	if v := t.b.Get(nameKey(name)); v != nil {
		id, err := decodeU64(v)
		if err != nil || id == wildcardID || id > maxNameID {
			return 0, fmt.Errorf("%w: names: entry of %q: number %d, %v", ErrCorrupt, name, id, err)
		}
		return id, nil
	}
	// The last 'i' key holds the highest number: the key before the first
	// one past the 'i' keys.
	last := uint64(0)
	c := t.b.Cursor()
	k, _ := c.Seek([]byte{idPrefix + 1})
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if len(k) == 5 && k[0] == idPrefix {
		last = uint64(binary.BigEndian.Uint32(k[1:]))
	}
	if last == maxNameID {
		return 0, fmt.Errorf("%w: names: no numbers left", ErrInvalidOp)
	}
	id := last + 1
	if err := t.b.Put(nameKey(name), encodeU64(id)); err != nil {
		return 0, err
	}
	if err := t.b.Put(idKey(id), encodeBytes([]byte(name))); err != nil {
		return 0, err
	}
	if !t.hook && t.added != nil {
		t.tx.OnCommit(t.added)
		t.hook = true
	}
	return id, nil
}

// ids returns the numbers of names.
func (t *nameTable) ids(names []string) ([]uint64, error) {
	out := make([]uint64, len(names))
	for i, n := range names {
		var err error
		if out[i], err = t.id(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nameOf returns the name numbered id in the names bucket b.
func nameOf(b getter, id uint64) (string, error) {
	if id == wildcardID {
		return wildcardDoor, nil
	}
	v := b.Get(idKey(id))
	if v == nil {
		return "", fmt.Errorf("%w: door or group number %d has no name", ErrCorrupt, id)
	}
	name, err := decodeBytes(v)
	if err != nil {
		return "", fmt.Errorf("names: number %d: %w", id, err)
	}
	if err := checkID("door or group name", string(name)); err != nil {
		return "", fmt.Errorf("%w: names: number %d: %w", ErrCorrupt, id, err)
	}
	return string(name), nil
}

// checkNameEntry decodes an entry of the names bucket.
func checkNameEntry(k, v []byte) error {
	switch {
	case len(k) > 1 && k[0] == namePrefix:
		id, err := decodeU64(v)
		if err == nil && (id == wildcardID || id > maxNameID) {
			err = fmt.Errorf("%w: number %d", ErrCorrupt, id)
		}
		if err == nil {
			if cerr := checkID("name", string(k[1:])); cerr != nil {
				err = fmt.Errorf("%w: %w", ErrCorrupt, cerr)
			}
		}
		if err != nil {
			return fmt.Errorf("names: entry of %s: %w", keyText(k[1:]), err)
		}
	case len(k) == 5 && k[0] == idPrefix:
		name, err := decodeBytes(v)
		if err == nil {
			if cerr := checkID("name", string(name)); cerr != nil {
				err = fmt.Errorf("%w: %w", ErrCorrupt, cerr)
			}
		}
		if err != nil {
			return fmt.Errorf("names: number %d: %w", binary.BigEndian.Uint32(k[1:]), err)
		}
	default:
		return fmt.Errorf("%w: names: key %s", ErrCorrupt, keyText(k))
	}
	return nil
}

// nameCache keeps the numbers of the names Decide asks about: the door's
// id and groups, a handful per door. A name without a number is kept as
// a miss until a transaction that numbers a name commits (gen).
type nameCache struct {
	gen atomic.Uint64 // bumped after each commit that numbered a name
	mu  sync.RWMutex
	ids map[string]nameHit
}

type nameHit struct {
	id    uint64
	found bool
	gen   uint64 // for a miss: gen when it was read
}

// maxCachedNames bounds the cache; past it, it starts over.
const maxCachedNames = 1024

// lookup returns the number of name in tx, or false when no card can
// list it. gen is the cache generation read before tx began; guard checks
// the way to a key of the names bucket before it is read (Store.guardGet).
func (c *nameCache) lookup(tx *bolt.Tx, name string, gen uint64, guard func(tx *bolt.Tx, bucket, key []byte) error) (uint64, bool, error) {
	if name == wildcardDoor {
		return wildcardID, true, nil
	}
	c.mu.RLock()
	h, ok := c.ids[name]
	c.mu.RUnlock()
	if ok && (h.found || h.gen == gen) {
		return h.id, h.found, nil
	}
	h = nameHit{gen: gen}
	key := nameKey(name)
	if err := guard(tx, bucketNames, key); err != nil {
		return 0, false, err
	}
	if v := tx.Bucket(bucketNames).Get(key); v != nil {
		id, err := decodeU64(v)
		if err != nil || id == wildcardID || id > maxNameID {
			return 0, false, fmt.Errorf("%w: names: entry of %q: number %d, %v", ErrCorrupt, name, id, err)
		}
		h.id, h.found = id, true
	}
	c.mu.Lock()
	if c.ids == nil || len(c.ids) >= maxCachedNames {
		c.ids = make(map[string]nameHit)
	}
	c.ids[name] = h
	c.mu.Unlock()
	return h.id, h.found, nil
}
