package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The background check: what Open does not check, checked after it
// returns, a bounded chunk at a time, each chunk in a read transaction of
// its own, so that writers are never held up for long (a long reader keeps
// bbolt from growing its memory map and from reusing pages).
//
// First the page structure: the root bucket's tree, then every bucket
// found in it and in those, each a key range at a time, checked with plain
// reads as walkPages checks the whole file, and key order within the
// range as bbolt's check does. A page written after the walk passed its
// range was written by this process. Once this has passed, Decide's
// lookups need no guard (see guardGet), and bbolt's cursors may read
// anywhere. Then every record is decoded, through bbolt, again a chunk of
// keys at a time; the audit chain is verified as Verify does; the
// allowlist state sum and the holder index are compared with the entries
// when no allowlist write happened meanwhile; and a staged snapshot is
// checked as checkStage does, when it did not change meanwhile.

// Chunk sizes of the background check.
const (
	checkChunkPages   = 256  // pages read per read transaction
	checkChunkRecords = 1000 // records decoded per read transaction
)

// errStopped ends the background check when the store closes.
var errStopped = errors.New("the store is closing")

// CheckDone returns a channel closed when the background check Open
// started has ended: passed, found damage (see Fault), or stopped by
// Close. With Options.SkipCheck or Options.CheckAtOpen there is none, and
// the channel is closed when Open returns.
func (s *Store) CheckDone() <-chan struct{} { return s.checkDone }

