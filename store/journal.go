package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file is the journal: the door's one writer of audit events and of
// the door state that goes with them. Every part of the door hands it
// entries and goes on; one goroutine commits whatever is waiting in one
// transaction (one commit per batch), keeps what it could not write in
// memory in order, retries with back-off, and is the only place that does.
//
// What the journal could not write is never lost silently. Once a write
// has failed, the count and time span of the events held in memory are
// kept in a small preallocated file beside the database (journal.lost),
// rewritten in place and synced, which needs no new disk space; whatever a
// crash or a stop then leaves unwritten is recorded as an events_lost event
// at the next start. Events shed in memory (past JournalOptions.MaxPending,
// alarms last) are recorded as events_lost at the next successful write.
// A commit that hangs without failing (an SD card that stalls) is watched:
// after JournalOptions.HangCheck the loss record counts everything that
// waits, the batch in flight included, and again while it hangs. What is
// not counted: events that wait only for a commit under way for less than
// that, or for their linger, when the power goes. A grant never opens the
// door before its record is written.
//
// A reserve file (journal.reserve) is kept so that ordinary growth of
// other files never fills the journal's disk: when a write fails with
// ENOSPC the reserve is released and the write tried again at once, and
// the journal says so (Health.Reserve and a journal_fault event). It is
// made again when the disk has room.

// Names of the journal's files in JournalOptions.Dir.
const (
	lossFileName    = "journal.lost"
	reserveFileName = "journal.reserve"
)

// Defaults of JournalOptions.
const (
	DefaultJournalMaxPending = 10000
	DefaultJournalReserve    = 4 << 20
)

// lossFileSize is the preallocated size of the loss record file; the
// record itself takes lossRecordLen bytes at its start.
const (
	lossFileSize  = 512
	lossRecordLen = 8 + 8 + 8 + 8 + 4 // magic, count, first and last time, CRC-32C
	lossMagic     = "LATCHJL1"
)

// StateChange is a change of the door's state that the journal commits in
// the same transaction as the events of its entry. Make one with
// PutStateChange or LockdownChange.
type StateChange struct {
	lockdown bool   // a lockdown flag (else a PutState value)
	key      string // the state key, or the door id of a lockdown flag
	val      []byte
	on       bool
}

// PutStateChange is PutState(key, val) as a journal change.
func PutStateChange(key string, val []byte) StateChange {
	return StateChange{key: key, val: slices.Clone(val)}
}

// LockdownChange is SetLockdown(door, on) as a journal change.
func LockdownChange(door string, on bool) StateChange {
	return StateChange{lockdown: true, key: door, on: on}
}

// Lockdown reports whether c sets a door's lockdown flag, and to what.
func (c StateChange) Lockdown() (door string, on, ok bool) {
	return c.key, c.on, c.lockdown
}

// State reports whether c stores a state value, and which.
func (c StateChange) State() (key string, val []byte, ok bool) {
	if c.lockdown {
		return "", nil, false
	}
	return c.key, slices.Clone(c.val), true
}

func (c *StateChange) check() error {
	if c.lockdown {
		if err := checkID("door", c.key); err != nil {
			return fmt.Errorf("lockdown flag: %w: %w", ErrInvalidArgument, err)
		}
		return nil
	}
	if err := checkStateKey(c.key); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if len(c.val) > maxStateValue {
		return fmt.Errorf("state %q: %w: value of %d bytes, limit %d", c.key, ErrInvalidArgument, len(c.val), maxStateValue)
	}
	return nil
}

func (c *StateChange) apply(tx *bolt.Tx) error {
	if c.lockdown {
		b := tx.Bucket(bucketLockdown)
		if !c.on {
			return b.Delete([]byte(c.key))
		}
		return b.Put([]byte(c.key), encodeBool(true))
	}
	return tx.Bucket(bucketState).Put([]byte(c.key), encodeBytes(c.val))
}

// JournalEntry is what the journal writes in one piece: audit events and
// state changes, committed together in one transaction (changes first).
type JournalEntry struct {
	Events  []Event
	Changes []StateChange
	// Done, when set, makes the entry one whose writing the caller waits
	// for: it is tried at once, even while the journal is backing off, and
	// Done is called once, on the journal's goroutine, with the stored
	// events (Seq, Prev and Hash set) or with the error. An entry with Done
	// is written now or never: on failure it is dropped, not retried, so
	// that the caller decides what to record instead. Done must not block.
	Done func([]Event, error)
}

