// Package mqtt connects a door to its site over MQTT: its own view of the
// allowlist in, signed and sealed to it; audit events and status out,
// signed by the door; signed commands in.
//
// The wire format (contract v2, described in docs/mqtt.md) is shared by the
// door and the site. Each door has an Identity (an Ed25519 key that signs
// what the door says, an X25519 key the site seals to with HPKE) that the
// site approves by its fingerprint. A Signer seals site messages in an
// Ed25519 envelope, and SealFor seals a message's body to one door; a
// Verifier opens them, trusting only configured site keys and the keys
// they rotated to (KeyRotation). The door side is one Client over
// github.com/eclipse/paho.mqtt.golang with a Run(ctx) loop, made of parts
// that Run's goroutine owns and that need no broker: the session (the
// connection and its publisher, session.go), the syncer (the allowlist,
// syncer.go), the freshness (stale allowlist and clock floor, fresh.go),
// the commander (signed commands, command.go) and the outbox (events out,
// outbox.go). Every time the client reads and every timer it waits on
// comes from one injected Clock.
//
// A broker's PUBACK is not delivery: a broker may lose acknowledged
// messages, drop queued ones past its limits and silently discard
// publishes its ACL denies. So the allowlist is pulled by sequence (the
// door announces what it has applied on every connect and whenever it sees
// a gap, and the site answers with the missing deltas or a snapshot whose
// chunks the door asks for a few at a time, staging each in its store), and
// audit events leave the door's outbox only when the site acknowledges,
// with a signed message, that it stored them durably.
//
// Topics, under the root latch/v2/<site>/:
//
//	keys                   site → doors   retained: the signed key rotations
//	door/<door>/acl        site → door    signed, sealed: deltas and snapshot chunks of the door's view
//	door/<door>/heartbeat  site → door    signed, retained: the door's view seq and the site's time
//	door/<door>/cmd        site → door    signed commands
//	door/<door>/events/ack site → door    signed: highest contiguous event seq stored
//	door/<door>/events     door → site    audit events, each with the door's signed chain head
//	door/<door>/status     door → all     retained status with the identity and a signed head; the last will marks it offline
//	door/<door>/sync       door → site    signed: "I have applied seq N (state hash H)", or "send me chunks k.."
package mqtt
