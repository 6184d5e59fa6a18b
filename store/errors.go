package store

import "errors"

// Errors the store returns, wrapped with what and where. Test with errors.Is.
var (
	// ErrCorrupt means the file or one of its records is damaged. The store
	// refuses to decide from it.
	ErrCorrupt = errors.New("damaged database")

	// ErrLocked means another process (normally another latchd) holds the
	// database file's lock.
	ErrLocked = errors.New("database file is locked by another process")

	// ErrSchemaTooNew means the file was written by a newer latchd whose
	// schema this build does not know.
	ErrSchemaTooNew = errors.New("database schema is newer than this build")

	// ErrNotFound means the asked-for card, holder or key does not exist,
	// or the snapshot a chunk or commit names is not the one staged.
	ErrNotFound = errors.New("not found")

	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("store is closed")

	// ErrSeqGap means a delta's sequence is beyond the applied one + 1: the
	// door missed deltas and must ask the site for them or for a snapshot.
	ErrSeqGap = errors.New("allowlist sequence gap")

	// ErrSeqOld means a delta or snapshot is not newer than what is applied
	// (a replay or a rollback); nothing was changed.
	ErrSeqOld = errors.New("allowlist sequence already applied")

	// ErrChunkOrder means a snapshot chunk is not the one the stage needs
	// next, or a snapshot was committed before all its chunks were staged:
	// ask for chunk SnapshotStage.Next.
	ErrChunkOrder = errors.New("snapshot chunk out of order")

	// ErrInvalidOp means an allowlist change is malformed; with a Delta, no
	// operation of it was applied.
	ErrInvalidOp = errors.New("invalid allowlist operation")

	// ErrInvalidPIN means a PIN breaks the enrolment rules.
	ErrInvalidPIN = errors.New("invalid PIN")

	// ErrInvalidArgument means a call got a value it cannot use.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrAckAhead means an acknowledgement names a sequence the door never
	// wrote.
	ErrAckAhead = errors.New("acknowledged sequence is beyond the last audit entry")
)
