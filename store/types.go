package store

import (
	"time"
)

// Reason is a word from the audit vocabulary (docs/audit.md): decision
// reasons, door events, sync events and system events.
type Reason string

// Alarm reports whether r is an alarm: an event that retention never drops
// before the site has acknowledged it, and that a full in-memory queue drops
// last.
func (r Reason) Alarm() bool {
	switch r {
	case ReasonDoorForced, ReasonDoorHeld, ReasonTamper, ReasonGrantedDuress, ReasonLockedOut:
		return true
	}
	return false
}

// Decision reasons.
const (
	ReasonGranted         Reason = "granted"
	ReasonGrantedDuress   Reason = "granted_duress"
	ReasonUnknownCard     Reason = "unknown_card"
	ReasonRevoked         Reason = "revoked"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonOutsideSchedule Reason = "outside_schedule"
	ReasonWrongDoor       Reason = "wrong_door"
	ReasonPINRequired     Reason = "pin_required"
	ReasonPINTimeout      Reason = "pin_timeout"
	ReasonBadPIN          Reason = "bad_pin"
	ReasonLockedOut       Reason = "locked_out"
	ReasonLockdown        Reason = "lockdown"
	ReasonRandomUID       Reason = "random_uid"
)

// Door events.
const (
	ReasonDoorForced       Reason = "door_forced"
	ReasonDoorHeld         Reason = "door_held"
	ReasonDoorClosed       Reason = "door_closed"
	ReasonExitRequest      Reason = "exit_request"
	ReasonTamper           Reason = "tamper"
	ReasonReaderFault      Reason = "reader_fault"
	ReasonReaderOK         Reason = "reader_ok"
	ReasonGrantedNotOpened Reason = "granted_not_opened"
	ReasonUnlockInterrupt  Reason = "unlock_interrupted"
)

// Sync events.
const (
	ReasonACLApplied      Reason = "acl_applied"
	ReasonACLRejected     Reason = "acl_rejected"
	ReasonSnapshotApplied Reason = "snapshot_applied"
	ReasonCommandApplied  Reason = "command_applied"
	ReasonCommandRejected Reason = "command_rejected"
	ReasonACLStale        Reason = "acl_stale"
)

// System events.
const (
	ReasonStarted    Reason = "started"     // the door controller started
	ReasonStopped    Reason = "stopped"     // the door controller stopped in order
	ReasonEventsLost Reason = "events_lost" // events could not be written while the store failed
)

// EventType groups reasons: what kind of thing happened.
type EventType string

// Event types.
const (
	TypeAccess EventType = "access" // a decision about a credential
	TypeDoor   EventType = "door"   // door position, exit button, tamper, reader health
	TypeSync   EventType = "sync"   // allowlist and command traffic with the site
	TypeSystem EventType = "system" // start, stop, clock and storage conditions
)

// Mode is how a door identifies people.
type Mode string

// Door modes.
const (
	ModeCardOnly  Mode = "card"        // a valid card opens
	ModeCardPIN   Mode = "card+pin"    // a valid card, then its PIN
	ModeCardOrPIN Mode = "card-or-pin" // a valid card, or a keypad code alone
)

// Outcome is what the controller does with a decision.
type Outcome int

// Outcomes.
const (
	Denied  Outcome = iota // refuse, with Reason
	Granted                // open, with Reason granted or granted_duress
	NeedPIN                // the card is acceptable so far; collect its PIN
)

// Request asks for a decision. A nil PIN is the card stage; a non-nil PIN
// (possibly empty) is the PIN stage for the same card.
type Request struct {
	UID          []byte
	RandomUID    bool // the reader says the UID is random (never a credential)
	PIN          []byte
	Door         string
	DoorGroups   []string // groups the door belongs to; a card listing one opens it
	Mode         Mode
	Lockdown     bool
	Now          time.Time
	ClockTrusted bool // false before the first time sync
}

// Decision is the answer to a Request.
type Decision struct {
	Outcome        Outcome
	Reason         Reason
	HolderID       string
	HolderName     string
	ExtendedUnlock bool // the card asks for the longer accessibility unlock time
	// Note says anything the auditor should know, such as that schedules were
	// ignored because the clock was not trusted.
	Note string
}

// TimeQuality says how far the time of an event can be trusted.
type TimeQuality string

// Time qualities.
const (
	TimeSynced   TimeQuality = "synced"
	TimeUnsynced TimeQuality = "unsynced"
)

