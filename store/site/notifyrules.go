package site

import (
	"fmt"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Notification rules kept in the database, beside those of latch serve's
// configuration file: made, disabled and removed through the API. The
// package keeps them and checks their name and channel are there; what a
// rule's fields mean, and whether its channel exists, latch serve judges.

// bucketNotifyRules holds the stored notification rules, made by the
// first.
var bucketNotifyRules = []byte("notify_rules")

// NotifyRule is a stored notification rule: which events, alarms and
// site actions, at which doors, days and hours, go to which channel.
type NotifyRule struct {
	Name     string    `json:"name"`
	Events   []string  `json:"events,omitempty"`
	Alarms   []string  `json:"alarms,omitempty"`
	Actions  []string  `json:"actions,omitempty"`
	Roles    []string  `json:"roles,omitempty"`
	Doors    []string  `json:"doors,omitempty"`
	Days     []string  `json:"days,omitempty"`
	Hours    string    `json:"hours,omitempty"`    // HH:MM-HH:MM
	TZ       string    `json:"tz,omitempty"`       // an IANA zone
	OpenFor  string    `json:"open_for,omitempty"` // a Go duration, e.g. "5m"
	Channel  string    `json:"channel"`            // email:NAME, webhook:NAME or mqtt
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	By       string    `json:"by,omitempty"` // who made it
}

// maxRuleName is the longest name of a notification rule, in bytes.
const maxRuleName = 64

func checkNotifyRule(r *NotifyRule) error {
	if r.Name == "" || len(r.Name) > maxRuleName || !utf8.ValidString(r.Name) {
		return fmt.Errorf("%w: notify rule name %q: want 1 to %d bytes of UTF-8", ErrInvalid, r.Name, maxRuleName)
	}
	if r.Channel == "" {
		return fmt.Errorf("%w: notify rule %q: channel is missing", ErrInvalid, r.Name)
	}
	return nil
}

// PutNotifyRule adds or replaces the rule of r.Name.
func (d *DB) PutNotifyRule(r NotifyRule) error {
	if err := checkNotifyRule(&r); err != nil {
		return fmt.Errorf("site: put notify rule: %w", err)
	}
	rec, err := encodeJSON(&r)
	if err != nil {
		return fmt.Errorf("site: put notify rule %q: %w", r.Name, err)
	}
	err = d.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNotifyRules)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.Name), rec)
	})
	if err != nil {
		return fmt.Errorf("site: put notify rule %q: %w", r.Name, err)
	}
	return nil
}

// DeleteNotifyRule removes the rule name, or returns ErrNotFound.
func (d *DB) DeleteNotifyRule(name string) error {
	err := d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNotifyRules)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("site: delete notify rule %q: %w", name, err)
	}
	return nil
}

// NotifyRule returns the stored rule name, or ErrNotFound.
func (d *DB) NotifyRule(name string) (NotifyRule, error) {
	var r NotifyRule
	err := d.view(func(tx *bolt.Tx) error { return getNotifyRule(tx, name, &r) })
	if err != nil {
		return r, fmt.Errorf("site: notify rule %q: %w", name, err)
	}
	return r, nil
}

// NotifyRule returns the stored rule name, or ErrNotFound, inside a
// change's transaction.
func (r *Reader) NotifyRule(name string) (NotifyRule, error) {
	var x NotifyRule
	return x, getNotifyRule(r.tx, name, &x)
}

func getNotifyRule(tx *bolt.Tx, name string, r *NotifyRule) error {
	b := tx.Bucket(bucketNotifyRules)
	if b == nil {
		return ErrNotFound
	}
	rec := b.Get([]byte(name))
	if rec == nil {
		return ErrNotFound
	}
	return decodeJSON(rec, r)
}

// NotifyRules returns every stored rule, disabled ones too, by name.
func (d *DB) NotifyRules() ([]NotifyRule, error) {
	var out []NotifyRule
	err := d.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketNotifyRules) == nil {
			return nil
		}
		return forEachJSON(tx, bucketNotifyRules, func(r NotifyRule) { out = append(out, r) })
	})
	if err != nil {
		return nil, fmt.Errorf("site: notify rules: %w", err)
	}
	return out, nil
}
