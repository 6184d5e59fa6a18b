package site

import (
	"bytes"
	"fmt"

	"github.com/latchdoor/latch/mqtt"
	sitestore "github.com/latchdoor/latch/store/site"
)

// The site trusts a door only by the identity an admin approved: its
// approved signing key attributes the door's events and sync requests,
// and its approved sealing key is the only one the door's view is sealed
// to. An identity a door announces in its status is nothing until then:
// it waits as pending for Site.Approve, and the door gets nothing. A
// door already approved that announces another identity keeps its
// approval (of the old identity) until the new one is approved
// explicitly: a replaced key is never trusted silently.

// verdict is what the site makes of the identity a door announces.
type verdict int

const (
	verdictApproved verdict = iota // the approved identity
	verdictPending                 // a door not approved: pending approval
	verdictMismatch                // an approved door announcing another identity: pending, and an alarm
	verdictFormer                  // a rotated door still announcing its former identity
)

// doorBook holds the approved and pending door identities. It is not safe
// for concurrent use: the Site guards it.
type doorBook struct {
	approved map[string]mqtt.PublicIdentity
	pending  map[string]mqtt.PublicIdentity
	// next holds the identities approved doors rotate to, vouched for by
	// their approved key, until an admin approves them (approveNext).
	next map[string]mqtt.PublicIdentity
	// previous holds a rotated door's former identity, whose signatures
	// still attribute the events it signed before it took the new one,
	// until the door announces the new one as its own.
	previous map[string]mqtt.PublicIdentity
}

func newDoorBook() doorBook {
	return doorBook{approved: make(map[string]mqtt.PublicIdentity), pending: make(map[string]mqtt.PublicIdentity),
		next: make(map[string]mqtt.PublicIdentity), previous: make(map[string]mqtt.PublicIdentity)}
}

// load takes a door's identities from its database record, checking each.
func (b *doorBook) load(d *sitestore.Door) error {
	for _, x := range []struct {
		what string
		id   *sitestore.Identity
		m    map[string]mqtt.PublicIdentity
	}{{"approved", d.Approved, b.approved}, {"pending", d.Pending, b.pending}, {"next", d.Next, b.next}, {"former", d.Former, b.previous}} {
		if x.id == nil {
			continue
		}
		p := mqtt.PublicIdentity{SignKey: bytes.Clone(x.id.SignKey), SealKey: bytes.Clone(x.id.SealKey)}
		if err := p.Check(x.what + " identity"); err != nil {
			return err
		}
		if fp := p.Fingerprint(); fp != x.id.Fingerprint {
			return fmt.Errorf("%s identity: recorded fingerprint %s, its keys' %s", x.what, x.id.Fingerprint, fp)
		}
		x.m[d.ID] = p
	}
	return nil
}

// record writes door's identities into its database record.
func (b *doorBook) record(door string, d *sitestore.Door) {
	get := func(m map[string]mqtt.PublicIdentity) *sitestore.Identity {
		id, ok := m[door]
		if !ok {
			return nil
		}
		return recordIdentity(id)
	}
	d.Approved, d.Pending, d.Next, d.Former = get(b.approved), get(b.pending), get(b.next), get(b.previous)
}

// recordIdentity is id as the database records it.
func recordIdentity(id mqtt.PublicIdentity) *sitestore.Identity {
	return &sitestore.Identity{SignKey: bytes.Clone(id.SignKey), SealKey: bytes.Clone(id.SealKey), Fingerprint: id.Fingerprint()}
}

func cloneIdentity(id mqtt.PublicIdentity) mqtt.PublicIdentity {
	return mqtt.PublicIdentity{SignKey: bytes.Clone(id.SignKey), SealKey: bytes.Clone(id.SealKey)}
}

func sameIdentity(a, b mqtt.PublicIdentity) bool {
	return bytes.Equal(a.SignKey, b.SignKey) && bytes.Equal(a.SealKey, b.SealKey)
}

// announce records the identity door announced and says what it is. A
// door not approved, or approved with another identity, has id pending;
// changed reports that the pending identity is new (worth a log line).
// A door announcing its approved identity again has nothing pending.
func (b *doorBook) announce(door string, id mqtt.PublicIdentity) (v verdict, changed bool) {
	if a, ok := b.approved[door]; ok && sameIdentity(a, id) {
		_, had := b.pending[door]
		delete(b.pending, door)
		delete(b.previous, door) // the door has taken its new identity
		return verdictApproved, had
	}
	if p, ok := b.previous[door]; ok && sameIdentity(p, id) {
		// A rotated door that has not taken its new identity yet.
		return verdictFormer, false
	}
	old, had := b.pending[door]
	changed = !had || !sameIdentity(old, id)
	b.pending[door] = cloneIdentity(id)
	if _, ok := b.approved[door]; ok {
		return verdictMismatch, changed
	}
	return verdictPending, changed
}

