package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/latchdoor/latch/store/site"
)

// cmdInit creates a site: its database and its signing key. It refuses to
// touch either if it exists, and prints the public key for the doors'
// configs.
func cmdInit(_ context.Context, e *env, args []string) error {
	fs := newFlags("init")
	paths := sitePathFlags(fs, "the site database file to create", "the site signing key file to create (mode 0600)")
	dbPath, keyPath := paths.db, paths.key
	siteID := fs.String("site", "", "the site id, as in the doors' config (site = ...)")
	kid := fs.String("kid", "", "the key id doors trust the key under (default SITE-1)")
	if _, err := parseFlags(e, fs, args, 0); err != nil {
		return err
	}
	if err := paths.check(); err != nil {
		return err
	}
	if *siteID == "" {
		return usagef("--site ID is required")
	}
	if *kid == "" {
		*kid = *siteID + "-1"
	}
	if err := mustNotExist(*dbPath, "site database"); err != nil {
		return err
	}
	key, err := createSiteKey(*keyPath, *siteID, *kid)
	if err != nil {
		return err
	}
	db, err := site.Open(*dbPath, nil)
	if err != nil {
		// Leave no half-made site behind.
		_ = os.Remove(*keyPath)
		return fmt.Errorf("site database: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("site database: %w", err)
	}
	fmt.Fprintf(e.stdout, "latch: site %s: database %s, key %s\n", key.Site, *dbPath, *keyPath)
	fmt.Fprintf(e.stdout, "# for each door's config (latchd.toml), with site = %q:\n", key.Site)
	fmt.Fprintln(e.stdout, "[mqtt.trusted_keys]")
	fmt.Fprintf(e.stdout, "%s = %q\n", key.Kid, key.publicBase64())
	return nil
}

// sitePaths are the flags naming the site's database and signing key,
// which init creates and serve opens.
type sitePaths struct {
	db, key *string
}

// sitePathFlags defines --db and --key on fs, with their help texts.
func sitePathFlags(fs *flag.FlagSet, dbHelp, keyHelp string) sitePaths {
	return sitePaths{db: fs.String("db", "", dbHelp), key: fs.String("key", "", keyHelp)}
}

// check refuses a path that was not given.
func (p sitePaths) check() error {
	switch {
	case *p.db == "":
		return usagef("--db PATH is required")
	case *p.key == "":
		return usagef("--key PATH is required")
	}
	return nil
}

// mustNotExist refuses a path that is already there.
func mustNotExist(path, what string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("%s %s exists; latch init never replaces it", what, path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}
