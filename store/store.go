package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// UntrustedClockPolicy says what time-based rules do while the door's clock
// is not trusted (Request.ClockTrusted false: a Pi without a real-time
// clock boots at 1970 until NTP answers).
//
// The latest signed site time the door has seen (SyncState.LastIssuedAt,
// recorded by MarkSigned) is a lower bound on the real time, the clock
// floor. Whether or not the clock is trusted, no time rule is judged
// before it: while the clock is trusted, validity dates, weekly windows
// and holidays are judged at the later of Request.Now and the floor, so a
// clock set back while it claims to be synced cannot reopen an expired
// card. While the clock is not trusted, Request.Now counts for nothing:
// validity dates are judged against the floor alone (a card whose
// ValidUntil is at or before it is expired, and a card whose ValidFrom is
// at or before it has started), and what the floor cannot settle is left
// to the policy. Weekly windows and holidays are not judged at the floor
// then, as it may be long past.
type UntrustedClockPolicy int

const (
	// UntrustedDenyBound refuses any card whose access depends on the time
	// and cannot be proven from the signed site time: a ValidUntil after it
	// (reason expired), a ValidFrom after it (not_yet_valid), weekly
	// windows or holidays (outside_schedule). Cards without time rules
	// still open. This is the default: fail secure.
	UntrustedDenyBound UntrustedClockPolicy = iota
	// UntrustedIgnoreSchedules skips weekly windows and holidays, and
	// validity dates that the signed site time cannot settle, so people can
	// still get in while the clock is wrong. Decision.Note says so.
	UntrustedIgnoreSchedules
)

// String names the policy as a config file would.
func (p UntrustedClockPolicy) String() string {
	switch p {
	case UntrustedDenyBound:
		return "deny-bound"
	case UntrustedIgnoreSchedules:
		return "ignore-schedules"
	}
	return fmt.Sprintf("UntrustedClockPolicy(%d)", int(p))
}

// LockoutPolicy limits PIN guessing. Zero fields take the defaults.
type LockoutPolicy struct {
	// MaxBadPINs consecutive bad PINs lock a card out (default 5).
	MaxBadPINs int
	// Backoff is the first lockout (default 30 s); each further bad PIN
	// after a lockout doubles it, up to MaxBackoff (default 15 min).
	Backoff time.Duration
	// MaxBackoff caps the doubling lockout (default 15 min).
	MaxBackoff time.Duration
	// DoorMaxBadPINs bad PINs from any cards within DoorWindow make the
	// door refuse PINs until the oldest of them is DoorWindow old (default
	// 20 within 10 min). It slows down guessing with many cards.
	DoorMaxBadPINs int
	// DoorWindow is the span DoorMaxBadPINs is counted over (default 10 min).
	DoorWindow time.Duration
}

// Retention bounds the audit log. Prune applies it. Zero fields mean no
// limit.
type Retention struct {
	// MaxEntries keeps at most this many delivered entries.
	MaxEntries int
	// MaxAge drops delivered entries whose Time is older than this.
	MaxAge time.Duration
	// MaxUndelivered, when set, caps the entries still owed to the site:
	// beyond it the oldest undelivered entries are dropped, but never past
	// an undelivered alarm (door_forced, door_held, tamper, granted_duress,
	// locked_out). 0 keeps every undelivered entry; if you set it, use at
	// least 100,000 (about 20 MB of file).
	MaxUndelivered int
}

