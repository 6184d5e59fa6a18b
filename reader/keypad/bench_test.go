//go:build unix

package keypad_test

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// cpuTime returns the CPU time, user and system, this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleCPU measures the process's CPU time over b's iterations of a quarter
// second's sleep, reporting CPU milliseconds used per second waited.
func idleCPU(b *testing.B) {
	runtime.GC()
	wall := time.Now()
	cpu := cpuTime(b)
	for b.Loop() {
		time.Sleep(250 * time.Millisecond)
	}
	used := cpuTime(b) - cpu
	b.ReportMetric(float64(used)/float64(time.Millisecond)/time.Since(wall).Seconds(), "cpu-ms/idle-s")
}

// BenchmarkMatrixIdleCPU runs the driver on an emulated 4×4 keypad on the
// real clock and measures the process's CPU time while it waits: with no
// key down ("idle") and with a key held down ("held"). "baseline" is the
// same wait with no driver: the test process's own cost. cpu-ms/idle-s is
// CPU milliseconds used per second waited; scans/s should be 0.
func BenchmarkMatrixIdleCPU(b *testing.B) {
	b.Run("baseline", idleCPU)
	for _, held := range []bool{false, true} {
		name := "idle"
		if held {
			name = "held"
		}
		b.Run(name, func(b *testing.B) {
			em, err := keypadtest.NewMatrix(keypad.Layout4x4)
			if err != nil {
				b.Fatal(err)
			}
			kp, err := keypad.NewMatrix(em.Rows(), em.Cols(), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			keys := make(chan keypad.Key, 4)
			done := make(chan error, 1)
			go func() { done <- kp.Run(ctx, func(k keypad.Key) { keys <- k }) }()
			// One key typed: the driver is running and has settled.
			if err := em.TypeKeys(ctx, "1"); err != nil {
				b.Fatal(err)
			}
			<-keys
			if held {
				if err := em.Press('5'); err != nil {
					b.Fatal(err)
				}
				select {
				case <-keys:
				case <-ctx.Done():
					b.Fatal("held key not delivered")
				}
			}
			scans := em.Scans()
			wall := time.Now()
			idleCPU(b)
			b.ReportMetric(float64(em.Scans()-scans)/time.Since(wall).Seconds(), "scans/s")
			if err := kp.Halt(); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
