package store

import (
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the layout this build writes; see the package comment.
const schemaVersion = 3

// Bucket names.
var (
	bucketMeta           = []byte("meta")
	bucketCards          = []byte("cards")
	bucketHolders        = []byte("holders")
	bucketHolderCards    = []byte("holder_cards")
	bucketRevokedCards   = []byte("revoked_cards")
	bucketRevokedHolders = []byte("revoked_holders")
	bucketLockout        = []byte("lockout")
	bucketDoorFails      = []byte("door_fails")
	bucketAudit          = []byte("audit")
	bucketAuditMeta      = []byte("audit_meta")
	bucketSync           = []byte("sync")
	bucketCommands       = []byte("commands")
	bucketLockdown       = []byte("lockdown")
	bucketState          = []byte("state")
	bucketStage          = []byte("stage")      // present only while a snapshot is being received
	bucketRuns           = []byte("runs")       // in stage: sorted holder index keys, one run per chunk
	bucketMigrate        = []byte("migrate_v3") // present only while schema 2 is migrated to 3
	bucketNames          = []byte("names")      // door and group names cards list, numbered
)

// Keys in the meta, audit_meta and sync buckets.
var (
	keySchema     = []byte("schema")
	keyHead       = []byte("head")
	keyCheckpoint = []byte("checkpoint")
	keyAcked      = []byte("acked")
	keyApplied    = []byte("applied_seq")
	keyStateSum   = []byte("state_sum")
	keyLastSigned = []byte("last_signed")
	keyLastIssued = []byte("last_issued")
	keyCmdSeqMax  = []byte("cmd_seq_max")
	keyProgress   = []byte("progress") // in stage/meta
)

// allBuckets are the top-level buckets of the current schema.
func allBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketCards, bucketHolders, bucketHolderCards,
		bucketRevokedCards, bucketRevokedHolders, bucketLockout, bucketDoorFails,
		bucketAudit, bucketAuditMeta, bucketSync, bucketCommands, bucketLockdown, bucketState, bucketNames}
}

// allowlistBuckets are the buckets a snapshot replaces. The stage holds
// one of each, under the same name, plus its own meta bucket.
func allowlistBuckets() [][]byte {
	return [][]byte{bucketCards, bucketHolders, bucketHolderCards, bucketRevokedCards, bucketRevokedHolders}
}

// holderCardKey is the holder_cards index key: uint8 length of the holder
// id, the id, then the card uid.
func holderCardKey(holderID string, uid []byte) []byte {
	k := make([]byte, 0, 1+len(holderID)+len(uid))
	k = append(k, uint8(len(holderID)))
	k = append(k, holderID...)
	return append(k, uid...)
}

func holderCardPrefix(holderID string) []byte {
	k := make([]byte, 0, 1+len(holderID))
	k = append(k, uint8(len(holderID)))
	return append(k, holderID...)
}

// initSchema creates the buckets and first records of an empty database.
func initSchema(tx *bolt.Tx) error {
	for _, name := range allBuckets() {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	var zero sum256
	puts := []struct {
		bucket, key, val []byte
	}{
		{bucketMeta, keySchema, encodeU64(schemaVersion)},
		{bucketAuditMeta, keyHead, encodePoint(chainPoint{})},
		{bucketAuditMeta, keyAcked, encodeU64(0)},
		{bucketSync, keyApplied, encodeU64(0)},
		{bucketSync, keyStateSum, encodeBytes(zero.bytes())},
	}
	for _, p := range puts {
		if err := tx.Bucket(p.bucket).Put(p.key, p.val); err != nil {
			return fmt.Errorf("init %s/%s: %w", p.bucket, p.key, err)
		}
	}
	return nil
}

// readSchema returns the schema version of the file, 0 for a file with no
// buckets at all (a new file).
func readSchema(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if empty {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: buckets but no meta bucket: not a latch database", ErrCorrupt)
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 0, fmt.Errorf("%w: meta bucket has no schema version", ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: schema version 0", ErrCorrupt)
	}
	return n, nil
}

// migrateV1toV2: schema 1 had no holder_cards bucket and no sync/state_sum.
// Build the index from the cards and compute the sum over every allowlist
// entry, in one transaction (a schema 1 file is small: schema 2 came
// before the first release that could hold many cards).
func migrateV1toV2(tx *bolt.Tx, log *slog.Logger) error {
	idx, err := tx.CreateBucket(bucketHolderCards)
	if err != nil {
		return fmt.Errorf("create %s: %w", bucketHolderCards, err)
	}
	for _, name := range [][]byte{bucketCards, bucketHolders, bucketRevokedCards, bucketRevokedHolders, bucketSync} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: schema 1 file has no %s bucket", ErrCorrupt, name)
		}
	}
	var sum sum256
	n := 0
	for _, m := range legacyAllowlist() {
		err := tx.Bucket(m.bucket).ForEach(func(k, v []byte) error {
			body, holderID, err := m.decode(k, v)
			if err != nil {
				return err
			}
			sum.add(entryHash(m.tag, body))
			if m.tag == tagCard {
				n++
				return idx.Put(holderCardKey(holderID, k), nil)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketSync).Put(keyStateSum, encodeBytes(sum.bytes())); err != nil {
		return err
	}
	if err := tx.Bucket(bucketMeta).Put(keySchema, encodeU64(2)); err != nil {
		return err
	}
	log.Info("store: migrated schema 1 to 2", "cards_indexed", n)
	return nil
}

// legacyBucket is an allowlist bucket of schemas 1 and 2: its entry tag
// and a decoder of its version 1 records, which returns the canonical body
// and, for a card, its holder id.
type legacyBucket struct {
	bucket []byte
	tag    byte
	decode func(k, v []byte) (body []byte, holderID string, err error)
}

// legacyAllowlist lists the allowlist buckets in the order the schema 3
// migration converts them: holders first, so that a card can leave out a
// name its holder record has.
func legacyAllowlist() []legacyBucket {
	return []legacyBucket{
		{bucketHolders, tagHolder, func(k, v []byte) ([]byte, string, error) {
			_, body, err := decodeLegacyHolder(k, v)
			return body, "", err
		}},
		{bucketCards, tagCard, func(k, v []byte) ([]byte, string, error) {
			c, body, err := decodeLegacyCard(k, v)
			return body, c.HolderID, err
		}},
		{bucketRevokedCards, tagRevokedCard, func(k, v []byte) ([]byte, string, error) {
			_, body, err := decodeLegacyRevocation(k, v, false)
			return body, "", err
		}},
		{bucketRevokedHolders, tagRevokedHolder, func(k, v []byte) ([]byte, string, error) {
			_, body, err := decodeLegacyRevocation(k, v, true)
			return body, "", err
		}},
	}
}
