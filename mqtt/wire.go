package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
	"time"

	"github.com/latchdoor/latch/store"
)

// Version is the protocol version every payload carries in its "v" field:
// contract v2 (docs/mqtt.md).
const Version = 2

// Kind is a message type, the "type" field of every payload.
type Kind string

// Message kinds. The first six are signed by the site (the first two are
// also sealed to one door); KindKeys is the site's unsigned list of signed
// rotations; the last three are published by doors and carry the door's
// signature.
const (
	KindDelta       Kind = "acl.delta"   // sealed: ordered operations moving a door's view from seq-1 to seq
	KindChunk       Kind = "acl.chunk"   // sealed: one chunk of a door's whole view at seq
	KindHeartbeat   Kind = "heartbeat"   // a door's view seq and the site's time
	KindCommand     Kind = "cmd"         // unlock, lockdown or resync, for one door
	KindEventsAck   Kind = "events.ack"  // highest contiguous event seq stored by the site
	KindKeyRotation Kind = "keys.rotate" // the next site key, signed by the one it replaces
	KindKeys        Kind = "keys"        // retained list of the site's key rotations
	KindEvent       Kind = "event"       // one audit event, with the door's signed chain head
	KindStatus      Kind = "status"      // a door's retained status
	KindSync        Kind = "sync"        // a door's signed sync request
)

// Size limits, in bytes of the whole MQTT payload. Anything larger is
// refused before it is parsed.
const (
	MaxDeltaBytes     = 1 << 20  // a signed delta
	MaxChunkBytes     = 1 << 20  // a signed snapshot chunk
	MaxSmallBytes     = 4 << 10  // a signed heartbeat, command, ack or key rotation; a sync request
	MaxKeysBytes      = 64 << 10 // the list of key rotations
	MaxRotations      = 16       // rotations in that list
	MaxEventBytes     = 64 << 10 // an event message
	MaxStatusBytes    = 16 << 10 // a status message
	MaxDeltaOps       = 10000    // operations in one delta
	MaxSnapshotChunks = 1 << 16  // chunks of one snapshot
	// MaxSyncSeq is the highest seq a sync request may name: far beyond
	// any door's, and a site adding one to it stays exact.
	MaxSyncSeq        = 1 << 53
	MaxCommandTTL     = time.Minute // expires_at - issued_at of a command
	MaxUnlockDuration = time.Minute // longest momentary unlock a command may ask for
)

// Errors of decoding and verification, wrapped with detail. Test with
// errors.Is.
var (
	ErrMalformed    = errors.New("malformed message")
	ErrTooLarge     = errors.New("message too large")
	ErrUnsigned     = errors.New("message is not signed")
	ErrUnknownKey   = errors.New("signed with a key this door does not trust")
	ErrBadSignature = errors.New("signature does not verify")
	ErrVersion      = errors.New("unsupported protocol version")
	ErrWrongType    = errors.New("unexpected message type")
	ErrWrongSite    = errors.New("message for another site")
	ErrWrongDoor    = errors.New("message for another door")
	ErrExpired      = errors.New("message expired or not yet valid")
	ErrReplay       = errors.New("message already honoured")
	ErrRetained     = errors.New("retained command")
	ErrSuperseded   = errors.New("command superseded by a later one")
	ErrNotForMe     = errors.New("sealed to another door identity")
	ErrRetiredKey   = errors.New("signed with a retired site key")
)

var (
	idRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	cmdIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)
	kidRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	hashRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// CheckID reports whether s may name a site or a door: 1 to 64 of a-z, 0-9,
// '_' and '-', starting with a letter or digit (so it is safe in a topic).
func CheckID(what, s string) error {
	if !idRE.MatchString(s) {
		return fmt.Errorf("%s %q: want 1-64 of a-z 0-9 _ -, starting with a letter or digit", what, s)
	}
	return nil
}

// checkTime accepts times a store can hold and a site can have issued.
func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is missing", what)
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		return fmt.Errorf("%s %s is out of range", what, t.Format(time.RFC3339))
	}
	return nil
}

// Header is the part every signed payload carries.
type Header struct {
	V        int       `json:"v"`         // Version
	Type     Kind      `json:"type"`      // set by Seal
	Site     string    `json:"site"`      // the site id of the topic root
	Seq      uint64    `json:"seq"`       // per kind: see each message
	IssuedAt time.Time `json:"issued_at"` // site time of signing
}

