package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
	var faultLine string
	for faultLine == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("latchd stopped before showing the fault; stdout:\n%s", stdout.String())
			}
			if strings.Contains(l, "the database cannot be used") {
				faultLine = l
			}
		case <-time.After(hangGuard):
			t.Fatal("no fault reported")
		}
	}
	if !strings.Contains(faultLine, db) {
		t.Errorf("the fault does not name the file: %s", faultLine)
	}
	// Still running: nothing but the locked relay was printed.
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
	if last := rest[len(rest)-1]; !strings.Contains(last, "damaged database") || !strings.Contains(last, db) {
		t.Errorf("last line %q: want the damaged file named", last)
	}
	if out := strings.TrimSpace(stdout.String()); strings.Count(out, "\n") != 0 || !strings.Contains(out, `"state":"locked"`) {
		t.Errorf("stdout: want only the locked relay, got:\n%s", out)
	}
	if b, err := os.ReadFile(db); err != nil || !strings.HasPrefix(string(b), "not a bbolt file") {
		t.Errorf("the damaged file was changed (%v)", err)
	}
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
		if err := storeFault(t.Context(), cfg, hw, locked, clock, log); err != locked {
			t.Fatalf("locked database: %v", err)
		}

		damaged := fmt.Errorf("open /x/latch.db: %w", store.ErrCorrupt)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- storeFault(ctx, cfg, hw, damaged, clock, log) }()
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
