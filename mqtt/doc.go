// Package mqtt connects a door to its site over MQTT: signed allowlist
// updates in, audit events and status out, signed commands in.
//
// The wire format (contract v1, described in docs/mqtt.md) is shared by the
// door and the site: a Signer seals site messages in an Ed25519 envelope and
// a Verifier opens them, trusting only configured public keys. The door
// side is one Client over github.com/eclipse/paho.mqtt.golang with a
// Run(ctx) loop.
//
// A broker's PUBACK is not delivery: a broker may lose acknowledged
// messages, drop queued ones past its limits and silently discard
// publishes its ACL denies. So the allowlist is pulled by sequence (the
// door announces what it has applied on every connect and whenever it sees
// a gap, and the site answers with the missing deltas or a snapshot), and
// audit events leave the door's outbox only when the site acknowledges,
// with a signed message, that it stored them durably.
//
// Topics, under the root latch/v1/<site>/:
//
//	acl                    site → doors   signed deltas
//	acl/snapshot           site → doors   signed snapshot chunks (may be retained)
//	heartbeat              site → doors   signed, retained: the site's ACL seq and time
//	door/<door>/acl        site → door    signed deltas or snapshot chunks answering a sync request
//	door/<door>/cmd        site → door    signed commands
//	door/<door>/events/ack site → door    signed: highest contiguous event seq stored
//	door/<door>/events     door → site    audit events
//	door/<door>/status     door → all     retained status; the last will marks it offline
//	door/<door>/sync       door → site    "I have applied seq N (state hash H)"
package mqtt