func (h *Header) check(k Kind) error {
	if h.V != Version {
		return fmt.Errorf("%w: v %d, want %d", ErrVersion, h.V, Version)
	}
	if h.Type != k {
		return fmt.Errorf("%w: %q, want %q", ErrWrongType, h.Type, k)
	}
	if err := CheckID("site", h.Site); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkTime("issued_at", h.IssuedAt); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// Signed is a message the site signs: *Delta, *SnapshotChunk, *Heartbeat,
// *Command or *EventsAck.
type Signed interface {
	// Head returns the message's header.
	Head() *Header
	// Kind names the message type.
	Kind() Kind
	// Check validates the fields beyond the header.
	Check() error
}

// Delta is a signed allowlist delta for one door, its body sealed to
// that door: Ops applied in order, in one transaction, move the door's
// view from Seq-1 to Seq. Seq is the door's view sequence, shared with its
// snapshots and heartbeats; each door has its own.
type Delta struct {
	Header
	sealing
	Ops []store.Op `json:"-"` // the operations, at most MaxDeltaOps (sealed)
}

// deltaBody is what a delta seals.
type deltaBody struct {
	Ops []store.Op `json:"ops"`
}

// Head implements Signed.
func (m *Delta) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*Delta) Kind() Kind { return KindDelta }

// Check implements Signed.
func (m *Delta) Check() error {
	if m.Seq == 0 {
		return fmt.Errorf("%w: delta seq 0", ErrMalformed)
	}
	return m.sealing.check()
}

// checkBody checks the opened operations.
func (m *Delta) checkBody() error {
	if len(m.Ops) > MaxDeltaOps {
		return fmt.Errorf("%w: delta has %d operations, limit %d", ErrMalformed, len(m.Ops), MaxDeltaOps)
	}
	for i, op := range m.Ops {
		switch op.Kind {
		case store.OpUpsertCard, store.OpDeleteCard, store.OpUpsertHolder, store.OpDeleteHolder,
			store.OpRevokeCard, store.OpReinstateCard, store.OpRevokeHolder, store.OpReinstateHolder:
		default:
			return fmt.Errorf("%w: delta op %d: unknown operation %q", ErrMalformed, i, op.Kind)
		}
	}
	return nil
}

func (m *Delta) plain() any { return deltaBody{Ops: m.Ops} }

func (m *Delta) openBody(pt []byte) error {
	var b deltaBody
	if err := decodeStrict(pt, &b); err != nil {
		return err
	}
	m.Ops = b.Ops
	return m.checkBody()
}

func (*Delta) part() uint64 { return 0 }

// StoreDelta returns the delta as the store applies it.
func (m *Delta) StoreDelta() store.Delta { return store.Delta{Seq: m.Seq, Ops: m.Ops} }

// SnapshotChunk is one signed piece of a door's whole view at Seq, its
// entries sealed to that door. A snapshot is Chunks chunks, numbered 0 to
// Chunks-1, that all carry the same Seq, Chunks and Hash; the door stages
// them in order (store.StageChunk), each in its own transaction, and
// commits the snapshot when the staged entries give Hash
// (store.HashSnapshot of all of them at Seq). The door asks for the chunks
// it wants, a few at a time (SyncRequest.Chunks).
type SnapshotChunk struct {
	Header
	sealing
	Hash        string             `json:"hash"`   // store.HashSnapshot of the whole snapshot
	Chunk       int                `json:"chunk"`  // 0-based index
	Chunks      int                `json:"chunks"` // how many chunks make the snapshot
	Cards       []store.Card       `json:"-"`      // this chunk's share of the cards (sealed)
	Holders     []store.Holder     `json:"-"`      // this chunk's share of the holders (sealed)
	Revocations []store.Revocation `json:"-"`      // this chunk's share of the revocations (sealed)
}

// chunkBody is what a snapshot chunk seals.
type chunkBody struct {
	Cards       []store.Card       `json:"cards,omitempty"`
	Holders     []store.Holder     `json:"holders,omitempty"`
	Revocations []store.Revocation `json:"revocations,omitempty"`
}

// Head implements Signed.
func (m *SnapshotChunk) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*SnapshotChunk) Kind() Kind { return KindChunk }

