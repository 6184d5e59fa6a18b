package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/latchdoor/latch/mqtt/devbroker"
	"github.com/latchdoor/latch/store/site"
)

// A development site: `latch serve --dev DIR` keeps a site in DIR (made
// on first use: site "demo", key "demo-1"), runs an embedded broker on
// loopback that lets any local client in, and writes DIR/join.json, with
// which `latchd -sim -join DIR/join.json -door D` runs a simulated door of
// the site. It is for trying latch on one machine, never for a building.
const (
	devSite = "demo"
	devKid  = "demo-1"
)

// joinFile is what a simulated door needs to join a site: the broker, the
// site id, the keys it trusts, and its broker login.
type joinFile struct {
	Broker      string            `json:"broker"`
	Site        string            `json:"site"`
	TrustedKeys map[string]string `json:"trusted_keys"`
	Username    string            `json:"username"`
	Password    string            `json:"password"`
}

// devSetup makes DIR's site if it is not there yet and returns the
// database and key paths.
func devSetup(dir string) (db, key string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("--dev %s: %w", dir, err)
	}
	db, key = filepath.Join(dir, "site.db"), filepath.Join(dir, "site.key")
	_, kerr := os.Stat(key)
	_, derr := os.Stat(db)
	switch {
	case kerr == nil && derr == nil:
		return db, key, nil
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(derr, fs.ErrNotExist):
	default:
		return "", "", fmt.Errorf("--dev %s: it has one of site.db and site.key but not both", dir)
	}
	if _, err := createSiteKey(key, devSite, devKid); err != nil {
		return "", "", err
	}
	d, err := site.Open(db, nil)
	if err != nil {
		_ = os.Remove(key)
		return "", "", fmt.Errorf("--dev: site database: %w", err)
	}
	if err := d.Close(); err != nil {
		return "", "", fmt.Errorf("--dev: site database: %w", err)
	}
	return db, key, nil
}

// startDev starts the embedded broker and writes DIR/join.json for it.
func startDev(dir, addr string, key *siteKey, log *slog.Logger) (*devbroker.Broker, string, error) {
	b, err := devbroker.Start(addr, log)
	if err != nil {
		return nil, "", fmt.Errorf("--dev: %w", err)
	}
	j := joinFile{Broker: b.URL(), Site: key.Site, TrustedKeys: map[string]string{key.Kid: key.publicBase64()}}
	out, err := json.MarshalIndent(j, "", "  ")
	if err == nil {
		path := filepath.Join(dir, "join.json")
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, append(out, '\n'), 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		b.Close()
		return nil, "", fmt.Errorf("--dev: join file: %w", err)
	}
	return b, filepath.Join(dir, "join.json"), nil
}