// JournalOptions configure a Journal. Zero values take the defaults.
type JournalOptions struct {
	// Dir holds the loss record and the reserve file (default: the
	// directory of the store's file). Put it on the database's filesystem.
	Dir string
	// Reserve is the size in bytes of the reserve file released when the
	// disk fills; 0 keeps no reserve. The daemon's default is
	// DefaultJournalReserve.
	Reserve int64
	// MaxPending bounds the events held in memory while the journal cannot
	// write (default DefaultJournalMaxPending). Beyond it the oldest event
	// that is not an alarm (the oldest alarm when all are) is shed and
	// counted, and an events_lost event says so at the next write.
	MaxPending int
	// RetryMin and RetryMax bound the back-off between attempts while
	// writes fail (defaults 100 ms and 10 s).
	RetryMin, RetryMax time.Duration
	// Linger is how long an entry nobody waits for may wait for company
	// before it is committed (default 2 ms; negative: none): a grant that
	// follows within it shares the commit, so the grant's path costs one
	// commit even when the door's previous step was still being written.
	// An entry whose caller waits is committed at once, with everything
	// queued before it.
	Linger time.Duration
	// ReserveCheck is how often a released reserve is made again once the
	// disk has twice its size free (default 1 min).
	ReserveCheck time.Duration
	// HangCheck is how long a commit may take before the loss record
	// counts what waits behind it, and how often it is counted again while
	// the commit hangs (default 500 ms): an SD card that stalls without
	// failing still leaves a count for the next start.
	HangCheck time.Duration
	// Now is the clock of the events the journal writes itself
	// (events_lost, journal_fault); default time.Now.
	Now func() time.Time
	// Door and BootID go into the journal's own events.
	Door, BootID string
	// Clock gives the time quality of the journal's own events (default
	// unsynced).
	Clock func() TimeQuality
	// OnStored is called on the journal's goroutine with the events of
	// every committed batch, in chain order. It must not block for long.
	OnStored func([]Event)
	// Logger receives the journal's operational log (default: none).
	Logger *slog.Logger
}

