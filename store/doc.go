// Package store is the door's memory: the allowlist of cards and holders, PIN
// hashes and lockout state, revocations, allowlist sync state, and the
// hash-chained audit log with its outbox of events still owed to the site.
// Everything lives in one bbolt file.
package store
