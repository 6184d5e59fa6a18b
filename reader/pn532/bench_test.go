package pn532_test

import (
	"context"
	"testing"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

// Frame lengths on the wire, preamble and postamble included.
const (
	pollFrame  = 11 // InListPassiveTarget(1, 106 kbps type A)
	emptyFrame = 10 // its answer: no target
	ntagFrame  = 22 // its answer: a card with a 7-byte UID
)

// busyChip is how long the emulated chip keeps the host waiting, in
// status reads that find it busy.
type busyChip struct{ ack, resp int }

// minCost is the least one command can take on the bus: its frame, the
// ACK, the response read whole in one transaction and, without IRQ, the
// status reads the chip's work takes (busy ones, then the one that finds
// it ready) before each read. cmd and resp are frame lengths.
func minCost(cmd, resp int, busy busyChip, irq bool) (tx, bytes int) {
	tx, bytes = 3, (1+cmd)+(1+6)+(1+resp)
	if !irq {
		reads := busy.ack + 1 + busy.resp + 1
		tx, bytes = tx+reads, bytes+2*reads
	}
	return tx, bytes
}

// pollScene is a Poll measured on the emulator: what the last Poll found
// (none after init) and what this one finds.
type pollScene struct {
	name string
	last string // "init", "empty" or "card"
	card bool
	busy busyChip
	irq  bool
	// padding is the bytes read over the minimum by design: an empty
	// field's answer is read at the size of a card's (readResponse), so
	// that a card arriving after it is read in one transaction.
	padding int
}

var pollScenes = func() []pollScene {
	var s []pollScene
	for _, b := range []struct {
		name string
		busy busyChip
		irq  bool
	}{
		{"ready", busyChip{}, false},
		{"busy1-2", busyChip{1, 2}, false},
		{"irq", busyChip{}, true},
	} {
		s = append(s,
			pollScene{name: "empty/" + b.name, last: "empty", busy: b.busy, irq: b.irq, padding: ntagFrame - emptyFrame},
			pollScene{name: "card/" + b.name, last: "card", card: true, busy: b.busy, irq: b.irq},
			pollScene{name: "first/" + b.name, last: "init", card: true, busy: b.busy, irq: b.irq},
			pollScene{name: "tap/" + b.name, last: "empty", card: true, busy: b.busy, irq: b.irq},
		)
	}
	return s
}()

// setup returns a device and chip where the next Poll is the scene's.
func (sc pollScene) setup(tb testing.TB) (*pn532.Dev, *pn532test.Chip) {
	tb.Helper()
	chip := pn532test.New(&pn532test.Opts{ACKBusy: sc.busy.ack, ResponseBusy: sc.busy.resp})
	d := newDev(tb, chip, func(o *pn532.Opts) {
		if sc.irq {
			o.IRQ = chip.IRQ()
		}
	})
	sc.prepare(tb, d, chip)
	return d, chip
}

// prepare brings d to the scene's state again after a measured Poll.
func (sc pollScene) prepare(tb testing.TB, d *pn532.Dev, chip *pn532test.Chip) {
	tb.Helper()
	ctx := context.Background()
	switch sc.last {
	case "empty":
		chip.Remove()
		if _, err := d.Poll(ctx); err != pn532.ErrNoTarget {
			tb.Fatalf("empty poll: %v", err)
		}
	case "card":
		if err := chip.Present(ntag); err != nil {
			tb.Fatal(err)
		}
		if _, err := d.Poll(ctx); err != nil {
			tb.Fatalf("card poll: %v", err)
		}
		if err := d.Release(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	if sc.card {
		if err := chip.Present(ntag); err != nil {
			tb.Fatal(err)
		}
	}
}

// measure runs the scene's Poll and returns its bus traffic.
func (sc pollScene) measure(tb testing.TB, d *pn532.Dev, chip *pn532test.Chip) (tx, bytes int) {
	tb.Helper()
	s0 := chip.Stats()
	tg, err := d.Poll(context.Background())
	s1 := chip.Stats()
	switch {
	case sc.card && (err != nil || len(tg.UID) != 7):
		tb.Fatalf("%s: %v, %v", sc.name, tg, err)
	case !sc.card && err != pn532.ErrNoTarget:
		tb.Fatalf("%s: %v, %v", sc.name, tg, err)
	}
	return s1.Tx - s0.Tx, s1.Bytes - s0.Bytes
}

func (sc pollScene) min() (tx, bytes int) {
	resp := emptyFrame
	if sc.card {
		resp = ntagFrame
	}
	return minCost(pollFrame, resp, sc.busy, sc.irq)
}

// Every Poll takes exactly as many transactions as the protocol needs: one
// per frame, no field-off without a selected card, nothing read twice; an
// empty field's answer is read at a card's size (12 bytes of padding), so
// that a card tapped after an empty poll is read in one transaction too.
// The chip that keeps the host waiting one status read for the ACK and
// two for the answer reads a card in 52 bytes and 8 transactions.
func TestPollTraffic(t *testing.T) {
	want := map[string][2]int{ // transactions, bytes
		"card/busy1-2":  {8, 52},
		"first/busy1-2": {8, 52},
		"empty/busy1-2": {8, 52},
		"tap/busy1-2":   {8, 52},
		"card/irq":      {3, 42},
	}
	for _, sc := range pollScenes {
		t.Run(sc.name, func(t *testing.T) {
			d, chip := sc.setup(t)
			for i := range 3 {
				if i > 0 {
					sc.prepare(t, d, chip)
				}
				tx, bytes := sc.measure(t, d, chip)
				minTx, minBytes := sc.min()
				if tx != minTx || bytes != minBytes+sc.padding {
					t.Errorf("round %d: %d transactions and %d bytes, want %d and %d+%d", i, tx, bytes, minTx, minBytes, sc.padding)
				}
				if w, ok := want[sc.name]; ok && (tx != w[0] || bytes != w[1]) {
					t.Errorf("round %d: %d transactions and %d bytes, want %d and %d", i, tx, bytes, w[0], w[1])
				}
				if sc.last == "init" {
					break
				}
			}
		})
	}
}

// BenchmarkPoll measures SPI transactions and bytes per Poll of an empty
// field and per card read (a 7-byte UID), with a chip that answers at
// once, one that is busy for one status read before the ACK and two
// before the answer, and with the IRQ pin; and how far each is above the
// protocol's minimum (minCost). "card" follows a Poll that found the card
// too, "first" is the first Poll after NewSPI, "tap" follows an empty
// Poll. The traffic of the setup between Polls is not counted.
func BenchmarkPoll(b *testing.B) {
	for _, sc := range pollScenes {
		if sc.last == "init" {
			continue // one per NewSPI: TestPollTraffic checks it
		}
		b.Run(sc.name, func(b *testing.B) {
			d, chip := sc.setup(b)
			var tx, bytes int
			// The time per op includes the setup Poll: timing the measured
			// Poll alone (a few µs on the emulator) would make the loop run
			// the untimed setup millions of times. The bus figures are the
			// measured Poll's alone.
			for b.Loop() {
				sc.prepare(b, d, chip)
				t, n := sc.measure(b, d, chip)
				tx += t
				bytes += n
			}
			n := float64(b.N)
			minTx, minBytes := sc.min()
			b.ReportMetric(float64(tx)/n, "tx/poll")
			b.ReportMetric(float64(bytes)/n, "bytes/poll")
			b.ReportMetric(float64(tx)/n-float64(minTx), "tx-over-min/poll")
			b.ReportMetric(float64(bytes)/n-float64(minBytes), "bytes-over-min/poll")
		})
	}
}
