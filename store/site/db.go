package site

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	"github.com/latchdoor/latch/store"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// schemaVersion is the layout this build writes; see the package comment.
const schemaVersion = 2

// Errors the site database returns, wrapped with what and where. Test
// with errors.Is.
var (
	// ErrCorrupt means the file or one of its records is damaged.
	ErrCorrupt = errors.New("damaged site database")
	// ErrLocked means another process holds the file's lock.
	ErrLocked = errors.New("site database file is locked by another process")
	// ErrSchemaTooNew means a newer build wrote the file.
	ErrSchemaTooNew = errors.New("site database schema is newer than this build")
	// ErrNotFound means the asked-for record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means a change or a value is malformed; nothing of it
	// was stored.
	ErrInvalid = errors.New("invalid")
	// ErrConflict means a value contradicts one already held (an
	// identity fingerprint that is not the pending one, a signed head
	// with another hash at a seq held).
	ErrConflict = errors.New("conflicts with what is held")
)

// Bucket names.
var (
	bucketMeta        = []byte("meta")
	bucketCards       = []byte("cards")
	bucketHolders     = []byte("holders")
	bucketHolderCards = []byte("holder_cards")
	bucketRevCards    = []byte("revoked_cards")
	bucketRevHolders  = []byte("revoked_holders")
	bucketDeltas      = []byte("deltas")
	bucketDoors       = []byte("doors")
	bucketGroupDoors  = []byte("group_doors")
	bucketEvents      = []byte("events")
	bucketCursors     = []byte("cursors")
	bucketIdxTime     = []byte("idx_time")
	bucketIdxDoorTime = []byte("idx_door_time")
	bucketIdxHolder   = []byte("idx_holder")
	bucketIdxUID      = []byte("idx_uid")
	bucketIdxArrival  = []byte("idx_arrival")
	bucketFindings    = []byte("findings")
	bucketHeads       = []byte("heads")
	bucketUsers       = []byte("users")
	bucketActions     = []byte("actions")
	bucketChanges     = []byte("changes")
)

// Keys in the meta bucket.
var (
	keySchema = []byte("schema")
	keyACLSeq = []byte("acl_seq")
)

func allBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketCards, bucketHolders, bucketHolderCards, bucketRevCards,
		bucketRevHolders, bucketDeltas, bucketDoors, bucketGroupDoors, bucketEvents, bucketCursors,
		bucketIdxTime, bucketIdxDoorTime, bucketIdxHolder, bucketIdxUID, bucketFindings, bucketHeads,
		bucketIdxArrival, bucketUsers, bucketActions, bucketChanges, bucketVisitors}
}

// Options configure a DB. The zero value (or nil) gives the defaults.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrLocked (default 1 s).
	LockTimeout time.Duration
	// MmapSize is the initial memory map of the file in bytes (default
	// 256 MiB). While the file fits in it, long readers never hold up
	// writers.
	MmapSize int
}

// DB is an open site database. Its methods are safe for concurrent use.
type DB struct {
	path string
	db   *bolt.DB
	rec  *ChangeRecord // a change-log entry the next write appends (Recording)
}

// Open opens (creating if needed, mode 0600) the site database at path.
// It waits at most Options.LockTimeout for the file lock, refuses an
// empty, damaged or foreign file with ErrCorrupt and a newer schema with
// ErrSchemaTooNew. It checks the schema and the buckets, not every record:
// Check does that. opts may be nil.
func Open(path string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.MmapSize == 0 {
		o.MmapSize = 256 << 20
	}
	if o.LockTimeout < 0 || o.MmapSize < 0 {
		return nil, fmt.Errorf("site: open %s: %w: negative lock timeout or mmap size", path, ErrInvalid)
	}
	if fi, err := os.Stat(path); err == nil {
		switch {
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("site: open %s: %w: not a regular file (%s)", path, ErrCorrupt, fi.Mode())
		case fi.Size() == 0:
			return nil, fmt.Errorf("site: open %s: %w: the file is empty; restore it from a backup or move it away to start a new one", path, ErrCorrupt)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("site: open %s: %w", path, err)
	}
	db, err := openBolt(path, o)
	if err != nil {
		return nil, fmt.Errorf("site: open %s: %w", path, err)
	}
	d := &DB{path: path, db: db}
	if err := d.setup(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("site: open %s: %w", path, err)
	}
	return d, nil
}

func openBolt(path string, o Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, InitialMmapSize: o.MmapSize})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: the lock was not free after %s: is another `latch serve` running on this file?", ErrLocked, o.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	case err != nil:
		return nil, err
	}
	return db, nil
}