// Options configure a Store. The zero value (or nil) gives the defaults.
// Open copies the options; it never writes to them.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrLocked (default 1 s).
	LockTimeout time.Duration
	// Location is the door's time zone, in which schedules and holidays
	// are read (default UTC).
	Location *time.Location
	// UntrustedClock is what time rules do while the clock is not trusted.
	UntrustedClock UntrustedClockPolicy
	// ClockSkew is how far the door's clock may lag the latest signed site
	// time in normal running (default 30 s, as mqtt.Options.ClockSkew).
	// Time rules are judged at the later of the two whatever the lag;
	// Decision.Note names the lag only beyond ClockSkew.
	ClockSkew time.Duration
	// PINParams are used for the dummy hash that keeps the PIN answer time
	// the same for unknown or locked-out cards. Use the parameters your
	// site enrols with (default DefaultPINParams).
	PINParams PINParams
	// Lockout limits PIN guessing.
	Lockout LockoutPolicy
	// Retention bounds the audit log (see Prune).
	Retention Retention
	// MaxBatch is the largest number of audit entries committed in one
	// transaction by group commit (default 1000).
	MaxBatch int
	// MmapSize is the initial memory map of the file in bytes (default 64
	// MiB). While the file fits in it, long readers such as Verify never
	// hold up writers. Lower it on a 32-bit system short of address space.
	MmapSize int
	// SkipCheck skips every check beyond the cheap ones Open always runs
	// (zero-length, truncated, bad meta pages, freelist or root page,
	// schema): no background check (so Decide's lookups stay guarded, see
	// Open), no audit head or state sum read at Open. For tools that
	// inspect a damaged file; Check still runs on demand.
	SkipCheck bool
	// CheckAtOpen runs the full check (see Check) in Open, before it
	// returns, instead of in the background: Open then takes time in
	// proportion to the file (seconds at a million cards). A damaged
	// snapshot stage is dropped, as the background check drops it.
	CheckAtOpen bool
	// CheckPause, if set, is called before each chunk of the background
	// check, on its goroutine, with a channel closed when the store is
	// closing; it returns when the next chunk may run. Pausing there
	// makes the check leave the disk and CPU to the door (default: no
	// pause). It must return once stop is closed.
	CheckPause func(stop <-chan struct{})
	// Logger receives migrations and repairs of file mode (default: none).
	Logger *slog.Logger

	migrateBatch int          // records per migration transaction (default migrateBatch)
	migrateHook  func() error // tests: called after each migration batch; an error stops it
	// Tests: pages and records the background check reads per read
	// transaction (defaults checkChunkPages, checkChunkRecords).
	checkPages, checkRecords int
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.LockTimeout == 0 {
		r.LockTimeout = time.Second
	}
	if r.Location == nil {
		r.Location = time.UTC
	}
	if r.ClockSkew == 0 {
		r.ClockSkew = 30 * time.Second
	}
	if r.PINParams == (PINParams{}) {
		r.PINParams = DefaultPINParams
	}
	l := &r.Lockout
	if l.MaxBadPINs == 0 {
		l.MaxBadPINs = 5
	}
	if l.Backoff == 0 {
		l.Backoff = 30 * time.Second
	}
	if l.MaxBackoff == 0 {
		l.MaxBackoff = 15 * time.Minute
	}
	if l.DoorMaxBadPINs == 0 {
		l.DoorMaxBadPINs = 20
	}
	if l.DoorWindow == 0 {
		l.DoorWindow = 10 * time.Minute
	}
	if r.MaxBatch == 0 {
		r.MaxBatch = 1000
	}
	if r.MmapSize == 0 {
		r.MmapSize = 64 << 20
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.migrateBatch == 0 {
		r.migrateBatch = migrateBatch
	}
	if r.checkPages == 0 {
		r.checkPages = checkChunkPages
	}
	if r.checkRecords == 0 {
		r.checkRecords = checkChunkRecords
	}
	switch {
	case r.LockTimeout < 0:
		return r, fmt.Errorf("%w: negative lock timeout", ErrInvalidArgument)
	case r.ClockSkew < 0:
		return r, fmt.Errorf("%w: negative clock skew", ErrInvalidArgument)
	case r.UntrustedClock != UntrustedDenyBound && r.UntrustedClock != UntrustedIgnoreSchedules:
		return r, fmt.Errorf("%w: unknown untrusted-clock policy %d", ErrInvalidArgument, r.UntrustedClock)
	case l.MaxBadPINs < 1 || l.DoorMaxBadPINs < 1 || l.DoorMaxBadPINs > maxDoorFails:
		return r, fmt.Errorf("%w: lockout counts must be 1 or more (door at most %d)", ErrInvalidArgument, maxDoorFails)
	case l.Backoff < 0 || l.MaxBackoff < l.Backoff || l.DoorWindow < 0:
		return r, fmt.Errorf("%w: lockout durations must be positive and backoff <= max backoff", ErrInvalidArgument)
	case r.Retention.MaxEntries < 0 || r.Retention.MaxAge < 0 || r.Retention.MaxUndelivered < 0:
		return r, fmt.Errorf("%w: negative retention", ErrInvalidArgument)
	case r.MaxBatch < 1 || r.MmapSize < 0:
		return r, fmt.Errorf("%w: MaxBatch must be positive", ErrInvalidArgument)
	case r.SkipCheck && r.CheckAtOpen:
		return r, fmt.Errorf("%w: SkipCheck and CheckAtOpen exclude each other", ErrInvalidArgument)
	}
	if err := r.PINParams.check(); err != nil {
		return r, fmt.Errorf("%w: PINParams: %w", ErrInvalidArgument, err)
	}
	return r, nil
}

