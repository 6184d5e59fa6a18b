package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// identityKey is the store state under which the door records the
// fingerprint of its identity, so that a lost identity file is noticed
// instead of silently replaced.
const identityKey = "door/identity"

// errIdentity marks an identity problem a restart cannot cure: the door
// waits locked with the fault shown (see storeFault).
var errIdentity = errors.New("door identity")

// doorIdentity loads the door's identity from the data directory, or makes
// one at the first start. It never replaces an identity silently: a door
// whose store recorded an identity that the data directory no longer
// holds (or holds another one) refuses to go on, since the site approved
// that identity; -new-identity makes a new one on purpose.
func doorIdentity(dir string, st *store.Store, log *slog.Logger) (*mqtt.Identity, error) {
	recorded, err := st.State(identityKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		recorded = nil
	case err != nil:
		return nil, err
	}
	id, err := mqtt.LoadIdentity(dir)
	switch {
	case errors.Is(err, mqtt.ErrNoIdentity) && len(recorded) > 0:
		return nil, fmt.Errorf("%w: %s is missing, and this door was approved with the identity %s: restore the file from a backup, or make a new identity with latchd -new-identity and have it approved at the site",
			errIdentity, filepath.Join(dir, mqtt.IdentityFile), recorded)
	case errors.Is(err, mqtt.ErrNoIdentity):
		if id, err = mqtt.CreateIdentity(dir); err != nil {
			return nil, err
		}
		fp := id.Public().Fingerprint()
		if err := st.PutState(identityKey, []byte(fp)); err != nil {
			return nil, err
		}
		log.Warn("new door identity: read its fingerprint to the site admin, who approves the door with it", "fingerprint", fp)
		return id, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errIdentity, err)
	}
	fp := id.Public().Fingerprint()
	if len(recorded) > 0 && string(recorded) != fp {
		// A rotation cut between recording the next identity and
		// renaming its file: finish it.
		if next, err := mqtt.LoadNextIdentity(dir); err == nil && next.Public().Fingerprint() == string(recorded) {
			if err := mqtt.PromoteIdentity(dir); err != nil {
				return nil, fmt.Errorf("%w: finish the rotation to %s: %w", errIdentity, recorded, err)
			}
			log.Warn("door identity: finished a rotation cut short", "fingerprint", string(recorded))
			id, fp = next, string(recorded)
		}
	}
	switch {
	case len(recorded) == 0:
		if err := st.PutState(identityKey, []byte(fp)); err != nil {
			return nil, err
		}
	case string(recorded) != fp:
		return nil, fmt.Errorf("%w: %s holds the identity %s, but this door was approved with %s: put the right file back, or make a new identity with latchd -new-identity and have it approved at the site",
			errIdentity, filepath.Join(dir, mqtt.IdentityFile), fp, recorded)
	}
	return id, nil
}

// newIdentity makes a new identity on purpose (latchd -new-identity): the
// old file, if any, is kept beside it as identity.key.old-<time>, and the
// store records the new fingerprint. The site must approve it again.
func newIdentity(dir string, st *store.Store, now time.Time, out io.Writer) error {
	path := filepath.Join(dir, mqtt.IdentityFile)
	if _, err := os.Stat(path); err == nil {
		old := path + ".old-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(path, old); err != nil {
			return fmt.Errorf("keep the old identity: %w", err)
		}
		fmt.Fprintf(out, "latchd: the old identity is kept as %s\n", old)
	}
	id, err := mqtt.CreateIdentity(dir)
	if err != nil {
		return err
	}
	if err := st.PutState(identityKey, []byte(id.Public().Fingerprint())); err != nil {
		return err
	}
	fmt.Fprintf(out, "latchd: new identity; have it approved at the site\n%s\n", id.Public())
	return nil
}

// showIdentity prints the identity in dir (latchd -show-identity).
func showIdentity(dir string, out io.Writer) error {
	id, err := mqtt.LoadIdentity(dir)
	if errors.Is(err, mqtt.ErrNoIdentity) {
		return fmt.Errorf("data_dir %s: no identity yet; latchd makes one at its first start", dir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, id.Public())
	return nil
}

// nextIdentity loads the identity the door rotates to, or nil.
func nextIdentity(dir string) (*mqtt.Identity, error) {
	next, err := mqtt.LoadNextIdentity(dir)
	if errors.Is(err, mqtt.ErrNoIdentity) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errIdentity, err)
	}
	return next, nil
}

// promoter returns what makes the next identity the door's once the site
// sealed to it: the store records its fingerprint first, then the file
// replaces the old one (a start between the two finishes the rename; see
// doorIdentity).
func promoter(dir string, st *store.Store, log *slog.Logger) func(*mqtt.Identity) error {
	return func(next *mqtt.Identity) error {
		fp := next.Public().Fingerprint()
		if err := st.PutState(identityKey, []byte(fp)); err != nil {
			return err
		}
		if err := mqtt.PromoteIdentity(dir); err != nil {
			return err
		}
		log.Warn("door identity rotated: the site approved the new identity", "fingerprint", fp)
		return nil
	}
}

// rotateIdentity makes the identity the door rotates to (latchd
// -rotate-identity). The running door announces it at its next start,
// vouched for by its current identity; it takes it when the site, on an
// admin's approval, seals to it.
func rotateIdentity(dir string, out io.Writer) error {
	cur, err := mqtt.LoadIdentity(dir)
	if errors.Is(err, mqtt.ErrNoIdentity) {
		return fmt.Errorf("data_dir %s: no identity to rotate from; latchd makes one at its first start", dir)
	}
	if err != nil {
		return err
	}
	next, err := mqtt.CreateNextIdentity(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "latchd: the door will rotate from %s to this identity; restart latchd to announce it, and have it approved at the site\n%s\n",
		cur.Public().Fingerprint(), next.Public())
	return nil
}
