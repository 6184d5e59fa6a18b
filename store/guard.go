package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Until the background check has walked every page of the file (see
// Options.CheckPause), a page bbolt reads may be damaged: a cyclic branch
// page makes its cursor recurse until the stack overflows, which kills
// the process, and a bad page id or element offset makes it read outside
// the file. guardGet runs before each lookup Decide makes: with plain
// reads of the file it checks every page bbolt's search will read, from
// the root of the transaction through the top-level bucket to the leaf,
// as bbolt will search them.

// guardGet makes sure that bbolt can look key up in the top-level bucket
// name in tx (a read transaction) without looping or reading outside the
// file. Once the background check has passed the page structure it only
// returns the damage the store has found, if any. A bad path is ErrCorrupt
// and becomes the store's fault (see Fault).
func (s *Store) guardGet(tx *bolt.Tx, name, key []byte) error {
	if err := s.Fault(); err != nil {
		return err
	}
	if s.pagesOK.Load() {
		return nil
	}
	g, done := s.pathGuard()
	err := g.get(tx, name, key)
	done()
	if err != nil {
		err = fmt.Errorf("%w: page structure: bucket %s: %w", ErrCorrupt, name, err)
		s.setFault(err)
		return err
	}
	return nil
}

// pathGuard checks the pages on the search path of a key. The store's
// keeps its buffer (and a cache of the top-level buckets found in one read
// transaction) from one use to the next, so that a check allocates
// nothing.
type pathGuard struct {
	pageFile
	buf []byte

	// The top-level buckets found for read transactions of txid. Every
	// read transaction of a txid sees the same pages, and none of them is
	// reused while one is open.
	txid    int
	buckets []guardedBucket
}

type guardedBucket struct {
	name   []byte // aliases the caller's name: the package's bucket names
	root   uint64
	inline []byte // a copy of an inline bucket's page
}

func (s *Store) newPathGuard() *pathGuard {
	return &pathGuard{pageFile: pageFile{f: s.rf, pageSize: s.pageSize}}
}

// pathGuard returns the store's guard, or a new one while another
// goroutine uses it, and the function to call when done with it.
func (s *Store) pathGuard() (*pathGuard, func()) {
	if s.guardMu.TryLock() {
		return s.guard, s.guardMu.Unlock
	}
	return s.newPathGuard(), func() {}
}

// txRoot is the root page of tx's root bucket, the tree of the top-level
// buckets.
func txRoot(tx *bolt.Tx) uint64 { return uint64(tx.Cursor().Bucket().Root()) }

// get checks the pages bbolt reads to find the top-level bucket name in
// tx and to look key up in it (nil: only to find the bucket).
func (g *pathGuard) get(tx *bolt.Tx, name, key []byte) error {
	g.highWater = uint64(tx.Size()) / g.pageSize
	root, _, err := g.topBucket(tx, name)
	if err != nil || key == nil || root == 0 {
		return err // an inline bucket's page was checked whole
	}
	_, err = g.descend(root, nil, key)
	return err
}

// topBucket finds the top-level bucket name, checking the pages on the way.
func (g *pathGuard) topBucket(tx *bolt.Tx, name []byte) (root uint64, inline []byte, err error) {
	if tx.Writable() {
		g.txid, g.buckets = -1, g.buckets[:0]
	} else if id := tx.ID(); id != g.txid {
		g.txid, g.buckets = id, g.buckets[:0]
	}
	for i := range g.buckets {
		if b := &g.buckets[i]; bytes.Equal(b.name, name) {
			return b.root, b.inline, nil
		}
	}
	root, inline, found, err := g.bucket(txRoot(tx), nil, name)
	switch {
	case err != nil:
		return 0, nil, err
	case !found:
		return 0, nil, fmt.Errorf("the bucket is missing")
	}
	n := len(g.buckets)
	if n < cap(g.buckets) {
		g.buckets = g.buckets[:n+1]
	} else {
		g.buckets = append(g.buckets, guardedBucket{})
	}
	b := &g.buckets[n]
	b.name, b.root, b.inline = name, root, append(b.inline[:0], inline...)
	return root, b.inline, nil
}

// path finds the bucket at path (names from the root bucket) in tx,
// checking the pages on the way. found is false when a bucket on the path
// does not exist.
func (g *pathGuard) path(tx *bolt.Tx, path [][]byte) (root uint64, inline []byte, found bool, err error) {
	g.highWater = uint64(tx.Size()) / g.pageSize
	root = txRoot(tx)
	for _, name := range path {
		if root, inline, found, err = g.bucket(root, inline, name); err != nil || !found {
			return 0, nil, false, err
		}
	}
	return root, inline, true, nil
}

// bucket finds the bucket name in the bucket whose root page is root (or,
// for an inline bucket, whose page is inline), as bbolt's Bucket does,
// checking the pages on the way; found is false when there is none. An
// inline bucket's page is returned checked; it aliases the guard's buffer
// or inline.
func (g *pathGuard) bucket(root uint64, inline, name []byte) (uint64, []byte, bool, error) {
	leaf, err := g.descend(root, inline, name)
	if err != nil {
		return 0, nil, false, err
	}
	i := searchLeaf(leaf, name)
	if i >= pageCount(leaf) {
		return 0, nil, false, nil
	}
	flags, k, v := leafElem(leaf, i)
	if !bytes.Equal(k, name) || flags&boltBucketLeaf == 0 {
		return 0, nil, false, nil
	}
	sub, subInline := bucketRoot(v)
	if sub == 0 {
		if err := checkInline(subInline); err != nil {
			return 0, nil, false, fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return sub, subInline, true, nil
}

// descend reads and checks the pages bbolt's search for key reads in the
// tree whose root page is root, down to the leaf, and returns that leaf.
// A tree deeper than maxTreeDepth (as a cyclic one is) is refused. With
// root 0 the tree is the inline page, which the caller checked.
func (g *pathGuard) descend(root uint64, inline, key []byte) ([]byte, error) {
	if root == 0 {
		return inline, nil
	}
	id := root
	for depth := 0; ; depth++ {
		if depth > maxTreeDepth {
			return nil, fmt.Errorf("page %d: tree deeper than %d levels", root, maxTreeDepth)
		}
		var err error
		if g.buf, err = g.read(g.buf, id); err != nil {
			return nil, err
		}
		if err := checkElements(g.buf); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		if pageFlags(g.buf) == boltLeafPage {
			return g.buf, nil
		}
		_, id = branchElem(g.buf, searchBranch(g.buf, key))
	}
}

// checkPath checks, as guardGet does, the pages bbolt reads in tx to find
// the bucket at path and to look key up in it (nil: only to find the
// bucket). found is false when a bucket on the path does not exist. It
// runs whether or not the pages were checked, and sets no fault.
func (s *Store) checkPath(tx *bolt.Tx, key []byte, path ...[]byte) (found bool, err error) {
	g, done := s.pathGuard()
	defer done()
	root, _, found, err := g.path(tx, path)
	if err == nil && found && key != nil && root != 0 {
		_, err = g.descend(root, nil, key)
	}
	if err != nil {
		return false, fmt.Errorf("%w: page structure: %s: %w", ErrCorrupt, pathText(path), err)
	}
	return found, nil
}

// guardSchema checks the pages readSchema reads in tx: the way to the
// schema version or, when there is no meta bucket, the whole file, whose
// top-level buckets it then lists (a new file has none).
func (s *Store) guardSchema(tx *bolt.Tx) error {
	found, err := s.checkPath(tx, keySchema, bucketMeta)
	if err != nil || found {
		return err
	}
	return walkPages(s.path, tx)
}