// Store is an open latch database. Its methods are safe for concurrent use.
type Store struct {
	path  string
	db    *bolt.DB
	opts  Options
	log   *slog.Logger
	dummy phc // hash checked when there is no real one, to keep timing

	argonRuns atomic.Uint64 // argon2id derivations done by Decide

	// pruneMu keeps Prune from removing entries while a chunked Verify
	// walks past them.
	pruneMu     sync.Mutex
	verifyChunk int          // entries Verify reads per read transaction
	verifyHook  func()       // tests: called between Verify's chunks
	journalHook func() error // tests: fails the journal's writes when it returns an error

	indexBatch int                           // holder index keys CommitSnapshot merges per transaction
	indexHook  func(indexed, keys int) error // tests: called after each merge transaction; an error stops the commit

	commits atomic.Uint64 // write transactions committed
	names   nameCache     // numbers of the door and group names Decide asks about

	// The background check and the guard of Decide's lookups (see
	// guard.go, check.go).
	rf        *os.File      // the file, for plain reads of its pages
	pageSize  uint64        // bbolt's page size
	guardMu   sync.Mutex    // guards guard
	guard     *pathGuard    // Decide's, kept for its buffer
	pagesOK   atomic.Bool   // every page has been checked since Open: lookups need no guard
	watchACL  atomic.Bool   // the background check runs: count allowlist writes
	aclWrites atomic.Int64  // write transactions that changed the allowlist state sum while watched
	stop      chan struct{} // closed by Close: the background check stops
	checkDone chan struct{} // closed when the background check has ended (or at Open, when there is none)
	// pagesReady is closed once the page structure is checked (or at Open,
	// when there is no background check) or the check has ended: see
	// waitPages.
	pagesReady     chan struct{}
	pagesReadyOnce sync.Once
	faultOnce      sync.Once
	fault          atomic.Pointer[error]
	faulted        chan struct{} // closed when fault is set

	mu       sync.RWMutex // guards closed and sends on appendCh
	closed   bool
	appendCh chan appendCall
	done     chan struct{} // closed when the committer has stopped
}

// Open opens (creating if needed, mode 0600) the database at path, waits at
// most Options.LockTimeout for the file lock, refuses a zero-length,
// truncated or damaged file with ErrCorrupt, and migrates an older schema
// (after writing a backup copy next to it, path + ".schema-N.bak"). opts
// may be nil.
//
// Open reads only what it needs to trust the file, whatever its size: the
// meta pages, the freelist and root page, the pages on the way to the
// records below, the schema version, the audit head and the last entry it
// names, the outbox cursor and the allowlist sync state. The rest is
// checked in the background after Open returns (see CheckDone): every
// page's structure, then every record, the audit chain, the allowlist
// state sum and holder index, and a staged snapshot, a bounded chunk at a
// time, each in a short read transaction of its own. Damage it finds is
// reported by Fault and makes Decide deny; a damaged snapshot stage is
// dropped with a warning instead. Until every page's structure has been
// checked, each lookup Decide makes first checks, with plain reads, the
// pages bbolt will read on its way, which bbolt reads without checks.
// Options.CheckAtOpen runs the full check in Open instead; Options.SkipCheck
// runs none.
func Open(path string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := prepareFile(path, o); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db, err := openBolt(path, o)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	rf, err := os.Open(path)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{path: path, db: db, opts: o, log: o.Logger, verifyChunk: 10000, indexBatch: defaultIndexBatch,
		rf: rf, pageSize: uint64(db.Info().PageSize),
		stop: make(chan struct{}), checkDone: make(chan struct{}), faulted: make(chan struct{}),
		pagesReady: make(chan struct{})}
	s.guard = s.newPathGuard()
	if err := s.setup(); err != nil {
		_ = rf.Close()
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.appendCh = make(chan appendCall)
	s.done = make(chan struct{})
	go s.committer()
	if o.SkipCheck || o.CheckAtOpen {
		close(s.checkDone)
		s.readyPages()
	} else {
		// Set before any writer can run, so that every allowlist write
		// during the check is counted.
		s.watchACL.Store(true)
		go s.backgroundCheck()
	}
	return s, nil
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// Close waits for appends in flight, stops the background check (at the
// end of the chunk it is reading) and group commit, and closes the file.
// Calls after Close fail with ErrClosed. Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	close(s.appendCh)
	s.mu.Unlock()
	<-s.checkDone
	<-s.done
	err := s.db.Close()
	if cerr := s.rf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// prepareFile creates a missing database and inspects an existing one
// before bbolt maps it.
func prepareFile(path string, o Options) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createFile(path, o)
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: not a regular file (%s)", ErrCorrupt, fi.Mode())
	case fi.Size() == 0:
		return fmt.Errorf("%w: the file is empty (zero length); restore it from the backup or move it away to start a new one", ErrCorrupt)
	}
	bad, err := inspectMeta(path, fi.Size())
	if err != nil {
		return err
	}
	if bad != "" {
		o.Logger.Warn("store: one bbolt meta page is invalid; using the other (a write was cut short)", "path", path, "problem", bad)
	}
	return nil
}

