package mqtt_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store"
)

// The figures of the MQTT path, against a real mosquitto on loopback, with
// mosquitto's default socket options and with set_tcp_nodelay:
//
//	go test ./mqtt -run '^$' -bench Revocation -benchtime 300x
//	go test ./mqtt -run '^$' -bench 'Drain|CatchUp' -benchtime 3x
//
// LATCH_BENCH_WINDOW=n sets Options.EventWindow for the drain.

// brokers runs fn against each broker configuration measured.
func brokers(b *testing.B, fn func(b *testing.B, cfg brokertest.Config)) {
	b.Run("broker=default", func(b *testing.B) { fn(b, brokertest.Config{}) })
	b.Run("broker=nodelay", func(b *testing.B) { fn(b, brokertest.Config{NoDelay: true}) })
}

// percentile returns the p-th percentile (0..1) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// Revocation published by the site → the door's store denies the card:
// signing, broker, verification, the transaction and the decision.
func BenchmarkRevocationEnforced(b *testing.B) { brokers(b, benchRevocation) }

func benchRevocation(b *testing.B, cfg brokertest.Config) {
	// Each iteration revokes one of the cards; when all are revoked, they
	// are reinstated in one delta, outside the timing, and the next batch
	// starts.
	const cards = 1000
	e := newEnv(b, envConfig{broker: cfg})
	ctx := context.Background()
	var ops, reinstate []store.Op
	for n := range uint32(cards) {
		ops = append(ops, card(n, "front"))
		reinstate = append(reinstate, store.Op{Kind: store.OpReinstateCard, UID: uid(n)})
	}
	if _, err := e.site.Publish(ctx, ops...); err != nil {
		b.Fatal(err)
	}
	r := e.newRig("front", "", nil).start()
	r.waitConnected()
	e.waitSynced(r)
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		n := uint32(i % cards)
		if i > 0 && n == 0 {
			b.StopTimer()
			if _, err := e.site.Publish(ctx, reinstate...); err != nil {
				b.Fatal(err)
			}
			e.waitSynced(r)
			if d := decide(b, r.st, "front", cards-1); d.Outcome != store.Granted {
				b.Fatalf("card %d after reinstatement: %+v", cards-1, d)
			}
			b.StartTimer()
		}
		start := time.Now()
		if _, err := e.site.Publish(ctx, revoke(n)); err != nil {
			b.Fatal(err)
		}
		seq, _ := e.site.Head("front")
		waitFor(b, "applied", func() bool { return r.client.Stats().AppliedSeq >= seq }, r.client.Updated)
		if d := decide(b, r.st, "front", n); d.Reason != store.ReasonRevoked {
			b.Fatalf("card %d: %+v", n, d)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max-ms")
}

// A backlog of 5,000 events drains to the site after the door connects:
// published, stored durably by the collector, acknowledged, cursor moved.
func BenchmarkBacklogDrain(b *testing.B) { brokers(b, benchDrain) }

func benchDrain(b *testing.B, cfg brokertest.Config) {
	const backlog = 5000
	var total time.Duration
	for range b.N {
		b.StopTimer()
		e := newEnv(b, envConfig{broker: cfg})
		r := e.newRig("front", "", func(o *mqtt.Options) {
			if w, err := strconv.Atoi(os.Getenv("LATCH_BENCH_WINDOW")); err == nil {
				o.EventWindow = w
			}
		})
		appendEvents(b, r.st, "front", backlog)
		head, _, err := r.st.AuditHead()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		r.start()
		waitFor(b, "drained", func() bool { return r.client.Stats().Acked >= head }, r.client.Updated)
		total += time.Since(start)
		b.StopTimer()
		if got := e.site.Contiguous("front"); got < head {
			b.Fatalf("site has %d contiguous, door head %d", got, head)
		}
		r.close()
	}
	b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "events/s")
}

// Catch-up of 10,000 revocations published while the door was offline,
// with the broker keeping at most 100 messages for it.
func BenchmarkCatchUp10k(b *testing.B) { brokers(b, benchCatchUp) }

func benchCatchUp(b *testing.B, cfg brokertest.Config) {
	cfg.MaxQueued = 100
	var total time.Duration
	for range b.N {
		b.StopTimer()
		e := newEnv(b, envConfig{broker: cfg})
		ctx := context.Background()
		var ops []store.Op
		for n := range uint32(200) {
			ops = append(ops, card(n, "front"))
		}
		if _, err := e.site.Publish(ctx, ops...); err != nil {
			b.Fatal(err)
		}
		r := e.newRig("front", "", nil).start()
		r.waitConnected()
		e.waitSynced(r)
		r.close()
		for i := range uint32(10000) {
			if _, err := e.site.Publish(ctx, revoke(i)); err != nil {
				b.Fatal(err)
			}
		}
		r2 := e.newRig("front", r.path, nil)
		b.StartTimer()
		start := time.Now()
		r2.start()
		e.waitSynced(r2)
		total += time.Since(start)
		b.StopTimer()
		r2.close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/catch-up")
}
