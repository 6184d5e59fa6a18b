package store

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

var (
	crashKills = flag.Int("crash.kills", 100, "how many times TestCrashDurability kills the writer process")
	genV1      = flag.Bool("store.gen-v1", false, "rewrite testdata/v1.db (a schema 1 database) from the generator")
)

// childEnv selects what the test binary does when it is re-executed as a
// child process.
const childEnv = "LATCH_STORE_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "crash":
		os.Exit(crashChild())
	case "lock":
		os.Exit(lockChild())
	case "stage":
		os.Exit(stageCrashChild())
	case "unguarded":
		os.Exit(unguardedChild())
	}
	code := m.Run()
	cleanupBenchFixtures()
	os.Exit(code)
}

// fastPIN keeps argon2id cheap in tests that check many PINs (the race
// detector slows it down a lot); the cost of DefaultPINParams is measured
// by BenchmarkVerifyPIN.
var fastPIN = PINParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func testOptions() *Options { return &Options{PINParams: fastPIN} }

// openTest opens a new store in a temporary directory; at the end of the
// test the store is checked (bbolt and record checks, and the audit
// chain) and closed.
func openTest(t testing.TB, opts *Options) *Store {
	t.Helper()
	return openTestAt(t, filepath.Join(t.TempDir(), "latch.db"), opts)
}

func openTestAt(t testing.TB, path string, opts *Options) *Store {
	t.Helper()
	if opts == nil {
		opts = testOptions()
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { checkAndClose(t, s, opts) })
	return s
}

// checkAndClose checks a store at the end of a test. If the test closed it
// already, it reopens the file to check it.
func checkAndClose(t testing.TB, s *Store, opts *Options) {
	t.Helper()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		var err error
		if s, err = Open(s.path, opts); err != nil {
			t.Errorf("reopen for the final check: %v", err)
			return
		}
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check at the end of the test: %v", err)
	}
	if r, err := s.Verify(); err != nil || !r.OK {
		t.Errorf("Verify at the end of the test: %+v, %v", r, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// reopen closes s and opens its file again, as after a restart.
func reopen(t testing.TB, s *Store, opts *Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openTestAt(t, s.path, opts)
}

// rawUpdate edits the file under the store, as damage or tampering would.
// The store must be closed.
func rawUpdate(t testing.TB, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var testEpoch = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC) // a Monday

func uidOf(i int) []byte {
	return []byte{0x04, byte(i >> 16), byte(i >> 8), byte(i), 0xA0, 0x5C, 0x80}
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func utf8ValidString(s string) bool { return utf8.ValidString(s) }

type bboltTx = bolt.Tx