// createFile makes a new, initialised database under a temporary name and
// links it into place, so that a crash never leaves a half-made file at
// path.
func createFile(path string, o Options) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	tmp := f.Name()
	_ = f.Close()
	defer os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: o.LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return fmt.Errorf("create: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// bbolt's file format, as far as inspectMeta reads it: a 16-byte page
// header, then the meta (magic, version, page size, flags, root bucket page
// and sequence, freelist page, high-water page, txid, FNV-64a checksum of
// the preceding 56 bytes), in the host's byte order.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaLen     = 64
	boltNoFreelist  = ^uint64(0)
	boltMinPageSize = 512
	boltMaxPageSize = 16 << 20
)

type boltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

func parseBoltMeta(page []byte) (boltMeta, error) {
	if len(page) < boltPageHeader+boltMetaLen {
		return boltMeta{}, fmt.Errorf("meta page is cut short")
	}
	m := page[boltPageHeader : boltPageHeader+boltMetaLen]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, fmt.Errorf("no bbolt magic number")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, fmt.Errorf("meta checksum mismatch")
	}
	bm := boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}
	if bm.pageSize < boltMinPageSize || bm.pageSize > boltMaxPageSize || bm.pageSize&(bm.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", bm.pageSize)
	}
	if bm.root < 2 || bm.root >= bm.pgid || (bm.freelist != boltNoFreelist && (bm.freelist < 2 || bm.freelist >= bm.pgid)) {
		return boltMeta{}, fmt.Errorf("root page %d or freelist page %d outside 2..%d", bm.root, bm.freelist, bm.pgid)
	}
	return bm, nil
}

// inspectMeta reads both bbolt meta pages with plain reads and checks that
// the file is as long as the newest valid one says. bbolt maps the file
// into memory and reading a page past the end of a truncated file would
// kill the process, so this runs first. It returns a description of an
// invalid meta page when the other one is good (a torn meta write from a
// power cut: bbolt then uses the previous transaction, which was the last
// one to complete).
func inspectMeta(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	readAt := func(off int64, n int) []byte {
		buf := make([]byte, n)
		k, _ := f.ReadAt(buf, off)
		return buf[:k]
	}
	m0, err0 := parseBoltMeta(readAt(0, boltPageHeader+boltMetaLen))
	var m1 boltMeta
	err1 := fmt.Errorf("not found")
	if err0 == nil {
		m1, err1 = parseBoltMeta(readAt(int64(m0.pageSize), boltPageHeader+boltMetaLen))
	} else {
		for ps := int64(boltMinPageSize); ps <= boltMaxPageSize && ps < size; ps <<= 1 {
			if m, err := parseBoltMeta(readAt(ps, boltPageHeader+boltMetaLen)); err == nil && int64(m.pageSize) == ps {
				m1, err1 = m, nil
				break
			}
		}
	}
	var use boltMeta
	bad := ""
	switch {
	case err0 != nil && err1 != nil:
		return "", fmt.Errorf("%w: not a bbolt file or both meta pages are damaged (page 0: %v; page 1: %v)", ErrCorrupt, err0, err1)
	case err0 != nil:
		use, bad = m1, fmt.Sprintf("page 0: %v", err0)
	case err1 != nil:
		use, bad = m0, fmt.Sprintf("page 1: %v", err1)
	case m1.txid > m0.txid:
		use = m1
	default:
		use = m0
	}
	if want := int64(use.pgid) * int64(use.pageSize); size < want {
		return "", fmt.Errorf("%w: the file is truncated: %d bytes, but its meta page (txid %d) says %d", ErrCorrupt, size, use.txid, want)
	}
	// The checksum covers the meta, not the page header before it, which
	// bbolt's check reads, of both meta pages, as it reads every page's:
	// its own id and one page type.
	for i := range 2 {
		h := readAt(int64(i)*int64(use.pageSize), boltPageHeader)
		if len(h) < boltPageHeader || binary.NativeEndian.Uint64(h) != uint64(i) {
			return "", fmt.Errorf("%w: the page header of meta page %d is damaged", ErrCorrupt, i)
		}
		switch binary.NativeEndian.Uint16(h[8:]) {
		case boltBranchPage, boltLeafPage, boltMetaPage, boltFreelistPage:
		default:
			return "", fmt.Errorf("%w: the page header of meta page %d is damaged", ErrCorrupt, i)
		}
	}
	if err := checkBoltPages(f, use); err != nil {
		return "", fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return bad, nil
}

// Page header fields and flags of bbolt pages.
const (
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltMetaPage     = 0x04
	boltFreelistPage = 0x10
)

type boltPageHead struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func readPageHeader(f *os.File, m boltMeta, id uint64) (boltPageHead, error) {
	var buf [boltPageHeader]byte
	if _, err := f.ReadAt(buf[:], int64(id)*int64(m.pageSize)); err != nil {
		return boltPageHead{}, fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	h := boltPageHead{id: ne.Uint64(buf[0:]), flags: ne.Uint16(buf[8:]), count: ne.Uint16(buf[10:]), overflow: ne.Uint32(buf[12:])}
	if h.id != id {
		return h, fmt.Errorf("page %d says it is page %d", id, h.id)
	}
	if id+uint64(h.overflow) >= m.pgid {
		return h, fmt.Errorf("page %d overflows past the last page %d", id, m.pgid)
	}
	return h, nil
}

// checkBoltPages checks the pages bbolt reads while opening a file, the
// root bucket's page and the freelist, which bbolt trusts without checks
// (a bad freelist makes it panic or read outside the file).
func checkBoltPages(f *os.File, m boltMeta) error {
	root, err := readPageHeader(f, m, m.root)
	if err != nil {
		return fmt.Errorf("root page: %w", err)
	}
	if root.flags != boltBranchPage && root.flags != boltLeafPage {
		return fmt.Errorf("root page %d has flags %#x, want a branch or leaf page", m.root, root.flags)
	}
	if m.freelist == boltNoFreelist {
		return nil
	}
	_, err = readFreelist(f, m, nil)
	return err
}

// readFreelist reads the pages the freelist of meta m lists, appended to
// ids[:0], and checks them: increasing, each within the file. The list
// holds the pages free and those waiting for readers when m's transaction
// committed: none of them is in m's tree.
func readFreelist(f *os.File, m boltMeta, ids []uint64) ([]uint64, error) {
	ids = ids[:0]
	fl, err := readPageHeader(f, m, m.freelist)
	if err != nil {
		return ids, fmt.Errorf("freelist: %w", err)
	}
	if fl.flags != boltFreelistPage {
		return ids, fmt.Errorf("freelist page %d has flags %#x, want %#x", m.freelist, fl.flags, boltFreelistPage)
	}
	span := (uint64(fl.overflow) + 1) * uint64(m.pageSize)
	data := make([]byte, span-boltPageHeader)
	if _, err := f.ReadAt(data, int64(m.freelist)*int64(m.pageSize)+boltPageHeader); err != nil {
		return ids, fmt.Errorf("freelist page %d: %w", m.freelist, err)
	}
	ne := binary.NativeEndian
	count := uint64(fl.count)
	if count == 0xFFFF {
		count = ne.Uint64(data)
		data = data[8:]
	}
	if count > uint64(len(data))/8 {
		return ids, fmt.Errorf("freelist page %d lists %d pages, more than it can hold", m.freelist, count)
	}
	var last uint64
	for i := range count {
		id := ne.Uint64(data[8*i:])
		if id < 2 || id >= m.pgid || (i > 0 && id <= last) {
			return ids, fmt.Errorf("freelist page %d: entry %d is page %d (want increasing pages in 2..%d)", m.freelist, i, id, m.pgid-1)
		}
		last = id
		ids = append(ids, id)
	}
	return ids, nil
}

// openBolt opens the file with bbolt, turning a lock timeout into ErrLocked
// and a panic or memory fault on a bad page into ErrCorrupt.
func openBolt(path string, o Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: bbolt failed reading the file: %v", ErrCorrupt, r)
		}
	}()
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			// bbolt holds the file (and its lock) open: release them.
			if file != nil {
				_ = file.Close()
			}
			panic(r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         o.LockTimeout,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: o.MmapSize,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			file = f
			return f, err
		},
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: another latchd holds this file (lock not free after %s); stop it or give this one another database path: %w", ErrLocked, o.LockTimeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	case err != nil:
		return nil, err
	}
	return db, nil
}

