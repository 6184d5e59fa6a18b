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
// Each entry's CRC covers its key, as an allowlist record's does, and each
// name and number name each other, so that a damaged key can neither move
// a number to another name nor go unnoticed by the checks. "*" (every
// door) is number 0 and has no entry. Numbers are never reused or removed,
// so a number read once stays right for the life of the file.
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

// encodeNameID and encodeIDName seal the two entries of a name.
func encodeNameID(key []byte, id uint64) []byte {
	e := encoder{b: []byte{smallVersion}}
	e.u64(id)
	return e.sealedFor(key)
}

func encodeIDName(key []byte, name string) []byte {
	e := encoder{b: append([]byte{smallVersion}, name...)}
	return e.sealedFor(key)
}

// decodeNameID reads the number stored under key ('n' + name).
func decodeNameID(key, v []byte) (uint64, error) {
	body, err := unsealFor(key, v, smallVersion)
	if err != nil {
		return 0, fmt.Errorf("names: entry of %s: %w", keyText(key[1:]), err)
	}
	d := decoder{b: body}
	id := d.u64()
	if err := d.end(); err != nil {
		return 0, fmt.Errorf("names: entry of %s: %w: %w", keyText(key[1:]), ErrCorrupt, err)
	}
	if id == wildcardID || id > maxNameID {
		return 0, fmt.Errorf("names: entry of %s: %w: number %d", keyText(key[1:]), ErrCorrupt, id)
	}
	return id, nil
}

// decodeIDName reads the name stored under key ('i' + number).
func decodeIDName(key, v []byte) (string, error) {
	body, err := unsealFor(key, v, smallVersion)
	if err == nil {
		if cerr := checkID("name", string(body)); cerr != nil {
			err = fmt.Errorf("%w: %w", ErrCorrupt, cerr)
		}
	}
	if err != nil {
		return "", fmt.Errorf("names: number %d: %w", binary.BigEndian.Uint32(key[1:]), err)
	}
	return string(body), nil
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
	key := nameKey(name)
	if v := t.b.Get(key); v != nil {
		return decodeNameID(key, v)
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
	if err := t.b.Put(key, encodeNameID(key, id)); err != nil {
		return 0, err
	}
	if err := t.b.Put(idKey(id), encodeIDName(idKey(id), name)); err != nil {
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
	key := idKey(id)
	v := b.Get(key)
	if v == nil {
		return "", fmt.Errorf("%w: door or group number %d has no name", ErrCorrupt, id)
	}
	return decodeIDName(key, v)
}

// checkNameEntry checks an entry of the names bucket b: it decodes, and
// the entry of the other side names it back.
func checkNameEntry(b getter, k, v []byte) error {
	switch {
	case len(k) > 1 && k[0] == namePrefix:
		id, err := decodeNameID(k, v)
		if err != nil {
			return err
		}
		if name, err := nameOf(b, id); err != nil || name != string(k[1:]) {
			return fmt.Errorf("names: %s has number %d, which names %q (%v): %w", keyText(k[1:]), id, name, err, ErrCorrupt)
		}
	case len(k) == 5 && k[0] == idPrefix:
		name, err := decodeIDName(k, v)
		if err != nil {
			return err
		}
		key := nameKey(name)
		back := b.Get(key)
		if back == nil {
			return fmt.Errorf("%w: names: number %d names %q, which has no number", ErrCorrupt, binary.BigEndian.Uint32(k[1:]), name)
		}
		if id, err := decodeNameID(key, back); err != nil || id != uint64(binary.BigEndian.Uint32(k[1:])) {
			return fmt.Errorf("names: number %d names %q, whose number is %d (%v): %w", binary.BigEndian.Uint32(k[1:]), name, id, err, ErrCorrupt)
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
	b := tx.Bucket(bucketNames)
	if v := b.Get(key); v != nil {
		id, err := decodeNameID(key, v)
		if err != nil {
			return 0, false, err
		}
		// The number must name this name back before it is trusted.
		if err := guard(tx, bucketNames, idKey(id)); err != nil {
			return 0, false, err
		}
		if back, err := nameOf(b, id); err != nil || back != name {
			return 0, false, fmt.Errorf("names: %s has number %d, which names %q (%v): %w", keyText(key[1:]), id, back, err, ErrCorrupt)
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
