package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/latchdoor/latch/mqtt"
)

// The site key file is PEM: one "PRIVATE KEY" block (PKCS #8, Ed25519,
// as latchd -sim writes its demo key) whose headers name the site and the
// key id doors trust the key under. store/site keeps no site id of its
// own, so the key file is where it lives.
const (
	keyHeaderSite = "Latch-Site"
	keyHeaderKid  = "Latch-Key-Id"
)

// siteKey is the site's signing key with the names it is used under.
type siteKey struct {
	Site string             // the site id, as in the doors' topics
	Kid  string             // the key id, as in the doors' [mqtt.trusted_keys]
	Key  ed25519.PrivateKey // the signing key
}

// publicBase64 is the public key in the form a door's trusted_keys holds.
func (k *siteKey) publicBase64() string {
	return base64.StdEncoding.EncodeToString(k.Key.Public().(ed25519.PublicKey))
}

// createSiteKey makes a new key for site under kid and writes it to path,
// mode 0600. An existing file is never replaced.
func createSiteKey(path, site, kid string) (*siteKey, error) {
	if err := mqtt.CheckID("site id", site); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("site key: generate: %w", err)
	}
	// The id and the key must be what a door's config accepts.
	if _, err := mqtt.ParsePublicKeys(map[string]string{kid: base64.StdEncoding.EncodeToString(pub)}); err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--kid: %v", err)}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("site key: encode: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY",
		Headers: map[string]string{keyHeaderSite: site, keyHeaderKid: kid}, Bytes: der})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("site key %s exists; latch init never replaces a key", path)
	}
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	_, err = f.Write(out)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("site key %s: %w", path, err)
	}
	return &siteKey{Site: site, Kid: kid, Key: key}, nil
}

// loadSiteKey reads a key file createSiteKey wrote. It refuses a file
// that others may read.
func loadSiteKey(path string) (*siteKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("site key %s: mode %v lets others read it; want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("site key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("site key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("site key %s: %T, want an Ed25519 key", path, k)
	}
	sk := &siteKey{Site: blk.Headers[keyHeaderSite], Kid: blk.Headers[keyHeaderKid], Key: ek}
	if err := mqtt.CheckID("site id", sk.Site); err != nil {
		return nil, fmt.Errorf("site key %s: header %s: %w", path, keyHeaderSite, err)
	}
	if _, err := mqtt.ParsePublicKeys(map[string]string{sk.Kid: sk.publicBase64()}); err != nil {
		return nil, fmt.Errorf("site key %s: %w", path, err)
	}
	return sk, nil
}