// setup brings the schema up to date and checks the file: all of it with
// Options.CheckAtOpen, what Open needs to trust it otherwise (see
// openChecks), the rest being left to the background check.
func (s *Store) setup() error {
	if fi, err := os.Stat(s.path); err == nil && fi.Mode().Perm()&^0o600 != 0 {
		s.log.Warn("store: database file mode was too open; setting 0600", "path", s.path, "mode", fi.Mode().Perm())
		if err := os.Chmod(s.path, 0o600); err != nil {
			return fmt.Errorf("chmod 0600: %w", err)
		}
	}
	full := s.opts.CheckAtOpen
	if full {
		if err := s.checkPages(); err != nil {
			return err
		}
	}
	var v uint64
	if err := s.view(func(tx *bolt.Tx) error {
		if !full {
			if err := s.guardSchema(tx); err != nil {
				return err
			}
		}
		var err error
		v, err = readSchema(tx)
		return err
	}); err != nil {
		return err
	}
	switch {
	case v == 0:
		if err := s.update(initSchema); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	case v > schemaVersion:
		return fmt.Errorf("%w: the file has schema %d, this build knows up to %d; run the newer latchd or restore a backup", ErrSchemaTooNew, v, schemaVersion)
	case v < schemaVersion:
		// A migration reads and rewrites every record: the pages first,
		// even with SkipCheck (bbolt would loop on a cyclic page).
		if !full {
			if err := s.checkPages(); err != nil {
				return err
			}
		}
		if err := s.migrate(v); err != nil {
			return err
		}
	}
	switch {
	case full:
		if err := s.checkContents(); err != nil {
			return err
		}
		// A staged snapshot is only a transfer in progress: a damaged
		// one is dropped, and the transfer starts over.
		if err := s.view(checkStage); err != nil {
			s.log.Warn("store: dropping a damaged snapshot stage", "path", s.path, "problem", err)
			if err := s.removeStage(); err != nil {
				return err
			}
		}
		s.pagesOK.Store(true)
	case !s.opts.SkipCheck:
		if err := s.view(s.openChecks); err != nil {
			return err
		}
	}
	salt := make([]byte, s.opts.PINParams.SaltLen)
	s.dummy = phc{params: s.opts.PINParams, salt: salt, key: make([]byte, s.opts.PINParams.KeyLen)}
	return nil
}

