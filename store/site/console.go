package site

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The console's records: the accounts that log in to the web console, and
// the site's own log of what was done through it (and through the API),
// which the console shows beside the doors' events.

// Role is what a console account may do.
type Role string

// The roles, from most to least able.
const (
	RoleAdmin    Role = "admin"    // everything, accounts included
	RoleOperator Role = "operator" // doors (unlock, lockdown), enrolment, PINs, revocation
	RoleAuditor  Role = "auditor"  // read-only: people, doors and the audit log; export and verify
)

// ParseRole returns the role named s, or an error naming the roles.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleAuditor:
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q: want admin, operator or auditor", ErrInvalid, s)
}

// User is a console account. Its password is kept only as an argon2id hash
// (store.HashSecret).
type User struct {
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Hash     string    `json:"hash"`
	Created  time.Time `json:"created"`
	Changed  time.Time `json:"changed"` // the password or role last changed: sessions from before are void
	Disabled bool      `json:"disabled,omitempty"`
}

// CheckUserName checks an account name: 1 to 64 of A-Z a-z 0-9 . _ @ -,
// so that it reads the same in a page, a log line and a URL.
func CheckUserName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the account name is missing", ErrInvalid)
	}
	if len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("._@-", r)
	}) >= 0 {
		return fmt.Errorf("%w: account name %q: want 1 to 64 of A-Z a-z 0-9 . _ @ -", ErrInvalid, name)
	}
	return nil
}

func checkUser(u *User) error {
	if err := CheckUserName(u.Name); err != nil {
		return err
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		return err
	}
	if u.Hash == "" {
		return fmt.Errorf("%w: user %q has no password hash", ErrInvalid, u.Name)
	}
	return checkPINHash("password", u.Hash)
}

// PutUser adds or replaces a console account.
func (d *DB) PutUser(u User) error {
	if err := checkUser(&u); err != nil {
		return fmt.Errorf("site: put user: %w", err)
	}
	rec, err := encodeJSON(&u)
	if err != nil {
		return fmt.Errorf("site: put user %q: %w", u.Name, err)
	}
	return d.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).Put([]byte(u.Name), rec)
	})
}

// User returns a console account, or ErrNotFound.
func (d *DB) User(name string) (User, error) {
	var u User
	if err := d.getJSON(bucketUsers, []byte(name), &u); err != nil {
		return u, fmt.Errorf("site: user %q: %w", name, err)
	}
	return u, nil
}

// ListUsers returns every console account, by name.
func (d *DB) ListUsers() ([]User, error) {
	var out []User
	err := d.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx, bucketUsers, func(u User) { out = append(out, u) })
	})
	if err != nil {
		return nil, fmt.Errorf("site: list users: %w", err)
	}
	return out, nil
}

// DeleteUser removes a console account, or returns ErrNotFound.
func (d *DB) DeleteUser(name string) error {
	return d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("site: delete user %q: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// Action is one entry of the site's own log: who did what, from where,
// through the console or the API, and how it ended.
type Action struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	User   string    `json:"user"`             // the account, or the API's operator
	Role   Role      `json:"role,omitempty"`   // the account's role then
	From   string    `json:"from"`             // the client's address, or "socket"
	What   string    `json:"what"`             // e.g. "login", "revoke", "unlock"
	Target string    `json:"target,omitempty"` // what it was done to: a card, a holder, a door
	Detail string    `json:"detail,omitempty"` // the reason given, the duration…
	Result string    `json:"result"`           // "ok", or why it was refused or failed
}

// maxActionText bounds each string of an Action.
const maxActionText = 1024

// AppendAction stores a at the end of the site's log and returns its seq.
// Strings longer than maxActionText bytes are cut, so that a request
// cannot grow the log without bound.
func (d *DB) AppendAction(a Action) (uint64, error) {
	for _, s := range []*string{&a.User, &a.From, &a.What, &a.Target, &a.Detail, &a.Result} {
		if len(*s) > maxActionText {
			*s = (*s)[:maxActionText] + "…"
		}
	}
	if a.What == "" {
		return 0, fmt.Errorf("site: append action: %w: what is missing", ErrInvalid)
	}
	err := d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketActions)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		a.Seq = seq
		rec, err := encodeJSON(&a)
		if err != nil {
			return err
		}
		return b.Put(be64(seq), rec)
	})
	if err != nil {
		return 0, fmt.Errorf("site: append action: %w", err)
	}
	return a.Seq, nil
}

// Actions returns at most n entries of the site's log before seq before
// (0: from the newest), newest first, each one select keeps (nil: all).
// It reads at most scan entries (0: no bound) and returns the seq to go on
// before, or 0 at the start of the log.
func (d *DB) Actions(before uint64, n, scan int, keep func(*Action) bool) ([]Action, uint64, error) {
	var out []Action
	var next uint64
	err := d.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketActions).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			c.Seek(be64(before))
			k, v = c.Prev()
		}
		for read := 0; k != nil; k, v = c.Prev() {
			if len(out) == n || (scan > 0 && read == scan) {
				next = binary.BigEndian.Uint64(k) + 1
				return nil
			}
			read++
			if len(k) != 8 {
				return fmt.Errorf("%w: action key %X", ErrCorrupt, k)
			}
			var a Action
			if err := decodeJSON(v, &a); err != nil {
				return fmt.Errorf("action %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if keep == nil || keep(&a) {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("site: actions: %w", err)
	}
	return out, next, nil
}
