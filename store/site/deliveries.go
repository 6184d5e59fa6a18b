package site

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delivery is one notification sent, or being sent, on a channel: the
// delivery log.
type Delivery struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"` // the site's clock when it was made
	Rule     string    `json:"rule"`
	Channel  string    `json:"channel"` // e.g. "webhook:siem", "email:ops", "mqtt"
	Subject  string    `json:"subject"` // what it is about, one line
	Status   string    `json:"status"`  // "pending", "delivered" or "failed"
	Attempts int       `json:"attempts"`
	Last     time.Time `json:"last,omitzero"` // the last attempt
	Next     time.Time `json:"next,omitzero"` // pending: when it is tried next
	Error    string    `json:"error,omitempty"`
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// bucketDeliveries holds the delivery log, and bucketDeliveryQueue the
// body of each pending delivery under its id, so that its retries go on
// after a restart; each is made by its first write.
var (
	bucketDeliveries    = []byte("deliveries")
	bucketDeliveryQueue = []byte("delivery_queue")
)

// QueuedDelivery is a pending delivery and what it sends.
type QueuedDelivery struct {
	Delivery
	Body []byte
}

// QueueDelivery stores a new pending delivery (ID 0) under the next id,
// with the body it sends, in one transaction, and returns it as stored.
func (d *DB) QueueDelivery(x Delivery, body []byte) (Delivery, error) {
	if x.ID != 0 || x.Status != DeliveryPending {
		return x, fmt.Errorf("site: queue delivery: %w: want a new pending delivery, not id %d %s", ErrInvalid, x.ID, x.Status)
	}
	return d.putDelivery(x, body)
}

// PutDelivery stores a delivery, a new one (ID 0) under the next id, and
// returns it as stored. A delivery no longer pending leaves the queue.
func (d *DB) PutDelivery(x Delivery) (Delivery, error) { return d.putDelivery(x, nil) }

func (d *DB) putDelivery(x Delivery, body []byte) (Delivery, error) {
	err := d.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDeliveries)
		if err != nil {
			return err
		}
		q, err := tx.CreateBucketIfNotExists(bucketDeliveryQueue)
		if err != nil {
			return err
		}
		if x.ID == 0 {
			if x.ID, err = b.NextSequence(); err != nil {
				return err
			}
		}
		v, err := encodeJSON(&x)
		if err != nil {
			return err
		}
		switch {
		case body != nil:
			err = q.Put(be64(x.ID), seal(body))
		case x.Status != DeliveryPending:
			err = q.Delete(be64(x.ID))
		}
		if err != nil {
			return err
		}
		return b.Put(be64(x.ID), v)
	})
	if err != nil {
		return x, fmt.Errorf("site: delivery log: %w", err)
	}
	return x, nil
}

// QueuedDeliveries returns the pending deliveries with their bodies, by
// id: what a restarted service goes on trying.
func (d *DB) QueuedDeliveries() ([]QueuedDelivery, error) {
	var out []QueuedDelivery
	err := d.view(func(tx *bolt.Tx) error {
		q, b := tx.Bucket(bucketDeliveryQueue), tx.Bucket(bucketDeliveries)
		if q == nil {
			return nil
		}
		return q.ForEach(func(k, v []byte) error {
			body, err := unseal(v)
			if err != nil {
				return fmt.Errorf("%s %d: %w", bucketDeliveryQueue, bytesU64(k), err)
			}
			var x QueuedDelivery
			rec := b.Get(k)
			if rec == nil {
				return fmt.Errorf("%w: %s %d has no delivery", ErrCorrupt, bucketDeliveryQueue, bytesU64(k))
			}
			if err := decodeJSON(rec, &x.Delivery); err != nil {
				return fmt.Errorf("%s %d: %w", bucketDeliveries, bytesU64(k), err)
			}
			x.Body = append([]byte(nil), body...)
			out = append(out, x)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("site: delivery queue: %w", err)
	}
	return out, nil
}

// PruneDeliveries deletes the deliveries made before before, and the
// oldest beyond the newest keep (0: no bound), except those still
// pending; it returns how many it deleted.
func (d *DB) PruneDeliveries(before time.Time, keep int) (int, error) {
	n := 0
	err := d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		if b == nil {
			return nil
		}
		total := b.Stats().KeyN
		var del [][]byte
		c := b.Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			over := keep > 0 && i < total-keep
			i++
			var x Delivery
			if err := decodeJSON(v, &x); err != nil {
				return fmt.Errorf("%s %d: %w", bucketDeliveries, bytesU64(k), err)
			}
			if !over && !x.Time.Before(before) {
				break
			}
			if x.Status != DeliveryPending {
				del = append(del, k)
			}
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(del)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("site: prune delivery log: %w", err)
	}
	return n, nil
}

// Deliveries returns the delivery log, newest first, at most n (0: all).
func (d *DB) Deliveries(n int) ([]Delivery, error) {
	out, err := idNewestFirst(d, bucketDeliveries, n, func(*Delivery) bool { return true })
	if err != nil {
		return nil, fmt.Errorf("site: delivery log: %w", err)
	}
	return out, nil
}

// idNewestFirst reads the JSON records of a bucket keyed by uint64 ids,
// the highest id first, at most n (0: all) that keep keeps.
func idNewestFirst[T any](d *DB, bucket []byte, n int, keep func(*T) bool) ([]T, error) {
	var out []T
	err := d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (n <= 0 || len(out) < n); k, v = c.Prev() {
			var x T
			if err := decodeJSON(v, &x); err != nil {
				return fmt.Errorf("%s %d: %w", bucket, bytesU64(k), err)
			}
			if keep(&x) {
				out = append(out, x)
			}
		}
		return nil
	})
	return out, err
}