// Fault returns the damage the store found in its file after Open, by the
// background check or before a lookup of Decide, wrapping ErrCorrupt; nil
// while none is known. From then on Decide denies every request with this
// error: treat it as a file that cannot be opened.
func (s *Store) Fault() error {
	if p := s.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// Faulted returns a channel closed when Fault becomes non-nil.
func (s *Store) Faulted() <-chan struct{} { return s.faulted }

func (s *Store) setFault(err error) {
	s.faultOnce.Do(func() {
		err = fmt.Errorf("store: %s: %w", s.path, err)
		s.fault.Store(&err)
		close(s.faulted)
		s.log.Error("store: the database file is damaged", "path", s.path, "err", err)
	})
}

// readyPages lets waitPages return.
func (s *Store) readyPages() { s.pagesReadyOnce.Do(func() { close(s.pagesReady) }) }

// waitPages waits until the background check has checked the page
// structure (at once when Open ran no background check), for the reads and
// writes other than Decide's, which bbolt makes without a guard: a damaged
// page could make it loop until the stack overflows. Audit appends and the
// door state need not wait: Open checked the pages they touch. It returns
// the store's fault if the check found damage, ErrClosed if the store was
// closed first.
func (s *Store) waitPages() error {
	select {
	case <-s.pagesReady:
	case <-s.faulted:
	case <-s.stop:
		return ErrClosed
	}
	if err := s.Fault(); err != nil {
		return err
	}
	if !s.pagesOK.Load() && !s.opts.SkipCheck {
		return ErrClosed // the check was stopped before it got there
	}
	return nil
}

// backgroundCheck runs the background check and reports what it found.
func (s *Store) backgroundCheck() {
	defer close(s.checkDone)
	defer s.readyPages()
	defer s.watchACL.Store(false)
	err := s.checkInBackground()
	switch {
	case errors.Is(err, errStopped):
		s.log.Debug("store: background check stopped by Close", "path", s.path)
	case err != nil:
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		s.setFault(err)
	default:
		s.log.Info("store: background check passed", "path", s.path)
	}
}

func (s *Store) checkInBackground() error {
	if err := s.checkStructure(); err != nil {
		return err
	}
	s.pagesOK.Store(true)
	s.readyPages()
	s.log.Debug("store: page structure checked", "path", s.path)
	if err := s.checkLive(); err != nil {
		return err
	}
	if err := s.checkStagedSnapshot(); err != nil {
		return err
	}
	return s.checkChain()
}

// checkNext waits for the next chunk (Options.CheckPause); errStopped
// once the store is closing.
func (s *Store) checkNext() error {
	if p := s.opts.CheckPause; p != nil {
		p(s.stop)
	}
	select {
	case <-s.stop:
		return errStopped
	default:
		return nil
	}
}

// checkStructure walks the page structure of the whole file, a key range
// of one bucket per read transaction.
func (s *Store) checkStructure() error {
	queue := [][][]byte{nil} // paths of the buckets to walk; nil is the root bucket
	w := &rangeWalker{pageFile: pageFile{f: s.rf}}
	g := s.newPathGuard()
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		var from []byte
		for {
			if err := s.checkNext(); err != nil {
				return err
			}
			done := false
			err := s.view(func(tx *bolt.Tx) error {
				root, inline, found, err := g.path(tx, path)
				if err != nil || !found {
					// A bucket that is gone was removed by this process
					// (a staged snapshot committed or dropped).
					done = true
					return err
				}
				w.start(tx, s.pageSize, s.opts.checkPages)
				if root == 0 {
					done = true
					if err := checkOrder(inline, nil, nil); err != nil {
						return fmt.Errorf("inline page: %w", err)
					}
					w.collect(inline, nil)
				} else {
					stopped, err := w.walk(root, 0, nil, nil, from)
					if err != nil {
						return err
					}
					done = !stopped
				}
				for _, name := range w.buckets {
					queue = append(queue, append(path[:len(path):len(path)], name))
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("%w: page structure: %s: %w", ErrCorrupt, pathText(path), err)
			}
			if done {
				break
			}
			from = append(from[:0], w.next...)
		}
	}
	return nil
}

// pathText names a bucket by its path.
func pathText(path [][]byte) string {
	if len(path) == 0 {
		return "root bucket"
	}
	return "bucket " + string(bytes.Join(path, []byte("/")))
}

// rangeWalker walks a key range of one bucket's tree in one transaction.
type rangeWalker struct {
	pageFile
	budget  int      // pages still to read in this transaction
	bufs    [][]byte // a page buffer per depth
	seen    bitset   // pages read in this transaction
	next    []byte   // where the next transaction starts, when the budget ran out
	buckets [][]byte // names of the buckets found in the range's leaves

	// The pages read in the transactions of walkedTxid, which all see the
	// same pages: reached twice, but for the way down to where a
	// transaction resumes, a page is referenced twice (its pages would be
	// freed while still in use).
	walkedTxid int
	walked     bitset

	// The pages the freelist of the transaction's own commit lists, when
	// its meta page has not been written over since: none of them may be
	// in the tree. (bbolt would give such a page to a writer while it is
	// in use.)
	freeTxid int
	free     []uint64
	freeOK   bool
}

func (w *rangeWalker) start(tx *bolt.Tx, pageSize uint64, budget int) {
	w.pageFile = newPageFile(w.f, tx, pageSize)
	w.budget = budget
	w.seen.reset(w.highWater)
	w.next = w.next[:0]
	w.buckets = w.buckets[:0]
	if id := tx.ID(); id != w.walkedTxid {
		w.walkedTxid = id
		w.walked.reset(w.highWater)
	} else {
		w.walked.grow(w.highWater)
	}
	if id := tx.ID(); id != w.freeTxid || !w.freeOK {
		w.freeTxid, w.freeOK = id, false
		for i := range int64(2) {
			buf := make([]byte, boltPageHeader+boltMetaLen)
			if _, err := w.f.ReadAt(buf, i*int64(pageSize)); err != nil {
				continue
			}
			// The freelist page of a transaction's commit is kept while
			// the transaction is open, as its other pages are.
			if m, err := parseBoltMeta(buf); err == nil && m.txid == uint64(id) && m.freelist != boltNoFreelist {
				var err error
				w.free, err = readFreelist(w.f, m, w.free)
				w.freeOK = err == nil
				// The freelist's own pages are in use too.
				if h, err := readPageHeader(w.f, m, m.freelist); err == nil && w.freeOK && w.walkedTxid == id {
					for p := m.freelist; p <= m.freelist+uint64(h.overflow) && p < w.highWater; p++ {
						w.walked.set(p)
					}
				}
			}
		}
	}
}

// freed reports whether the freelist of the transaction's commit lists
// page id.
func (w *rangeWalker) freed(id uint64) bool {
	if !w.freeOK {
		return false
	}
	_, found := slices.BinarySearch(w.free, id)
	return found
}

// walk checks the page id at depth, whose keys lo and hi bound (lo
// included, hi excluded; nil: no bound), and the pages below it, from the
// subtree holding from (nil: the first) on, until the budget runs out:
// then it sets next and returns true.
func (w *rangeWalker) walk(id uint64, depth int, lo, hi, from []byte) (stopped bool, err error) {
	if depth > maxTreeDepth {
		return false, fmt.Errorf("page %d: tree deeper than %d levels", id, maxTreeDepth)
	}
	if len(w.bufs) <= depth {
		w.bufs = append(w.bufs, nil)
	}
	buf, err := w.read(w.bufs[depth], id)
	w.bufs[depth] = buf
	if err != nil {
		return false, err
	}
	for p := id; p < id+uint64(len(buf))/w.pageSize; p++ {
		if !w.seen.set(p) || (!w.walked.set(p) && from == nil) {
			return false, fmt.Errorf("page %d is reached twice", p)
		}
		if w.freed(p) {
			return false, fmt.Errorf("page %d is in use and listed as free", p)
		}
	}
	w.budget--
	if err := checkElements(buf); err != nil {
		return false, fmt.Errorf("page %d: %w", id, err)
	}
	if err := checkOrder(buf, lo, hi); err != nil {
		return false, fmt.Errorf("page %d: %w", id, err)
	}
	if pageFlags(buf) == boltLeafPage {
		w.collect(buf, from)
		return false, nil
	}
	first := 0
	if from != nil {
		first = searchBranch(buf, from)
	}
	n := pageCount(buf)
	for i := first; i < n; i++ {
		key, child := branchElem(buf, i)
		if i > first && w.budget <= 0 {
			w.next = append(w.next[:0], key...)
			return true, nil
		}
		childHi := hi
		if i+1 < n {
			childHi, _ = branchElem(buf, i+1)
		}
		var childFrom []byte
		if i == first {
			childFrom = from
		}
		if stopped, err := w.walk(child, depth+1, key, childHi, childFrom); stopped || err != nil {
			return stopped, err
		}
	}
	return false, nil
}

// bitset is a set of page ids.
type bitset []uint64

// reset empties the set and makes room for ids below n.
func (b *bitset) reset(n uint64) {
	clear(*b)
	b.grow(n)
}

func (b *bitset) grow(n uint64) {
	if words := int(n/64 + 1); len(*b) < words {
		*b = append(*b, make([]uint64, words-len(*b))...)
	}
}

// set adds id, which must be below the n given to reset or grow, and
// reports whether it was not in the set.
func (b bitset) set(id uint64) bool {
	word, bit := id/64, uint64(1)<<(id%64)
	if b[word]&bit != 0 {
		return false
	}
	b[word] |= bit
	return true
}

// collect notes the buckets held in a leaf page at or after from (nil:
// all), to be walked in turn.
func (w *rangeWalker) collect(leaf, from []byte) {
	for i := range pageCount(leaf) {
		flags, k, _ := leafElem(leaf, i)
		if flags&boltBucketLeaf != 0 && (from == nil || bytes.Compare(k, from) >= 0) {
			w.buckets = append(w.buckets, bytes.Clone(k))
		}
	}
}

// checkOrder checks the keys of a page checkElements passed, as bbolt's
// check does: each after the one before it, the first not before lo, the
// last before hi (nil: no bound). Out of order, a key can hide another
// from a lookup: a revocation that is not found.
func checkOrder(buf, lo, hi []byte) error {
	key := func(i int) []byte {
		if pageFlags(buf) == boltBranchPage {
			k, _ := branchElem(buf, i)
			return k
		}
		_, k, _ := leafElem(buf, i)
		return k
	}
	n := pageCount(buf)
	if n == 0 {
		return nil
	}
	if lo != nil && bytes.Compare(key(0), lo) < 0 {
		return fmt.Errorf("the first key is before the key that leads to the page")
	}
	for i := 1; i < n; i++ {
		if bytes.Compare(key(i-1), key(i)) >= 0 {
			return fmt.Errorf("key %d is not after key %d", i, i-1)
		}
	}
	if hi != nil && bytes.Compare(key(n-1), hi) >= 0 {
		return fmt.Errorf("the last key is not before the key of the next page")
	}
	return nil
}

// bucketAt returns the bucket at path in tx, nil if there is none.
func bucketAt(tx *bolt.Tx, path [][]byte) *bolt.Bucket {
	b := tx.Bucket(path[0])
	for _, name := range path[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket(name)
	}
	return b
}

// eachRecord calls fn with every key and value of the bucket at path, in
// key order, a chunk of records per read transaction. A record written
// after the walk passed its key is not seen. It returns whether the
// bucket was there at the start; a bucket removed later ends the walk.
func (s *Store) eachRecord(path [][]byte, fn func(tx *bolt.Tx, k, v []byte) error) (found bool, err error) {
	var from []byte
	for first := true; ; first = false {
		if err := s.checkNext(); err != nil {
			return found, err
		}
		done := false
		err := s.view(func(tx *bolt.Tx) error {
			b := bucketAt(tx, path)
			if b == nil {
				done = true
				return nil
			}
			found = found || first
			c := b.Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for n := 0; k != nil; n++ {
				if n == s.opts.checkRecords {
					from = append(from[:0], k...)
					return nil
				}
				if err := fn(tx, k, v); err != nil {
					return err
				}
				k, v = c.Next()
			}
			done = true
			return nil
		})
		if err != nil || done {
			return found, err
		}
	}
}

// tally is what the background check adds up over the allowlist records
// of the live allowlist or of the stage.
type tally struct {
	sum     sum256 // the entries' hashes (see HashSnapshot)
	entries int
	// The cards: those whose holder index key is in the index (for the
	// stage, whose index is built last, up to the index's last key) and
	// those past it, with the sum of their keys' hashes.
	nIndexed, nPending int
	pending            sum256
	nIndex             int    // keys in the holder index
	runs               sum256 // stage: the keys in the runs past the index's last key
	nRuns, nRunsPast   int
}

// allowlistWalks are the allowlist buckets under prefix (nil: the live
// ones; the stage's) and how each record is decoded and counted. last is
// the stage's holder index's last key; the live index holds every card's
// key.
func allowlistWalks(t *tally, prefix [][]byte, last []byte) []recordWalk {
	live := prefix == nil
	entry := func(tag byte, body []byte) {
		t.sum.add(entryHash(tag, body))
		t.entries++
	}
	var idxTx *bolt.Tx
	var idx *bolt.Bucket
	return []recordWalk{
		{bucketCards, func(tx *bolt.Tx, k, v []byte) error {
			refs := cardRefs{holders: bucketAt(tx, append(prefix[:len(prefix):len(prefix)], bucketHolders)), names: tx.Bucket(bucketNames)}
			c, err := decodeCard(k, v, refs)
			if err != nil {
				return err
			}
			entry(tagCard, cardBody(&c))
			key := holderCardKey(c.HolderID, c.UID)
			if !live && (last == nil || bytes.Compare(key, last) > 0) {
				t.pending.add(sha256.Sum256(key))
				t.nPending++
				return nil
			}
			if tx != idxTx {
				idxTx, idx = tx, bucketAt(tx, append(prefix[:len(prefix):len(prefix)], bucketHolderCards))
			}
			// The card and the index are read in one transaction, which
			// sees both or neither of a write.
			if idx == nil || idx.Get(key) == nil {
				return fmt.Errorf("%w: card %X is missing from the holder index", ErrCorrupt, c.UID)
			}
			t.nIndexed++
			return nil
		}},
		{bucketHolders, func(_ *bolt.Tx, k, v []byte) error {
			h, err := decodeHolder(k, v)
			if err != nil {
				return err
			}
			entry(tagHolder, holderBody(&h))
			return nil
		}},
		{bucketRevokedCards, func(_ *bolt.Tx, k, v []byte) error {
			r, err := decodeRevocation(k, v, false)
			if err != nil {
				return err
			}
			entry(tagRevokedCard, revocationBody(&r))
			return nil
		}},
		{bucketRevokedHolders, func(_ *bolt.Tx, k, v []byte) error {
			r, err := decodeRevocation(k, v, true)
			if err != nil {
				return err
			}
			entry(tagRevokedHolder, revocationBody(&r))
			return nil
		}},
		{bucketHolderCards, func(*bolt.Tx, []byte, []byte) error {
			t.nIndex++
			return nil
		}},
	}
}

type recordWalk struct {
	bucket []byte
	each   func(tx *bolt.Tx, k, v []byte) error
}

// checkLive decodes every record outside the audit chain and the stage,
// and checks the allowlist state sum, the holder index and the sync and
// audit bookkeeping, as checkRecords does.
func (s *Store) checkLive() error {
	// Taken in a write transaction, so that no write is half done: every
	// allowlist write that a chunk below may see and the one before it
	// did not counts after this.
	var before int64
	if err := s.update(func(*bolt.Tx) error {
		before = s.aclWrites.Load()
		return errRollback
	}); !errors.Is(err, errRollback) {
		return err
	}
	var t tally
	walks := allowlistWalks(&t, nil, nil)
	for _, b := range smallRecords() {
		walks = append(walks, recordWalk{b.bucket, b.check})
	}
	for _, w := range walks {
		if _, err := s.eachRecord([][]byte{w.bucket}, w.each); err != nil {
			return err
		}
	}
	return s.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
			}
		}
		v, err := readSchema(tx)
		if err != nil {
			return err
		}
		if v != schemaVersion {
			return fmt.Errorf("%w: schema %d, want %d", ErrCorrupt, v, schemaVersion)
		}
		if s.aclWrites.Load() == before {
			stored, err := readSum(tx)
			switch {
			case err != nil:
				return err
			case stored != t.sum:
				return fmt.Errorf("%w: allowlist state sum does not match the entries", ErrCorrupt)
			case t.nIndex != t.nIndexed:
				return fmt.Errorf("%w: the holder index has %d entries for %d cards", ErrCorrupt, t.nIndex, t.nIndexed)
			}
		} else {
			s.log.Debug("store: allowlist written during the background check; state sum not compared", "path", s.path)
		}
		if _, err := readSyncState(tx); err != nil {
			return err
		}
		_, err = readOutboxCursor(tx)
		return err
	})
}

