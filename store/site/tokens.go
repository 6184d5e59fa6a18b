package site

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// API tokens: bearer secrets for scripts and identity providers, each with
// a console role. The secret is never stored: only its SHA-256, which is
// enough for a 256-bit random secret (nothing to guess, so no slow hash is
// needed), indexed so that a request's token is found in one lookup.

// Token buckets, made by the first token's write.
var (
	bucketTokens      = []byte("tokens")
	bucketTokenHashes = []byte("token_hashes")
)

// Token is an API token. Hash is the hex SHA-256 of its secret.
type Token struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	By      string    `json:"by,omitempty"`     // who made it
	Expires time.Time `json:"expires,omitzero"` // refused from then on; zero: never
	Revoked time.Time `json:"revoked,omitzero"` // refused from then on; zero: in force
	Reason  string    `json:"reason,omitempty"` // why it was revoked
}

// Valid reports whether the token may be used at now: not revoked and not
// expired.
func (t *Token) Valid(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

// tokenHashLen is the length of a token's hex SHA-256.
const tokenHashLen = 64

func checkToken(t *Token) error {
	if err := CheckUserName(t.Name); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if _, err := ParseRole(string(t.Role)); err != nil {
		return err
	}
	if len(t.Hash) != tokenHashLen || bytes.ContainsFunc([]byte(t.Hash), func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) {
		return fmt.Errorf("%w: token %q: hash is not a lower-case hex SHA-256", ErrInvalid, t.Name)
	}
	return nil
}

// tokenHashKey is the token_hashes key: the hash (hex) and the name.
func tokenHashKey(hash, name string) []byte { return append([]byte(hash), name...) }

// PutToken adds or replaces a token. A new token's hash must be unused;
// a token's hash never changes.
func (d *DB) PutToken(t Token) error {
	if err := checkToken(&t); err != nil {
		return fmt.Errorf("site: put token: %w", err)
	}
	rec, err := encodeJSON(&t)
	if err != nil {
		return fmt.Errorf("site: put token %q: %w", t.Name, err)
	}
	err = d.update(func(tx *bolt.Tx) error {
		tokens, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		hashes, err := tx.CreateBucketIfNotExists(bucketTokenHashes)
		if err != nil {
			return err
		}
		if old := tokens.Get([]byte(t.Name)); old != nil {
			var o Token
			if err := decodeJSON(old, &o); err != nil {
				return fmt.Errorf("token %q: %w", t.Name, err)
			}
			if o.Hash != t.Hash {
				return fmt.Errorf("%w: token %q: its secret cannot change", ErrConflict, t.Name)
			}
		} else if k, _ := hashes.Cursor().Seek([]byte(t.Hash)); k != nil && bytes.HasPrefix(k, []byte(t.Hash)) {
			return fmt.Errorf("%w: a token with this secret exists", ErrConflict)
		}
		if err := hashes.Put(tokenHashKey(t.Hash, t.Name), nil); err != nil {
			return err
		}
		return tokens.Put([]byte(t.Name), rec)
	})
	if err != nil {
		return fmt.Errorf("site: put token %q: %w", t.Name, err)
	}
	return nil
}

// Token returns the token name, or ErrNotFound.
func (d *DB) Token(name string) (Token, error) {
	var t Token
	err := d.view(func(tx *bolt.Tx) error { return getToken(tx, name, &t) })
	if err != nil {
		return t, fmt.Errorf("site: token %q: %w", name, err)
	}
	return t, nil
}

func getToken(tx *bolt.Tx, name string, t *Token) error {
	b := tx.Bucket(bucketTokens)
	if b == nil {
		return ErrNotFound
	}
	rec := b.Get([]byte(name))
	if rec == nil {
		return ErrNotFound
	}
	return decodeJSON(rec, t)
}

// Token returns the token name, or ErrNotFound, inside a change's
// transaction.
func (r *Reader) Token(name string) (Token, error) {
	var t Token
	return t, getToken(r.tx, name, &t)
}

// TokenByHash returns the token whose secret has the hex SHA-256 hash, or
// ErrNotFound. It does not judge whether the token is valid (Token.Valid).
func (d *DB) TokenByHash(hash string) (Token, error) {
	var t Token
	err := d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokenHashes)
		if b == nil || len(hash) != tokenHashLen {
			return ErrNotFound
		}
		k, _ := b.Cursor().Seek([]byte(hash))
		if k == nil || !bytes.HasPrefix(k, []byte(hash)) {
			return ErrNotFound
		}
		err := getToken(tx, string(k[tokenHashLen:]), &t)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: token_hashes names token %q, which is missing", ErrCorrupt, k[tokenHashLen:])
		}
		if err == nil && t.Hash != hash {
			return fmt.Errorf("%w: token %q does not have the hash its index entry has", ErrCorrupt, t.Name)
		}
		return err
	})
	if err != nil {
		return t, fmt.Errorf("site: token by hash: %w", err)
	}
	return t, nil
}

// ListTokens returns every token, revoked and expired ones too, by name.
func (d *DB) ListTokens() ([]Token, error) {
	var out []Token
	err := d.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTokens) == nil {
			return nil
		}
		return forEachJSON(tx, bucketTokens, func(t Token) { out = append(out, t) })
	})
	if err != nil {
		return nil, fmt.Errorf("site: list tokens: %w", err)
	}
	return out, nil
}
