package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// kernelClockState is what the kernel knows of the clock's quality.
type kernelClockState struct {
	Known    bool          // the kernel answered (Linux)
	Synced   bool          // NTP (or chrony, or timesyncd) has synchronised it
	MaxError time.Duration // the kernel's bound on the clock's error
	EstError time.Duration // the kernel's estimate of the clock's error
}

// String describes the state in a few words, for the log and the status.
func (k kernelClockState) String() string {
	switch {
	case !k.Known:
		return "unknown"
	case !k.Synced:
		return "not synchronised"
	}
	return fmt.Sprintf("synchronised, estimated error %v, at most %v", k.EstError, k.MaxError)
}

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
		if k := kernelClock(); k.Known && !k.Synced {
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