// approve approves door's pending identity whose fingerprint is fp and
// returns it; replaced reports that it replaces another approved
// identity.
func (b *doorBook) approve(door, fp string) (id mqtt.PublicIdentity, replaced bool, err error) {
	p, ok := b.pending[door]
	if !ok {
		return mqtt.PublicIdentity{}, false, fmt.Errorf("site: approve door %s: %w: no identity pending", door, sitestore.ErrNotFound)
	}
	if got := p.Fingerprint(); got != fp {
		return mqtt.PublicIdentity{}, false, fmt.Errorf("site: approve door %s: %w: the pending identity is %s, not %s", door, sitestore.ErrConflict, got, fp)
	}
	_, replaced = b.approved[door]
	b.approved[door] = p
	delete(b.pending, door)
	// A replaced identity is not trusted for anything any more.
	delete(b.previous, door)
	delete(b.next, door)
	return cloneIdentity(p), replaced, nil
}

// identity returns the approved identity of door.
func (b *doorBook) identity(door string) (mqtt.PublicIdentity, bool) {
	id, ok := b.approved[door]
	return id, ok
}

// pendingFingerprints returns door → fingerprint of the pending
// identities.
func (b *doorBook) pendingFingerprints() map[string]string {
	out := make(map[string]string, len(b.pending))
	for d, id := range b.pending {
		out[d] = id.Fingerprint()
	}
	return out
}

// vouched records the next identity an approved door announced, vouched
// for by its approved key (the caller checked the vouch).
func (b *doorBook) vouched(door string, next mqtt.PublicIdentity) (changed bool) {
	old, had := b.next[door]
	b.next[door] = cloneIdentity(next)
	return !had || !sameIdentity(old, next)
}

// approveNext approves door's vouched next identity whose fingerprint is
// fp; the approved one becomes the previous one.
func (b *doorBook) approveNext(door, fp string) (mqtt.PublicIdentity, error) {
	n, ok := b.next[door]
	if !ok {
		return mqtt.PublicIdentity{}, fmt.Errorf("site: approve the next identity of door %s: %w: none announced", door, sitestore.ErrNotFound)
	}
	if got := n.Fingerprint(); got != fp {
		return mqtt.PublicIdentity{}, fmt.Errorf("site: approve the next identity of door %s: %w: it is %s, not %s", door, sitestore.ErrConflict, got, fp)
	}
	b.previous[door] = b.approved[door]
	b.approved[door] = n
	delete(b.next, door)
	return cloneIdentity(n), nil
}

// former returns the identity a rotated door had before, while its
// signatures still count.
func (b *doorBook) former(door string) (mqtt.PublicIdentity, bool) {
	id, ok := b.previous[door]
	return id, ok
}

// nextFingerprints returns door → fingerprint of the vouched next
// identities awaiting approval.
func (b *doorBook) nextFingerprints() map[string]string {
	out := make(map[string]string, len(b.next))
	for d, id := range b.next {
		out[d] = id.Fingerprint()
	}
	return out
}

// doorSlots is one door's entries in the book, as saved before a change.
type doorSlots [4]*mqtt.PublicIdentity

func (b *doorBook) maps() [4]map[string]mqtt.PublicIdentity {
	return [4]map[string]mqtt.PublicIdentity{b.approved, b.pending, b.next, b.previous}
}

// save returns door's entries.
func (b *doorBook) save(door string) doorSlots {
	var out doorSlots
	for i, m := range b.maps() {
		if id, ok := m[door]; ok {
			out[i] = &id
		}
	}
	return out
}

// same reports whether two saves hold the same identities.
func (a doorSlots) same(b doorSlots) bool {
	for i := range a {
		switch {
		case (a[i] == nil) != (b[i] == nil):
			return false
		case a[i] != nil && !sameIdentity(*a[i], *b[i]):
			return false
		}
	}
	return true
}

// restore puts door's entries back as save returned them.
func (b *doorBook) restore(door string, saved doorSlots) {
	for i, m := range b.maps() {
		if saved[i] == nil {
			delete(m, door)
		} else {
			m[door] = *saved[i]
		}
	}
}
