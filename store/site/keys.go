package site

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyKeyChain is the meta key of the site's key rotations.
var keyKeyChain = []byte("key_chain")

// SetKeyChain records the site's key rotations, oldest first, each the
// signed rotation message as published (see docs/mqtt.md): what a door
// that was offline through a rotation is sent again.
func (d *DB) SetKeyChain(rotations []json.RawMessage) error {
	v, err := encodeJSON(rotations)
	if err != nil {
		return fmt.Errorf("site: set key chain: %w", err)
	}
	if err := d.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyKeyChain, v) }); err != nil {
		return fmt.Errorf("site: set key chain: %w", err)
	}
	return nil
}

// KeyChain returns the site's key rotations, oldest first (none before
// the first rotation).
func (d *DB) KeyChain() ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyKeyChain)
		if v == nil {
			return nil
		}
		return decodeJSON(v, &out)
	})
	if err != nil {
		return nil, fmt.Errorf("site: key chain: %w", err)
	}
	return out, nil
}
