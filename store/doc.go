// Package store is the door's memory: the allowlist of cards and holders, PIN
// hashes and lockout state, revocations, allowlist sync state, and the
// hash-chained audit log with its outbox of events still owed to the site.
// Everything lives in one bbolt file.
//
// # Guarantees
//
// A write that returned nil is on disk (bbolt syncs every commit; NoSync is
// never used). Audit appends from many goroutines are committed together
// (group commit), one fsync per batch.
//
// A damaged file is never a grant. Open takes the same time whatever the
// file's size: it refuses with ErrCorrupt a zero-length or truncated file,
// bad meta pages, freelist or root page, a missing bucket, a schema it
// cannot read, and an audit head or allowlist sync state that does not
// decode or does not match the end of the audit chain. The rest of the
// file is checked by a background check that Open starts (see CheckDone),
// a bounded chunk at a time, each in a short read transaction of its own:
// first the structure of every page (as bbolt reads them: ids, types,
// elements inside their page, depth, key order, no page reached twice or
// also listed as free), then every record's checksum and encoding, the
// audit chain, the holder index and the allowlist state sum, and a staged
// snapshot (which is dropped if damaged). Damage it finds becomes the
// store's Fault, after which Decide denies every request. Until the page
// structure has passed, each lookup Decide makes first reads the pages on
// its way with plain reads and refuses a bad one, since bbolt, which reads
// them through its memory map without checks, would loop on a cyclic page
// until the stack overflows or read outside the file; the allowlist's other
// reads and writes (a delta from the site, a snapshot, the outbox) wait for
// the page structure to pass, while audit appends and the door state, whose
// pages Open checked, go on. Every stored record
// carries a checksum, so a damaged record is an error whenever it is read.
// Check runs the whole check at once, bbolt's own included (which alone
// finds pages neither in use nor free); Options.CheckAtOpen runs it in
// Open.
//
// On a door every audit event and the door state that goes with it (the
// lockdown flag, the record of an unlock in progress) go through the
// Journal, one writer off the door's loop: a grant's record is durable
// before the relay moves, events wait in memory while the disk cannot take
// them, and what a crash or stop leaves unwritten is counted in the file
// journal.lost beside the database (magic "LATCHJL1", uint64 count, the
// first and last event times as int64 nanoseconds, CRC-32C; all zeros when
// nothing is owed) and recorded as events_lost at the next start. The file
// journal.reserve holds space for the journal on a disk that fills.
//
// # Schema (version 3)
//
// Every value except an audit entry is sealed: one version byte, the body,
// and a CRC-32C (Castagnoli) of version and body, big-endian; for cards,
// holders and revocations the CRC covers the record's key first, so that a
// record under a damaged key fails its check too. Small records use
// fixed-width big-endian integers, strings as uint16 length + UTF-8 bytes,
// and times as int64 Unix seconds + uint32 nanoseconds; cards, holders and
// revocations use the compact layouts below (varints as in
// encoding/binary). Versions are per record type and listed below.
//
//	bucket           key                               value
//	meta             "schema"                          v1 uint64: schema version (3)
//	cards            UID (4, 7 or 10 bytes), or a      v2 card (see below)
//	                 keypad code's key (8 bytes)
//	holders          holder id                         v2 uint8 flags (1: duress PIN), name, duress PIN hash (binary, as a card's)
//	holder_cards     uint8 len(id), id, UID            empty: index of cards by holder
//	revoked_cards    UID                               v2 reason (uvarint length, bytes)
//	revoked_holders  holder id                         v2 reason
//	names            'n' + door id or group name       v1 uint64: its number (1, 2, ...; "*" is 0 and not stored)
//	                 'i' + uint32 number               v1 the name
//	lockout          UID                               v1 uint32 consecutive bad PINs, time locked until
//	door_fails       door id                           v1 uint16 n, n times of recent bad PINs
//	audit            uint64 big-endian sequence        audit entry (below)
//	audit_meta       "head"                            v1 uint64 last sequence written, 32-byte hash of it
//	                 "checkpoint"                      v1 uint64 last pruned sequence, 32-byte hash of it
//	                 "acked"                           v1 uint64 outbox cursor: highest sequence the site acknowledged
//	sync             "applied_seq"                     v1 uint64 last applied allowlist sequence
//	                 "state_sum"                       v1 32 bytes: multiset sum of allowlist entry hashes
//	                 "last_signed", "last_issued"      v1 time: arrival and issued_at of the last signed message
//	                 "cmd_seq_max"                     v1 uint64 highest command sequence recorded
//	commands         command id                        v1 uint64 seq, time it expires
//	lockdown         door id                           v1 uint8 1 (absent: no lockdown)
//	state            key chosen by the door controller v1 raw bytes
//	stage            (nested buckets, below)           a snapshot being received in chunks
//	migrate_v3       (nested buckets)                  only while a schema 2 file is migrated
//
// A stored card (version 2) is: a flags byte (1 card-only, 2 extended
// unlock, 4 lockdown override; 8 a PIN hash follows, 16 a valid-from,
// 32 a valid-until, 64 a schedule; 128 the holder name is left out because
// it is the holder record's); the holder id and, unless left out, the
// holder name, each as uvarint length and bytes; the PIN hash in binary
// (a form byte: 0 for m=32768, t=2, p=1, then the 16-byte salt and 32-byte
// key; 1 for uvarint m, t and p, then salt and key each with a uvarint
// length); the doors as a uvarint count of uvarint numbers in the names
// bucket; the times as zigzag varint Unix seconds and uvarint
// nanoseconds; and the schedule as, per weekday from Sunday, a uvarint
// count of windows (uvarint from and to), then a uvarint count of
// holidays (uvarint length and bytes each). A card leaves its name out
// only while its holder record has the same name; renaming the holder
// first writes the old name into those cards. The state hash does not
// cover these records but the canonical encodings they decode to (below).
//
// The stage bucket exists only between BeginSnapshot and the commit or drop
// of a snapshot. It holds its own cards, holders, holder_cards,
// revoked_cards and revoked_holders buckets, keyed and valued as the live
// ones, with the entries of the chunks staged so far; CommitSnapshot moves
// them over the live ones. Its holder_cards stays empty while chunks are
// staged: each chunk puts the holder_cards keys of its cards in the runs
// bucket, under the uint64 big-endian chunk number, as v2 the keys in
// ascending order, each as a uvarint count of the leading bytes it shares
// with the key before it and the rest as uvarint length and bytes (v1,
// refused now, had each key whole). Once every chunk is
// staged, CommitSnapshot merges the runs into holder_cards in key order,
// a batch of keys per transaction, so that holder_cards always holds
// exactly the keys up to its last one. Its meta bucket holds one key,
// "progress": v2 uint64 snapshot seq, the 32-byte state hash the whole
// snapshot must give, uint64 chunk count, uint64 next chunk to stage,
// uint64 entries staged, the 32-byte multiset sum of their hashes, uint64
// keys in the runs (one per staged card), and uint64 of them merged into
// holder_cards. Version 1 of "progress" had the last two fields missing and
// holder_cards filled chunk by chunk, with no runs; each version is refused
// by a build that knows only the other, which drops the stage as damaged
// and receives the snapshot again. The bucket came without a schema
// change: a build that does not know it leaves it alone.
//
// The canonical encoding of a card, which the state hash covers (and which
// schemas 1 and 2 stored as the card record, version 1): uint8 length and
// UID bytes; holder id, holder name, PIN hash
// (PHC string, may be empty); uint16 count of door ids or group names and
// the strings; valid-from and valid-until times (zero: no bound); for each
// weekday from Sunday, uint8 count of windows and per window uint16 from
// and to (minutes since local midnight, from < to <= 1440); uint16 count of
// holidays and the YYYY-MM-DD strings; one flags byte (1 card-only,
// 2 extended unlock, 4 lockdown override).
//
// An audit entry is stored unsealed: version byte 1; uint64 sequence; time;
// the strings clock quality, boot id, door, type, reason, UID, holder id,
// holder name, detail; the 32-byte hash of the previous entry (zeros before
// the first); then its own hash, SHA-256 of everything before it. That
// makes the chain: changing, removing, inserting or reordering an entry
// breaks a hash or a link (see Verify, HashEvent, VerifyEvents).
//
// The allowlist state hash is defined at HashSnapshot.
//
// # Schema history
//
// Version 1 had no holder_cards bucket and no sync/state_sum; Open migrates
// it to version 2 by building both, in one transaction, after writing a
// copy of the file to <path>.schema-1.bak.
//
// Version 2 stored cards, holders and revocations as their canonical
// encodings, sealed as version 1 records (a card with its UID, PIN hash as
// PHC text and door names; a holder and a revocation with their id), and
// had no names bucket. Open migrates it to version 3 after writing a copy
// to <path>.schema-2.bak, a batch of records per transaction: the new
// records go to buckets under migrate_v3 (with its progress: the bucket
// being converted, the last key converted, the entries converted and the
// multiset sum of their hashes), and a last transaction checks the count
// and sum against the old buckets, puts the new ones in their place, drops
// a snapshot stage and sets the schema to 3. Until that transaction the
// file is a schema 2 file; a migration cut short carries on at the next
// Open.
package store
