package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// A snapshot too large to hold in memory arrives in chunks, each staged
// in its own transaction into the stage bucket: the five allowlist buckets
// under their usual names, and meta/progress. The commit moves the staged
// buckets over the live ones in one transaction, without copying entries.

// SnapshotStage is the progress of a snapshot being received.
type SnapshotStage struct {
	Seq     uint64 // the snapshot's allowlist seq
	Hash    string // the state hash the whole snapshot must have (HashSnapshot)
	Chunks  int    // how many chunks make it
	Next    int    // the next chunk to stage (0..Chunks); Chunks means complete
	Entries int    // entries staged so far
}

// stageVersion is the version of the stage/meta "progress" record.
const stageVersion = 1

// stage is the snapshot being received, as one transaction sees it.
type stage struct {
	SnapshotStage
	b   *bolt.Bucket // the stage bucket
	sum sum256       // multiset sum of the staged entries
}

func encodeStage(st *SnapshotStage, sum sum256) []byte {
	h, _ := hex.DecodeString(st.Hash) // checked by checkStageHash
	var e encoder
	e.u64(st.Seq)
	e.raw(h)
	e.u64(uint64(st.Chunks))
	e.u64(uint64(st.Next))
	e.u64(uint64(st.Entries))
	e.raw(sum.bytes())
	return seal(stageVersion, e.b)
}

func decodeStage(rec []byte) (SnapshotStage, sum256, error) {
	var st SnapshotStage
	body, err := unsealVersion(rec, stageVersion)
	if err != nil {
		return st, sum256{}, err
	}
	d := decoder{b: body}
	st.Seq = d.u64()
	h := d.take(32)
	chunks, next, entries := d.u64(), d.u64(), d.u64()
	s := d.take(32)
	if err := d.end(); err != nil {
		return st, sum256{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case st.Seq == 0:
		err = fmt.Errorf("snapshot seq 0")
	case chunks < 1 || chunks > math.MaxInt32:
		err = fmt.Errorf("%d chunks", chunks)
	case next > chunks:
		err = fmt.Errorf("next chunk %d beyond its %d chunks", next, chunks)
	case entries > math.MaxInt32:
		err = fmt.Errorf("%d entries", entries)
	}
	if err != nil {
		return st, sum256{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	st.Hash, st.Chunks, st.Next, st.Entries = hex.EncodeToString(h), int(chunks), int(next), int(entries)
	sum, err := sumFrom(s)
	return st, sum, err
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
	for _, name := range append(allowlistBuckets(), bucketMeta) {
		if b.Bucket(name) == nil {
			return nil, fmt.Errorf("%w: the stage has no %s bucket", ErrCorrupt, name)
		}
	}
	v := b.Bucket(bucketMeta).Get(keyProgress)
	if v == nil {
		return nil, fmt.Errorf("%w: the stage has no progress record", ErrCorrupt)
	}
	st, sum, err := decodeStage(v)
	if err != nil {
		return nil, fmt.Errorf("progress record: %w", err)
	}
	return &stage{SnapshotStage: st, b: b, sum: sum}, nil
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
			return tx.DeleteBucket(bucketStage)
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
	if err := checkStageHash(hash); err != nil {
		return fmt.Errorf("store: begin snapshot %d: %w: %w", seq, ErrInvalidOp, err)
	}
	if chunks < 1 || chunks > math.MaxInt32 {
		return fmt.Errorf("store: begin snapshot %d: %w: %d chunks", seq, ErrInvalidOp, chunks)
	}
	st := SnapshotStage{Seq: seq, Hash: hash, Chunks: chunks}
	err := s.updateStage(func(tx *bolt.Tx) error {
		if err := checkNewer(tx, seq); err != nil {
			return err
		}
		if sg, err := readStage(tx); err == nil && sg != nil && sg.Seq == seq && sg.Hash == hash && sg.Chunks == chunks {
			return errRollback
		}
		if tx.Bucket(bucketStage) != nil {
			if err := tx.DeleteBucket(bucketStage); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucket(bucketStage)
		if err != nil {
			return err
		}
		for _, name := range append(allowlistBuckets(), bucketMeta) {
			if _, err := b.CreateBucket(name); err != nil {
				return err
			}
		}
		return b.Bucket(bucketMeta).Put(keyProgress, encodeStage(&st, sum256{}))
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
		a := aclIn(nil, sg.b, sg.sum)
		if err := a.insertSnapshot(part); err != nil {
			return err
		}
		sg.Next++
		sg.Entries += len(part.Cards) + len(part.Holders) + len(part.Revocations)
		return sg.b.Bucket(bucketMeta).Put(keyProgress, encodeStage(&sg.SnapshotStage, a.sum))
	})
}

// Stage returns the progress of the snapshot being received; false when
// nothing is staged. A damaged stage is an error wrapping ErrCorrupt that
// says what is wrong; DropStage or BeginSnapshot replace it.
func (s *Store) Stage() (SnapshotStage, bool, error) {
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
func (s *Store) CommitSnapshot(seq uint64) error {
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
		if err := replaceAllowlist(tx, sg.b); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketStage); err != nil {
			return err
		}
		return setApplied(tx, seq, sg.sum)
	})
	if err != nil {
		return fmt.Errorf("store: commit snapshot %d: %w", seq, err)
	}
	return nil
}

// DropStage removes the stage, damaged or not. Dropping nothing is not an
// error.
func (s *Store) DropStage() error {
	err := s.updateStage(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStage) == nil {
			return errRollback
		}
		return tx.DeleteBucket(bucketStage)
	})
	if err != nil {
		return fmt.Errorf("store: drop stage: %w", err)
	}
	return nil
}

// checkStage checks a stage as checkRecords checks the live allowlist:
// its progress, every record, the holder index, and that the entries give
// the sum and count the progress record holds.
func checkStage(tx *bolt.Tx) error {
	sg, err := readStage(tx)
	if err == nil && sg != nil {
		var sum sum256
		var n int
		sum, n, err = checkAllowlist(sg.b)
		switch {
		case err != nil:
		case sum != sg.sum:
			err = fmt.Errorf("%w: the staged entries do not match the staged state sum", ErrCorrupt)
		case n != sg.Entries:
			err = fmt.Errorf("%w: %d entries staged, the progress record says %d", ErrCorrupt, n, sg.Entries)
		}
	}
	if err != nil {
		return fmt.Errorf("snapshot stage: %w", err)
	}
	return nil
}
