package main

import (
	"errors"
	"syscall"
)

// dataDirUnwritable reports whether err says that the data directory, or
// the database in it, cannot be made or written: a read-only file system
// (EROFS, as after the kernel remounts a failing SD card), no permission
// (EACCES, EPERM) or no space left (ENOSPC, EDQUOT). A restart does not
// cure any of these, so latchd waits with the fault shown instead of
// exiting into a restart loop.
func dataDirUnwritable(err error) bool {
	for _, e := range []syscall.Errno{syscall.EROFS, syscall.EACCES, syscall.EPERM, syscall.ENOSPC, syscall.EDQUOT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
