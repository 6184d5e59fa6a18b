//go:build unix

package pn532_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleCPU measures the process's CPU time per second of a
// tracker waiting for a card, with and without the IRQ pin, and the SPI
// transactions per second it takes. The emulated chip takes 5 ms of real
// time to answer an empty poll, about what a PN532 takes for two
// activation attempts; polls come every 50 ms. With the IRQ pin the
// tracker hands the wait to the chip and sleeps. Each iteration is 10
// poll periods of real time. The emulator's own work is counted too.
func BenchmarkIdleCPU(b *testing.B) {
	const (
		latency = 5 * time.Millisecond
		period  = 50 * time.Millisecond
		polls   = 10
	)
	for _, bc := range []struct {
		name string
		irq  bool
	}{{"status", false}, {"irq", true}} {
		b.Run(bc.name, func(b *testing.B) {
			chip := pn532test.New(&pn532test.Opts{Latency: latency})
			d := newDev(b, chip, func(o *pn532.Opts) {
				o.ResponseTimeout = time.Second
				o.StatusInterval = pn532.DefaultOpts.StatusInterval
				o.PollPeriod = period
				if bc.irq {
					o.IRQ = chip.IRQ()
				}
			})
			var cpu, wall time.Duration
			var tx int
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), polls*period)
				tr := pn532.NewTracker(d, nil)
				s0, c0, w0 := chip.Stats(), cpuTime(b), time.Now()
				_ = tr.Run(ctx, func(e pn532.TrackEvent) { b.Errorf("event %#v", e) })
				cpu += cpuTime(b) - c0
				wall += time.Since(w0)
				tx += chip.Stats().Tx - s0.Tx
				cancel()
			}
			b.ReportMetric(float64(cpu.Microseconds())/1e3/wall.Seconds(), "cpu-ms/idle-s")
			b.ReportMetric(float64(tx)/wall.Seconds(), "tx/idle-s")
		})
	}
}
