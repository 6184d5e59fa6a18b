package store

import (
	"time"
)

// Reason is a word from the audit vocabulary (docs/audit.md): decision
// reasons, door events, sync events and system events.
type Reason string

// Alarm reports whether r is an alarm: an event an operator must see. It
// is the one definition of an alarm on the door: retention never drops an
// alarm before the site has acknowledged it, and the journal's in-memory
// queue sheds alarms last. Alarms are the door's (forced, held, tamper,
// reader fault), the people's (duress, lockout), the site's messages that
// were refused or carried out, a stale allowlist, a lockdown, and the
// journal's own trouble (journal_fault, events_lost).
func (r Reason) Alarm() bool {
	switch r {
	case ReasonDoorForced, ReasonDoorHeld, ReasonTamper, ReasonReaderFault,
		ReasonGrantedDuress, ReasonLockedOut, ReasonLockdown,
		ReasonACLRejected, ReasonCommandRejected, ReasonCommandApplied, ReasonACLStale,
		ReasonJournalFault, ReasonEventsLost, ReasonKeyRotated:
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
	// ReasonScheduleFirstCard is a first-card unlock schedule started by
	// a granted card that counts: the door stays unlocked until the
	// window ends.
	ReasonScheduleFirstCard Reason = "schedule_first_card"
)

// Sync events.
const (
	ReasonACLApplied      Reason = "acl_applied"
	ReasonACLRejected     Reason = "acl_rejected"
	ReasonSnapshotApplied Reason = "snapshot_applied"
	ReasonCommandApplied  Reason = "command_applied"
	ReasonCommandRejected Reason = "command_rejected"
	ReasonACLStale        Reason = "acl_stale"
	// ReasonKeyRotated is a change of the site keys a door trusts: a
	// signed rotation named the next key, or a replaced key reached its
	// end and is refused from then on.
	ReasonKeyRotated Reason = "key_rotated"
)

// System events.
const (
	ReasonStarted    Reason = "started"     // the door controller started
	ReasonStopped    Reason = "stopped"     // the door controller stopped in order
	ReasonEventsLost Reason = "events_lost" // events were lost: not written before a crash or stop, or shed in memory
	// ReasonJournalFault is the journal's trouble: as a system event, a
	// span in which it could not write, or a full disk that took its
	// reserve; as an access reason, a grant refused because its record
	// could not be made durable.
	ReasonJournalFault Reason = "journal_fault"
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
	UID          []byte    // the card's UID as read; empty for a keypad code
	RandomUID    bool      // the reader says the UID is random (never a credential)
	PIN          []byte    // the digits typed, for the PIN stage; wiped by the caller afterwards
	Door         string    // the door asking
	DoorGroups   []string  // groups the door belongs to; a card listing one opens it
	Mode         Mode      // the door's mode now (its unlock schedule may change it)
	Lockdown     bool      // the door is in lockdown: only override cards open
	Now          time.Time // the door's clock
	ClockTrusted bool      // false before the first time sync
	// FirstCardGroup, if set, asks whether a card that passes the checks
	// before the PIN lists this name in its door list (Decision.FirstCard):
	// the door's first-card unlock schedule counts only such cards.
	FirstCardGroup string
}

// Decision is the answer to a Request.
type Decision struct {
	Outcome        Outcome // deny, grant, or ask for the PIN
	Reason         Reason  // the audit word for the outcome; empty for NeedPIN
	HolderID       string  // the card's holder, when the card is known
	HolderName     string  // the holder's display name, when known
	ExtendedUnlock bool    // the card asks for the longer accessibility unlock time
	// FirstCard says the card's door list names Request.FirstCardGroup (a
	// "*" entry does not count).
	FirstCard bool
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
	Seq        uint64      `json:"seq"`                   // position in the chain, from 1
	Time       time.Time   `json:"time"`                  // the door's clock when it happened
	Clock      TimeQuality `json:"clock"`                 // whether that clock was synced
	BootID     string      `json:"boot"`                  // the run of latchd that wrote it
	Door       string      `json:"door"`                  // the door it happened at
	Type       EventType   `json:"type"`                  // access, door, sync or system
	Reason     Reason      `json:"reason"`                // the audit word
	UID        string      `json:"uid,omitempty"`         // upper-case hex, no separators
	Holder     string      `json:"holder,omitempty"`      // holder id, when known
	HolderName string      `json:"holder_name,omitempty"` // holder display name, when known
	Detail     string      `json:"detail,omitempty"`      // free text: who, why, what was refused
	Prev       string      `json:"prev"`                  // hex SHA-256 of the previous entry
	Hash       string      `json:"hash"`                  // hex SHA-256 of this entry
}

// Flags are per-card switches.
type Flags struct {
	CardOnly         bool `json:"card_only,omitempty"`         // may open card+PIN doors without a PIN
	ExtendedUnlock   bool `json:"extended_unlock,omitempty"`   // longer unlock time (accessibility)
	LockdownOverride bool `json:"lockdown_override,omitempty"` // still opens during a lockdown
}

// Window is one span of a day, in minutes since local midnight: [From, To).
type Window struct {
	From uint16 `json:"from"` // first minute inside the window
	To   uint16 `json:"to"`   // first minute after it (at most 1440)
}

// Schedule is a weekly set of windows in the door's time zone. An empty
// Schedule means always. Holidays (YYYY-MM-DD) are treated as closed days.
type Schedule struct {
	Weekly   [7][]Window `json:"weekly,omitempty"`   // index is time.Weekday
	Holidays []string    `json:"holidays,omitempty"` // YYYY-MM-DD, closed all day
}

// Card is an allowlist entry.
type Card struct {
	UID        []byte    `json:"uid"`                   // 4, 7 or 10 bytes
	HolderID   string    `json:"holder_id"`             // the holder the card belongs to
	HolderName string    `json:"holder_name,omitempty"` // display name, when no Holder record gives one
	PINHash    string    `json:"pin_hash,omitempty"`    // argon2id, PHC string format
	Doors      []string  `json:"doors,omitempty"`       // door ids or group names this card opens
	ValidFrom  time.Time `json:"valid_from,omitzero"`   // not valid before; zero means no limit
	ValidUntil time.Time `json:"valid_until,omitzero"`  // not valid from this instant on; zero means no limit
	Schedule   Schedule  `json:"schedule,omitzero"`     // when it opens; empty means always
	Flags      Flags     `json:"flags,omitzero"`        // per-card switches
}

// Holder is a person; several cards may share one.
type Holder struct {
	ID            string `json:"id"`                        // the site's holder id
	Name          string `json:"name,omitempty"`            // display name
	DuressPINHash string `json:"duress_pin_hash,omitempty"` // argon2id of the duress PIN, optional
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
	Kind     OpKind  `json:"op"`                  // what to do
	Card     *Card   `json:"card,omitempty"`      // for upsert_card
	Holder   *Holder `json:"holder,omitempty"`    // for upsert_holder
	UID      []byte  `json:"uid,omitempty"`       // for the card operations
	HolderID string  `json:"holder_id,omitempty"` // for the holder operations
	Reason   string  `json:"reason,omitempty"`    // why, for revocations
}

// Delta is an ordered list of operations that moves the allowlist from
// Seq-1 to Seq.
type Delta struct {
	Seq uint64 `json:"seq"` // the allowlist sequence after the delta
	Ops []Op   `json:"ops"` // applied in order, in one transaction
}

// Revocation is a revoked card UID or holder.
type Revocation struct {
	UID      []byte `json:"uid,omitempty"`       // a revoked card, or
	HolderID string `json:"holder_id,omitempty"` // a revoked holder (all their cards)
	Reason   string `json:"reason,omitempty"`    // why, for the auditor
}

// Snapshot is the full allowlist at Seq.
type Snapshot struct {
	Seq         uint64       `json:"seq"`         // the allowlist sequence it stands for
	Cards       []Card       `json:"cards"`       // every card
	Holders     []Holder     `json:"holders"`     // every holder record
	Revocations []Revocation `json:"revocations"` // every revocation in force
}

// SyncState is what the door knows about its place in the site's history.
type SyncState struct {
	AppliedSeq    uint64    // last applied allowlist sequence
	SnapshotHash  string    // hex SHA-256 of the canonical allowlist state at AppliedSeq
	LastSignedAt  time.Time // local time the last valid signed message arrived
	LastIssuedAt  time.Time // issued_at of that message (site time)
	CommandSeqMax uint64    // highest command seq recorded (RecordCommand)
}
