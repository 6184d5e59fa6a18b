package store

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A snapshot too large to hold in memory arrives in chunks, each staged
// in its own transaction into the stage bucket: the five allowlist buckets
// under their usual names, runs, and meta/progress. A chunk stages its
// cards, holders and revocations, and its cards' holder index keys, sorted,
// as one run; the holder index itself is left empty, because holder ids
// are in no order relative to card UIDs and inserting each chunk's keys
// into it would rewrite pages all over it at every chunk. Once every chunk
// is staged, the commit merges the runs into the staged holder index in
// key order, appending a batch of keys per transaction, so that each index
// page is written about once; then it moves the staged buckets over the
// live ones in one transaction, without copying entries.

// SnapshotStage is the progress of a snapshot being received.
type SnapshotStage struct {
	Seq     uint64 // the snapshot's allowlist seq
	Hash    string // the state hash the whole snapshot must have (HashSnapshot)
	Chunks  int    // how many chunks make it
	Next    int    // the next chunk to stage (0..Chunks); Chunks means complete
	Entries int    // entries staged so far
}

// stageVersion is the version of the stage/meta "progress" record. Version
// 1 (a build that filled the staged holder index chunk by chunk) had no
// runs; a build that knows only version 1 drops a version 2 stage as
// damaged rather than commit its unfinished index, and this one drops a
// version 1 stage the same way.
const stageVersion = 2

// runVersion is the version of a stage/runs record. Version 1 stored each
// key whole; a version 1 run is refused, and its stage dropped, as
// damaged.
const runVersion = 2

// defaultIndexBatch is how many holder index keys a commit merges per
// transaction: 16 transactions for a million cards, each holding well
// under 10 MiB of dirty nodes.
const defaultIndexBatch = 1 << 16

// stage is the snapshot being received, as one transaction sees it.
type stage struct {
	SnapshotStage
	b       *bolt.Bucket // the stage bucket
	sum     sum256       // multiset sum of the staged entries
	keys    int          // holder index keys in the runs: one per staged card
	indexed int          // of them, those merged into the staged holder index
}

func encodeStage(sg *stage) []byte {
	h, _ := hex.DecodeString(sg.Hash) // checked by checkStageHash
	var e encoder
	e.u64(sg.Seq)
	e.raw(h)
	e.u64(uint64(sg.Chunks))
	e.u64(uint64(sg.Next))
	e.u64(uint64(sg.Entries))
	e.raw(sg.sum.bytes())
	e.u64(uint64(sg.keys))
	e.u64(uint64(sg.indexed))
	return seal(stageVersion, e.b)
}

