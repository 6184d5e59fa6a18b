// Package sitetest runs the production site (package mqtt/site) for tests
// and simulations: it opens the site database in a file of its own and
// records the doors given as approved before the site starts.
package sitetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/site"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Options configure a Site: the site's options (without DB) and what to
// record in its database first.
type Options struct {
	site.Options
	// DBPath is the site database's file, created when missing.
	DBPath string
	// Doors are door identities to record as approved, by door id. Other
	// doors are approved with Approve once their status has announced the
	// identity.
	Doors map[string]mqtt.PublicIdentity
	// DoorGroups are the groups each door belongs to (door id → group
	// names): a card whose Doors list names one of them is in the door's
	// view.
	DoorGroups map[string][]string
}

// Site is a production site with its own database.
type Site struct {
	*site.Site
	db *sitestore.DB
}

// New opens the database at o.DBPath, records o.Doors and o.DoorGroups in
// it, and returns the site, not connected yet.
func New(o Options) (*Site, error) {
	db, err := sitestore.Open(o.DBPath, nil)
	if err != nil {
		return nil, fmt.Errorf("sitetest: %w", err)
	}
	for _, d := range slices.Sorted(maps.Keys(o.Doors)) {
		id := o.Doors[d]
		if err := site.Provision(db, d, &id, o.DoorGroups[d]); err != nil {
			return nil, errors.Join(fmt.Errorf("sitetest: %w", err), db.Close())
		}
	}
	for _, d := range slices.Sorted(maps.Keys(o.DoorGroups)) {
		if _, ok := o.Doors[d]; !ok {
			if err := site.Provision(db, d, nil, o.DoorGroups[d]); err != nil {
				return nil, errors.Join(fmt.Errorf("sitetest: %w", err), db.Close())
			}
		}
	}
	so := o.Options
	so.DB = db
	s, err := site.New(so)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sitetest: %w", err), db.Close())
	}
	return &Site{Site: s, db: db}, nil
}

// DB returns the site's database.
func (s *Site) DB() *sitestore.DB { return s.db }

// Close closes the database. Call it after Run has returned.
func (s *Site) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sitetest: %w", err)
	}
	return nil
}