// Check implements Signed.
func (m *SnapshotChunk) Check() error {
	switch {
	case m.Seq == 0:
		return fmt.Errorf("%w: snapshot seq 0", ErrMalformed)
	case !hashRE.MatchString(m.Hash):
		return fmt.Errorf("%w: snapshot hash %q is not 64 lower-case hex digits", ErrMalformed, m.Hash)
	case m.Chunks < 1 || m.Chunks > MaxSnapshotChunks:
		return fmt.Errorf("%w: snapshot of %d chunks, want 1..%d", ErrMalformed, m.Chunks, MaxSnapshotChunks)
	case m.Chunk < 0 || m.Chunk >= m.Chunks:
		return fmt.Errorf("%w: chunk %d of %d", ErrMalformed, m.Chunk, m.Chunks)
	}
	return m.sealing.check()
}

func (m *SnapshotChunk) plain() any {
	return chunkBody{Cards: m.Cards, Holders: m.Holders, Revocations: m.Revocations}
}

func (m *SnapshotChunk) openBody(pt []byte) error {
	var b chunkBody
	if err := decodeStrict(pt, &b); err != nil {
		return err
	}
	m.Cards, m.Holders, m.Revocations = b.Cards, b.Holders, b.Revocations
	return nil
}

func (m *SnapshotChunk) part() uint64 { return uint64(m.Chunk) }

// StorePart returns the chunk's entries as the store stages them.
func (m *SnapshotChunk) StorePart() store.Snapshot {
	return store.Snapshot{Seq: m.Seq, Cards: m.Cards, Holders: m.Holders, Revocations: m.Revocations}
}

// Heartbeat is the site's signed "I am here" to one door, retained on the
// door's heartbeat topic: Seq is the door's current view sequence at the
// site, so that a door behind it asks for what it lacks. A door counts a
// heartbeat as fresh only when it was issued after every signed message it
// has seen (a retained one may be old).
type Heartbeat struct {
	Header
	Door string `json:"door"` // the door it is for
}

// Head implements Signed.
func (m *Heartbeat) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*Heartbeat) Kind() Kind { return KindHeartbeat }

// Check implements Signed.
func (m *Heartbeat) Check() error {
	if err := CheckID("door", m.Door); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// Action is what a command asks of a door.
type Action string

// Command actions.
const (
	ActionUnlock   Action = "unlock"   // momentary unlock for DurationMS
	ActionLockdown Action = "lockdown" // lockdown on or off (On)
	ActionResync   Action = "resync"   // announce the applied seq now (sync request)
)

// Command is a signed command for one door. Seq is the site's command
// counter (increasing; the door records the highest it honoured); ID is a
// nonce that the door honours at most once and remembers until ExpiresAt,
// which is at most MaxCommandTTL after IssuedAt.
type Command struct {
	Header
	Door       string    `json:"door"`                  // the one door it is for
	ID         string    `json:"id"`                    // nonce, honoured at most once
	ExpiresAt  time.Time `json:"expires_at"`            // refused from then on
	Action     Action    `json:"cmd"`                   // unlock, lockdown or resync
	DurationMS int64     `json:"duration_ms,omitempty"` // unlock only: 1..60000
	On         *bool     `json:"on,omitempty"`          // lockdown only
}

// Head implements Signed.
func (m *Command) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*Command) Kind() Kind { return KindCommand }

// Duration returns the unlock duration.
func (m *Command) Duration() time.Duration { return time.Duration(m.DurationMS) * time.Millisecond }

