package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On a real full filesystem (a tmpfs, so root only): the reserve is
// released and writing goes on; when that is used up too, writes fail and
// are counted; once space is freed, everything held is written and the
// chain verifies.
func TestJournalFullDisk(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	r := newJournalRig(t, dir, func(o *JournalOptions) {
		o.Reserve = 96 << 10
		o.ReserveCheck = time.Millisecond
	})
	if _, err := os.Stat(filepath.Join(dir, reserveFileName)); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	filler := fillDisk(t, dir)
	detail := strings.Repeat("x", 200)
	i := 0
	add := func() {
		i++
		e := jev(ReasonExitRequest, i)
		e.Detail = detail
		r.j.Add(JournalEntry{Events: []Event{e}})
	}
	// Write until the reserve is gone and then until writes fail.
	for r.j.Health().OK {
		add()
		if _, err := r.flush(jev(ReasonGranted, i)); err != nil {
			break
		}
		if i > 100000 {
			t.Fatal("the disk never filled")
		}
	}
	h := r.waitHealth("fault", func(h JournalHealth) bool { return !h.OK && h.Reserve })
	if !strings.Contains(h.Err, "no space") {
		t.Errorf("health error %q", h.Err)
	}
	for range 10 {
		add()
	}
	r.waitHealth("held events counted", func(h JournalHealth) bool { return h.Recorded >= 10 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.waitHealth("written and reserve back", func(h JournalHealth) bool {
		return h.OK && h.Pending == 0 && h.Recorded == 0 && !h.Reserve
	})
	got := r.all()
	var faults, exits int
	for _, e := range got {
		switch e.Reason {
		case ReasonJournalFault:
			faults++
		case ReasonExitRequest:
			exits++
		case ReasonEventsLost:
			t.Errorf("events_lost %q: nothing was shed", e.Detail)
		}
	}
	if exits != i || faults < 2 {
		t.Errorf("%d exit requests of %d, %d journal_fault events (want the reserve's and the recovery's)", exits, i, faults)
	}
	r.verify()
	if err := r.st.Check(); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a tmpfs of size in a new directory, for the length of
// the test. It skips the test when mounting is not allowed here.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("a small filesystem to fill is needed: mounting a tmpfs failed (%v); run as root to test a full disk", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file until the filesystem of dir is full.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}