// decodeStage decodes a progress record into a stage without its bucket.
func decodeStage(rec []byte) (stage, error) {
	var sg stage
	body, err := unsealVersion(rec, stageVersion)
	if err != nil {
		return sg, err
	}
	d := decoder{b: body}
	sg.Seq = d.u64()
	h := d.take(32)
	chunks, next, entries := d.u64(), d.u64(), d.u64()
	s := d.take(32)
	keys, indexed := d.u64(), d.u64()
	if err := d.end(); err != nil {
		return sg, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case sg.Seq == 0:
		err = fmt.Errorf("snapshot seq 0")
	case chunks < 1 || chunks > math.MaxInt32:
		err = fmt.Errorf("%d chunks", chunks)
	case next > chunks:
		err = fmt.Errorf("next chunk %d beyond its %d chunks", next, chunks)
	case entries > math.MaxInt32:
		err = fmt.Errorf("%d entries", entries)
	case keys > entries:
		err = fmt.Errorf("%d holder index keys for %d entries", keys, entries)
	case indexed > keys:
		err = fmt.Errorf("%d of %d holder index keys merged", indexed, keys)
	case indexed > 0 && next < chunks:
		err = fmt.Errorf("holder index keys merged with chunk %d of %d next", next, chunks)
	}
	if err != nil {
		return sg, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	sg.Hash, sg.Chunks, sg.Next, sg.Entries = hex.EncodeToString(h), int(chunks), int(next), int(entries)
	sg.keys, sg.indexed = int(keys), int(indexed)
	sg.sum, err = sumFrom(s)
	return sg, err
}

// putProgress writes the progress record.
func (sg *stage) putProgress() error {
	return sg.b.Bucket(bucketMeta).Put(keyProgress, encodeStage(sg))
}

// encodeRun seals holder index keys, sorted and distinct, as a run: each
// key as a uvarint count of leading bytes it shares with the key before
// it, then the rest as uvarint length and bytes. Keys start with their
// holder id, so neighbours share most of it.
func encodeRun(keys [][]byte) []byte {
	e := encoder{b: make([]byte, 0, 12*len(keys))}
	var prev []byte
	for _, k := range keys {
		shared := 0
		for shared < len(prev) && shared < len(k) && prev[shared] == k[shared] {
			shared++
		}
		e.uvarint(uint64(shared))
		e.bytesU(k[shared:])
		prev = k
	}
	return seal(runVersion, e.b)
}

// runReader reads the keys of a run body in order, checking that each is
// greater than the one before.
type runReader struct {
	d   decoder
	key []byte // the current key, a copy of its own
	err error
}

func (r *runReader) next() bool {
	if r.err != nil || r.d.off == len(r.d.b) {
		r.key = nil
		return false
	}
	off := r.d.off
	shared := int(r.d.uvarint(uint64(len(r.key))))
	rest := r.d.bytesU(maxIDLen + 1 + 10)
	switch {
	case r.d.err != nil || len(rest) == 0:
		r.err = fmt.Errorf("%w: a key at byte %d is cut short", ErrCorrupt, off)
	case r.key != nil && (shared == len(r.key) && len(rest) == 0 || shared < len(r.key) && rest[0] <= r.key[shared]):
		r.err = fmt.Errorf("%w: the key at byte %d is out of order", ErrCorrupt, off)
	}
	if r.err != nil {
		r.key = nil
		return false
	}
	k := make([]byte, shared+len(rest))
	copy(k, r.key[:shared])
	copy(k[shared:], rest)
	r.key = k
	return true
}

// readRun unseals the run stored under key k of the runs bucket.
func readRun(k, v []byte, chunks int) (runReader, error) {
	if len(k) != 8 || binary.BigEndian.Uint64(k) >= uint64(chunks) {
		return runReader{}, fmt.Errorf("%w: an index run under key %s", ErrCorrupt, keyText(k))
	}
	body, err := unsealVersion(v, runVersion)
	if err != nil {
		return runReader{}, fmt.Errorf("index run of chunk %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return runReader{d: decoder{b: body}}, nil
}

// runHeap orders runs by their current key.
type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].key, h[j].key) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// mergeIndex appends to the staged holder index up to limit keys from the
// runs, the smallest not yet in it, and records how many it holds. The
// index holds exactly the keys up to its last one, so that last key is
// where a merge cut short resumes.
func (sg *stage) mergeIndex(limit int) error {
	idx := sg.b.Bucket(bucketHolderCards)
	idx.FillPercent = 1 // appended in key order: full pages
	last, _ := idx.Cursor().Last()
	last = bytes.Clone(last)
	var h runHeap
	err := sg.b.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		r, err := readRun(k, v, sg.Chunks)
		if err != nil {
			return err
		}
		for r.next() && last != nil && bytes.Compare(r.key, last) <= 0 {
		}
		if r.err != nil {
			return fmt.Errorf("index run of chunk %d: %w", binary.BigEndian.Uint64(k), r.err)
		}
		if r.key != nil {
			h = append(h, &r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	heap.Init(&h)
	n := 0
	for ; n < limit && len(h) > 0; n++ {
		r := h[0]
		if err := idx.Put(r.key, nil); err != nil {
			return err
		}
		if r.next() {
			heap.Fix(&h, 0)
		} else if r.err != nil {
			return fmt.Errorf("index run: %w", r.err)
		} else {
			heap.Pop(&h)
		}
	}
	sg.indexed += n
	if sg.indexed > sg.keys || len(h) == 0 && sg.indexed < sg.keys {
		return fmt.Errorf("%w: %d holder index keys merged from the runs, the progress record says they hold %d", ErrCorrupt, sg.indexed, sg.keys)
	}
	return sg.putProgress()
}

// checkStageHash accepts what HashSnapshot returns: 64 lower-case hex
// digits.
func checkStageHash(hash string) error {
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 || hex.EncodeToString(b) != hash {
		return fmt.Errorf("state hash %q is not 64 lower-case hex digits", hash)
	}
	return nil
}

// readStage returns the stage, nil when nothing is staged, or ErrCorrupt
// saying what is wrong with it.
func readStage(tx *bolt.Tx) (*stage, error) {
	b := tx.Bucket(bucketStage)
	if b == nil {
		return nil, nil
	}
	for _, name := range stageBuckets() {
		if b.Bucket(name) == nil {
			return nil, fmt.Errorf("%w: the stage has no %s bucket", ErrCorrupt, name)
		}
	}
	v := b.Bucket(bucketMeta).Get(keyProgress)
	if v == nil {
		return nil, fmt.Errorf("%w: the stage has no progress record", ErrCorrupt)
	}
	sg, err := decodeStage(v)
	if err != nil {
		return nil, fmt.Errorf("progress record: %w", err)
	}
	sg.b = b
	return &sg, nil
}

// deleteStage removes the stage bucket. Its buckets go first, one by one:
// bbolt deletes the buckets inside a bucket while it iterates over them,
// and after the commit has moved some out (changing the stage's node in
// memory) that iteration skips one, whose pages would never be freed.
func deleteStage(tx *bolt.Tx) error {
	b := tx.Bucket(bucketStage)
	if b == nil {
		return berrors.ErrBucketNotFound
	}
	var names [][]byte
	if err := b.ForEachBucket(func(k []byte) error {
		names = append(names, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, name := range names {
		if err := b.DeleteBucket(name); err != nil {
			return err
		}
	}
	return tx.DeleteBucket(bucketStage)
}

// stageBuckets are the buckets in the stage bucket.
func stageBuckets() [][]byte {
	return append(allowlistBuckets(), bucketRuns, bucketMeta)
}

// openStage returns the stage of snapshot seq: ErrNotFound when another
// or none is staged, and ErrSeqOld, dropping the stage, when seq is no
// longer newer than the applied allowlist.
func openStage(tx *bolt.Tx, seq uint64) (*stage, error) {
	sg, err := readStage(tx)
	switch {
	case err != nil:
		return nil, err
	case sg == nil:
		return nil, fmt.Errorf("nothing is staged: %w", ErrNotFound)
	case sg.Seq != seq:
		return nil, fmt.Errorf("the stage holds snapshot %d: %w", sg.Seq, ErrNotFound)
	}
	if err := checkNewer(tx, seq); err != nil {
		return nil, dropping{err}
	}
	return sg, nil
}

// dropping, returned inside updateStage, refuses the operation and removes
// the stage, which can no longer be committed.
type dropping struct{ err error }

func (d dropping) Error() string { return d.err.Error() }

// updateStage runs fn in a write transaction. fn returns errRollback to
// change nothing (a repeat), or dropping to remove the stage and report
// why once that removal has committed.
func (s *Store) updateStage(fn func(tx *bolt.Tx) error) error {
	var refused error
	err := s.update(func(tx *bolt.Tx) error {
		err := fn(tx)
		if d, ok := errors.AsType[dropping](err); ok {
			refused = fmt.Errorf("%w (the stage is dropped)", d.err)
			return deleteStage(tx)
		}
		return err
	})
	switch {
	case errors.Is(err, errRollback):
		return nil
	case err != nil:
		return err
	}
	return refused
}

// BeginSnapshot starts staging snapshot seq, whose entries, in chunks
// numbered 0 to chunks-1, must give the state hash hash (see HashSnapshot).
// It replaces whatever was staged with an empty stage, except a stage of
// the same seq, hash and chunks, which it keeps so that a transfer cut
// short resumes at SnapshotStage.Next. It refuses a seq not newer than the
// applied allowlist (ErrSeqOld), and a malformed hash or chunks < 1
// (ErrInvalidOp).
func (s *Store) BeginSnapshot(seq uint64, hash string, chunks int) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: begin snapshot: %w", err)
	}
	if err := checkStageHash(hash); err != nil {
		return fmt.Errorf("store: begin snapshot %d: %w: %w", seq, ErrInvalidOp, err)
	}
	if chunks < 1 || chunks > math.MaxInt32 {
		return fmt.Errorf("store: begin snapshot %d: %w: %d chunks", seq, ErrInvalidOp, chunks)
	}
	sg := stage{SnapshotStage: SnapshotStage{Seq: seq, Hash: hash, Chunks: chunks}}
	err := s.updateStage(func(tx *bolt.Tx) error {
		if err := checkNewer(tx, seq); err != nil {
			return err
		}
		if sg, err := readStage(tx); err == nil && sg != nil && sg.Seq == seq && sg.Hash == hash && sg.Chunks == chunks {
			return errRollback
		}
		if tx.Bucket(bucketStage) != nil {
			if err := deleteStage(tx); err != nil {
				return err
			}
		}
		var err error
		if sg.b, err = tx.CreateBucket(bucketStage); err != nil {
			return err
		}
		for _, name := range stageBuckets() {
			if _, err := sg.b.CreateBucket(name); err != nil {
				return err
			}
		}
		return sg.putProgress()
	})
	if err != nil {
		return fmt.Errorf("store: begin snapshot %d: %w", seq, err)
	}
	return nil
}

// StageChunk stages chunk number chunk of snapshot seq, in one transaction.
// The chunk must be SnapshotStage.Next: a later one is refused with
// ErrChunkOrder, an earlier one is a repeat and changes nothing. Its
// entries are checked as ApplySnapshot checks them; an invalid entry, or
// one already staged by this chunk or an earlier one, refuses the chunk
// (ErrInvalidOp) and leaves the stage as it was. part.Seq may be 0 or seq.
// ErrNotFound means snapshot seq is not staged (BeginSnapshot first);
// ErrSeqOld means it is no longer newer than the applied allowlist, and
// the stage is dropped.
func (s *Store) StageChunk(seq uint64, chunk int, part Snapshot) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: stage chunk: %w", err)
	}
	err := s.stageChunk(seq, chunk, &part)
	if err != nil {
		return fmt.Errorf("store: stage chunk %d of snapshot %d: %w", chunk, seq, err)
	}
	return nil
}

func (s *Store) stageChunk(seq uint64, chunk int, part *Snapshot) error {
	if part.Seq != 0 && part.Seq != seq {
		return fmt.Errorf("%w: its entries are of snapshot %d", ErrInvalidOp, part.Seq)
	}
	if err := checkSnapshot(part); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	return s.updateStage(func(tx *bolt.Tx) error {
		sg, err := openStage(tx, seq)
		if err != nil {
			return err
		}
		switch {
		case chunk < 0 || chunk >= sg.Chunks:
			return fmt.Errorf("%w: chunk %d outside 0..%d", ErrInvalidOp, chunk, sg.Chunks-1)
		case chunk < sg.Next:
			return errRollback
		case chunk > sg.Next:
			return fmt.Errorf("%w: chunk %d, but chunk %d is next", ErrChunkOrder, chunk, sg.Next)
		}
		a := s.aclIn(tx, sg.b, sg.sum)
		if err := a.insertEntries(part); err != nil {
			return err
		}
		if len(a.idxLater) > 0 {
			slices.SortFunc(a.idxLater, bytes.Compare)
			runs := sg.b.Bucket(bucketRuns)
			runs.FillPercent = 1 // keyed by chunk number: appended
			if err := runs.Put(be64(uint64(chunk)), encodeRun(a.idxLater)); err != nil {
				return err
			}
		}
		sg.Next++
		sg.Entries += len(part.Cards) + len(part.Holders) + len(part.Revocations)
		sg.keys += len(a.idxLater)
		sg.sum = a.sum
		return sg.putProgress()
	})
}

// Stage returns the progress of the snapshot being received; false when
// nothing is staged. A damaged stage is an error wrapping ErrCorrupt that
// says what is wrong; DropStage or BeginSnapshot replace it.
func (s *Store) Stage() (SnapshotStage, bool, error) {
	if err := s.waitPages(); err != nil {
		return SnapshotStage{}, false, fmt.Errorf("store: stage: %w", err)
	}
	var sg *stage
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		sg, err = readStage(tx)
		return err
	})
	if err != nil {
		return SnapshotStage{}, false, fmt.Errorf("store: snapshot stage: %w", err)
	}
	if sg == nil {
		return SnapshotStage{}, false, nil
	}
	return sg.SnapshotStage, true, nil
}