// openCheckPages bounds the pages of each small bucket openChecks walks.
const openCheckPages = 16

// openChecks are the checks Open runs on a file unless Options.SkipCheck,
// in time that does not grow with the file: every top-level bucket is
// there; the pages on the way to the records below are sound (see
// checkPath), and those of the small buckets a door writes as it starts
// (up to openCheckPages each); the audit head and outbox cursor decode
// and agree; the last audit entry is the one the head names and none
// follows it; and the allowlist sync state (applied sequence, state sum,
// signed times) decodes. The pages on the way to the end of the audit
// chain, where appends go, are among those checked.
func (s *Store) openChecks(tx *bolt.Tx) error {
	for _, name := range allBuckets() {
		found, err := s.checkPath(tx, nil, name)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
		}
	}
	// The small buckets a door writes as it starts (door state, sync
	// state, commands, lockdown), whole, up to a bounded number of pages.
	w := &rangeWalker{pageFile: pageFile{f: s.rf}}
	for _, name := range [][]byte{bucketMeta, bucketAuditMeta, bucketSync, bucketState, bucketLockdown, bucketCommands, bucketDoorFails} {
		g, done := s.pathGuard()
		root, _, _, err := g.path(tx, [][]byte{name})
		done()
		if err == nil && root != 0 {
			w.start(tx, s.pageSize, openCheckPages)
			_, err = w.walk(root, 0, nil, nil, nil)
		}
		if err != nil {
			return fmt.Errorf("%w: page structure: %s: %w", ErrCorrupt, pathText([][]byte{name}), err)
		}
	}
	for _, k := range [][]byte{keyHead, keyCheckpoint, keyAcked} {
		if _, err := s.checkPath(tx, k, bucketAuditMeta); err != nil {
			return err
		}
	}
	for _, k := range [][]byte{keyApplied, keyStateSum, keyLastSigned, keyLastIssued, keyCmdSeqMax} {
		if _, err := s.checkPath(tx, k, bucketSync); err != nil {
			return err
		}
	}
	if found, err := s.checkPath(tx, nil, bucketStage); err != nil {
		return err
	} else if found {
		if _, err := s.checkPath(tx, keyProgress, bucketStage, bucketMeta); err != nil {
			return err
		}
	}
	head, err := readOutboxCursor(tx)
	if err != nil {
		return err
	}
	cp, err := readCheckpoint(tx)
	if err != nil {
		return err
	}
	for _, seq := range []uint64{head.Seq, head.Seq + 1} {
		if _, err := s.checkPath(tx, be64(seq), bucketAudit); err != nil {
			return err
		}
	}
	broken := func(at uint64, format string, args ...any) error {
		return fmt.Errorf("%w: audit chain broken at entry %d: %s", ErrCorrupt, at, fmt.Sprintf(format, args...))
	}
	audit := tx.Bucket(bucketAudit)
	if audit.Get(be64(head.Seq+1)) != nil {
		return broken(head.Seq+1, "entries follow the last one the head names (%d)", head.Seq)
	}
	switch v := audit.Get(be64(head.Seq)); {
	case head.Seq < cp.Seq:
		return broken(cp.Seq, "the head (%d) is before the checkpoint (%d)", head.Seq, cp.Seq)
	case head.Seq == cp.Seq && head.Hash != cp.Hash:
		return broken(head.Seq, "the head's hash is not the checkpoint's")
	case head.Seq == cp.Seq:
	case v == nil:
		return broken(head.Seq, "entries %d..%d are missing at the end of the chain (the head says %d)", head.Seq, head.Seq, head.Seq)
	default:
		seq, _, hash, hashOK, err := scanEvent(v)
		switch {
		case err != nil:
			return broken(head.Seq, "entry %d cannot be decoded: %v", head.Seq, err)
		case seq != head.Seq:
			return broken(head.Seq, "entry stored under %d says it is %d (moved or reordered)", head.Seq, seq)
		case !hashOK:
			return broken(head.Seq, "entry %d was altered: its hash does not match its content", head.Seq)
		case hash != head.Hash:
			return broken(head.Seq, "the last entry's hash is not the one recorded at the head")
		}
	}
	_, err = readSyncState(tx)
	return err
}

