package site

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Identity is a door's public identity: the key that signs its events and
// requests, the key its view is sealed to, and the fingerprint an
// installer reads at the door (latchd -show-identity).
type Identity struct {
	SignKey     []byte `json:"sign_key"`    // Ed25519 public key
	SealKey     []byte `json:"seal_key"`    // X25519 public key
	Fingerprint string `json:"fingerprint"` // what an admin compares before approving
}

// Door is what the site knows about one door.
type Door struct {
	ID     string   `json:"id"`               // the door's id, as in its topics
	Groups []string `json:"groups,omitempty"` // the door groups it belongs to
	// GroupsSince is when Groups were set (zero: not known); a change of
	// Groups is kept in the history of the door's groups at this time.
	GroupsSince time.Time `json:"groups_since,omitzero"`

	Approved *Identity `json:"approved,omitempty"` // the identity an admin approved
	Pending  *Identity `json:"pending,omitempty"`  // announced, waiting for approval
	Next     *Identity `json:"next,omitempty"`     // the approved identity vouched for its successor
	Former   *Identity `json:"former,omitempty"`   // the identity before the last rotation

	Status     json.RawMessage `json:"status,omitempty"`   // the last status the door reported, as JSON
	LastSeen   time.Time       `json:"last_seen,omitzero"` // when the site last heard from it
	AppliedSeq uint64          `json:"applied_seq"`        // the view seq the door reports applied
	ViewSeq    uint64          `json:"view_seq"`           // the seq of the door's view
	ViewOf     uint64          `json:"view_of"`            // the global ACL seq that view reflects

	// StatusHeadSeq is the seq of the latest signed head held from one of
	// the door's statuses: a status whose head is behind it rewinds the
	// door's chain.
	StatusHeadSeq uint64 `json:"status_head_seq,omitempty"`
}

func checkDoor(d *Door) error {
	if err := checkDoorID(d.ID); err != nil {
		return err
	}
	for _, g := range d.Groups {
		if err := checkID("group", g); err != nil {
			return err
		}
	}
	if len(d.Status) > 0 && !json.Valid(d.Status) {
		return fmt.Errorf("%w: status is not JSON", ErrInvalid)
	}
	return nil
}

func groupKey(group, door string) []byte {
	return append(append([]byte{uint8(len(group))}, group...), door...)
}

// putDoor writes d and moves the group index from old's groups to d's.
func putDoor(tx *bolt.Tx, old, d *Door) error {
	gi := tx.Bucket(bucketGroupDoors)
	if old != nil {
		for _, g := range old.Groups {
			if err := gi.Delete(groupKey(g, old.ID)); err != nil {
				return err
			}
		}
	}
	for _, g := range d.Groups {
		if err := gi.Put(groupKey(g, d.ID), nil); err != nil {
			return err
		}
	}
	if err := putGroupHistory(tx, old, d); err != nil {
		return err
	}
	v, err := encodeJSON(d)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketDoors).Put([]byte(d.ID), v)
}

