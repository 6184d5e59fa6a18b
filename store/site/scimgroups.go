package site

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SCIM groups: the groups an identity provider keeps through SCIM, each
// a door group of the same name, and their memberships. A membership
// records the cards it added the group to, so that ending it takes the
// group off those cards only: a group an admin put on a card by hand
// stays. The cards themselves change through Commit, in the same
// transaction as the records here (ChangingSCIM).

// SCIM buckets, made by the first SCIM group's write.
var (
	bucketSCIMGroups       = []byte("scim_groups")
	bucketSCIMMembers      = []byte("scim_members")
	bucketSCIMHolderGroups = []byte("scim_holder_groups")
)

// SCIMGroup is a group an identity provider made.
type SCIMGroup struct {
	Name    string    `json:"name"` // its displayName, its SCIM id, and the door group it gives
	Created time.Time `json:"created"`
}

// SCIMMember is a holder's membership of a SCIM group.
type SCIMMember struct {
	Group  string   `json:"group"`
	Holder string   `json:"holder"`
	Added  [][]byte `json:"added,omitempty"` // the UIDs of the cards the membership added the group to
}

// SCIMChange is a change of SCIM groups, applied in this order: Group
// stored, Delete's group and all its memberships removed, the
// memberships of Remove (by Group and Holder) removed, those of Put
// stored. A membership's group must exist.
type SCIMChange struct {
	Group  *SCIMGroup
	Delete string
	Remove []SCIMMember
	Put    []SCIMMember
}

// empty reports whether c changes nothing.
func (c *SCIMChange) empty() bool {
	return c.Group == nil && c.Delete == "" && len(c.Remove) == 0 && len(c.Put) == 0
}

