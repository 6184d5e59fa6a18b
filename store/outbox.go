package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// maxPage bounds how many events one Pending or EventsAfter call returns.
const maxPage = 10000

// eventsAfter reads up to max entries with sequence > seq, in order.
func eventsAfter(tx *bolt.Tx, seq uint64, max int) ([]Event, error) {
	var out []Event
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.Seek(be64(seq + 1)); k != nil && len(out) < max; k, v = c.Next() {
		se, err := decodeEvent(v)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
		}
		out = append(out, se.Event)
	}
	return out, nil
}

func checkMax(max int) error {
	if max < 1 || max > maxPage {
		return fmt.Errorf("%w: max %d, want 1..%d", ErrInvalidArgument, max, maxPage)
	}
	return nil
}

// Pending returns up to max (1..10000) audit entries the site has not
// acknowledged, oldest first. The outbox is the audit chain itself: an
// entry is owed until Ack covers its sequence.
func (s *Store) Pending(max int) ([]Event, error) {
	if err := s.waitPages(); err != nil {
		return nil, fmt.Errorf("store: pending events: %w", err)
	}
	if err := checkMax(max); err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	var out []Event
	err := s.view(func(tx *bolt.Tx) error {
		acked, err := readAcked(tx)
		if err != nil {
			return err
		}
		out, err = eventsAfter(tx, acked, max)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	return out, nil
}

// EventsAfter returns up to max (1..10000) audit entries with sequence
// greater than seq, oldest first, delivered or not (for a collector that
// asks again from where it is).
func (s *Store) EventsAfter(seq uint64, max int) ([]Event, error) {
	if err := s.waitPages(); err != nil {
		return nil, fmt.Errorf("store: events after: %w", err)
	}
	if err := checkMax(max); err != nil {
		return nil, fmt.Errorf("store: events after %d: %w", seq, err)
	}
	var out []Event
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = eventsAfter(tx, seq, max)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: events after %d: %w", seq, err)
	}
	return out, nil
}

// Ack records that the site has durably stored every entry up to seq. The
// cursor only moves forward: an older or repeated ack changes nothing and
// is not an error. An ack beyond the last entry written is ErrAckAhead.
func (s *Store) Ack(seq uint64) error {
	err := s.update(func(tx *bolt.Tx) error {
		head, err := readHead(tx)
		if err != nil {
			return err
		}
		if seq > head.Seq {
			return fmt.Errorf("%w: ack %d, last entry %d", ErrAckAhead, seq, head.Seq)
		}
		acked, err := readAcked(tx)
		if err != nil {
			return err
		}
		if seq <= acked {
			return nil
		}
		return tx.Bucket(bucketAuditMeta).Put(keyAcked, encodeU64(seq))
	})
	if err != nil {
		return fmt.Errorf("store: ack %d: %w", seq, err)
	}
	return nil
}

// Acked returns the highest sequence the site has acknowledged.
func (s *Store) Acked() (uint64, error) {
	var acked uint64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		acked, err = readAcked(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: acked: %w", err)
	}
	return acked, nil
}

// OutboxDepth returns how many audit entries the site still has to
// acknowledge.
func (s *Store) OutboxDepth() (int, error) {
	var depth uint64
	err := s.view(func(tx *bolt.Tx) error {
		acked, err := readAcked(tx)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketAudit).Cursor()
		firstK, _ := c.First()
		lastK, _ := c.Last()
		if firstK == nil {
			return nil
		}
		first, last := binary.BigEndian.Uint64(firstK), binary.BigEndian.Uint64(lastK)
		if last > acked {
			depth = last - max(acked, first-1)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	return int(depth), nil
}
