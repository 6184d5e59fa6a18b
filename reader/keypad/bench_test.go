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

// BenchmarkExpanderTraffic runs the driver on the real clock on an
// emulated 3×4 keypad behind an emulated PCF8574 and MCP23017, through
// periph's drivers, polled and with the interrupt line, and counts the I²C
// traffic: "idle" per second with no key down, "key" per key typed (press,
// debounce, release, as keypadtest's Tap holds it). A transaction is one
// transfer from START to STOP; bytes count the address bytes too.
func BenchmarkExpanderTraffic(b *testing.B) {
	for _, bd := range []board{boards[0], boards[4]} {
		for _, intr := range []bool{false, true} {
			name := string(bd.chip) + "/poll"
			if intr {
				name = string(bd.chip) + "/interrupt"
			}
			em, x, rows, cols, opts := newExpanderMatrix(b, bd, intr)
			kp, err := keypad.NewMatrix(rows, cols, opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			keys := make(chan keypad.Key, 1024)
			done := make(chan error, 1)
			go func() { done <- kp.Run(ctx, func(k keypad.Key) { keys <- k }) }()
			if err := em.TypeKeys(ctx, "1"); err != nil { // running and settled
				b.Fatal(err)
			}
			per := func(b *testing.B, what string, n float64, before keypadtest.BusStats) {
				s := x.Stats()
				b.ReportMetric(float64(s.Transactions-before.Transactions)/n, "tx/"+what)
				b.ReportMetric(float64(s.Bytes-before.Bytes)/n, "B/"+what)
			}
			b.Run(name+"/idle", func(b *testing.B) {
				before, wall := x.Stats(), time.Now()
				for b.Loop() {
					time.Sleep(250 * time.Millisecond)
				}
				per(b, "idle-s", time.Since(wall).Seconds(), before)
			})
			b.Run(name+"/key", func(b *testing.B) {
				before := x.Stats()
				for b.Loop() {
					if err := em.TypeKeys(ctx, "5"); err != nil {
						b.Fatal(err)
					}
				}
				per(b, "key", float64(b.N), before)
			})
			if err := kp.Halt(); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	}
}
