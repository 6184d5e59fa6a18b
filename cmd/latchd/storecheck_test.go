package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// damagedMarker is the value of the record damagedDatabase damages.
const damagedMarker = "a record the door never reads at its start"

// damagedDatabase makes a database in dir whose damage only a full check
// finds: the checksum of a record in the state bucket, which Open does not
// read, no longer matches. It returns the file's path.
func damagedDatabase(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, dbFile)
	st, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutState("test/damaged", []byte(damagedMarker)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(b, []byte(damagedMarker))
	if n == 0 {
		t.Fatal("the record is not in the file")
	}
	b = bytes.ReplaceAll(b, []byte(damagedMarker), []byte(strings.ToUpper(damagedMarker)))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// latchd -check-db runs the full check of the door's database and exits
// 0, 1 or 2: sound, damaged, not checked.
func TestCheckDB(t *testing.T) {
	sound := t.TempDir()
	st, err := store.Open(filepath.Join(sound, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(store.Event{Door: "front", Type: store.TypeSystem, Reason: store.ReasonStarted}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	damaged := t.TempDir()
	damagedPath := damagedDatabase(t, damaged)
	config := func(dir string) string {
		p := filepath.Join(t.TempDir(), "latchd.toml")
		cfg := strings.Replace(goodConfig, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"sound, config", []string{"-check-db", "-config", config(sound)}, 0, []string{"passed the full check"}, ""},
		{"sound, sim", []string{"-check-db", "-sim", "-data", sound}, 0, []string{"passed the full check"}, ""},
		{"damaged", []string{"-check-db", "-config", config(damaged)}, 1,
			[]string{damagedPath + " is damaged", "test/damaged", "record checksum", "restore it from a backup"}, ""},
		{"no database", []string{"-check-db", "-config", config(empty)}, 2, nil, "no such file"},
		{"no config", []string{"-check-db", "-config", filepath.Join(empty, "none.toml")}, 2, nil, "none.toml"},
		{"with -check-config", []string{"-check-db", "-check-config", "-config", config(sound)}, 2, nil, "-check-db excludes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout %q, want %q in it", stdout, want)
				}
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q, want %q in it", stderr, tc.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(empty, dbFile)); err == nil {
		t.Error("-check-db made a database where there was none")
	}
}

// A database whose damage Open does not see is found by the background
// check while the door runs: latchd stops the door and shows the fault, as
// for a database it cannot open, with the relay locked throughout, and
// exits 1 once stopped.
func TestSimDatabaseDamageFoundWhileRunning(t *testing.T) {
	dir := t.TempDir()
	db := damagedDatabase(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errR, errW := io.Pipe()
	var stdout lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-sim", "-data", dir, "-log-format", "json", "-broker-addr", "127.0.0.1:0"}, strings.NewReader(""), &stdout, errW)
		errW.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var found, fault string
	for fault == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("latchd stopped before showing the fault; stdout:\n%s", stdout.String())
			}
			switch {
			case strings.Contains(l, "the database file is damaged"):
				found = l
			case strings.Contains(l, "the database cannot be used"):
				fault = l
			}
		case <-time.After(hangGuard):
			t.Fatal("no fault reported")
		}
	}
	if !strings.Contains(found, db) || !strings.Contains(found, "test/damaged") || !strings.Contains(fault, "record checksum") {
		t.Errorf("the fault does not say what is damaged where:\n%s\n%s", found, fault)
	}
	select {
	case code := <-done:
		t.Fatalf("latchd exited (%d) instead of keeping the door locked", code)
	default:
	}
	cancel()
	for range lines {
	}
	if code := <-done; code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if out := stdout.String(); strings.Contains(out, `"state":"unlocked"`) || !strings.Contains(out, `"state":"locked"`) {
		t.Errorf("stdout: want the relay locked throughout, got:\n%s", out)
	}
}

// The background check's pacer waits before each chunk as long as the
// chunk before took, at most maxCheckPause, and not at all once the store
// closes.
func TestCheckPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := door.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		p := &checkPacer{clock: clock}
		stop := make(chan struct{})
		p.pause(stop) // the first chunk starts at once
		paused := func(chunk time.Duration) chan struct{} {
			clock.Advance(chunk)
			done := make(chan struct{})
			go func() { p.pause(stop); close(done) }()
			synctest.Wait()
			return done
		}
		isDone := func(done chan struct{}) bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}

		done := paused(30 * time.Millisecond)
		clock.Advance(29 * time.Millisecond)
		synctest.Wait()
		if isDone(done) {
			t.Fatal("the pause after a 30 ms chunk ended after 29 ms")
		}
		clock.Advance(time.Millisecond)
		synctest.Wait()
		if !isDone(done) {
			t.Fatal("the pause after a 30 ms chunk did not end after 30 ms")
		}

		done = paused(time.Second)
		clock.Advance(maxCheckPause)
		synctest.Wait()
		if !isDone(done) {
			t.Fatalf("the pause after a 1 s chunk did not end after %v", maxCheckPause)
		}

		done = paused(50 * time.Millisecond)
		close(stop)
		synctest.Wait()
		if !isDone(done) {
			t.Fatal("the pause did not end when the store closed")
		}
	})
}
