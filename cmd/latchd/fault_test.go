package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// A damaged database keeps the simulator running with the door locked
// until it is stopped; then it exits non-zero naming the file.
func TestSimDamagedDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, dbFile)
	if err := os.WriteFile(db, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	faultLine, last := simUntilStopped(t, dir, "the database cannot be used")
	if !strings.Contains(faultLine, db) {
		t.Errorf("the fault does not name the file: %s", faultLine)
	}
	if !strings.Contains(last, "damaged database") || !strings.Contains(last, db) {
		t.Errorf("last line %q: want the damaged file named", last)
	}
	if b, err := os.ReadFile(db); err != nil || !strings.HasPrefix(string(b), "not a bbolt file") {
		t.Errorf("the damaged file was changed (%v)", err)
	}
}

// simUntilStopped runs latchd -sim on the data directory dir and waits for
// the log line holding fault. It checks that latchd keeps running with
// the relay locked, stops it, and checks that it exits 1. It returns the
// fault line and the last line on standard error.
func simUntilStopped(t *testing.T, dir, fault string) (faultLine, last string) {
	t.Helper()
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
	for faultLine == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("latchd stopped before showing the fault; stdout:\n%s", stdout.String())
			}
			if strings.Contains(l, fault) {
				faultLine = l
			}
		case <-time.After(hangGuard):
			t.Fatal("no fault reported")
		}
	}
	// Still running: nothing but the locked relay and the fault pattern
	// was printed.
	select {
	case code := <-done:
		t.Fatalf("latchd exited (%d) instead of keeping the door locked", code)
	default:
	}
	cancel()
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if code := <-done; code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if out := strings.TrimSpace(stdout.String()); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"state":"locked"`) || !strings.Contains(out, `"pattern":"fault"`) {
		t.Errorf("stdout: want only the locked relay and the fault pattern, got:\n%s", out)
	}
	if len(rest) == 0 {
		t.Fatal("no error line at the exit")
	}
	return faultLine, rest[len(rest)-1]
}

// storeFault blinks the red LED while it waits, turns it off at the end,
// and does not wait for errors that a restart may cure.
func TestStoreFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := &hardware{green: &gpiotest.Pin{N: "G"}, red: &gpiotest.Pin{N: "R"}, buzzer: &gpiotest.Pin{N: "B"}}
		cfg := &Config{}
		log := slog.New(slog.DiscardHandler)
		clock := door.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

		locked := fmt.Errorf("open: %w", store.ErrLocked)
		if err := storeFault(t.Context(), cfg, hw, locked, clock, log, nil); err != locked {
			t.Fatalf("locked database: %v", err)
		}

		damaged := fmt.Errorf("open /x/latch.db: %w", store.ErrCorrupt)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- storeFault(ctx, cfg, hw, damaged, clock, log, nil) }()
		synctest.Wait()
		if hw.red.(*gpiotest.Pin).Read() != gpio.High || hw.buzzer.(*gpiotest.Pin).Read() != gpio.High {
			t.Fatal("no fault shown")
		}
		clock.Advance(500 * time.Millisecond)
		synctest.Wait()
		if hw.red.(*gpiotest.Pin).Read() != gpio.Low {
			t.Fatal("the red LED does not blink")
		}
		cancel()
		if err := <-done; !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("damaged database: %v", err)
		}
		if hw.red.(*gpiotest.Pin).Read() != gpio.Low || hw.buzzer.(*gpiotest.Pin).Read() != gpio.Low {
			t.Fatal("outputs left on")
		}
	})
}

// A data directory that cannot be written is a fault storeFault waits
// with, as it does with a damaged database; another latchd holding the
// file, or a missing directory, is returned at once.
func TestStoreFaultUnwritable(t *testing.T) {
	pathErr := func(op string, errno syscall.Errno) error {
		return fmt.Errorf("store: open /data/latch.db: create: %w", &fs.PathError{Op: op, Path: "/data/.latch.db.new-1", Err: errno})
	}
	for _, tc := range []struct {
		name string
		err  error
		wait bool
	}{
		{"read-only file system", pathErr("open", syscall.EROFS), true},
		{"permission denied", pathErr("open", syscall.EACCES), true},
		{"operation not permitted", pathErr("open", syscall.EPERM), true},
		{"no space left", pathErr("write", syscall.ENOSPC), true},
		{"quota exceeded", pathErr("write", syscall.EDQUOT), true},
		{"data dir cannot be made", fmt.Errorf("-data /ro/x: %w", &fs.PathError{Op: "mkdir", Path: "/ro/x", Err: syscall.EROFS}), true},
		{"locked", fmt.Errorf("store: open /data/latch.db: %w", store.ErrLocked), false},
		{"locked, whatever else", fmt.Errorf("store: open /data/latch.db: %w: %w", store.ErrLocked, syscall.EACCES), false},
		{"no such directory", pathErr("open", syscall.ENOENT), false},
		{"not a directory", pathErr("open", syscall.ENOTDIR), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hw := &hardware{green: &gpiotest.Pin{N: "G"}, red: &gpiotest.Pin{N: "R"}, buzzer: &gpiotest.Pin{N: "B"}}
				var logBuf bytes.Buffer
				log := slog.New(slog.NewTextHandler(&logBuf, nil))
				clock := door.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- storeFault(ctx, &Config{DataDir: "/data"}, hw, tc.err, clock, log, nil) }()
				synctest.Wait()
				if !tc.wait {
					select {
					case err := <-done:
						if err != tc.err {
							t.Fatalf("returned %v, want %v", err, tc.err)
						}
					default:
						t.Fatal("storeFault waits")
					}
					if hw.red.(*gpiotest.Pin).Read() != gpio.Low {
						t.Error("a fault is shown")
					}
					return
				}
				select {
				case err := <-done:
					t.Fatalf("storeFault returned %v at once", err)
				default:
				}
				if hw.red.(*gpiotest.Pin).Read() != gpio.High || hw.buzzer.(*gpiotest.Pin).Read() != gpio.High {
					t.Fatal("no fault shown")
				}
				if l := logBuf.String(); !strings.Contains(l, "the data directory cannot be written") || !strings.Contains(l, "data_dir=/data") || !strings.Contains(l, tc.err.Error()) {
					t.Errorf("log %q: want what and where", l)
				}
				cancel()
				if err := <-done; err != tc.err {
					t.Fatalf("returned %v, want %v", err, tc.err)
				}
				if hw.red.(*gpiotest.Pin).Read() != gpio.Low || hw.buzzer.(*gpiotest.Pin).Read() != gpio.Low {
					t.Fatal("outputs left on")
				}
			})
		})
	}
}