// setup makes the buckets of a new file and checks those of an old one.
func (d *DB) setup() error {
	if fi, err := os.Stat(d.path); err == nil && fi.Mode().Perm()&^0o600 != 0 {
		if err := os.Chmod(d.path, 0o600); err != nil {
			return fmt.Errorf("chmod 0600: %w", err)
		}
	}
	return d.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: buckets but no meta bucket: not a latch site database", ErrCorrupt)
			}
			for _, name := range allBuckets() {
				if _, err := tx.CreateBucket(name); err != nil {
					return fmt.Errorf("create bucket %s: %w", name, err)
				}
			}
			meta = tx.Bucket(bucketMeta)
			if err := meta.Put(keySchema, encodeU64(schemaVersion)); err != nil {
				return err
			}
			return meta.Put(keyACLSeq, encodeU64(0))
		}
		if err := migrate(tx, d.path); err != nil {
			return err
		}
		// idx_arrival came after the first files of schema 1.
		if tx.Bucket(bucketIdxArrival) == nil && tx.Bucket(bucketIdxTime) != nil {
			if err := addArrivalIndex(tx); err != nil {
				return err
			}
		}
		// The console's buckets came after the first files of schema 1.
		for _, name := range [][]byte{bucketUsers, bucketActions, bucketVisitors} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return checkSchema(tx)
	})
}

// checkSchema checks the schema version and that every bucket is there.
func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: no meta bucket: not a latch site database", ErrCorrupt)
	}
	v := meta.Get(keySchema)
	if v == nil {
		return fmt.Errorf("%w: the meta bucket has no schema version", ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	switch {
	case n > schemaVersion:
		return fmt.Errorf("%w: the file has schema %d, this build knows up to %d; run the newer latch or restore a backup", ErrSchemaTooNew, n, schemaVersion)
	case n != schemaVersion:
		return fmt.Errorf("%w: schema version %d", ErrCorrupt, n)
	}
	for _, name := range allBuckets() {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
		}
	}
	if _, err := readACLSeq(tx); err != nil {
		return err
	}
	return nil
}

// Path returns the file the database was opened on.
func (d *DB) Path() string { return d.path }

// Close closes the file. Closing twice is harmless.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("site: close %s: %w", d.path, err)
	}
	return nil
}

// view runs fn in a read transaction. A panic or memory fault while
// reading the file (bbolt on a damaged page) becomes ErrCorrupt.
func (d *DB) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return d.db.View(fn)
}

// update runs fn in a write transaction, committed and synced when fn
// returns nil. Panics and faults become ErrCorrupt, as in view.
func (d *DB) update(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	var stored *ChangeEntry
	err = d.db.Update(func(tx *bolt.Tx) error {
		var err error
		stored, err = d.recordChange(tx, fn)
		return err
	})
	if err == nil && stored != nil {
		d.rec.stored = stored
	}
	return err
}

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: reading the file failed: %v", ErrCorrupt, r)
	}
}

// Backup writes a consistent copy of the whole database to w from one read
// transaction, while writers go on, and returns the bytes written. The
// copy is a site database file as it was when the backup began; restore
// it by stopping `latch serve` and putting the copy in the file's place.
func (d *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("site: backup %s: %w", d.path, err)
	}
	return n, nil
}

var errRollback = errors.New("rollback")

// Check reads the whole file: bbolt's consistency check, the schema, every
// record's checksum and decoding, the holder and group indexes against
// the cards and doors, the change history against the ACL seq, the event
// indexes' sizes against the events, and the arrival index entry by
// entry. It returns ErrCorrupt with the first problems found. Writers wait
// while the bbolt part runs. It does not judge the doors' hash chains:
// Verify does.
func (d *DB) Check() error {
	if err := d.check(); err != nil {
		return fmt.Errorf("site: check %s: %w", d.path, err)
	}
	return nil
}

func (d *DB) check() error {
	var problems error
	err := d.update(func(tx *bolt.Tx) error {
		problems = store.BoltProblems(tx)
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return err
	}
	if problems != nil {
		return fmt.Errorf("%w: bbolt check: %w", ErrCorrupt, problems)
	}
	return d.view(func(tx *bolt.Tx) error {
		if err := checkSchema(tx); err != nil {
			return err
		}
		if err := checkACL(tx); err != nil {
			return err
		}
		if err := checkDoors(tx); err != nil {
			return err
		}
		if err := checkChanges(tx); err != nil {
			return err
		}
		if err := checkVisitors(tx); err != nil {
			return err
		}
		if err := checkSCIM(tx); err != nil {
			return err
		}
		return checkEvents(tx)
	})
}

// migrate brings a file of schema 1 up to schema 2, which adds the change
// log (bucket changes), inside setup's transaction: a copy of the file as
// it was is written beside it first (PATH.schema-1.bak), so that the old
// file is at hand if anything goes wrong. Other schemas are left to
// checkSchema.
func migrate(tx *bolt.Tx, path string) error {
	v := tx.Bucket(bucketMeta).Get(keySchema)
	if n, err := decodeU64(v); err != nil || n != 1 {
		return nil
	}
	backup := path + ".schema-1.bak"
	if err := writeCopy(tx, backup); err != nil {
		return fmt.Errorf("backup before migrating schema 1 to 2: %w", err)
	}
	if _, err := tx.CreateBucketIfNotExists(bucketChanges); err != nil {
		return fmt.Errorf("migrate schema 1 to 2: create bucket %s: %w (the file is unchanged; a copy is at %s)", bucketChanges, err, backup)
	}
	return tx.Bucket(bucketMeta).Put(keySchema, encodeU64(2))
}

// writeCopy writes the database as tx sees it to path, mode 0600, through
// a temporary file renamed into place once synced.
func writeCopy(tx *bolt.Tx, path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = tx.WriteTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
