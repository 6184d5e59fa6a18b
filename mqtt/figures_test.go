package mqtt_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/mqtt/sitetest"
	"github.com/latchdoor/latch/store"
)

// The figures of contract v2:
//
//	go test ./mqtt -run '^$' -bench 'CatchUpSnapshot' -benchtime 1x
//	go test ./mqtt -run '^$' -bench 'RevocationEnforced|RevocationFanout' -benchtime 300x

// catchUpEnv makes the test binary a door that catches up and reports.
const catchUpEnv = "LATCH_MQTT_TEST_CATCHUP"

// BenchmarkCatchUpSnapshot measures a door joining a site of 100,000 and
// 1,000,000 cards with PINs from an empty store, through a mosquitto that
// queues at most 100 messages for it. The door runs in a process of its
// own, so that its peak memory is its own: peak-RSS-MiB is its VmHWM (every
// page it had resident at once, the bbolt file's mapped pages included;
// not the wait4 rusage, which counts the parent's pages shared at the
// fork); peak-anon-MiB is its heap and stacks (RssAnon, sampled every
// 20 ms).
func BenchmarkCatchUpSnapshot(b *testing.B) {
	for _, n := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("cards=%d", n), func(b *testing.B) {
			if n > 100000 && testing.Short() {
				b.Skip("1,000,000 cards: not in -short")
			}
			benchCatchUpSnapshot(b, n)
		})
	}
}

func benchCatchUpSnapshot(b *testing.B, cards int) {
	e := newEnv(b, envConfig{broker: brokertest.Config{MaxQueued: 100}, site: func(o *sitetest.Options) { o.DeltaLimit = 10 }})
	for batch := 0; batch < cards; batch += 2000 {
		ops := make([]store.Op, 0, 2000)
		for n := batch; n < batch+2000 && n < cards; n++ {
			ops = append(ops, cardWithPIN(uint32(n), "front"))
		}
		if _, err := e.site.Commit(ops...); err != nil {
			b.Fatal(err)
		}
	}
	seq, hash := e.site.Head("front")
	var secs, rss, anon float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), catchUpEnv+"=1",
			"LATCH_CATCHUP_DB="+dir+"/front.db", "LATCH_CATCHUP_BROKER=tcp://"+e.proxy.Addr(),
			"LATCH_CATCHUP_PASSWORD="+users["front"], "LATCH_CATCHUP_IDENTITY="+e.idDirs["front"],
			"LATCH_CATCHUP_KID="+e.signer.KeyID(), "LATCH_CATCHUP_KEY="+base64.StdEncoding.EncodeToString(e.signer.Public()),
			"LATCH_CATCHUP_SEQ="+strconv.FormatUint(seq, 10), "LATCH_CATCHUP_HASH="+hash)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var report string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			report = sc.Text()
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("door: %v\n%s", err, stderr.String())
		}
		secs += time.Since(start).Seconds()
		b.StopTimer()
		if os.Getenv("LATCH_CATCHUP_DEBUG") != "" {
			b.Log(stderr.String())
		}
		var peak, hwm float64
		if _, err := fmt.Sscanf(report, "anon-peak-kib=%g hwm-kib=%g", &peak, &hwm); err != nil {
			b.Fatalf("door report %q: %v", report, err)
		}
		anon += peak / 1024
		rss += hwm / 1024
		b.StartTimer()
	}
	b.StopTimer()
	st := e.site.Stats()
	b.ReportMetric(secs/float64(b.N), "s/catch-up")
	b.ReportMetric(rss/float64(b.N), "peak-RSS-MiB")
	b.ReportMetric(anon/float64(b.N), "peak-anon-MiB")
	b.ReportMetric(float64(st.ChunksSent)/float64(b.N), "chunks")
}

// catchUpChild is a door with an empty store that runs its client until
// it has applied the seq and hash in its environment, then prints its
// peak anonymous memory.
func catchUpChild() int {
	get := func(k string) string { return os.Getenv("LATCH_CATCHUP_" + k) }
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	var peak int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatusKiB("RssAnon:"))
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	pub, err := base64.StdEncoding.DecodeString(get("KEY"))
	if err != nil {
		return fail(err)
	}
	seq, err := strconv.ParseUint(get("SEQ"), 10, 64)
	if err != nil {
		return fail(err)
	}
	st, err := store.Open(get("DB"), nil)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	j, err := store.OpenJournal(st, &store.JournalOptions{Door: "front"})
	if err != nil {
		return fail(err)
	}
	defer j.Close()
	id, err := mqtt.LoadIdentity(get("IDENTITY"))
	if err != nil {
		return fail(err)
	}
	c, err := mqtt.New(st, j, newTestDoor(), &mqtt.Options{
		Broker: get("BROKER"), Site: site, Door: "front", Username: "front", Password: get("PASSWORD"),
		TrustedKeys: map[string]ed25519.PublicKey{get("KID"): pub}, Identity: id,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for {
		ch := c.Updated()
		if s := c.Stats(); s.AppliedSeq == seq && s.SnapshotHash == get("HASH") {
			break
		}
		select {
		case <-ch:
		case err := <-done:
			return fail(fmt.Errorf("run: %v", err))
		}
	}
	cancel()
	if err := <-done; err != nil {
		return fail(err)
	}
	close(stopSampling)
	<-sampled
	if os.Getenv("LATCH_CATCHUP_DEBUG") != "" {
		fi, _ := os.Stat(get("DB"))
		status, _ := os.ReadFile("/proc/self/status")
		fmt.Fprintf(os.Stderr, "file %d MiB\n%s\n", fi.Size()>>20, status)
	}
	fmt.Printf("anon-peak-kib=%d hwm-kib=%d\n", peak, procStatusKiB("VmHWM:"))
	return 0
}

// procStatusKiB reads one of the process's memory figures in kB.
func procStatusKiB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkRevocationFanout is the site's cost of one revocation held by
// 1,000 doors: a delta sealed to each door's identity and signed.
func BenchmarkRevocationFanout(b *testing.B) {
	const doors = 1000
	s := newSigner(b, "site-2026")
	ids := make([]mqtt.PublicIdentity, doors)
	for i := range ids {
		id, err := mqtt.NewIdentity()
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id.Public()
	}
	ops := []store.Op{revoke(7)}
	now := time.Now()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for d, to := range ids {
			if _, err := s.SealFor(to, mqtt.NewDelta(site, fmt.Sprintf("door-%04d", d), uint64(i+1), now, ops)); err != nil {
				b.Fatal(err)
			}
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(el.Microseconds())/1000/float64(b.N), "ms/revocation")
	b.ReportMetric(float64(el.Microseconds())/float64(b.N*doors), "µs/door")
}
