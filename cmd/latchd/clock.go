package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"time"
)

// clockFloor is a time this build cannot predate: a clock reading earlier
// than it (a Pi that booted without a real-time clock and has not heard from
// NTP yet) is not trusted.
func clockFloor() time.Time {
	return time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)
}

// clockTrust reports whether the wall clock can be trusted for schedules and
// event times: it is past floor and, where the kernel says so, it has been
// synchronised.
type clockTrust struct {
	floor  time.Time        // a reading before it is not trusted (clockFloor)
	kernel bool             // also ask the kernel whether NTP has synchronised the clock
	now    func() time.Time // the clock; nil means time.Now
}

func (c clockTrust) trusted() bool {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if now().Before(c.floor) {
		return false
	}
	if c.kernel {
		if synced, known := kernelClockSynced(); known && !synced {
			return false
		}
	}
	return true
}

// bootID names this run of the service in every audit event: the kernel's
// boot id when there is one, plus a random suffix for this process.
func bootID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	if k, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id := strings.ReplaceAll(strings.TrimSpace(string(k)), "-", "")
		if len(id) >= 8 {
			return id[:8] + "-" + suffix
		}
	}
	return suffix
}