// Event is one entry of the audit chain. Seq, Prev and Hash are set by the
// store when the event is appended.
type Event struct {
	Seq        uint64      `json:"seq"`
	Time       time.Time   `json:"time"`
	Clock      TimeQuality `json:"clock"`
	BootID     string      `json:"boot"`
	Door       string      `json:"door"`
	Type       EventType   `json:"type"`
	Reason     Reason      `json:"reason"`
	UID        string      `json:"uid,omitempty"` // upper-case hex, no separators
	Holder     string      `json:"holder,omitempty"`
	HolderName string      `json:"holder_name,omitempty"`
	Detail     string      `json:"detail,omitempty"`
	Prev       string      `json:"prev"` // hex SHA-256 of the previous entry
	Hash       string      `json:"hash"` // hex SHA-256 of this entry
}

// Flags are per-card switches.
type Flags struct {
	CardOnly         bool `json:"card_only,omitempty"`         // may open card+PIN doors without a PIN
	ExtendedUnlock   bool `json:"extended_unlock,omitempty"`   // longer unlock time (accessibility)
	LockdownOverride bool `json:"lockdown_override,omitempty"` // still opens during a lockdown
}

// Window is one span of a day, in minutes since local midnight: [From, To).
type Window struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// Schedule is a weekly set of windows in the door's time zone. An empty
// Schedule means always. Holidays (YYYY-MM-DD) are treated as closed days.
type Schedule struct {
	Weekly   [7][]Window `json:"weekly,omitempty"` // index is time.Weekday
	Holidays []string    `json:"holidays,omitempty"`
}

// Card is an allowlist entry.
type Card struct {
	UID        []byte    `json:"uid"`
	HolderID   string    `json:"holder_id"`
	HolderName string    `json:"holder_name,omitempty"`
	PINHash    string    `json:"pin_hash,omitempty"` // argon2id, PHC string format
	Doors      []string  `json:"doors,omitempty"`    // door ids or group names this card opens
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	Schedule   Schedule  `json:"schedule,omitzero"`
	Flags      Flags     `json:"flags,omitzero"`
}

// Holder is a person; several cards may share one.
type Holder struct {
	ID            string `json:"id"`
	Name          string `json:"name,omitempty"`
	DuressPINHash string `json:"duress_pin_hash,omitempty"`
}

// OpKind names an allowlist change.
type OpKind string

// Allowlist operations.
const (
	OpUpsertCard      OpKind = "upsert_card"
	OpDeleteCard      OpKind = "delete_card"
	OpUpsertHolder    OpKind = "upsert_holder"
	OpDeleteHolder    OpKind = "delete_holder"
	OpRevokeCard      OpKind = "revoke_card"
	OpReinstateCard   OpKind = "reinstate_card"
	OpRevokeHolder    OpKind = "revoke_holder"
	OpReinstateHolder OpKind = "reinstate_holder"
)

// Op is one allowlist change. Card is set for upsert_card; Holder for
// upsert_holder; UID for delete/revoke/reinstate of a card; HolderID for the
// holder operations.
type Op struct {
	Kind     OpKind  `json:"op"`
	Card     *Card   `json:"card,omitempty"`
	Holder   *Holder `json:"holder,omitempty"`
	UID      []byte  `json:"uid,omitempty"`
	HolderID string  `json:"holder_id,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// Delta is an ordered list of operations that moves the allowlist from
// Seq-1 to Seq.
type Delta struct {
	Seq uint64 `json:"seq"`
	Ops []Op   `json:"ops"`
}

// Revocation is a revoked card UID or holder.
type Revocation struct {
	UID      []byte `json:"uid,omitempty"`
	HolderID string `json:"holder_id,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Snapshot is the full allowlist at Seq.
type Snapshot struct {
	Seq         uint64       `json:"seq"`
	Cards       []Card       `json:"cards"`
	Holders     []Holder     `json:"holders"`
	Revocations []Revocation `json:"revocations"`
}

// SyncState is what the door knows about its place in the site's history.
type SyncState struct {
	AppliedSeq    uint64    // last applied allowlist sequence
	SnapshotHash  string    // hex SHA-256 of the canonical allowlist state at AppliedSeq
	LastSignedAt  time.Time // local time the last valid signed message arrived
	LastIssuedAt  time.Time // issued_at of that message (site time)
	CommandSeqMax uint64    // highest command seq honoured
}