func checkSCIMChange(c *SCIMChange) error {
	if c.Group != nil {
		if err := checkID("group", c.Group.Name); err != nil {
			return err
		}
	}
	if c.Delete != "" {
		if err := checkID("group", c.Delete); err != nil {
			return err
		}
	}
	for _, ms := range [][]SCIMMember{c.Remove, c.Put} {
		for _, m := range ms {
			if err := checkSCIMMember(&m); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkSCIMMember(m *SCIMMember) error {
	if err := checkID("group", m.Group); err != nil {
		return err
	}
	if err := checkID("holder id", m.Holder); err != nil {
		return err
	}
	for _, uid := range m.Added {
		if err := checkUID(uid); err != nil {
			return fmt.Errorf("membership of %q in %q: %w", m.Holder, m.Group, err)
		}
	}
	return nil
}

// scimMemberKey is the scim_members key: uint8 len(group), group, holder.
func scimMemberKey(group, holder string) []byte {
	return append(append([]byte{uint8(len(group))}, group...), holder...)
}

// scimHolderKey is the scim_holder_groups key: uint8 len(holder), holder,
// group.
func scimHolderKey(holder, group string) []byte {
	return append(append([]byte{uint8(len(holder))}, holder...), group...)
}

// dropSCIMHolder removes every SCIM membership of holder, in tx: the
// holder is deleted.
func dropSCIMHolder(tx *bolt.Tx, holder string) error {
	byHolder, members := tx.Bucket(bucketSCIMHolderGroups), tx.Bucket(bucketSCIMMembers)
	if byHolder == nil || members == nil {
		return nil // no SCIM group yet
	}
	p := scimHolderKey(holder, "")
	var groups []string
	cur := byHolder.Cursor()
	for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
		groups = append(groups, string(k[len(p):]))
	}
	for _, g := range groups {
		if err := members.Delete(scimMemberKey(g, holder)); err != nil {
			return err
		}
		if err := byHolder.Delete(scimHolderKey(holder, g)); err != nil {
			return err
		}
	}
	return nil
}

// ChangeSCIM applies c in a transaction of its own: a change of SCIM
// groups that changes no card.
func (d *DB) ChangeSCIM(c SCIMChange) error {
	if err := checkSCIMChange(&c); err != nil {
		return fmt.Errorf("site: change scim groups: %w", err)
	}
	if err := d.update(func(tx *bolt.Tx) error { return changeSCIM(tx, &c) }); err != nil {
		return fmt.Errorf("site: change scim groups: %w", err)
	}
	return nil
}

// ChangingSCIM makes the change that r records (the commit of the cards
// it changes) also apply c, in its own transaction, after the commit:
// the cards, the memberships and the entry are on disk together or not
// at all. It adds to what the change already does besides.
func (r *ChangeRecord) ChangingSCIM(c SCIMChange) error {
	if err := checkSCIMChange(&c); err != nil {
		return fmt.Errorf("site: change scim groups: %w", err)
	}
	prev := r.also
	r.also = func(tx *bolt.Tx) error {
		if prev != nil {
			if err := prev(tx); err != nil {
				return err
			}
		}
		return changeSCIM(tx, &c)
	}
	return nil
}

func changeSCIM(tx *bolt.Tx, c *SCIMChange) error {
	if c.empty() {
		return nil
	}
	groups, err := tx.CreateBucketIfNotExists(bucketSCIMGroups)
	if err != nil {
		return err
	}
	members, err := tx.CreateBucketIfNotExists(bucketSCIMMembers)
	if err != nil {
		return err
	}
	byHolder, err := tx.CreateBucketIfNotExists(bucketSCIMHolderGroups)
	if err != nil {
		return err
	}
	if c.Group != nil {
		rec, err := encodeJSON(c.Group)
		if err != nil {
			return err
		}
		if err := groups.Put([]byte(c.Group.Name), rec); err != nil {
			return err
		}
	}
	remove := func(group, holder string) error {
		if err := members.Delete(scimMemberKey(group, holder)); err != nil {
			return err
		}
		return byHolder.Delete(scimHolderKey(holder, group))
	}
	if c.Delete != "" {
		if groups.Get([]byte(c.Delete)) == nil {
			return fmt.Errorf("group %q: %w", c.Delete, ErrNotFound)
		}
		var holders []string
		p := scimMemberKey(c.Delete, "")
		cur := members.Cursor()
		for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
			holders = append(holders, string(k[len(p):]))
		}
		for _, h := range holders {
			if err := remove(c.Delete, h); err != nil {
				return err
			}
		}
		if err := groups.Delete([]byte(c.Delete)); err != nil {
			return err
		}
	}
	for _, m := range c.Remove {
		if err := remove(m.Group, m.Holder); err != nil {
			return err
		}
	}
	for _, m := range c.Put {
		if groups.Get([]byte(m.Group)) == nil {
			return fmt.Errorf("membership of %q: group %q: %w", m.Holder, m.Group, ErrNotFound)
		}
		rec, err := encodeJSON(m)
		if err != nil {
			return err
		}
		if err := members.Put(scimMemberKey(m.Group, m.Holder), rec); err != nil {
			return err
		}
		if err := byHolder.Put(scimHolderKey(m.Holder, m.Group), nil); err != nil {
			return err
		}
	}
	return nil
}

// SCIMGroup returns the SCIM group name, or ErrNotFound.
func (d *DB) SCIMGroup(name string) (SCIMGroup, error) {
	var g SCIMGroup
	err := d.view(func(tx *bolt.Tx) error { return getSCIMGroup(tx, name, &g) })
	if err != nil {
		return g, fmt.Errorf("site: scim group %q: %w", name, err)
	}
	return g, nil
}

// SCIMGroup returns the SCIM group name, or ErrNotFound, inside a
// change's transaction.
func (r *Reader) SCIMGroup(name string) (SCIMGroup, error) {
	var g SCIMGroup
	return g, getSCIMGroup(r.tx, name, &g)
}

func getSCIMGroup(tx *bolt.Tx, name string, g *SCIMGroup) error {
	b := tx.Bucket(bucketSCIMGroups)
	if b == nil {
		return ErrNotFound
	}
	rec := b.Get([]byte(name))
	if rec == nil {
		return ErrNotFound
	}
	return decodeJSON(rec, g)
}

// SCIMGroups returns every SCIM group, by name.
func (d *DB) SCIMGroups() ([]SCIMGroup, error) {
	var out []SCIMGroup
	err := d.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSCIMGroups) == nil {
			return nil
		}
		return forEachJSON(tx, bucketSCIMGroups, func(g SCIMGroup) { out = append(out, g) })
	})
	if err != nil {
		return nil, fmt.Errorf("site: scim groups: %w", err)
	}
	return out, nil
}