// migrate backs the file up (once: a migration cut short carries on with
// the backup it made) and brings schema v up to date: schema 1 to 2 in
// one transaction, schema 2 to 3 a batch at a time (migrateV2toV3).
func (s *Store) migrate(v uint64) error {
	backup := fmt.Sprintf("%s.schema-%d.bak", s.path, v)
	resuming := false
	if err := s.view(func(tx *bolt.Tx) error { resuming = tx.Bucket(bucketMigrate) != nil; return nil }); err != nil {
		return err
	}
	if _, err := os.Stat(backup); !resuming || err != nil {
		if err := s.backup(backup); err != nil {
			return fmt.Errorf("backup before migration: %w", err)
		}
	}
	if v == 1 {
		if err := s.update(func(tx *bolt.Tx) error { return migrateV1toV2(tx, s.log) }); err != nil {
			return fmt.Errorf("migrate schema 1 to 2 (index cards by holder and keep the allowlist state sum): %w (the file is unchanged; a copy is at %s)", err, backup)
		}
		v = 2
	}
	if v != 2 {
		return fmt.Errorf("%w: no migration path from schema %d to %d", ErrCorrupt, v, schemaVersion)
	}
	if err := s.migrateV2toV3(); err != nil {
		return fmt.Errorf("%w (the file is still schema 2, and the next start carries on; a copy is at %s)", err, backup)
	}
	s.log.Info("store: schema migrated", "path", s.path, "to", schemaVersion, "backup", backup)
	return nil
}

// backup writes a consistent copy of the database to dst (via a temporary
// file, synced, then renamed).
func (s *Store) backup(dst string) error {
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = s.view(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// view runs fn in a read transaction. A panic or memory fault while
// reading the file (bbolt on a damaged page) becomes ErrCorrupt.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return s.db.View(fn)
}

// update runs fn in a write transaction, committed (and synced) when fn
// returns nil. Panics and faults become ErrCorrupt, as in view.
func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	if s.watchACL.Load() {
		// The background check compares the state sum with the entries
		// only if no write changed it meanwhile. Counted before the
		// commit, so that a reader that sees the write sees the count.
		inner := fn
		fn = func(tx *bolt.Tx) error {
			before := bytes.Clone(storedSum(tx))
			if err := inner(tx); err != nil {
				return err
			}
			if !bytes.Equal(before, storedSum(tx)) {
				s.aclWrites.Add(1)
			}
			return nil
		}
	}
	err = s.db.Update(fn)
	if err == nil {
		s.commits.Add(1)
	}
	return err
}

// storedSum is the allowlist state sum record as stored in tx.
func storedSum(tx *bolt.Tx) []byte {
	if b := tx.Bucket(bucketSync); b != nil {
		return b.Get(keyStateSum)
	}
	return nil
}

// Commits returns the number of write transactions committed since Open:
// the durable writes made. bbolt makes each commit durable with two
// fdatasyncs (the data pages, then the meta page that points at them), and
// one more when the file grows.
func (s *Store) Commits() uint64 { return s.commits.Load() }

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: reading the file failed: %v", ErrCorrupt, r)
	}
}

// Check is the full check: it walks the structure of every page, runs
// bbolt's consistency check over the whole file and checks every record
// the store keeps: checksums, decoding, the holder index, the allowlist
// state sum, the audit bookkeeping, the audit chain (as Verify) and a
// staged snapshot (see BeginSnapshot). It returns ErrCorrupt with the
// first problems found. Writers wait while the page walk and the bbolt
// part run, and its time grows with the file: it is for tools (latchd
// -check-db) and tests. Open runs it with Options.CheckAtOpen, but drops a
// damaged stage instead of refusing the file; the background check that
// Open starts otherwise checks the same a chunk at a time, but for bbolt's
// own check. To inspect a file Check refuses (for example to read the
// Verify report of a tampered audit log), open it with SkipCheck.
func (s *Store) Check() error {
	if err := s.check(); err != nil {
		return fmt.Errorf("store: check %s: %w", s.path, err)
	}
	return nil
}

var errRollback = errors.New("rollback")

func (s *Store) check() error {
	if err := s.checkPages(); err != nil {
		return err
	}
	if err := s.checkContents(); err != nil {
		return err
	}
	return s.view(checkStage)
}

