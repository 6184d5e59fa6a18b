// Package storetest helps tests put a door's data on a disk that fills: a
// small tmpfs mounted for the length of a test, and a file that fills it.
// Production code does not import it.
package storetest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size (such as "2m") on a new directory for
// the length of the test and returns the directory. It skips the test, with
// the reason, when this machine does not allow the mount (it needs root on
// Linux).
func SmallDisk(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount(dir, size); err != nil {
		t.Skipf("a small filesystem to fill is needed: mounting a tmpfs failed (%v); run as root on Linux to test a full disk", err)
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until its filesystem is full, and returns the
// file's path: removing it frees the space.
func Fill(t testing.TB, dir string) string {
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
