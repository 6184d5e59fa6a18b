package site

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

func open(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// chain makes door's events from seq first to last, linked from prev, one
// a minute from t0, alternating holders h0..h2 and their cards.
func chain(t testing.TB, door string, first, last uint64, prev string) []store.Event {
	t.Helper()
	var out []store.Event
	for s := first; s <= last; s++ {
		h := []string{"alice", "bob", "carol"}[s%3]
		e := store.Event{Seq: s, Time: t0.Add(time.Duration(s) * time.Minute), Clock: store.TimeSynced, BootID: "b1",
			Door: door, Type: store.TypeAccess, Reason: store.ReasonGranted, UID: "04A1B2C" + string(rune('0'+s%3)),
			Holder: h, HolderName: strings.ToUpper(h), Prev: prev}
		var err error
		if e.Hash, err = store.HashEvent(e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		prev = e.Hash
	}
	return out
}

// openBytes opens a database file made of b, and checks it.
func openBytes(t testing.TB, b []byte) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestOpenCreatesMode0600AndRefusesSecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	start := time.Now()
	_, err = Open(path, &Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "is another `latch serve` running on this file?") {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	junk := bytes.Repeat([]byte("not a database, just garbage. "), 2000)
	if err := os.WriteFile(garbage, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(garbage, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage: %v, want ErrCorrupt", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty: %v, want ErrCorrupt naming it empty", err)
	}
	// A bbolt file of something else.
	other := filepath.Join(dir, "other.db")
	b, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := Open(other, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a latch site database") {
		t.Errorf("foreign bbolt file: %v", err)
	}
	// A file whose pages after the meta pages are overwritten.
	path := filepath.Join(dir, "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice"}}}, "test", t0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(junk, 8192); err != nil {
		t.Fatal(err)
	}
	f.Close()
	db, err = Open(path, nil)
	if err == nil {
		err = db.Check()
		db.Close()
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("overwritten pages: %v, want ErrCorrupt", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, encodeU64(schemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path, nil); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestBackup(t *testing.T) {
	db := open(t)
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice", Name: "Alice"}}}, "admin", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.AddEvents("front", chain(t, "front", 1, 10, zeroHash), t0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("backup: %d bytes, %v (buffer %d)", n, err, buf.Len())
	}
	c := openBytes(t, buf.Bytes())
	if h, err := c.Holder("alice"); err != nil || h.Name != "Alice" {
		t.Errorf("holder in copy: %+v, %v", h, err)
	}
	if n, err := c.Contiguous("front"); err != nil || n != 10 {
		t.Errorf("contiguous in copy: %d, %v", n, err)
	}
}
