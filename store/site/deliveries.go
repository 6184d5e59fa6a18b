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
	Error    string    `json:"error,omitempty"`
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// bucketDeliveries holds the delivery log, made by its first write.
var bucketDeliveries = []byte("deliveries")

// PutDelivery stores a delivery, a new one (ID 0) under the next id, and
// returns it as stored.
func (d *DB) PutDelivery(x Delivery) (Delivery, error) {
	err := d.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDeliveries)
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
		return b.Put(be64(x.ID), v)
	})
	if err != nil {
		return x, fmt.Errorf("site: delivery log: %w", err)
	}
	return x, nil
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