// stageProgress returns the stage's progress record as stored, nil when
// there is no stage or no record.
func stageProgress(tx *bolt.Tx) []byte {
	if b := bucketAt(tx, [][]byte{bucketStage, bucketMeta}); b != nil {
		return b.Get(keyProgress)
	}
	return nil
}

// checkStagedSnapshot checks a staged snapshot as checkStage does, a chunk
// at a time. A damaged stage is not a fault: it is dropped, with a
// warning, and the transfer starts over. Its records are decoded whatever
// is staged meanwhile; the sums and counts are compared only when the
// stage did not change during the walk.
func (s *Store) checkStagedSnapshot() error {
	var start []byte // the progress record at the start
	var sg0 stage
	var last []byte // the staged holder index's last key
	var problem error
	err := s.view(func(tx *bolt.Tx) error {
		sg, err := readStage(tx)
		switch {
		case err != nil:
			problem = err
		case sg != nil:
			sg0 = *sg
			start = bytes.Clone(stageProgress(tx))
			k, _ := sg.b.Bucket(bucketHolderCards).Cursor().Last()
			last = bytes.Clone(k)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case problem != nil:
		return s.dropStage(nil, problem)
	case start == nil:
		return nil
	}
	var t tally
	walks := allowlistWalks(&t, [][]byte{bucketStage}, last)
	var runsTx *bolt.Tx
	var next int
	walks = append(walks, recordWalk{bucketRuns, func(tx *bolt.Tx, k, v []byte) error {
		if tx != runsTx {
			sg, err := readStage(tx)
			if err != nil {
				return err
			}
			runsTx, next = tx, sg.Next
		}
		r, err := readRun(k, v, next)
		if err != nil {
			return err
		}
		for r.next() {
			t.nRuns++
			if last == nil || bytes.Compare(r.key, last) > 0 {
				t.runs.add(sha256.Sum256(r.key))
				t.nRunsPast++
			}
		}
		return r.err
	}})
	for _, w := range walks {
		found, err := s.eachRecord([][]byte{bucketStage, w.bucket}, w.each)
		switch {
		case errors.Is(err, errStopped):
			return err
		case err != nil:
			return s.dropStage(&sg0, fmt.Errorf("snapshot stage: %w", err))
		case !found:
			return s.dropStage(&sg0, fmt.Errorf("snapshot stage: %w: the stage has no %s bucket", ErrCorrupt, w.bucket))
		}
	}
	var same bool
	if err := s.view(func(tx *bolt.Tx) error {
		same = bytes.Equal(stageProgress(tx), start)
		return nil
	}); err != nil {
		return err
	}
	if !same {
		return nil // staged meanwhile, committed or dropped
	}
	sg := &sg0
	switch {
	case t.sum != sg.sum:
		problem = fmt.Errorf("%w: the staged entries do not match the staged state sum", ErrCorrupt)
	case t.entries != sg.Entries:
		problem = fmt.Errorf("%w: %d entries staged, the progress record says %d", ErrCorrupt, t.entries, sg.Entries)
	case t.nIndexed+t.nPending != sg.keys:
		problem = fmt.Errorf("%w: %d cards staged, the progress record says %d", ErrCorrupt, t.nIndexed+t.nPending, sg.keys)
	case t.nIndex != t.nIndexed || t.nIndex != sg.indexed:
		problem = fmt.Errorf("%w: the holder index has %d entries for %d cards, the progress record says %d", ErrCorrupt, t.nIndex, t.nIndexed, sg.indexed)
	case t.nRuns != sg.keys:
		problem = fmt.Errorf("%w: the index runs hold %d keys, the progress record says %d", ErrCorrupt, t.nRuns, sg.keys)
	case t.nRunsPast != t.nPending || t.runs != t.pending:
		problem = fmt.Errorf("%w: the index runs do not hold the keys of the staged cards", ErrCorrupt)
	}
	if problem != nil {
		return s.dropStage(sg, fmt.Errorf("snapshot stage: %w", problem))
	}
	return nil
}

// dropStage drops a damaged stage, unless another snapshot is staged by
// now (sg names the damaged one; nil: one whose progress cannot be read).
func (s *Store) dropStage(sg *stage, problem error) error {
	err := s.update(func(tx *bolt.Tx) error {
		now, err := readStage(tx)
		switch {
		case err == nil && now == nil:
			return errRollback
		case err == nil && (sg == nil || now.Seq != sg.Seq || now.Hash != sg.Hash || now.Chunks != sg.Chunks):
			return errRollback
		}
		return deleteStage(tx)
	})
	switch {
	case errors.Is(err, errRollback):
		return nil
	case errors.Is(err, ErrCorrupt):
		return err
	case err != nil:
		// Not damage (a full disk, say): the stage stays, and the next
		// snapshot replaces it; the check goes on.
		s.log.Error("store: cannot drop a damaged snapshot stage; the next snapshot replaces it", "path", s.path, "problem", problem, "err", err)
		return nil
	}
	s.log.Warn("store: dropping a damaged snapshot stage", "path", s.path, "problem", problem)
	return nil
}

// checkChain verifies the audit chain as Verify does, a chunk at a time.
// It does not hold Prune off: a chunk that finds the chain pruned past
// where it was goes on from the new checkpoint, as Verify would start.
func (s *Store) checkChain() error {
	var r Report
	var next uint64 // sequence expected next
	var prev [32]byte
	started, finished := false, false
	var head chainPoint
	for !finished && r.Problem == "" {
		if err := s.checkNext(); err != nil {
			return err
		}
		err := s.view(func(tx *bolt.Tx) error {
			cp, err := readCheckpoint(tx)
			if err != nil {
				return err
			}
			if !started || cp.Seq >= next {
				next, prev = cp.Seq+1, cp.Hash
				started = true
			}
			c := tx.Bucket(bucketAudit).Cursor()
			n := 0
			for k, v := c.Seek(be64(next)); k != nil; k, v = c.Next() {
				if n == s.opts.checkRecords {
					return nil
				}
				n++
				if !r.check(k, v, &next, &prev) {
					return nil
				}
			}
			finished = true
			head, err = readHead(tx)
			return err
		})
		if err != nil {
			return err
		}
	}
	if r.Problem == "" {
		switch {
		case next-1 != head.Seq:
			r.BreakAt = next
			r.Problem = fmt.Sprintf("entries %d..%d are missing at the end of the chain (the head says %d)", next, head.Seq, head.Seq)
		case prev != head.Hash:
			r.BreakAt = head.Seq
			r.Problem = "the last entry's hash is not the one recorded at the head"
		}
	}
	if r.Problem != "" {
		return fmt.Errorf("%w: audit chain broken at entry %d: %s", ErrCorrupt, r.BreakAt, r.Problem)
	}
	return nil
}
