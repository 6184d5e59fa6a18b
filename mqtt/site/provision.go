package site

import (
	"crypto/ed25519"
	"fmt"

	"github.com/latchdoor/latch/mqtt"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Provision records a door in the database before the site starts: its
// door groups, and, when id is not nil, its identity as approved, for an
// installer who read the door's keys off it beforehand (latchd
// -show-identity) instead of approving the identity the door announces.
// A Site reads it at New; call it before.
func Provision(db *sitestore.DB, door string, id *mqtt.PublicIdentity, groups []string) error {
	if err := mqtt.CheckID("door", door); err != nil {
		return fmt.Errorf("site: provision: %w", err)
	}
	if id != nil {
		if err := id.Check("door " + door); err != nil {
			return fmt.Errorf("site: provision: %w", err)
		}
	}
	for _, g := range groups {
		if g == "" || g == "*" {
			return fmt.Errorf("site: provision door %s: group %q", door, g)
		}
	}
	err := db.UpdateDoor(door, func(d *sitestore.Door) error {
		d.Groups = append(d.Groups, groups...)
		if id != nil {
			d.Approved, d.Pending, d.Next, d.Former = recordIdentity(*id), nil, nil, nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("site: provision: %w", err)
	}
	return nil
}

// VerifyHead checks a held head's signature as door of site with the
// door's key.
func VerifyHead(h sitestore.SignedHead, site, door string, key ed25519.PublicKey) error {
	st := mqtt.Status{Site: site, Door: door, HeadSeq: h.Seq, HeadHash: h.Hash, HeadSig: h.Sig}
	if err := st.VerifyHead(key); err != nil {
		return fmt.Errorf("site: head %d of door %s: %w", h.Seq, door, err)
	}
	return nil
}
