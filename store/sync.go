package store

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

func readSum(tx *bolt.Tx) (sum256, error) {
	v := tx.Bucket(bucketSync).Get(keyStateSum)
	if v == nil {
		return sum256{}, fmt.Errorf("%w: allowlist state sum is missing", ErrCorrupt)
	}
	b, err := decodeBytes(v)
	if err != nil {
		return sum256{}, fmt.Errorf("allowlist state sum: %w", err)
	}
	return sumFrom(b)
}

func readApplied(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketSync).Get(keyApplied)
	if v == nil {
		return 0, fmt.Errorf("%w: applied allowlist sequence is missing", ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("applied allowlist sequence: %w", err)
	}
	return n, nil
}

// optionalTime reads a time that may not have been written yet.
func optionalTime(b *bolt.Bucket, key []byte) (time.Time, error) {
	v := b.Get(key)
	if v == nil {
		return time.Time{}, nil
	}
	t, err := decodeTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("sync %s: %w", key, err)
	}
	return t, nil
}

func readSyncState(tx *bolt.Tx) (SyncState, error) {
	var st SyncState
	var err error
	if st.AppliedSeq, err = readApplied(tx); err != nil {
		return st, err
	}
	sum, err := readSum(tx)
	if err != nil {
		return st, err
	}
	st.SnapshotHash = stateHash(st.AppliedSeq, sum)
	b := tx.Bucket(bucketSync)
	if st.LastSignedAt, err = optionalTime(b, keyLastSigned); err != nil {
		return st, err
	}
	if st.LastIssuedAt, err = optionalTime(b, keyLastIssued); err != nil {
		return st, err
	}
	if v := b.Get(keyCmdSeqMax); v != nil {
		if st.CommandSeqMax, err = decodeU64(v); err != nil {
			return st, fmt.Errorf("sync %s: %w", keyCmdSeqMax, err)
		}
	}
	return st, nil
}

// SyncState returns the applied allowlist sequence, the state hash at it
// (see HashSnapshot), the times of the last signed message and the highest
// command sequence honoured.
func (s *Store) SyncState() (SyncState, error) {
	var st SyncState
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		st, err = readSyncState(tx)
		return err
	})
	if err != nil {
		return SyncState{}, fmt.Errorf("store: sync state: %w", err)
	}
	return st, nil
}

// MarkSigned records that a valid signed message arrived at localNow and
// was issued by the site at issuedAt. LastIssuedAt only moves forward: it
// is the clock floor, the lower bound on the real time below which Decide
// judges no time rule, whether or not the local clock is trusted.
func (s *Store) MarkSigned(localNow, issuedAt time.Time) error {
	if err := checkTime("local time", localNow); err != nil {
		return fmt.Errorf("store: mark signed: %w: %w", ErrInvalidArgument, err)
	}
	if err := checkTime("issued_at", issuedAt); err != nil {
		return fmt.Errorf("store: mark signed: %w: %w", ErrInvalidArgument, err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSync)
		last, err := optionalTime(b, keyLastIssued)
		if err != nil {
			return err
		}
		if err := b.Put(keyLastSigned, encodeTime(localNow)); err != nil {
			return err
		}
		if issuedAt.After(last) {
			return b.Put(keyLastIssued, encodeTime(issuedAt))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark signed: %w", err)
	}
	return nil
}

// LowerSignedTime brings LastIssuedAt back to issuedAt when it is later.
// It is a deliberate repair, for a recorded site time known to lie in the
// future (the site's clock was wrong when it signed): left there, it
// expires cards and judges schedules by a time that has not come yet. The
// door never calls it on the word of its own clock, synced or not: a clock
// that disagrees with the site's signed time may be the one that is wrong
// (set back by a forged NTP answer or a bad real-time clock).
func (s *Store) LowerSignedTime(issuedAt time.Time) error {
	if err := checkTime("issued_at", issuedAt); err != nil {
		return fmt.Errorf("store: lower signed time: %w: %w", ErrInvalidArgument, err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSync)
		last, err := optionalTime(b, keyLastIssued)
		if err != nil {
			return err
		}
		if last.After(issuedAt) {
			return b.Put(keyLastIssued, encodeTime(issuedAt))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: lower signed time: %w", err)
	}
	return nil
}

// RecordCommand remembers a signed command id until it expires, for replay
// protection. It returns fresh true the first time an unexpired id is
// seen, false for a replay or an already expired command; the caller
// executes only fresh commands. Ids whose expiry is at or before now are
// forgotten on the way. CommandSeqMax keeps the highest seq recorded.
func (s *Store) RecordCommand(id string, seq uint64, expires time.Time, now time.Time) (fresh bool, err error) {
	if err := checkID("command id", id); err != nil {
		return false, fmt.Errorf("store: record command: %w: %w", ErrInvalidArgument, err)
	}
	if err := checkTime("expires", expires); err != nil {
		return false, fmt.Errorf("store: record command %q: %w: %w", id, ErrInvalidArgument, err)
	}
	if !now.Before(expires) {
		return false, nil
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		var stale [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			c, err := decodeCommand(v)
			if err != nil {
				return fmt.Errorf("command %s: %w", keyText(k), err)
			}
			if !now.Before(c.Expires) {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if v := b.Get([]byte(id)); v != nil {
			fresh = false
			return nil
		}
		if err := b.Put([]byte(id), encodeCommand(commandRec{Seq: seq, Expires: expires})); err != nil {
			return err
		}
		fresh = true
		sb := tx.Bucket(bucketSync)
		var max uint64
		if v := sb.Get(keyCmdSeqMax); v != nil {
			var err error
			if max, err = decodeU64(v); err != nil {
				return fmt.Errorf("sync %s: %w", keyCmdSeqMax, err)
			}
		}
		if seq > max {
			return sb.Put(keyCmdSeqMax, encodeU64(seq))
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: record command %q: %w", id, err)
	}
	return fresh, nil
}