// checkPages runs walkPages in a write transaction (so no writer changes
// the file meanwhile), rolled back.
func (s *Store) checkPages() error {
	err := s.update(func(tx *bolt.Tx) error {
		if err := walkPages(s.path, tx); err != nil {
			return err
		}
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// checkContents checks records, the audit chain and, last, runs bbolt's
// check, which is only safe once walkPages has passed.
func (s *Store) checkContents() error {
	if err := s.view(checkRecords); err != nil {
		return err
	}
	r, err := s.verify()
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%w: audit chain broken at entry %d: %s", ErrCorrupt, r.BreakAt, r.Problem)
	}
	var problems error
	err = s.update(func(tx *bolt.Tx) error {
		problems = BoltProblems(tx)
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return err
	}
	if problems != nil {
		return fmt.Errorf("%w: bbolt check: %w", ErrCorrupt, problems)
	}
	return nil
}

// BoltProblems runs bbolt's own consistency check of the file in tx (a
// write transaction, so that no writer moves pages meanwhile; roll it
// back) and returns the first ten problems it finds, joined, or nil.
func BoltProblems(tx *bolt.Tx) error {
	var errs []error
	for e := range tx.Check() {
		if len(errs) < 10 {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// checkAllowlist decodes every allowlist record under p (the live ones or
// the stage's), checks the holder index against the cards and returns the
// entries' state sum and count.
func checkAllowlist(p bucketParent, names getter) (sum256, int, error) {
	// Each card is decoded once: for the sum and to find its index entry.
	// Distinct cards have distinct index keys, so when every card has its
	// entry and the counts agree, the index holds nothing else.
	idx := p.Bucket(bucketHolderCards)
	ncards := 0
	sum, n, err := computeStateSum(p, names, func(c *Card) error {
		ncards++
		if idx.Get(holderCardKey(c.HolderID, c.UID)) == nil {
			return fmt.Errorf("%w: card %X is missing from the holder index", ErrCorrupt, c.UID)
		}
		return nil
	})
	if err != nil {
		return sum, n, err
	}
	if k := idx.Stats().KeyN; k != ncards {
		return sum, n, fmt.Errorf("%w: the holder index has %d entries for %d cards", ErrCorrupt, k, ncards)
	}
	return sum, n, nil
}

// checkRecords decodes every record outside the audit chain (which verify
// reads), so that a bad page faults here, where it is recovered, and not
// later in bbolt's check.
func checkRecords(tx *bolt.Tx) error {
	for _, name := range allBuckets() {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
		}
	}
	v, err := readSchema(tx)
	if err != nil {
		return err
	}
	if v != schemaVersion {
		return fmt.Errorf("%w: schema %d after migration, want %d", ErrCorrupt, v, schemaVersion)
	}
	sum, _, err := checkAllowlist(tx, tx.Bucket(bucketNames))
	if err != nil {
		return err
	}
	stored, err := readSum(tx)
	if err != nil {
		return err
	}
	if stored != sum {
		return fmt.Errorf("%w: allowlist state sum does not match the entries", ErrCorrupt)
	}
	for _, b := range smallRecords() {
		if err := tx.Bucket(b.bucket).ForEach(func(k, v []byte) error { return b.check(tx, k, v) }); err != nil {
			return err
		}
	}
	if _, err := readSyncState(tx); err != nil {
		return err
	}
	_, err = readOutboxCursor(tx)
	return err
}

// recordCheck decodes the records of one bucket outside the allowlist and
// the audit chain.
type recordCheck struct {
	bucket []byte
	check  func(tx *bolt.Tx, k, v []byte) error
}

// smallRecords are the checks of the door's state buckets and the names
// bucket, for Check and the background check.
func smallRecords() []recordCheck {
	value := func(bucket []byte, decode func(v []byte) error) recordCheck {
		return recordCheck{bucket, func(_ *bolt.Tx, k, v []byte) error {
			if err := decode(v); err != nil {
				return fmt.Errorf("%s %s: %w", bucket, keyText(k), err)
			}
			return nil
		}}
	}
	return []recordCheck{
		value(bucketLockout, func(v []byte) error { _, err := decodeLockout(v); return err }),
		value(bucketDoorFails, func(v []byte) error { _, err := decodeTimes(v); return err }),
		value(bucketCommands, func(v []byte) error { _, err := decodeCommand(v); return err }),
		value(bucketLockdown, func(v []byte) error { _, err := decodeBool(v); return err }),
		value(bucketState, func(v []byte) error { _, err := decodeBytes(v); return err }),
		{bucketNames, func(tx *bolt.Tx, k, v []byte) error { return checkNameEntry(tx.Bucket(bucketNames), k, v) }},
	}
}

// readOutboxCursor reads the audit head and checks that the outbox
// cursor is not past it.
func readOutboxCursor(tx *bolt.Tx) (chainPoint, error) {
	head, err := readHead(tx)
	if err != nil {
		return head, err
	}
	acked, err := readAcked(tx)
	if err != nil {
		return head, err
	}
	if acked > head.Seq {
		return head, fmt.Errorf("%w: outbox cursor %d is past the last audit entry %d", ErrCorrupt, acked, head.Seq)
	}
	return head, nil
}