func getDoor(tx *bolt.Tx, id string) (*Door, error) {
	v := tx.Bucket(bucketDoors).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var d Door
	if err := decodeJSON(v, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// PutDoor adds or replaces a door record, and the group index with it.
func (d *DB) PutDoor(door Door) error {
	door.Groups = slices.Compact(slices.Sorted(slices.Values(door.Groups)))
	if err := checkDoor(&door); err != nil {
		return fmt.Errorf("site: put door %q: %w", door.ID, err)
	}
	err := d.update(func(tx *bolt.Tx) error {
		old, err := getDoor(tx, door.ID)
		if err != nil {
			return err
		}
		return putDoor(tx, old, &door)
	})
	if err != nil {
		return fmt.Errorf("site: put door %q: %w", door.ID, err)
	}
	return nil
}

// UpdateDoor changes door id in one transaction: fn gets the record (a new
// one with only the id set if the door is unknown) and changes it; an
// error from fn changes nothing. fn may run only once and must not keep
// the pointer.
func (d *DB) UpdateDoor(id string, fn func(*Door) error) error {
	if err := checkDoorID(id); err != nil {
		return fmt.Errorf("site: update door %q: %w", id, err)
	}
	err := d.update(func(tx *bolt.Tx) error { return updateDoor(tx, id, fn) })
	if err != nil {
		return fmt.Errorf("site: update door %q: %w", id, err)
	}
	return nil
}

// updateDoor is UpdateDoor in tx.
func updateDoor(tx *bolt.Tx, id string, fn func(*Door) error) error {
	old, err := getDoor(tx, id)
	if err != nil {
		return err
	}
	var door Door
	if old != nil {
		door = *old
		door.Groups = slices.Clone(old.Groups)
	}
	door.ID = id
	if err := fn(&door); err != nil {
		return err
	}
	door.ID = id
	door.Groups = slices.Compact(slices.Sorted(slices.Values(door.Groups)))
	if err := checkDoor(&door); err != nil {
		return err
	}
	return putDoor(tx, old, &door)
}

// Door returns the door's record, or ErrNotFound.
func (d *DB) Door(id string) (Door, error) {
	var door Door
	if err := d.getJSON(bucketDoors, []byte(id), &door); err != nil {
		return Door{}, fmt.Errorf("site: door %q: %w", id, err)
	}
	return door, nil
}

// ListDoors returns every door record, in id order.
func (d *DB) ListDoors() ([]Door, error) {
	out, err := page[Door](d, bucketDoors, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("site: list doors: %w", err)
	}
	return out, nil
}

// DoorsIn returns the ids of the doors in group, in order.
func (d *DB) DoorsIn(group string) ([]string, error) {
	var out []string
	p := append([]byte{uint8(len(group))}, group...)
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketGroupDoors).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			out = append(out, string(k[len(p):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: doors in %q: %w", group, err)
	}
	return out, nil
}

// Announce records the identity a door announced as pending approval,
// unless it is the approved one (then it clears any pending one).
func (d *DB) Announce(door string, id Identity, now time.Time) error {
	return d.UpdateDoor(door, func(dr *Door) error {
		dr.LastSeen = now.UTC()
		if dr.Approved != nil && dr.Approved.Fingerprint == id.Fingerprint {
			dr.Pending = nil
			return nil
		}
		dr.Pending = &id
		return nil
	})
}

// Approve makes the door's pending identity, whose fingerprint must be fp,
// its approved one, in one transaction. An identity it replaces is no
// longer trusted at all (it is not Former: a door whose key was replaced
// without a rotation may have lost it). ErrNotFound if the door is
// unknown or has nothing pending, ErrConflict if the pending fingerprint
// is not fp.
func (d *DB) Approve(door, fp string) error {
	return d.promote(door, fp, "approve", false, func(dr *Door) **Identity { return &dr.Pending })
}

// ApproveNext makes the identity the door's approved key vouched for as
// its successor (Next), whose fingerprint must be fp, the approved one;
// the old one becomes Former.
func (d *DB) ApproveNext(door, fp string) error {
	return d.promote(door, fp, "approve next identity of", true, func(dr *Door) **Identity { return &dr.Next })
}

func (d *DB) promote(door, fp, what string, rotation bool, slot func(*Door) **Identity) error {
	err := d.update(func(tx *bolt.Tx) error {
		old, err := getDoor(tx, door)
		if err != nil {
			return err
		}
		if old == nil {
			return ErrNotFound
		}
		nd := *old
		p := slot(&nd)
		switch {
		case *p == nil:
			return fmt.Errorf("%w: no identity waits", ErrNotFound)
		case (*p).Fingerprint != fp:
			return fmt.Errorf("%w: the identity waiting has fingerprint %s, not %s", ErrConflict, (*p).Fingerprint, fp)
		}
		nd.Former = nil
		if rotation {
			nd.Former = nd.Approved
		}
		nd.Approved, *p = *p, nil
		return putDoor(tx, old, &nd)
	})
	if err != nil {
		return fmt.Errorf("site: %s door %q: %w", what, door, err)
	}
	return nil
}

// SetView records the seq of the door's view and the global ACL seq it
// reflects.
func (d *DB) SetView(door string, viewSeq, globalSeq uint64) error {
	return d.UpdateDoor(door, func(dr *Door) error {
		dr.ViewSeq, dr.ViewOf = viewSeq, globalSeq
		return nil
	})
}

// SetViews records, in one transaction, the seq of each door's view
// (door id → seq) and the global ACL seq they reflect.
func (d *DB) SetViews(views map[string]uint64, globalSeq uint64) error {
	if len(views) == 0 {
		return nil
	}
	err := d.update(func(tx *bolt.Tx) error {
		for _, id := range slices.Sorted(maps.Keys(views)) {
			old, err := getDoor(tx, id)
			if err != nil {
				return err
			}
			if old == nil {
				return fmt.Errorf("door %q: %w", id, ErrNotFound)
			}
			nd := *old
			nd.ViewSeq, nd.ViewOf = views[id], globalSeq
			if err := putDoor(tx, old, &nd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("site: set views at %d: %w", globalSeq, err)
	}
	return nil
}

// SetStatus records the door's last status (JSON), the view seq it
// reports applied, and when it was seen.
func (d *DB) SetStatus(door string, status json.RawMessage, applied uint64, now time.Time) error {
	return d.UpdateDoor(door, func(dr *Door) error {
		dr.Status = bytes.Clone(status)
		dr.AppliedSeq, dr.LastSeen = applied, now.UTC()
		return nil
	})
}

// StatusUpdate is what a door's latest status records: the status (JSON),
// the view seq it reports applied, when it was seen, and the signed head
// it carried, if any (its signature verified by the caller). An offline
// status (a door's last will, or its clean stop) reports no applied seq:
// the door still holds what it applied, so the last one recorded stays.
type StatusUpdate struct {
	Status     json.RawMessage
	AppliedSeq uint64
	Offline    bool
	LastSeen   time.Time
	Head       *SignedHead
}

// RecordStatuses records the statuses of many doors in one transaction,
// as SetStatus and PutHead would one by one; a door that held no record
// gets one. A head refused with ErrConflict (a rewrite) is not held, and
// the door's status is recorded all the same: its error is in conflicts,
// by door. Any other error records nothing.
func (d *DB) RecordStatuses(ups map[string]StatusUpdate) (conflicts map[string]error, err error) {
	doors := slices.Sorted(maps.Keys(ups))
	for _, id := range doors {
		if err := checkDoorID(id); err != nil {
			return nil, fmt.Errorf("site: record statuses: door %q: %w", id, err)
		}
		if h := ups[id].Head; h != nil && (h.Seq == 0 || !hexHash(h.Hash)) {
			return nil, fmt.Errorf("site: record statuses: head of door %s: %w: want seq > 0 and a hash of 64 lower-case hex digits", id, ErrInvalid)
		}
	}
	err = d.update(func(tx *bolt.Tx) error {
		conflicts = nil // the transaction may run again
		for _, id := range doors {
			u := ups[id]
			err := updateDoor(tx, id, func(door *Door) error {
				door.Status = bytes.Clone(u.Status)
				door.LastSeen = u.LastSeen.UTC()
				if !u.Offline {
					door.AppliedSeq = u.AppliedSeq
				}
				h := u.Head
				if h == nil {
					return nil
				}
				switch err := putHead(tx, id, *h); {
				case errors.Is(err, ErrConflict):
					if conflicts == nil {
						conflicts = make(map[string]error)
					}
					conflicts[id] = fmt.Errorf("site: put head %d of door %s: %w", h.Seq, id, err)
				case err != nil:
					return err
				default:
					door.StatusHeadSeq = max(door.StatusHeadSeq, h.Seq)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("door %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: record statuses: %w", err)
	}
	return conflicts, nil
}

// checkDoors decodes every door and checks the group index against them.
func checkDoors(tx *bolt.Tx) error {
	gi := tx.Bucket(bucketGroupDoors)
	n := 0
	if err := tx.Bucket(bucketDoors).ForEach(func(k, v []byte) error {
		var dr Door
		if err := decodeJSON(v, &dr); err != nil {
			return fmt.Errorf("door %q: %w", k, err)
		}
		if dr.ID != string(k) {
			return fmt.Errorf("%w: door %q holds id %q", ErrCorrupt, k, dr.ID)
		}
		for _, g := range dr.Groups {
			if gi.Get(groupKey(g, dr.ID)) == nil {
				return fmt.Errorf("%w: door %q is missing from the index of group %q", ErrCorrupt, dr.ID, g)
			}
			n++
		}
		return nil
	}); err != nil {
		return err
	}
	if k := gi.Stats().KeyN; k != n {
		return fmt.Errorf("%w: the group index has %d entries for %d memberships", ErrCorrupt, k, n)
	}
	return nil
}