// Check implements Signed.
func (m *Command) Check() error {
	if err := CheckID("door", m.Door); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !cmdIDRE.MatchString(m.ID) {
		return fmt.Errorf("%w: command id %q: want 8-64 of A-Z a-z 0-9 _ -", ErrMalformed, m.ID)
	}
	if m.Seq == 0 {
		return fmt.Errorf("%w: command seq 0", ErrMalformed)
	}
	if err := checkTime("expires_at", m.ExpiresAt); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if ttl := m.ExpiresAt.Sub(m.IssuedAt); ttl <= 0 || ttl > MaxCommandTTL {
		return fmt.Errorf("%w: command lives %s, want more than 0 and at most %s", ErrMalformed, ttl, MaxCommandTTL)
	}
	switch m.Action {
	case ActionUnlock:
		if m.On != nil {
			return fmt.Errorf("%w: unlock takes no \"on\"", ErrMalformed)
		}
		if d := m.Duration(); d <= 0 || d > MaxUnlockDuration {
			return fmt.Errorf("%w: unlock for %d ms, want 1..%d", ErrMalformed, m.DurationMS, MaxUnlockDuration.Milliseconds())
		}
	case ActionLockdown:
		if m.On == nil {
			return fmt.Errorf("%w: lockdown needs \"on\"", ErrMalformed)
		}
		if m.DurationMS != 0 {
			return fmt.Errorf("%w: lockdown takes no duration", ErrMalformed)
		}
	case ActionResync:
		if m.On != nil || m.DurationMS != 0 {
			return fmt.Errorf("%w: resync takes no arguments", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown command %q", ErrMalformed, m.Action)
	}
	return nil
}

// EventsAck is the site's signed acknowledgement that it has stored every
// event of Door up to Seq (the event sequence) durably. Acks are
// idempotent: a door's outbox cursor only moves forward.
type EventsAck struct {
	Header
	Door string `json:"door"` // whose events are acknowledged
}

// Head implements Signed.
func (m *EventsAck) Head() *Header { return &m.Header }

// Kind implements Signed.
func (*EventsAck) Kind() Kind { return KindEventsAck }

// Check implements Signed.
func (m *EventsAck) Check() error {
	if err := CheckID("door", m.Door); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// newSigned returns an empty message of kind k.
func newSigned(k Kind) (Signed, error) {
	switch k {
	case KindDelta:
		return new(Delta), nil
	case KindChunk:
		return new(SnapshotChunk), nil
	case KindKeyRotation:
		return new(KeyRotation), nil
	case KindHeartbeat:
		return new(Heartbeat), nil
	case KindCommand:
		return new(Command), nil
	case KindEventsAck:
		return new(EventsAck), nil
	}
	return nil, fmt.Errorf("%w: %q is not a signed message type", ErrWrongType, k)
}

// EventMsg carries one audit event from a door, with the door's signature
// of the chain head at it; the chain's Prev and Hash let the site check
// continuity.
type EventMsg struct {
	V     int         `json:"v"`     // protocol version, 2
	Type  Kind        `json:"type"`  // KindEvent
	Site  string      `json:"site"`  // the site id
	Door  string      `json:"door"`  // the door that logged it
	Event store.Event `json:"event"` // the audit entry, with its chain hashes
	// Sig is the door's Ed25519 signature of the chain head at this event
	// (its seq and hash, as Status.VerifyHead signs them), base64: it
	// attributes the event, and the chain before it, to the door. Sent by
	// a door with an identity; see VerifySig.
	Sig string `json:"sig,omitempty"`
}

// VerifySig checks the event's signature with the door's key (the one the
// site approved): the event, and every entry its hash chains to, come from
// that door, as this door of this site.
func (m *EventMsg) VerifySig(key ed25519.PublicKey) error {
	if m.Sig == "" {
		return fmt.Errorf("event %d: not signed", m.Event.Seq)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(m.Sig)
	if err != nil {
		return fmt.Errorf("event %d: signature: %w", m.Event.Seq, err)
	}
	msg, err := headMessage(m.Site, m.Door, m.Event.Seq, m.Event.Hash)
	if err != nil {
		return fmt.Errorf("event %d: %w", m.Event.Seq, err)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, msg, sig) {
		return fmt.Errorf("event %d: the signature does not verify with the door's key", m.Event.Seq)
	}
	return nil
}

// Status is a door's retained status. The last will is the same message
// with Online false and nothing else but the ids.
type Status struct {
	V            int               `json:"v"`                       // protocol version, 2
	Type         Kind              `json:"type"`                    // KindStatus
	Site         string            `json:"site"`                    // the site id
	Door         string            `json:"door"`                    // the door id
	Online       bool              `json:"online"`                  // false in the last will and at a clean stop
	At           time.Time         `json:"at,omitzero"`             // door time of the status
	DoorState    string            `json:"door_state,omitempty"`    // the contact, "unlocked" while unlocked, the alarms in force: "closed", "open,unlocked", "open,door_held" (DoorStatus.State)
	Lockdown     bool              `json:"lockdown,omitempty"`      // the door is in lockdown
	Reader       string            `json:"reader,omitempty"`        // "ok", "fault" or "fault: " and the error (at most 256 bytes)
	Journal      string            `json:"journal,omitempty"`       // "ok", "reserve in use: …" (the disk filled) or "fault: …" (events held in memory; grants refused unless the door opens without a record)
	ACLSeq       uint64            `json:"acl_seq"`                 // allowlist seq applied
	SnapshotHash string            `json:"snapshot_hash,omitempty"` // state hash at ACLSeq
	ACLStale     bool              `json:"acl_stale,omitempty"`     // no fresh signed message for the stale period
	StalePolicy  string            `json:"stale_policy,omitempty"`  // what the door does while stale
	Outbox       int               `json:"outbox"`                  // events not yet acknowledged
	Version      string            `json:"version,omitempty"`       // firmware version
	UptimeS      int64             `json:"uptime_s,omitempty"`      // seconds since the client started
	Clock        store.TimeQuality `json:"clock,omitempty"`         // synced or unsynced
	Mode         store.Mode        `json:"mode,omitempty"`          // the door's mode in force: card, card+pin or card-or-pin
	TZ           string            `json:"tz,omitempty"`            // the IANA time zone of the door's schedules
	Fingerprint  string            `json:"fingerprint,omitempty"`   // the door identity's fingerprint (see PublicIdentity)
	SignKey      string            `json:"sign_key,omitempty"`      // the door's Ed25519 public key, base64
	SealKey      string            `json:"seal_key,omitempty"`      // the door's X25519 public key for sealed messages, base64
	HeadSeq      uint64            `json:"head_seq,omitempty"`      // the audit chain's last sequence
	HeadHash     string            `json:"head_hash,omitempty"`     // its hash
	HeadSig      string            `json:"head_sig,omitempty"`      // the door's Ed25519 signature of the head (see VerifyHead), base64
	// The identity the door rotates to, while it waits for the site's
	// approval: its fingerprint and keys, vouched for by the current key
	// (see Identity.Vouch and NextIdentity).
	NextFingerprint string `json:"next_fingerprint,omitempty"`
	NextSignKey     string `json:"next_sign_key,omitempty"`
	NextSealKey     string `json:"next_seal_key,omitempty"`
	NextSig         string `json:"next_sig,omitempty"`

	ids *IdentityCache // the checked identities DecodeStatusWith was given
}

// SyncRequest is a door's signed request for its view of the allowlist.
// Without Chunks, it announces what the door has applied: the site answers
// on door/<door>/acl with the deltas after AppliedSeq, or with the first
// chunks of a snapshot when that is shorter, when it lacks them, when the
// door's state hash is not the site's at that seq, or when Want is
// "snapshot". With Chunks, it asks for chunks of the snapshot the door is
// staging; a site that no longer has that snapshot answers with the first
// chunks of its current one.
type SyncRequest struct {
	V            int          `json:"v"`                // protocol version, 2
	Type         Kind         `json:"type"`             // KindSync
	Site         string       `json:"site"`             // the site id
	Door         string       `json:"door"`             // the door asking
	AppliedSeq   uint64       `json:"applied_seq"`      // the view seq it has applied
	SnapshotHash string       `json:"snapshot_hash"`    // its state hash at AppliedSeq
	Want         string       `json:"want,omitempty"`   // "" or "snapshot"
	Chunks       *ChunkWindow `json:"chunks,omitempty"` // the chunks it asks for
	Window       int          `json:"window,omitempty"` // how many chunks to send of a new snapshot (1..MaxChunkWindow; 0: the site's default)
	At           time.Time    `json:"at,omitzero"`      // door time of the request
	Sig          string       `json:"sig"`              // the door's Ed25519 signature (see Sign), base64
}

// ChunkWindow names chunks From to From+Count-1 of the snapshot at Seq
// whose hash is Hash.
type ChunkWindow struct {
	Seq   uint64 `json:"seq"`
	Hash  string `json:"hash"`
	From  int    `json:"from"`
	Count int    `json:"count"`
}

// MaxChunkWindow is the most chunks a door may ask for at once.
const MaxChunkWindow = 16

// WantSnapshot is SyncRequest.Want asking for a snapshot rather than deltas.
const WantSnapshot = "snapshot"

// syncContext separates a signed sync request from anything else the
// door's key signs.
const syncContext = "latch sync request v2\x00"

// signedBytes is what the door signs of a sync request: a context string,
// then every field but Sig in a fixed binary form.
func (m *SyncRequest) signedBytes() []byte {
	b := []byte(syncContext)
	str := func(s string) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	str(m.Site)
	str(m.Door)
	b = binary.BigEndian.AppendUint64(b, m.AppliedSeq)
	str(m.SnapshotHash)
	str(m.Want)
	if w := m.Chunks; w != nil {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, w.Seq)
		str(w.Hash)
		b = binary.BigEndian.AppendUint32(b, uint32(w.From))
		b = binary.BigEndian.AppendUint32(b, uint32(w.Count))
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(m.Window))
	return binary.BigEndian.AppendUint64(b, uint64(m.At.UnixNano()))
}

// Sign sets the request's signature with the door's identity.
func (m *SyncRequest) Sign(id *Identity) {
	m.Sig = base64.StdEncoding.EncodeToString(id.Sign(m.signedBytes()))
}

// VerifySig checks the request's signature with the door's approved key.
func (m *SyncRequest) VerifySig(key ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.Strict().DecodeString(m.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("sync request of door %s: %w: signature is not %d bytes of base64", m.Door, ErrBadSignature, ed25519.SignatureSize)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, m.signedBytes(), sig) {
		return fmt.Errorf("sync request of door %s: %w", m.Door, ErrBadSignature)
	}
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// peekHeader reads v and type without the rest.
func peekHeader(b []byte) (int, Kind, error) {
	var h struct {
		V    int  `json:"v"`
		Type Kind `json:"type"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return 0, "", err
	}
	return h.V, h.Type, nil
}

func checkDoorMsg(what string, v int, typ, want Kind, site, wantSite, door, wantDoor string) error {
	if v != Version {
		return fmt.Errorf("mqtt: decode %s: %w: v %d, want %d", what, ErrVersion, v, Version)
	}
	if typ != want {
		return fmt.Errorf("mqtt: decode %s: %w: %q", what, ErrWrongType, typ)
	}
	if site != wantSite {
		return fmt.Errorf("mqtt: decode %s: %w: %q, want %q", what, ErrWrongSite, site, wantSite)
	}
	if wantDoor != "" && door != wantDoor {
		return fmt.Errorf("mqtt: decode %s: %w: %q, want %q", what, ErrWrongDoor, door, wantDoor)
	}
	if err := CheckID("door", door); err != nil {
		return fmt.Errorf("mqtt: decode %s: %w: %w", what, ErrMalformed, err)
	}
	return nil
}

// decodeDoorMsg decodes an unsigned door message strictly after checking
// its size and version.
func decodeDoorMsg(what string, b []byte, limit int, v any) error {
	if len(b) > limit {
		return fmt.Errorf("mqtt: decode %s: %w: %d bytes, limit %d", what, ErrTooLarge, len(b), limit)
	}
	ver, _, err := peekHeader(b)
	if err != nil {
		return fmt.Errorf("mqtt: decode %s: %w: %w", what, ErrMalformed, err)
	}
	if ver != Version {
		return fmt.Errorf("mqtt: decode %s: %w: v %d, want %d", what, ErrVersion, ver, Version)
	}
	if err := decodeStrict(b, v); err != nil {
		return fmt.Errorf("mqtt: decode %s: %w: %w", what, ErrMalformed, err)
	}
	return nil
}

// DecodeEvent decodes an event message published by door (any door when
// door is "") of site.
func DecodeEvent(b []byte, site, door string) (*EventMsg, error) {
	var m EventMsg
	if err := decodeDoorMsg("event", b, MaxEventBytes, &m); err != nil {
		return nil, err
	}
	if err := checkDoorMsg("event", m.V, m.Type, KindEvent, m.Site, site, m.Door, door); err != nil {
		return nil, err
	}
	e := &m.Event
	switch {
	case e.Seq == 0:
		return nil, fmt.Errorf("mqtt: decode event: %w: seq 0", ErrMalformed)
	case !hashRE.MatchString(e.Hash) || !hashRE.MatchString(e.Prev):
		return nil, fmt.Errorf("mqtt: decode event %d: %w: prev and hash must be 64 lower-case hex digits", e.Seq, ErrMalformed)
	}
	// The door signs the hash, which stands for the whole entry: an entry
	// altered on the way (its reason, card or time) no longer hashes to it.
	if h, err := store.HashEvent(*e); err != nil || h != e.Hash {
		return nil, fmt.Errorf("mqtt: decode event %d: %w: its content does not hash to its hash (altered?)", e.Seq, ErrMalformed)
	}
	return &m, nil
}

// DecodeStatus decodes a status message of door (any door when door is "")
// of site.
func DecodeStatus(b []byte, site, door string) (*Status, error) {
	return DecodeStatusWith(b, site, door, nil)
}

// DecodeStatusWith is DecodeStatus with a cache of the identities already
// checked (nil: none): a door announces the same identity in every
// status, and checking its keys costs more than the rest of the status.
func DecodeStatusWith(b []byte, site, door string, ids *IdentityCache) (*Status, error) {
	m := Status{ids: ids}
	if err := decodeDoorMsg("status", b, MaxStatusBytes, &m); err != nil {
		return nil, err
	}
	if err := checkDoorMsg("status", m.V, m.Type, KindStatus, m.Site, site, m.Door, door); err != nil {
		return nil, err
	}
	if m.SnapshotHash != "" && !hashRE.MatchString(m.SnapshotHash) {
		return nil, fmt.Errorf("mqtt: decode status: %w: snapshot hash %q", ErrMalformed, m.SnapshotHash)
	}
	if m.Outbox < 0 || m.UptimeS < 0 {
		return nil, fmt.Errorf("mqtt: decode status: %w: negative count", ErrMalformed)
	}
	if m.Fingerprint != "" || m.SignKey != "" || m.SealKey != "" {
		id, err := m.Identity()
		if err != nil {
			return nil, fmt.Errorf("mqtt: decode status: %w: %w", ErrMalformed, err)
		}
		if m.HeadSig != "" {
			if err := m.VerifyHead(id.SignKey); err != nil {
				return nil, fmt.Errorf("mqtt: decode status: %w: %w", ErrMalformed, err)
			}
		}
	}
	if m.HeadSig != "" && m.SignKey == "" {
		return nil, fmt.Errorf("mqtt: decode status: %w: a signed head without the door's key", ErrMalformed)
	}
	if m.NextFingerprint != "" || m.NextSignKey != "" || m.NextSealKey != "" || m.NextSig != "" {
		if _, err := m.NextIdentity(); err != nil {
			return nil, fmt.Errorf("mqtt: decode status: %w: %w", ErrMalformed, err)
		}
	}
	return &m, nil
}

// headContext separates a signed chain head from anything else the door's
// key signs.
const headContext = "latch audit head v1\x00"

// headMessage is what a door signs of its audit chain's head: a context
// string, the site and door ids (each preceded by its length), the
// sequence (8 bytes, big-endian) and the 32-byte hash. A signed head
// commits the door to every entry up to it: an entry rewritten later in
// the door's file no longer chains to a head the site holds.
func headMessage(site, door string, seq uint64, hash string) ([]byte, error) {
	h, err := hex.DecodeString(hash)
	if err != nil || len(h) != 32 {
		return nil, fmt.Errorf("head hash %q: want 64 hex digits", hash)
	}
	b := []byte(headContext)
	b = append(b, byte(len(site)))
	b = append(b, site...)
	b = append(b, byte(len(door)))
	b = append(b, door...)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, h...), nil
}

// SignHead signs the audit chain head (seq, hash) of door of site with the
// door's identity, as events and statuses carry it (base64).
func (id *Identity) SignHead(site, door string, seq uint64, hash string) (string, error) {
	msg, err := headMessage(site, door, seq, hash)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(id.Sign(msg)), nil
}

// VerifyHead checks the status's signed chain head with the door's key
// (the one the site approved, not merely the one the status announces).
func (m *Status) VerifyHead(key ed25519.PublicKey) error {
	if m.HeadSig == "" {
		return errors.New("signed head: none")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(m.HeadSig)
	if err != nil {
		return fmt.Errorf("signed head: %w", err)
	}
	msg, err := headMessage(m.Site, m.Door, m.HeadSeq, m.HeadHash)
	if err != nil {
		return fmt.Errorf("signed head: %w", err)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, msg, sig) {
		return fmt.Errorf("signed head %d: the signature does not verify", m.HeadSeq)
	}
	return nil
}

// Identity returns the door identity the status announces: both keys,
// checked, and a fingerprint that matches them. A status without one is
// an error.
func (m *Status) Identity() (*PublicIdentity, error) {
	return announced("identity", m.Door, m.Fingerprint, m.SignKey, m.SealKey, m.ids)
}

// NextIdentity returns the identity the status announces the door rotates
// to: its keys checked, its fingerprint matching, and vouched for by the
// status's current key. Only an admin's approval makes the site trust it.
func (m *Status) NextIdentity() (*PublicIdentity, error) {
	cur, err := m.Identity()
	if err != nil {
		return nil, fmt.Errorf("next identity without a current one: %w", err)
	}
	p, err := announced("next identity", m.Door, m.NextFingerprint, m.NextSignKey, m.NextSealKey, m.ids)
	if err != nil {
		return nil, err
	}
	if err := VerifyVouch(cur.SignKey, m.Site, m.Door, *p, m.NextSig); err != nil {
		return nil, err
	}
	return p, nil
}

// announced decodes and checks the public keys of an identity a door
// announces (what), unless ids holds them checked, and the fingerprint it
// gives for them.
func announced(what, door, fingerprint, signKey, sealKey string, ids *IdentityCache) (*PublicIdentity, error) {
	sign, err := base64.StdEncoding.Strict().DecodeString(signKey)
	if err != nil {
		return nil, fmt.Errorf("%s: sign_key: %w", what, err)
	}
	seal, err := base64.StdEncoding.Strict().DecodeString(sealKey)
	if err != nil {
		return nil, fmt.Errorf("%s: seal_key: %w", what, err)
	}
	p := &PublicIdentity{SignKey: sign, SealKey: seal}
	if err := ids.check(p, what+" of door "+door); err != nil {
		return nil, err
	}
	if fp := p.Fingerprint(); fingerprint != fp {
		return nil, fmt.Errorf("%s: fingerprint %q does not match the keys (%s)", what, fingerprint, fp)
	}
	return p, nil
}

// IdentityCache remembers the door identities whose keys passed
// PublicIdentity.Check, for DecodeStatusWith. It holds at most its size;
// when full, it starts again empty. It is safe for concurrent use.
type IdentityCache struct {
	mu   sync.Mutex
	size int
	ok   map[string]struct{} // signing key and sealing key, concatenated
}

// NewIdentityCache returns a cache of at most size identities.
func NewIdentityCache(size int) *IdentityCache {
	return &IdentityCache{size: max(1, size), ok: make(map[string]struct{})}
}

// check is p.Check(name), skipped when c holds p checked.
func (c *IdentityCache) check(p *PublicIdentity, name string) error {
	if c == nil {
		return p.Check(name)
	}
	k := string(p.SignKey) + string(p.SealKey)
	c.mu.Lock()
	_, ok := c.ok[k]
	c.mu.Unlock()
	if ok {
		return nil
	}
	if err := p.Check(name); err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.ok) >= c.size {
		clear(c.ok)
	}
	c.ok[k] = struct{}{}
	c.mu.Unlock()
	return nil
}

// DecodeSyncRequest decodes a sync request of door (any door when door is
// "") of site.
func DecodeSyncRequest(b []byte, site, door string) (*SyncRequest, error) {
	var m SyncRequest
	if err := decodeDoorMsg("sync request", b, MaxSmallBytes, &m); err != nil {
		return nil, err
	}
	if err := checkDoorMsg("sync request", m.V, m.Type, KindSync, m.Site, site, m.Door, door); err != nil {
		return nil, err
	}
	if !hashRE.MatchString(m.SnapshotHash) {
		return nil, fmt.Errorf("mqtt: decode sync request: %w: snapshot hash %q", ErrMalformed, m.SnapshotHash)
	}
	if m.Want != "" && m.Want != WantSnapshot {
		return nil, fmt.Errorf("mqtt: decode sync request: %w: want %q", ErrMalformed, m.Want)
	}
	if m.Window < 0 || m.Window > MaxChunkWindow {
		return nil, fmt.Errorf("mqtt: decode sync request: %w: window %d, want 0..%d", ErrMalformed, m.Window, MaxChunkWindow)
	}
	if m.AppliedSeq > MaxSyncSeq {
		return nil, fmt.Errorf("mqtt: decode sync request: %w: applied seq %d, at most %d", ErrMalformed, m.AppliedSeq, uint64(MaxSyncSeq))
	}
	if w := m.Chunks; w != nil {
		switch {
		case w.Seq == 0 || w.Seq > MaxSyncSeq || !hashRE.MatchString(w.Hash):
			return nil, fmt.Errorf("mqtt: decode sync request: %w: chunks of snapshot %d with hash %q", ErrMalformed, w.Seq, w.Hash)
		case w.From < 0 || w.From >= MaxSnapshotChunks || w.Count < 1 || w.Count > MaxChunkWindow:
			return nil, fmt.Errorf("mqtt: decode sync request: %w: chunks %d+%d, want from 0..%d and 1..%d of them", ErrMalformed, w.From, w.Count, MaxSnapshotChunks-1, MaxChunkWindow)
		}
	}
	if m.Sig == "" {
		return nil, fmt.Errorf("mqtt: decode sync request: %w", ErrUnsigned)
	}
	return &m, nil
}

// marshal encodes a message with context in the error.
func marshal(what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode %s: %w", what, err)
	}
	return b, nil
}
