package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// readOnlyDir returns a directory nothing can be written in: a read-only
// tmpfs for root (whom chmod does not stop), else a directory of mode 0500.
// It skips the test only if it runs as root and cannot mount.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k"); err != nil {
			t.Skipf("running as root, whom a mode of 0500 does not stop, and a read-only tmpfs cannot be mounted: %v", err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		})
	} else {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); err == nil {
		t.Fatalf("%s is writable", dir)
	}
	return dir
}

// A data directory that cannot be written, or made, keeps the simulator
// running with the door locked and the fault shown until it is stopped, as
// a damaged database does; then it exits non-zero, saying what and where.
func TestSimUnwritableDataDir(t *testing.T) {
	t.Run("read-only", func(t *testing.T) {
		dir := readOnlyDir(t)
		faultLine, last := simUntilStopped(t, dir, "the data directory cannot be written")
		if !strings.Contains(faultLine, "data_dir="+dir) {
			t.Errorf("the fault does not name the directory: %s", faultLine)
		}
		if !strings.Contains(last, filepath.Join(dir, dbFile)) || !(strings.Contains(last, "read-only file system") || strings.Contains(last, "permission denied")) {
			t.Errorf("last line %q: want the file and what is wrong", last)
		}
	})
	t.Run("cannot be made", func(t *testing.T) {
		dir := filepath.Join(readOnlyDir(t), "latch-data")
		faultLine, last := simUntilStopped(t, dir, "the data directory cannot be written")
		if !strings.Contains(faultLine, "data_dir="+dir) {
			t.Errorf("the fault does not name the directory: %s", faultLine)
		}
		if !strings.Contains(last, "-data "+dir+": mkdir "+dir) {
			t.Errorf("last line %q: want the directory and what is wrong", last)
		}
	})
}