// CommitSnapshot replaces the live allowlist (cards, holders and
// revocations) with the staged snapshot seq, in one transaction, and sets
// the applied sequence to seq; lockout state and everything else stay.
// Every chunk must be staged (else ErrChunkOrder, and the stage is kept).
// When the staged entries do not give the snapshot's state hash, or seq is
// no longer newer than the applied allowlist, it refuses (ErrInvalidOp,
// ErrSeqOld) and drops the stage; the live allowlist is untouched.
//
// Before that transaction it builds the staged holder index, in
// transactions of a bounded number of keys each; when it is stopped or
// fails on the way, the stage keeps the keys merged so far and the next
// CommitSnapshot carries on from there.
func (s *Store) CommitSnapshot(seq uint64) error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: commit snapshot: %w", err)
	}
	for {
		var done bool
		var indexed, keys int
		err := s.updateStage(func(tx *bolt.Tx) error {
			sg, err := openStage(tx, seq)
			if err != nil {
				return err
			}
			if sg.Next < sg.Chunks {
				return fmt.Errorf("%w: %d of %d chunks staged, chunk %d is next", ErrChunkOrder, sg.Next, sg.Chunks, sg.Next)
			}
			if got := stateHash(seq, sg.sum); got != sg.Hash {
				return dropping{fmt.Errorf("%w: the staged entries give state hash %s, the snapshot says %s", ErrInvalidOp, got, sg.Hash)}
			}
			if sg.indexed < sg.keys {
				// The swap goes in a transaction of its own: a bucket
				// moved in the transaction that changed it would lose
				// those changes.
				err := sg.mergeIndex(s.indexBatch)
				indexed, keys = sg.indexed, sg.keys
				return err
			}
			if err := replaceAllowlist(tx, sg.b); err != nil {
				return err
			}
			if err := deleteStage(tx); err != nil {
				return err
			}
			done = true
			return setApplied(tx, seq, sg.sum)
		})
		if err == nil && !done && s.indexHook != nil {
			err = s.indexHook(indexed, keys)
		}
		if err != nil {
			return fmt.Errorf("store: commit snapshot %d: %w", seq, err)
		}
		if done {
			return nil
		}
	}
}