func (o *JournalOptions) withDefaults(st *Store) (JournalOptions, error) {
	var r JournalOptions
	if o != nil {
		r = *o
	}
	if r.Dir == "" {
		r.Dir = filepath.Dir(st.path)
	}
	if r.MaxPending == 0 {
		r.MaxPending = DefaultJournalMaxPending
	}
	if r.RetryMin == 0 {
		r.RetryMin = 100 * time.Millisecond
	}
	if r.RetryMax == 0 {
		r.RetryMax = 10 * time.Second
	}
	if r.ReserveCheck == 0 {
		r.ReserveCheck = time.Minute
	}
	if r.HangCheck == 0 {
		r.HangCheck = 500 * time.Millisecond
	}
	switch {
	case r.Linger == 0:
		r.Linger = 2 * time.Millisecond
	case r.Linger < 0:
		r.Linger = 0
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Clock == nil {
		r.Clock = func() TimeQuality { return TimeUnsynced }
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case r.Reserve < 0:
		return r, fmt.Errorf("%w: negative reserve", ErrInvalidArgument)
	case r.MaxPending < 1:
		return r, fmt.Errorf("%w: MaxPending must be positive", ErrInvalidArgument)
	case r.RetryMin < 0 || r.RetryMax < r.RetryMin || r.ReserveCheck < 0 || r.HangCheck < 0:
		return r, fmt.Errorf("%w: retry times must be positive, min <= max", ErrInvalidArgument)
	}
	return r, nil
}

// JournalHealth is whether the journal writes.
type JournalHealth struct {
	// OK is false while writes fail: events wait in memory, and an entry
	// with Done fails.
	OK bool
	// Reserve is true while the reserve file is released: the disk was
	// full and the journal writes into the space the reserve freed.
	Reserve bool
	// Err is the last write's error while not OK.
	Err string
	// Since is when the journal last changed between OK and not OK.
	Since time.Time
	// Pending is the number of events held in memory, not yet written.
	Pending int
	// Lost is the number of events known lost and not yet recorded as
	// events_lost (shed in memory, or left by an earlier run).
	Lost uint64
	// Recorded is the count the loss record on disk holds now: what the
	// next start reports as lost if the service ends before writing them.
	Recorded uint64
}

// Detail is a one-line summary of h for a status display: "ok",
// "reserve in use: …" or "fault: " and the write error. It leaves the
// counts out, so that it changes only when the journal's state does.
func (h JournalHealth) Detail() string {
	switch {
	case !h.OK:
		return "fault: " + h.Err
	case h.Reserve:
		return "reserve in use: the disk was full"
	}
	return "ok"
}

// Journal is the door's audit writer (see the top of journal.go). Create it
// with OpenJournal after the store; Close it before the store.
type Journal struct {
	st   *Store
	o    JournalOptions
	log  *slog.Logger
	wake chan struct{}
	done chan struct{}

	mu       sync.Mutex
	queue    []queued   // waiting, in order
	nextID   uint64     // id of the next queued entry
	inflight uint64     // entries with ids up to this are being committed: never shed
	pending  int        // events in queue
	shedRec  lossRecord // events shed from the queue, not yet in lost
	closing  bool
	health   JournalHealth
	changes  chan struct{}
	lossFile *os.File

	// Owned by the writer goroutine.
	lost          lossRecord // known lost, not yet recorded as events_lost
	onDisk        lossRecord // what the loss file says
	lossText      string     // why lost events were lost, for the events_lost detail
	lossUnknown   string     // the loss record was damaged: why, until recorded
	reserveOK     bool       // the reserve file is whole (or none is wanted)
	reserveAt     time.Time  // when to try making the reserve again
	reserveNotice bool       // the release of the reserve is still to be recorded
	failing       bool
	failedAt      time.Time
	firstErr      string
	retryGap      time.Duration
	retryAt       time.Time
}

// queued is an entry in the queue.
type queued struct {
	JournalEntry
	id uint64
	at time.Time // when it was added
}

// lossRecord is a count of events and the span of their times.
type lossRecord struct {
	n           uint64
	first, last time.Time
}

func (r *lossRecord) add(t time.Time) {
	if r.n == 0 || t.Before(r.first) {
		r.first = t
	}
	if r.n == 0 || t.After(r.last) {
		r.last = t
	}
	r.n++
}

func (r *lossRecord) merge(o lossRecord) {
	if o.n == 0 {
		return
	}
	if r.n == 0 || o.first.Before(r.first) {
		r.first = o.first
	}
	if r.n == 0 || o.last.After(r.last) {
		r.last = o.last
	}
	r.n += o.n
}

func (r lossRecord) span() string {
	if r.n == 0 {
		return ""
	}
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	return fmt.Sprintf("event times %s to %s", f(r.first), f(r.last))
}

// JournalLoss is what a journal's loss record says: the events a crash or
// stop would lose (or lost), and the span of their times.
type JournalLoss struct {
	Count       uint64
	First, Last time.Time
}

// ReadJournalLoss reads the loss record in a journal's directory, as the
// next OpenJournal would: for a check of a door's data directory while the
// service is stopped. A missing file is no loss.
func ReadJournalLoss(dir string) (JournalLoss, error) {
	b, err := os.ReadFile(filepath.Join(dir, lossFileName))
	if errors.Is(err, os.ErrNotExist) {
		return JournalLoss{}, nil
	}
	if err != nil {
		return JournalLoss{}, fmt.Errorf("store: journal loss record: %w", err)
	}
	r, err := decodeLossRecord(b[:min(len(b), lossRecordLen)])
	if err != nil {
		return JournalLoss{}, fmt.Errorf("store: journal loss record: %w", err)
	}
	return JournalLoss{Count: r.n, First: r.first, Last: r.last}, nil
}

// OpenJournal starts the journal of st. It reads the loss record a previous
// run left (an events_lost event is the first thing it writes when there
// is one), makes sure the loss record file and the reserve file exist, and
// starts the writer. It fails if the loss record file cannot be made: the
// journal would have nowhere to count what it cannot write.
func OpenJournal(st *Store, opts *JournalOptions) (*Journal, error) {
	o, err := opts.withDefaults(st)
	if err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	j := &Journal{
		st:      st,
		o:       o,
		log:     o.Logger,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		changes: make(chan struct{}, 1),
		health:  JournalHealth{OK: true, Since: o.Now()},
	}
	f, prev, err := openLossFile(filepath.Join(o.Dir, lossFileName))
	if err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	j.lossFile = f
	switch {
	case prev.err != nil:
		j.log.Error("journal: the loss record of the previous run is unreadable; recording that events may have been lost", "err", prev.err)
		j.lossUnknown = "the journal's loss record was unreadable at start (" + prev.err.Error() + "); events of the previous run may have been lost"
		j.kick()
	case prev.rec.n > 0:
		j.log.Error("journal: the previous run ended with events not written", "lost", prev.rec.n, "span", prev.rec.span())
		j.lost = prev.rec
		j.onDisk = prev.rec
		j.lossText = "the service stopped while they were held in memory, not yet written"
		j.kick()
	}
	j.health.Lost, j.health.Recorded = j.lost.n, j.onDisk.n
	j.reserveOK = j.makeReserve()
	go j.run()
	return j, nil
}

// kick wakes the writer; it never blocks.
func (j *Journal) kick() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// Add queues an entry and returns at once; it never blocks on the disk.
// Entries are written in the order they are added. Add after Close only
// logs the entry's events as lost (the loss record is closed) and fails
// its Done.
func (j *Journal) Add(e JournalEntry) {
	e.Events = slices.Clone(e.Events)
	for i := range e.Events {
		e.Events[i] = normalizeEvent(e.Events[i])
	}
	var bad []error
	e.Changes = slices.DeleteFunc(slices.Clone(e.Changes), func(c StateChange) bool {
		if err := c.check(); err != nil {
			bad = append(bad, err)
			return true
		}
		return false
	})
	if len(bad) > 0 {
		// A change no write could ever take would block the queue forever.
		j.log.Error("journal: invalid state change dropped", "err", errors.Join(bad...))
	}
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		// Nothing can count them now: the log is the last record.
		j.log.Error("journal: entry added after close; its events are lost", "events", len(e.Events))
		if e.Done != nil {
			go e.Done(nil, fmt.Errorf("store: journal: %w", ErrClosed))
		}
		return
	}
	j.nextID++
	j.queue = append(j.queue, queued{e, j.nextID, time.Now()})
	j.pending += len(e.Events)
	j.shed()
	j.health.Pending = j.pending
	j.mu.Unlock()
	j.kick()
}