// SCIMMembers returns the memberships of group, by holder id.
func (d *DB) SCIMMembers(group string) ([]SCIMMember, error) {
	var out []SCIMMember
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		out, err = scimMembers(tx, group)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("site: members of scim group %q: %w", group, err)
	}
	return out, nil
}

// SCIMMembers returns the memberships of group inside a change's
// transaction.
func (r *Reader) SCIMMembers(group string) ([]SCIMMember, error) { return scimMembers(r.tx, group) }

func scimMembers(tx *bolt.Tx, group string) ([]SCIMMember, error) {
	b := tx.Bucket(bucketSCIMMembers)
	if b == nil {
		return nil, nil
	}
	var out []SCIMMember
	p := scimMemberKey(group, "")
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		var m SCIMMember
		if err := decodeJSON(v, &m); err != nil {
			return nil, fmt.Errorf("membership %q: %w", k, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// SCIMGroupsOf returns the memberships of holder, by group name.
func (d *DB) SCIMGroupsOf(holder string) ([]SCIMMember, error) {
	var out []SCIMMember
	err := d.view(func(tx *bolt.Tx) error {
		byHolder, members := tx.Bucket(bucketSCIMHolderGroups), tx.Bucket(bucketSCIMMembers)
		if byHolder == nil || members == nil {
			return nil
		}
		p := scimHolderKey(holder, "")
		c := byHolder.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			group := string(k[len(p):])
			rec := members.Get(scimMemberKey(group, holder))
			if rec == nil {
				return fmt.Errorf("%w: scim_holder_groups lists %q in %q, which scim_members lacks", ErrCorrupt, holder, group)
			}
			var m SCIMMember
			if err := decodeJSON(rec, &m); err != nil {
				return fmt.Errorf("membership of %q in %q: %w", holder, group, err)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: scim groups of %q: %w", holder, err)
	}
	return out, nil
}

// checkSCIM decodes every SCIM group and membership, and checks that
// each membership's group exists and that the holder index matches the
// memberships.
func checkSCIM(tx *bolt.Tx) error {
	groups, members, byHolder := tx.Bucket(bucketSCIMGroups), tx.Bucket(bucketSCIMMembers), tx.Bucket(bucketSCIMHolderGroups)
	if groups == nil && members == nil && byHolder == nil {
		return nil
	}
	if groups == nil || members == nil || byHolder == nil {
		return fmt.Errorf("%w: the SCIM buckets are not all there", ErrCorrupt)
	}
	err := groups.ForEach(func(k, v []byte) error {
		var g SCIMGroup
		if err := decodeJSON(v, &g); err != nil {
			return fmt.Errorf("scim group %q: %w", k, err)
		}
		if g.Name != string(k) {
			return fmt.Errorf("%w: scim_groups: record of %q under %q", ErrCorrupt, g.Name, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	n := 0
	err = members.ForEach(func(k, v []byte) error {
		var m SCIMMember
		if err := decodeJSON(v, &m); err != nil {
			return fmt.Errorf("scim membership %q: %w", k, err)
		}
		switch {
		case !slices.Equal(k, scimMemberKey(m.Group, m.Holder)):
			return fmt.Errorf("%w: scim_members: membership of %q in %q under %q", ErrCorrupt, m.Holder, m.Group, k)
		case groups.Get([]byte(m.Group)) == nil:
			return fmt.Errorf("%w: scim_members: %q is in group %q, which is missing", ErrCorrupt, m.Holder, m.Group)
		case byHolder.Get(scimHolderKey(m.Holder, m.Group)) == nil:
			return fmt.Errorf("%w: scim_holder_groups lacks %q in %q", ErrCorrupt, m.Holder, m.Group)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if k := byHolder.Stats().KeyN; k != n {
		return fmt.Errorf("%w: scim_holder_groups has %d entries for %d memberships", ErrCorrupt, k, n)
	}
	return nil
}
