package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// siteKeyFile is where the simulator keeps the demo site's signing key. A real
// door never holds a site private key: it trusts only public keys named in its
// config.
const siteKeyFile = "demo-site.key"

// loadOrCreateSiteKey returns the demo site key in dir, creating it (mode
// 0600) when the file does not exist. created says whether it was made now.
func loadOrCreateSiteKey(dir string) (key ed25519.PrivateKey, created bool, err error) {
	path := filepath.Join(dir, siteKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("site key: generate: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("site key: encode: %w", err)
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return nil, false, fmt.Errorf("site key: %w", err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("site key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("site key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("site key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("site key %s: %T, want an Ed25519 key", path, k)
	}
	return ek, false, nil
}