// shed drops events past MaxPending: the oldest that is not an alarm, or
// the oldest when all are alarms. Events of an entry with Done are never
// shed (the caller waits for them). j.mu is held.
func (j *Journal) shed() {
	for j.pending > j.o.MaxPending {
		qi, ei := j.victim(func(e Event) bool { return !e.Reason.Alarm() })
		if qi < 0 {
			qi, ei = j.victim(func(Event) bool { return true })
		}
		if qi < 0 {
			return
		}
		en := &j.queue[qi]
		j.droppedLocked(en.Events[ei])
		en.Events = slices.Delete(slices.Clone(en.Events), ei, ei+1)
		j.pending--
		if len(en.Events) == 0 && len(en.Changes) == 0 {
			j.queue = slices.Delete(j.queue, qi, qi+1)
		}
	}
}

// victim finds the oldest event that ok accepts in an entry without Done
// that is not being committed.
func (j *Journal) victim(ok func(Event) bool) (int, int) {
	for qi, en := range j.queue {
		if en.Done != nil || en.id <= j.inflight {
			continue
		}
		for ei, e := range en.Events {
			if ok(e) {
				return qi, ei
			}
		}
	}
	return -1, -1
}

// droppedLocked counts an event shed in memory; the writer adds the count
// to j.lost. j.mu is held.
func (j *Journal) droppedLocked(e Event) {
	j.log.Error("journal: too many events held in memory; one dropped", "reason", e.Reason, "time", e.Time)
	j.shedRec.add(e.Time)
	j.health.Lost++
}

// Health returns the journal's state. Safe from any goroutine.
func (j *Journal) Health() JournalHealth {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.health
}

// HealthChanges delivers a value whenever Health changes between OK and
// not OK or in Reserve (coalesced: one pending notice at most). It is
// meant for one consumer.
func (j *Journal) HealthChanges() <-chan struct{} { return j.changes }

// Close stops taking entries, makes a last attempt to write what waits,
// records what remains in the loss record (so that the next start reports
// it as events_lost) and stops the writer. It returns an error when events
// remain unwritten. Close the journal before the store.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		<-j.done
		return nil
	}
	j.closing = true
	j.mu.Unlock()
	j.kick()
	<-j.done
	var err error
	j.mu.Lock()
	if n := j.pending; n > 0 || j.lost.n > 0 {
		err = fmt.Errorf("store: journal: %d events not written at close; the next start records them as events_lost", uint64(n)+j.lost.n)
	}
	j.mu.Unlock()
	if cerr := j.lossFile.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("store: journal: close the loss record: %w", cerr))
	}
	return err
}
