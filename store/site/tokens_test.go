package site

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// A token is found by its secret's hash, its secret cannot change, and
// what a revocation or an expiry sets survives a reopen.
func TestTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := d.ListTokens(); err != nil || len(ts) != 0 {
		t.Fatalf("a new file lists %v, %v", ts, err)
	}
	if _, err := d.TokenByHash(hashOf("nothing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TokenByHash before any token: %v", err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk := Token{Name: "okta", Role: RoleAdmin, Hash: hashOf("s1"), Created: now, Expires: now.Add(90 * 24 * time.Hour)}
	if err := d.PutToken(tk); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Token{
		{Name: "okta2", Role: RoleAdmin, Hash: hashOf("s1")},           // the same secret
		{Name: "okta", Role: RoleAdmin, Hash: hashOf("s2")},            // a new secret for a token
		{Name: "x y", Role: RoleAdmin, Hash: hashOf("s3")},             // a bad name
		{Name: "ci", Role: "root", Hash: hashOf("s3")},                 // a bad role
		{Name: "ci", Role: RoleAuditor, Hash: hashOf("s3")[:63] + "G"}, // not hex
	} {
		if err := d.PutToken(bad); err == nil {
			t.Errorf("PutToken(%+v) took it", bad)
		}
	}
	got, err := d.TokenByHash(hashOf("s1"))
	if err != nil || got.Name != "okta" || got.Role != RoleAdmin {
		t.Fatalf("TokenByHash: %+v, %v", got, err)
	}
	if !got.Valid(now) || got.Valid(now.Add(90*24*time.Hour)) {
		t.Errorf("validity at and after the expiry wrong: %+v", got)
	}
	got.Revoked, got.Reason = now.Add(time.Hour), "left"
	if err := d.PutToken(got); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err = d.TokenByHash(hashOf("s1"))
	if err != nil || got.Valid(now) || got.Reason != "left" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	if ts, _ := d.ListTokens(); len(ts) != 1 {
		t.Fatalf("ListTokens: %+v", ts)
	}
}
