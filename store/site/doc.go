// Package site is the site's database, the store behind `latch serve`: the
// allowlist authority (holders, cards with their PIN hashes, validity,
// schedules and door lists, revocations) with its global ACL sequence and
// the history of every committed change; the doors (groups, identities,
// last status, the seq of each door's view); the events collected from
// every door, with indexes for audit queries and the site's own findings
// about them (gaps, chain breaks, conflicts, rewrites); and the doors'
// signed audit heads; the console's accounts, the site's log of actions,
// and the change log: who changed access, how, when, from what to what,
// in a hash chain of its own. Everything lives in one bbolt file, mode 0600.
//
// The package keeps data and checks what it is given; it computes no
// door's view, signs nothing and speaks no MQTT (that is mqtt/site).
// Records use the door store's types (store.Card, store.Op, store.Event).
//
// # Guarantees
//
// A call that returned nil is on disk (bbolt syncs every commit; NoSync is
// never used). A committed change (Commit) and a batch of events
// (AddEvents) are each one transaction: all of it or nothing. Every value
// carries a checksum, so a damaged record is an error, never a decision.
// Open refuses an empty or damaged file (ErrCorrupt), a file of a newer
// schema (ErrSchemaTooNew), and a file another process holds
// (ErrLocked, after Options.LockTimeout). Check reads everything.
//
// # Schema (version 2)
//
// Every value except an index entry (empty) is sealed: one version byte,
// the body, and a CRC-32C (Castagnoli) of version and body, big-endian.
// Bodies marked JSON are the encoding/json form of the named Go type.
// Integers in keys are big-endian so that they sort. A door key is uint8
// length and the door id; a time key is uint64 (Unix seconds + 2^63) and
// uint32 nanoseconds, so that times sort, the zero time first.
//
//	bucket           key                                  value
//	meta             "schema"                             v1 uint64: schema version (2)
//	                 "acl_seq"                            v1 uint64: the global ACL seq, the last committed change
//	                 "key_chain"                          v1 JSON []json.RawMessage: the site's signed key rotations, oldest first
//	cards            UID (4, 7 or 10 bytes), or a         v1 JSON store.Card
//	                 keypad code's key (8, store.CodeKey)
//	holders          holder id                            v1 JSON store.Holder
//	holder_cards     uint8 len(id), id, UID               empty: index of cards by holder
//	revoked_cards    UID                                  v1 JSON store.Revocation
//	revoked_holders  holder id                            v1 JSON store.Revocation
//	deltas           uint64 ACL seq                       v1 JSON Change: the ops of that commit, by whom, when
//	doors            door id                              v1 JSON Door
//	group_doors      uint8 len(group), group, door id     empty: index of doors by group
//	events           door key, uint64 seq                 v1 event (below)
//	cursors          door id                              v1 uint64: the door's contiguous seq (Contiguous)
//	idx_time         time key, door key, uint64 seq       empty: events by time
//	idx_door_time    door key, time key, uint64 seq       empty: a door's events by time
//	idx_holder       uint16 len, holder id, time key,     empty: events by holder
//	                 door key, uint64 seq
//	idx_uid          uint16 len, UID (hex), time key,     empty: events by card UID
//	                 door key, uint64 seq
//	idx_arrival      uint64 cursor (NextSequence),        empty: events in the order the site stored them
//	                 door key, uint64 seq
//	findings         uint64 sequence (NextSequence)       v1 JSON Finding: a site event
//	heads            door key, uint64 seq                 v1 JSON SignedHead without Seq
//	users            account name                         v1 JSON User
//	actions          uint64 sequence (NextSequence)       v1 JSON Action
//	changes          uint64 change-log seq, from 1        v1 JSON ChangeEntry: one entry of the change log
//	door_groups      door key, time key                   v1 JSON []string: the door's groups from that time on
//	                                                      (made by the first change of a door's groups)
//	reviews          uint64 review id, from 1                  v1 JSON Review: a recertification campaign
//	                                                      (made by the first review)
//	tokens           token name                           v1 JSON Token: an API token; its secret's SHA-256, never the secret
//	token_hashes     hex SHA-256 of the secret, token name  empty: index of tokens by secret
//	                                                      (both made by the first token)
//	alarms           uint64 alarm id (NextSequence)       v1 JSON Alarm (made by the first alarm)
//	alarm_index      door key, alarm kind                 uint64: the door's latest alarm of that kind, open or closed
//	deliveries       uint64 id (NextSequence)             v1 JSON Delivery: the notifications' delivery log (made by the first)
//	delivery_queue   uint64 delivery id                   v1 bytes: a pending delivery's body, until it is delivered or failed
//	                                                      (made by the first delivery)
//	notify_rules     rule name                            v1 JSON NotifyRule: a notification rule made through the API
//	                                                      (made by the first)
//	meta             "alarm_cursor"                       v1 uint64: the arrival cursor of the last event alarms were raised from
//	visitors         holder id                            v1 JSON Visitor: a visitor's host, window, uses
//	                 "\x00cursor"                         v1 uint64: the arrival cursor TallyVisits counted to
//	scim_groups      group name                           v1 JSON SCIMGroup: a group an identity provider made
//	scim_members     uint8 len(group), group, holder id   v1 JSON SCIMMember: a membership, with the cards it added the group to
//	scim_holder_groups uint8 len(holder id), holder id,   empty: index of memberships by holder
//	                 group name                           (the three made by the first SCIM group)
//
// An event record (version 1) is the stored form of a store.Event as the
// door hashed it: uint64 seq; time as int64 Unix seconds and uint32
// nanoseconds; the strings clock, boot id, door, type, reason, UID,
// holder, holder name, detail (each uint16 length and UTF-8 bytes); the
// 32-byte prev hash and the 32-byte hash. Only events whose hash
// store.HashEvent recomputes are stored, so Verify can recompute every
// stored hash and follow every link.
//
// An event is indexed under its time in idx_time and idx_door_time, and
// under its holder and UID when it names them, so that a query by holder
// or UID is a range scan of that holder's or UID's entries, in time
// order, whatever the number of events stored.
//
// Every stored event also has an entry in idx_arrival, written in the
// transaction that stores it, under the bucket's next sequence: its
// arrival cursor. Cursors follow the order of commits, so a reader that
// has read up to a cursor never later finds an event below it; this is
// the order EventsSince follows (`latch audit tail -f`, the syslog
// output), whatever the doors' clocks say. A file from before idx_arrival
// gets it when it is opened, its events numbered in time order.
//
// The change log (changes) is append-only: an entry's seq is the last
// key + 1, and no method edits or deletes one. Its hash (ChangeHash)
// covers the previous entry's hash and the entry's fields in a fixed
// binary form, so VerifyChanges names an entry edited, deleted, moved or
// reordered. An entry is appended in the same transaction as the change
// it records (Recording), or on its own for what is not a change of this
// file (a command sent to a door, a note, a refusal).
//
// Schema 2 added the bucket changes. A file of schema 1 is migrated when
// it is opened, in one transaction, after a copy of it is written to
// PATH.schema-1.bak; a build of schema 1 refuses a file of schema 2, so
// that no build that does not log changes makes one.
//
// The buckets visitors, delivery_queue and notify_rules came without a
// schema change: Open adds visitors to a file without it, the first write
// makes the other two, and a build that does not know them leaves them
// alone.
//
// The SCIM buckets came without a schema change either: the first SCIM
// group makes them, and a build that does not know them leaves them
// alone (so a card keeps the door groups SCIM gave it; what such a build
// does not do is add them to a member's new card).
//
// Holidays have no record of their own: as in the door store, they are
// part of each card's schedule (store.Schedule.Holidays).
package site
