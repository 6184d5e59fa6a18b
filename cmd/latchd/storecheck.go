package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// Exit codes of latchd -check-db.
const (
	checkSound      = 0 // the database passed the full check
	checkDamaged    = 1 // it is damaged: the door would refuse it
	checkNotChecked = 2 // it could not be checked (no file, another latchd holds it, a newer schema)
)

// checkDatabase runs the full check of the door's database in the data
// directory dir (latchd -check-db) and says on out what it found, or on
// errOut why it could not check; it returns the exit code. It never
// creates a database, but it migrates an older schema as a start does.
func checkDatabase(dir string, out, errOut io.Writer, log *slog.Logger) int {
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(errOut, "latchd: -check-db: %v\n", err)
		return checkNotChecked
	}
	st, err := store.Open(path, &store.Options{SkipCheck: true, Logger: log})
	if err == nil {
		err = st.Check()
		if cerr := st.Close(); err == nil && cerr != nil {
			fmt.Fprintf(errOut, "latchd: -check-db: %v\n", cerr)
			return checkNotChecked
		}
	}
	switch {
	case err == nil:
		fmt.Fprintf(out, "latchd: %s passed the full check\n", path)
		return checkSound
	case errors.Is(err, store.ErrCorrupt):
		fmt.Fprintf(out, "latchd: %s is damaged: %s\n", path, strings.ReplaceAll(err.Error(), "\n", "; "))
		fmt.Fprintln(out, "latchd: the door refuses it and shows a fault; restore it from a backup, or move it aside: a new one gets the allowlist from the site's next snapshot")
		return checkDamaged
	}
	fmt.Fprintf(errOut, "latchd: -check-db: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	return checkNotChecked
}

// maxCheckPause bounds the pause between chunks of the store's background
// check.
const maxCheckPause = 100 * time.Millisecond

// checkPacer paces the store's background check (store.Options.CheckPause)
// so that it leaves the door most of the CPU and the disk: before each
// chunk it waits as long as the chunk before took, up to maxCheckPause.
// One goroutine, the check's, calls pause.
type checkPacer struct {
	clock door.Clock
	last  time.Time // when the last pause ended: the chunk since then is running
}

func (p *checkPacer) pause(stop <-chan struct{}) {
	if !p.last.IsZero() {
		if d := min(p.clock.Now().Sub(p.last), maxCheckPause); d > 0 {
			t := p.clock.NewTimer(d)
			select {
			case <-stop:
			case <-t.C():
			}
			t.Stop()
		}
	}
	p.last = p.clock.Now()
}

// watchStore ends the run when the store finds its file damaged while the
// door runs (store.Store.Fault): the background check that follows Open,
// or a lookup of Decide, found what a full check at Open would have
// refused.
func (d *daemon) watchStore(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-d.st.Faulted():
		return d.st.Fault()
	}
}

// storeFaultAfterRun turns a run that ended on a damaged database (see
// watchStore) into the fault a damaged database is at the start: the
// relay is locked again (a fail-safe lock configured to release when
// latchd halts is released only when it ends) and the fault shown until
// latchd is stopped. Any other end of the run is returned as it is.
func storeFaultAfterRun(ctx context.Context, cfg *Config, hw *hardware, err error, log *slog.Logger, nt *notifier) error {
	if !errors.Is(err, store.ErrCorrupt) || ctx.Err() != nil {
		return err
	}
	if _, rerr := newRelay(cfg, hw, nil); rerr != nil {
		log.Error("relay: not locked again after the database fault", "err", rerr)
	}
	return storeFault(ctx, cfg, hw, err, door.SystemClock{}, log, nt)
}