// DropStage removes the stage, damaged or not. Dropping nothing is not an
// error.
func (s *Store) DropStage() error {
	if err := s.waitPages(); err != nil {
		return fmt.Errorf("store: drop stage: %w", err)
	}
	return s.removeStage()
}

// removeStage is DropStage without waiting for the page check: for Open,
// once its full check has passed.
func (s *Store) removeStage() error {
	err := s.updateStage(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStage) == nil {
			return errRollback
		}
		return deleteStage(tx)
	})
	if err != nil {
		return fmt.Errorf("store: drop stage: %w", err)
	}
	return nil
}

// checkStage checks a stage as checkRecords checks the live allowlist:
// its progress, every record, and that the entries give the sum and count
// the progress record holds. The holder index must hold exactly the keys
// of the staged cards up to its last key, as many as the progress record
// says are merged, and the runs must hold every staged card's key once,
// the multiset of those past that last key checked by a sum of hashes.
func checkStage(tx *bolt.Tx) error {
	sg, err := readStage(tx)
	if err == nil && sg != nil {
		err = sg.check(tx.Bucket(bucketNames))
	}
	if err != nil {
		return fmt.Errorf("snapshot stage: %w", err)
	}
	return nil
}

// check checks the stage's records (names is the names bucket they refer
// to), its index and its sum.
func (sg *stage) check(names getter) error {
	idx := sg.b.Bucket(bucketHolderCards)
	last, _ := idx.Cursor().Last()
	var pendingSum sum256 // keys of the cards not yet in the index
	var pending, indexed int
	sum, n, err := computeStateSum(sg.b, names, func(c *Card) error {
		k := holderCardKey(c.HolderID, c.UID)
		if last != nil && bytes.Compare(k, last) <= 0 {
			if idx.Get(k) == nil {
				return fmt.Errorf("%w: card %X is missing from the holder index", ErrCorrupt, c.UID)
			}
			indexed++
			return nil
		}
		pendingSum.add(sha256.Sum256(k))
		pending++
		return nil
	})
	switch {
	case err != nil:
		return err
	case sum != sg.sum:
		return fmt.Errorf("%w: the staged entries do not match the staged state sum", ErrCorrupt)
	case n != sg.Entries:
		return fmt.Errorf("%w: %d entries staged, the progress record says %d", ErrCorrupt, n, sg.Entries)
	case indexed+pending != sg.keys:
		return fmt.Errorf("%w: %d cards staged, the progress record says %d", ErrCorrupt, indexed+pending, sg.keys)
	}
	if k := idx.Stats().KeyN; k != indexed || k != sg.indexed {
		return fmt.Errorf("%w: the holder index has %d entries for %d cards, the progress record says %d", ErrCorrupt, k, indexed, sg.indexed)
	}
	var runSum sum256
	var runKeys, runPending int
	err = sg.b.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		r, err := readRun(k, v, sg.Next)
		if err != nil {
			return err
		}
		for r.next() {
			runKeys++
			if last == nil || bytes.Compare(r.key, last) > 0 {
				runSum.add(sha256.Sum256(r.key))
				runPending++
			}
		}
		if r.err != nil {
			return fmt.Errorf("index run of chunk %d: %w", binary.BigEndian.Uint64(k), r.err)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case runKeys != sg.keys:
		return fmt.Errorf("%w: the index runs hold %d keys, the progress record says %d", ErrCorrupt, runKeys, sg.keys)
	case runPending != pending || runSum != pendingSum:
		return fmt.Errorf("%w: the index runs do not hold the keys of the staged cards", ErrCorrupt)
	}
	return nil
}
