package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

const maxStateValue = 64 * 1024

// SetLockdown records whether a door is locked down. Decide refuses cards
// without the lockdown override at a door locked down here, as well as
// when the Request says so.
func (s *Store) SetLockdown(door string, on bool) error {
	if err := checkID("door", door); err != nil {
		return fmt.Errorf("store: set lockdown: %w: %w", ErrInvalidArgument, err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLockdown)
		if !on {
			return b.Delete([]byte(door))
		}
		return b.Put([]byte(door), encodeBool(true))
	})
	if err != nil {
		return fmt.Errorf("store: set lockdown %q: %w", door, err)
	}
	return nil
}

func readLockdown(tx *bolt.Tx, door string) (bool, error) {
	v := tx.Bucket(bucketLockdown).Get([]byte(door))
	if v == nil {
		return false, nil
	}
	on, err := decodeBool(v)
	if err != nil {
		return false, fmt.Errorf("lockdown of %q: %w", door, err)
	}
	return on, nil
}

// Lockdown reports whether a door is locked down.
func (s *Store) Lockdown(door string) (bool, error) {
	var on bool
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		on, err = readLockdown(tx, door)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: lockdown %q: %w", door, err)
	}
	return on, nil
}

func checkStateKey(key string) error {
	if key == "" || len(key) > maxIDLen {
		return fmt.Errorf("%w: state key must have 1..%d bytes", ErrInvalidArgument, maxIDLen)
	}
	return nil
}

// PutState stores a small value (at most 64 KiB) for the door controller,
// durably: for example an unlock pulse in progress, so that a crash during
// it can be reported at the next start.
func (s *Store) PutState(key string, val []byte) error {
	if err := checkStateKey(key); err != nil {
		return fmt.Errorf("store: put state: %w", err)
	}
	if len(val) > maxStateValue {
		return fmt.Errorf("store: put state %q: %w: value of %d bytes, limit %d", key, ErrInvalidArgument, len(val), maxStateValue)
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte(key), encodeBytes(val))
	})
	if err != nil {
		return fmt.Errorf("store: put state %q: %w", key, err)
	}
	return nil
}

// State returns a copy of the value stored under key, or ErrNotFound.
func (s *Store) State(key string) ([]byte, error) {
	var val []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketState).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		var err error
		val, err = decodeBytes(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: state %q: %w", key, err)
	}
	return val, nil
}

// DeleteState removes key; removing a missing key is not an error.
func (s *Store) DeleteState(key string) error {
	if err := checkStateKey(key); err != nil {
		return fmt.Errorf("store: delete state: %w", err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("store: delete state %q: %w", key, err)
	}
	return nil
}
