package store

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

var largeEntries = flag.Int("store.large-entries", 1_000_000, "audit entries in the BenchmarkOpenCheckLarge fixture")

// Benchmark fixtures are built once per test process, in a temporary
// directory removed by TestMain.
var benchFixtures struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

func benchFixture(b *testing.B, name string, build func(b *testing.B, path string)) string {
	b.Helper()
	benchFixtures.Lock()
	defer benchFixtures.Unlock()
	if p, ok := benchFixtures.paths[name]; ok {
		return p
	}
	if benchFixtures.dir == "" {
		dir, err := os.MkdirTemp("", "latch-store-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchFixtures.dir = dir
		benchFixtures.paths = map[string]string{}
	}
	path := filepath.Join(benchFixtures.dir, name+".db")
	start := time.Now()
	build(b, path)
	b.Logf("built fixture %s in %s", name, time.Since(start).Round(time.Millisecond))
	benchFixtures.paths[name] = path
	return path
}

func cleanupBenchFixtures() {
	benchFixtures.Lock()
	defer benchFixtures.Unlock()
	if benchFixtures.dir != "" {
		os.RemoveAll(benchFixtures.dir)
	}
}

const fixtureCards = 100_000

func fixtureUID(i int) []byte {
	return []byte{0x04, byte(i >> 16), byte(i >> 8), byte(i), 0x3A, 0x91, 0x80}
}

// buildAllowlist fills a store with fixtureSnapshot.
func buildAllowlist(b *testing.B, s *Store) {
	b.Helper()
	if err := s.ApplySnapshot(fixtureSnapshot(b, 1)); err != nil {
		b.Fatal(err)
	}
}

// fixtureSnapshot has 100,000 cards (a tenth with schedules and validity
// dates), 10,000 holders and 100,000 revocations (most of cards never
// enrolled, 1,000 of enrolled cards, 100 of holders), in random order.
func fixtureSnapshot(b *testing.B, seq uint64) Snapshot {
	b.Helper()
	pinHash, err := HashPIN([]byte("246810"), nil, fastPIN)
	if err != nil {
		b.Fatal(err)
	}
	sn := Snapshot{Seq: seq}
	for i := range fixtureCards {
		c := Card{UID: fixtureUID(i), HolderID: fmt.Sprintf("holder-%05d", i/10), HolderName: "Fixture Person",
			PINHash: pinHash, Doors: []string{"front", "staff"}}
		if i%10 == 0 {
			c.ValidFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			c.ValidUntil = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			for d := time.Monday; d <= time.Friday; d++ {
				c.Schedule.Weekly[d] = []Window{{From: 7 * 60, To: 12 * 60}, {From: 13 * 60, To: 19 * 60}}
			}
			c.Schedule.Holidays = []string{"2026-01-01", "2026-12-25"}
		}
		sn.Cards = append(sn.Cards, c)
	}
	for i := range fixtureCards / 10 {
		sn.Holders = append(sn.Holders, Holder{ID: fmt.Sprintf("holder-%05d", i), Name: fmt.Sprintf("Holder %d", i)})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	for len(sn.Revocations) < fixtureCards-1100 {
		uid := []byte{0x08, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		if !seen[string(uid)] {
			seen[string(uid)] = true
			sn.Revocations = append(sn.Revocations, Revocation{UID: uid, Reason: "lost"})
		}
	}
	for i := range 1000 {
		sn.Revocations = append(sn.Revocations, Revocation{UID: fixtureUID(i * 97), Reason: "stolen"})
	}
	for i := range 100 {
		sn.Revocations = append(sn.Revocations, Revocation{HolderID: fmt.Sprintf("holder-%05d", i*71), Reason: "left"})
	}
	rng.Shuffle(len(sn.Cards), func(i, j int) { sn.Cards[i], sn.Cards[j] = sn.Cards[j], sn.Cards[i] })
	rng.Shuffle(len(sn.Holders), func(i, j int) { sn.Holders[i], sn.Holders[j] = sn.Holders[j], sn.Holders[i] })
	return sn
}

// BenchmarkApplySnapshot100k replaces the whole allowlist with a snapshot
// of 100,000 cards, 10,000 holders and 100,000 revocations, in one
// transaction.
func BenchmarkApplySnapshot100k(b *testing.B) {
	s := openTest(b, &Options{PINParams: fastPIN})
	seq := uint64(0)
	sn := fixtureSnapshot(b, 1)
	for b.Loop() {
		seq++
		sn.Seq = seq
		if err := s.ApplySnapshot(sn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/snapshot")
}

// BenchmarkStageSnapshot receives a snapshot of 100,000 or 1,000,000
// cards as a door does, in chunks of 1,000 cards (with 100 holders and two
// or three revocations each; PIN hashes of DefaultPINParams, 97 bytes),
// one transaction per chunk, then commits it over an allowlist as large.
// In uid-order each chunk holds the next cards by UID; scattered spreads
// them over the chunks, so that every chunk writes all over the staged
// tree. Chunks are made as they are staged, so the Go heap holds one at a
// time: heap-MiB is the peak of HeapInuse sampled after each chunk,
// heap-MiB-commit the peak sampled every 10 ms during the commit (which
// builds the staged holder index). MiB-written counts the pages the
// transactions wrote (commit included), ms-commit the commit alone.
func BenchmarkStageSnapshot(b *testing.B) {
	pinHash, err := HashPIN([]byte("246810"), nil, DefaultPINParams)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name string
		n    int
	}{{"100k", 100_000}, {"1M", 1_000_000}} {
		for _, scattered := range []bool{false, true} {
			name, n := size.name+"/uid-order", size.n
			if scattered {
				name = size.name + "/scattered"
			}
			b.Run(name, func(b *testing.B) {
				if n > 100_000 && testing.Short() {
					b.Skip("1M cards take minutes; run without -short")
				}
				benchStage(b, n, scattered, pinHash)
			})
		}
	}
}

func benchStage(b *testing.B, n int, scattered bool, pinHash string) {
	const per = 1000
	chunks := n / per
	s := openTest(b, &Options{PINParams: fastPIN})
	var ms runtime.MemStats
	var peak, commitPeak uint64
	var commit time.Duration
	receive := func(seq uint64) {
		b.StopTimer()
		var sum sum256 // the site's hash of the whole snapshot
		for c := range chunks {
			part := snapshotChunk(seq, c, chunks, per, pinHash, scattered)
			sum.addEntries(&part)
		}
		runtime.GC()
		b.StartTimer()
		if err := s.BeginSnapshot(seq, stateHash(seq, sum), chunks); err != nil {
			b.Fatal(err)
		}
		for c := range chunks {
			if err := s.StageChunk(seq, c, snapshotChunk(seq, c, chunks, per, pinHash, scattered)); err != nil {
				b.Fatal(err)
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		t0 := time.Now()
		stop, sampled := make(chan struct{}), make(chan uint64)
		go func() { // the commit's transactions hold what they write
			var ms runtime.MemStats
			var peak uint64
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				select {
				case <-stop:
					sampled <- peak
					return
				case <-tick.C:
				}
			}
		}()
		err := s.CommitSnapshot(seq)
		close(stop)
		commitPeak = max(commitPeak, <-sampled)
		if err != nil {
			b.Fatal(err)
		}
		commit += time.Since(t0)
	}
	receive(1) // the allowlist to replace
	pageAlloc := func() int64 { st := s.db.Stats(); return st.TxStats.GetPageAlloc() }
	alloc0, seq := pageAlloc(), uint64(1)
	peak, commitPeak, commit = 0, 0, 0
	for b.Loop() {
		seq++
		receive(seq)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "cards/s")
	b.ReportMetric(float64(peak)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(commitPeak)/(1<<20), "heap-MiB-commit")
	b.ReportMetric(float64(pageAlloc()-alloc0)/(1<<20)/float64(b.N), "MiB-written")
	b.ReportMetric(float64(commit.Milliseconds())/float64(b.N), "ms-commit")
	b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-file")
}

func buildDecideFixture(b *testing.B, path string) {
	s, err := Open(path, &Options{PINParams: fastPIN})
	if err != nil {
		b.Fatal(err)
	}
	buildAllowlist(b, s)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

func percentile(sorted []time.Duration, p float64) float64 {
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i]) / float64(time.Microsecond)
}

// BenchmarkDecide measures the card stage of Decide (no argon2id) against
// 100,000 cards and 100,000 revocations: a mix of valid cards (NeedPIN),
// revoked cards, scheduled cards and unknown cards. It starts once the
// background check has passed, so that the lookups are not guarded (see
// BenchmarkDecideGuard).
func BenchmarkDecide(b *testing.B) {
	path := benchFixture(b, "allowlist100k", buildDecideFixture)
	s, err := Open(path, &Options{PINParams: fastPIN})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	<-s.CheckDone()
	rng := rand.New(rand.NewPCG(5, 6))
	reqs := make([]Request, 4096)
	for i := range reqs {
		uid := fixtureUID(rng.IntN(fixtureCards))
		if i%8 == 0 {
			uid = []byte{0x08, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		}
		reqs[i] = Request{UID: uid, Door: "front", DoorGroups: []string{"lobby"}, Mode: ModeCardPIN,
			Now: time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), ClockTrusted: true}
	}
	lat := make([]time.Duration, 0, 1<<20)
	outcomes := map[Reason]int{}
	i := 0
	for b.Loop() {
		req := reqs[i%len(reqs)]
		i++
		t0 := time.Now()
		d, err := s.Decide(req)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		outcomes[d.Reason]++
	}
	slices.Sort(lat)
	b.ReportMetric(percentile(lat, 0.50), "µs-p50/decision")
	b.ReportMetric(percentile(lat, 0.99), "µs-p99/decision")
	if outcomes[ReasonPINRequired] == 0 || outcomes[ReasonUnknownCard] == 0 {
		b.Fatalf("fixture did not exercise the expected paths: %v", outcomes)
	}
}

// BenchmarkVerifyPIN measures one argon2id check with DefaultPINParams.
func BenchmarkVerifyPIN(b *testing.B) {
	h, err := HashPIN([]byte("482916"), []byte{0x04, 0x11, 0x22, 0x33}, DefaultPINParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		ok, err := VerifyPIN(h, []byte("482916"))
		if err != nil || !ok {
			b.Fatal("verify failed", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/verify")
}

// BenchmarkPINParams measures one argon2id check at a sweep of costs
// around DefaultPINParams (16, 32 and 64 MiB; 1, 2 and 3 passes; one
// lane), to choose the parameters for a slower door. MiB is the memory the
// hash fills; the Go heap holds it until the next collection.
func BenchmarkPINParams(b *testing.B) {
	for _, mib := range []uint32{16, 32, 64} {
		for _, t := range []uint32{1, 2, 3} {
			p := DefaultPINParams
			p.Memory, p.Time = mib*1024, t
			b.Run(fmt.Sprintf("m=%dMiB/t=%d", mib, t), func(b *testing.B) {
				h, err := HashSecret([]byte("482916"), p)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					ok, err := VerifyPIN(h, []byte("482916"))
					if err != nil || !ok {
						b.Fatal("verify failed", err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/check")
				b.ReportMetric(float64(mib), "MiB")
			})
		}
	}
}

// BenchmarkDecidePINStage measures a whole PIN-stage decision with
// DefaultPINParams, right and wrong PIN alternating (the wrong ones are
// written to the lockout state; the right ones reset it).
func BenchmarkDecidePINStage(b *testing.B) {
	s := openTest(b, &Options{})
	uid := []byte{0x04, 0x11, 0x22, 0x33}
	h, err := HashPIN([]byte("482916"), uid, DefaultPINParams)
	if err != nil {
		b.Fatal(err)
	}
	mustDo(b, s.PutCard(Card{UID: uid, HolderID: "h", PINHash: h, Doors: []string{"front"}}))
	i := 0
	for b.Loop() {
		pin := []byte("482916")
		if i%2 == 1 {
			pin = []byte("000000")
		}
		i++
		if _, err := s.Decide(Request{UID: uid, PIN: pin, Door: "front", Mode: ModeCardPIN, Now: testEpoch, ClockTrusted: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/decision")
}

// BenchmarkDecideCode measures a keypad code's decision in card-or-PIN
// mode, the right code and an unknown one in turn: one derivation each.
// The door's bad-PIN limit is set out of reach so the unknown codes do
// not lock the keypad.
func BenchmarkDecideCode(b *testing.B) {
	s := openTest(b, &Options{Lockout: LockoutPolicy{DoorMaxBadPINs: maxDoorFails, DoorWindow: time.Second}})
	key, err := CodeKey([]byte("583017"))
	if err != nil {
		b.Fatal(err)
	}
	mustDo(b, s.PutCard(Card{UID: key, HolderID: "vic", Doors: []string{"front"}}))
	i := 0
	for b.Loop() {
		code, want := []byte("583017"), Granted
		if i%2 == 1 {
			code, want = []byte("000017"), Denied
		}
		i++
		d, err := s.Decide(Request{PIN: code, Door: "front", Mode: ModeCardOrPIN, Now: testEpoch.Add(time.Duration(i) * time.Hour), ClockTrusted: true})
		if err != nil || d.Outcome != want {
			b.Fatalf("decision %d: %+v, %v", i, d, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/decision")
}

// BenchmarkApplyRevocations10k applies deltas of 10,000 revocations each,
// one transaction per delta, to a store holding the 100,000-card fixture.
func BenchmarkApplyRevocations10k(b *testing.B) {
	src := benchFixture(b, "allowlist100k", buildDecideFixture)
	path := filepath.Join(b.TempDir(), "latch.db")
	copyFile(b, src, path)
	s, err := Open(path, &Options{PINParams: fastPIN, SkipCheck: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	st, err := s.SyncState()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	seq := st.AppliedSeq
	for b.Loop() {
		b.StopTimer()
		seq++
		d := Delta{Seq: seq, Ops: make([]Op, 10000)}
		for i := range d.Ops {
			d.Ops[i] = Op{Kind: OpRevokeCard, UID: []byte{0x09, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), 1, 2}, Reason: "lost"}
		}
		b.StartTimer()
		if err := s.ApplyDelta(d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/10k-revocations")
}

func benchEvent() Event {
	return Event{Time: testEpoch, Clock: TimeSynced, BootID: "7f3c2a", Door: "front", Type: TypeAccess,
		Reason: ReasonGranted, UID: "04A1B2C3D4E5F6", Holder: "holder-00042", HolderName: "Fixture Person"}
}

// BenchmarkAppendDurable measures durable audit appends (fsync on every
// commit) from 64 concurrent appenders, committed by group commit.
func BenchmarkAppendDurable(b *testing.B) {
	s := openTest(b, &Options{PINParams: fastPIN})
	b.SetParallelism(32) // 32 x GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(benchEvent()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendDurableSerial is one appender waiting for each fsync: the
// rate without group commit.
func BenchmarkAppendDurableSerial(b *testing.B) {
	s := openTest(b, &Options{PINParams: fastPIN})
	for b.Loop() {
		if _, err := s.Append(benchEvent()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func buildLargeFixture(b *testing.B, path string) {
	s, err := Open(path, &Options{PINParams: fastPIN})
	if err != nil {
		b.Fatal(err)
	}
	buildAllowlist(b, s)
	const chunk = 10000
	batch := make([]Event, 0, chunk)
	for i := range *largeEntries {
		e := benchEvent()
		e.Time = testEpoch.Add(time.Duration(i) * time.Second)
		e.UID = fmt.Sprintf("%X", fixtureUID(i%fixtureCards))
		batch = append(batch, e)
		if len(batch) == chunk || i == *largeEntries-1 {
			if _, err := s.AppendMany(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpenCheckLarge opens and closes a database of 100,000 cards,
// 100,000 revocations and 1,000,000 audit entries (-store.large-entries):
// as a door opens it (Open: the background check starts, and Close stops
// it), with the full check at Open (OpenCheck), and with every check
// skipped (OpenNoCheck); it times the background check from Open to its
// end (BackgroundCheck), and verifies the audit chain. Building the
// fixture takes a while; it happens once per process.
func BenchmarkOpenCheckLarge(b *testing.B) {
	path := benchFixture(b, fmt.Sprintf("large%d", *largeEntries), buildLargeFixture)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	benchOpen(b, path, fi.Size())
	b.Run("Verify", func(b *testing.B) {
		s, err := Open(path, &Options{PINParams: fastPIN, SkipCheck: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			r, err := s.Verify()
			if err != nil || !r.OK || r.Entries != uint64(*largeEntries) {
				b.Fatalf("verify: %+v, %v", r, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/verify")
	})
}

// benchOpen times the ways of opening the file at path.
func benchOpen(b *testing.B, path string, size int64) {
	for _, bc := range []struct {
		name string
		opts Options
		wait bool // for the end of the background check
	}{
		{"Open", Options{PINParams: fastPIN}, false},
		{"OpenCheck", Options{PINParams: fastPIN, CheckAtOpen: true}, false},
		{"OpenNoCheck", Options{PINParams: fastPIN, SkipCheck: true}, false},
		{"BackgroundCheck", Options{PINParams: fastPIN}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var open time.Duration
			for b.Loop() {
				t0 := time.Now()
				s, err := Open(path, &bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				if bc.wait {
					<-s.CheckDone()
					if err := s.Fault(); err != nil {
						b.Fatal(err)
					}
				}
				open += time.Since(t0)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(open.Microseconds())/1000/float64(b.N), "ms/open")
			b.ReportMetric(float64(size)/(1<<20), "MiB-file")
		})
	}
}

// BenchmarkOpenCards opens a database of 100,000 or 1,000,000 cards
// (with their holders and some revocations, loaded as a door loads a
// snapshot) in the ways BenchmarkOpenCheckLarge does: ms/open is the time
// Open takes (for BackgroundCheck, until the check has ended).
func BenchmarkOpenCards(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("1M cards take minutes; run without -short")
			}
			path := benchFixture(b, fmt.Sprintf("cards%d", n), func(b *testing.B, path string) { buildCards(b, path, n) })
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			benchOpen(b, path, fi.Size())
		})
	}
}

// buildCards loads n cards into a new store at path through the snapshot
// stage, 1,000 a chunk.
func buildCards(b *testing.B, path string, n int) {
	const per = 1000
	pinHash, err := HashPIN([]byte("246810"), nil, fastPIN)
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(path, &Options{PINParams: fastPIN})
	if err != nil {
		b.Fatal(err)
	}
	chunks := n / per
	var sum sum256
	for c := range chunks {
		part := snapshotChunk(1, c, chunks, per, pinHash, false)
		sum.addEntries(&part)
	}
	if err := s.BeginSnapshot(1, stateHash(1, sum), chunks); err != nil {
		b.Fatal(err)
	}
	for c := range chunks {
		if err := s.StageChunk(1, c, snapshotChunk(1, c, chunks, per, pinHash, false)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.CommitSnapshot(1); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDecideGuard measures the card stage of Decide against 100,000
// cards (as BenchmarkDecide) with its lookups guarded, as before the
// background check has passed the file's pages (guarded), and without
// (checked); guard is the guarded lookups alone, the eight of a known
// card's decision.
func BenchmarkDecideGuard(b *testing.B) {
	path := benchFixture(b, "allowlist100k", buildDecideFixture)
	rng := rand.New(rand.NewPCG(5, 6))
	reqs := make([]Request, 4096)
	for i := range reqs {
		uid := fixtureUID(rng.IntN(fixtureCards))
		if i%8 == 0 {
			uid = []byte{0x08, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		}
		reqs[i] = Request{UID: uid, Door: "front", DoorGroups: []string{"lobby"}, Mode: ModeCardPIN,
			Now: time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), ClockTrusted: true}
	}
	for _, guarded := range []bool{true, false} {
		name := "checked"
		if guarded {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(path, &Options{PINParams: fastPIN, SkipCheck: guarded})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			<-s.CheckDone()
			if s.pagesOK.Load() == guarded {
				b.Fatalf("guard on: %v, want %v", !s.pagesOK.Load(), guarded)
			}
			i := 0
			for b.Loop() {
				if _, err := s.Decide(reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N), "µs/decision")
		})
	}
	b.Run("guard", func(b *testing.B) {
		s, err := Open(path, &Options{PINParams: fastPIN, SkipCheck: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		uid := fixtureUID(1234)
		holder := []byte("holder-00123")
		lookups := []struct{ bucket, key []byte }{
			{bucketLockdown, []byte("front")}, {bucketDoorFails, []byte("front")}, {bucketSync, keyLastIssued},
			{bucketCards, uid}, {bucketHolders, holder}, {bucketRevokedCards, uid}, {bucketRevokedHolders, holder}, {bucketLockout, uid},
		}
		b.ReportAllocs()
		err = s.view(func(tx *bboltTx) error {
			for b.Loop() {
				for _, l := range lookups {
					if err := s.guardGet(tx, l.bucket, l.key); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N), "µs/decision")
	})
}
