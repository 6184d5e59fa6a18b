package pn532_test

import (
	"context"
	"testing"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// minCost is the least one command can take on the bus: its frame, the
// ACK, the response, and (without IRQ) one status read before each read.
// cmd and resp are frame lengths.
func minCost(cmd, resp int, irq bool) (tx, bytes int) {
	tx, bytes = 3, (1+cmd)+(1+6)+(1+resp)
	if !irq {
		tx, bytes = tx+2, bytes+2*2
	}
	return tx, bytes
}

// BenchmarkPoll measures SPI transactions and bytes per poll of an empty
// field and per card read, with and without the IRQ pin, and how far
// they are above the protocol's minimum. The chip answers at once (no
// busy status reads).
func BenchmarkPoll(b *testing.B) {
	for _, bc := range []struct {
		name string
		card bool
		irq  bool
	}{
		{"empty", false, false},
		{"empty-irq", false, true},
		{"card", true, false},
		{"card-irq", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			chip := pn532test.New(nil)
			d := newDev(b, chip, func(o *pn532.Opts) {
				if bc.irq {
					o.IRQ = chip.IRQ()
				}
			})
			if bc.card {
				if err := chip.Present(classic); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			// One round so the read length has adapted, as in a tracker.
			poll := func() {
				_, err := d.Poll(ctx)
				if bc.card && err != nil || !bc.card && err != pn532.ErrNoTarget {
					b.Fatal(err)
				}
			}
			poll()
			if err := d.Release(ctx); err != nil {
				b.Fatal(err)
			}
			var polled, released pn532test.Stats
			b.ResetTimer()
			for range b.N {
				s0 := chip.Stats()
				poll()
				s1 := chip.Stats()
				if err := d.Release(ctx); err != nil {
					b.Fatal(err)
				}
				s2 := chip.Stats()
				polled.Tx += s1.Tx - s0.Tx
				polled.Bytes += s1.Bytes - s0.Bytes
				released.Tx += s2.Tx - s1.Tx
				released.Bytes += s2.Bytes - s1.Bytes
			}
			n := float64(b.N)
			resp := 10 // 00 00 FF 03 FD D5 4B 00 E0 00
			if bc.card {
				resp = 19 // a 4-byte UID
			}
			minTx, minBytes := minCost(11, resp, bc.irq)
			b.ReportMetric(float64(polled.Tx)/n, "tx/poll")
			b.ReportMetric(float64(polled.Bytes)/n, "bytes/poll")
			b.ReportMetric(float64(polled.Tx)/n-float64(minTx), "tx-over-min/poll")
			b.ReportMetric(float64(polled.Bytes)/n-float64(minBytes), "bytes-over-min/poll")
			if bc.card {
				b.ReportMetric(float64(released.Bytes)/n, "release-bytes/read")
			}
		})
	}
}
