package site

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// What access reviews read beside the allowlist: the history of each
// door's groups, and the last use of cards in the collected events.
//
//	bucket       key                       value
//	door_groups  door key, time key        v1 JSON []string: the door's groups from that time on
//
// door_groups is written with the door record whenever its groups change
// (Door.GroupsSince is the time); files from before it have no entries
// for changes made before it, and the bucket is made at the first one.
var bucketDoorGroups = []byte("door_groups")

// putGroupHistory records d's groups from d.GroupsSince on, in tx, when
// they differ from old's.
func putGroupHistory(tx *bolt.Tx, old, d *Door) error {
	if old != nil && slices.Equal(old.Groups, d.Groups) {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketDoorGroups)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketDoorGroups, err)
	}
	groups := d.Groups
	if groups == nil {
		groups = []string{}
	}
	v, err := encodeJSON(groups)
	if err != nil {
		return err
	}
	return b.Put(append(doorKey(d.ID), timeKey(d.GroupsSince)...), v)
}

// GroupsAt is a door's groups at a moment, from the recorded history.
type GroupsAt struct {
	Groups []string  // the groups then
	Known  bool      // a recorded change at or before the moment says so
	First  time.Time // the first recorded change (zero: none recorded)
}

// DoorGroupsAt returns the groups door was in at the time at, as recorded
// in the history of its groups. When no change is recorded at or before
// at, Known is false and Groups is nil: the caller says what it assumes.
func (d *DB) DoorGroupsAt(door string, at time.Time) (GroupsAt, error) {
	var g GroupsAt
	p := doorKey(door)
	err := d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDoorGroups)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.Seek(p)
		if k == nil || !bytes.HasPrefix(k, p) {
			return nil
		}
		g.First = keyTime(k[len(p):])
		// The last entry at or before at: the one before the first key
		// after every key of at.
		var v []byte
		if k, _ = c.Seek(slices.Concat(p, timeKey(at), []byte{0xff})); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, p) {
			return nil
		}
		g.Known = true
		return decodeJSON(v, &g.Groups)
	})
	if err != nil {
		return GroupsAt{}, fmt.Errorf("site: groups of door %q at %s: %w", door, at.Format(time.RFC3339), err)
	}
	return g, nil
}

// keyTime decodes a time key.
func keyTime(k []byte) time.Time {
	if len(k) < 12 {
		return time.Time{}
	}
	sec := int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
	return time.Unix(sec, int64(binary.BigEndian.Uint32(k[8:]))).UTC()
}

// LastUseScan bounds the index entries LastGranted reads for one card:
// a card whose newest entries are all refusals or other doors' past it
// is reported unused within them.
const LastUseScan = 4096

// LastUse is a card's last granted event, as collected.
type LastUse struct {
	Time time.Time // the door's clock; zero when none was found
	Door string
	// Cut says the search stopped after LastUseScan entries: the card
	// may have been used before them.
	Cut bool
}

// LastGranted returns, for each card UID (upper-case hex), its newest
// granted (or granted_duress) event at door ("": any door) before the
// time before (zero: any time), from the collected events, in one read
// transaction: a backward range scan of the card's entries of idx_uid.
func (d *DB) LastGranted(uids []string, door string, before time.Time) ([]LastUse, error) {
	out := make([]LastUse, len(uids))
	dk := doorKey(door)
	err := d.view(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		c := tx.Bucket(bucketIdxUID).Cursor()
		for i, uid := range uids {
			p := labelKey(uid)
			end := slices.Concat(p, timeKey(before))
			if before.IsZero() {
				end = slices.Concat(p, []byte{0xff})
			}
			k, _ := c.Seek(end)
			if k == nil {
				k, _ = c.Last()
			}
			for n := 0; k != nil && bytes.HasPrefix(k, p); k, _ = c.Prev() {
				if bytes.Compare(k, end) >= 0 {
					continue
				}
				if n++; n > LastUseScan {
					out[i].Cut = true
					break
				}
				ek := k[len(p)+12:]
				if door != "" && !bytes.HasPrefix(ek, dk) {
					continue
				}
				rec := events.Get(ek)
				if rec == nil {
					return fmt.Errorf("%w: index entry of card %s names no event", ErrCorrupt, uid)
				}
				ev, err := decodeEvent(rec)
				if err != nil {
					return fmt.Errorf("event of card %s: %w", uid, err)
				}
				if ev.Type == store.TypeAccess && (ev.Reason == store.ReasonGranted || ev.Reason == store.ReasonGrantedDuress) {
					dr, _, _ := splitEventKey(ek)
					out[i] = LastUse{Time: ev.Time, Door: dr}
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: last use of %d cards: %w", len(uids), err)
	}
	return out, nil
}

// Enrolled returns when each card now held was last added: the time of
// the change whose upsert_card made it appear after it was absent (or
// was deleted), read from the history of changes.
func (d *DB) Enrolled() (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	err := d.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx, bucketDeltas, func(ch Change) {
			for _, op := range ch.Ops {
				switch op.Kind {
				case store.OpUpsertCard:
					if op.Card == nil {
						continue
					}
					if _, ok := out[string(op.Card.UID)]; !ok {
						out[string(op.Card.UID)] = ch.At
					}
				case store.OpDeleteCard:
					delete(out, string(op.UID))
				}
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("site: enrolment times: %w", err)
	}
	return out, nil
}

// Unused is a card not used for a while: no granted event since
// LastUse, or none at all since it was enrolled.
type Unused struct {
	UID         string    `json:"uid"` // upper-case hex
	Holder      string    `json:"holder"`
	Enrolled    time.Time `json:"enrolled,omitzero"` // zero: before the history of changes
	LastUse     time.Time `json:"last_use,omitzero"` // zero: never (within LastUseScan entries)
	LastUseDoor string    `json:"last_use_door,omitempty"`
	Revoked     bool      `json:"revoked,omitempty"` // the card or its holder is revoked
}

// Unused returns the cards with no granted event in the span before now,
// and those never used that were enrolled before it, in UID order.
func (d *DB) Unused(span time.Duration, now time.Time) ([]Unused, error) {
	cards, err := d.ListCards(nil, 0)
	if err != nil {
		return nil, err
	}
	enrolled, err := d.Enrolled()
	if err != nil {
		return nil, err
	}
	uids := make([]string, len(cards))
	for i, c := range cards {
		uids[i] = fmt.Sprintf("%X", c.UID)
	}
	last, err := d.LastGranted(uids, "", time.Time{})
	if err != nil {
		return nil, err
	}
	cut := now.Add(-span)
	out := []Unused{}
	for i, c := range cards {
		u := Unused{UID: uids[i], Holder: c.HolderID, Enrolled: enrolled[string(c.UID)], LastUse: last[i].Time, LastUseDoor: last[i].Door}
		if u.LastUse.IsZero() && u.Enrolled.After(cut) || u.LastUse.After(cut) {
			continue
		}
		_, errC := d.Revoked(c.UID)
		_, errH := d.HolderRevoked(c.HolderID)
		u.Revoked = errC == nil || errH == nil
		out = append(out, u)
	}
	return out, nil
}
