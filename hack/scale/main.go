// Command scale measures the door's store at a size: it loads N cards
// (each with its holder and a PIN hash, a tenth of them revoked) through
// the bulk path a door uses for a snapshot (BeginSnapshot, StageChunk of
// 1,000 cards at a time, CommitSnapshot), then measures what a door pays
// for that size: load time, peak RSS (VmHWM), file size and bytes per card,
// the time to open the file as latchd does (Open reads what it needs to
// trust the file and starts the background check) and with the full check
// at Open, how long the background check then takes, and the card stage of
// Decide: warm, with its lookups guarded (as until the background check
// has passed the file's pages), with every page of the file out of the
// page cache before each decision (right after Open, so guarded too), and
// on a door running since the page cache was dropped (-warmup decisions,
// then -cold timed; guarded). The opens start with the file out of the
// page cache.
//
//	go run ./hack/scale -cards 1000000
//	./hack/scale.sh 100000 1000000      # both, and the growth from one to the other
//
// It prints one line of JSON per run with -json.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/latchdoor/latch/store"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// result is what one run measured.
type result struct {
	Cards        int     `json:"cards"`
	Revoked      int     `json:"revoked"`
	LoadS        float64 `json:"load_s"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	FileMiB      float64 `json:"file_mib"`
	DataMiB      float64 `json:"data_mib"`       // pages up to the high-water mark; the rest is room bbolt grew the file by
	BytesPerCard float64 `json:"bytes_per_card"` // data per card
	// Space per card of each allowlist bucket: pages allocated to it.
	BucketBytes map[string]float64 `json:"bucket_bytes_per_card"`
	OpenCheckMS float64            `json:"open_check_ms"`
	OpenMS      float64            `json:"open_ms"`
	CheckS      float64            `json:"background_check_s"`
	WarmP50US   float64            `json:"decide_warm_p50_us"`
	WarmP99US   float64            `json:"decide_warm_p99_us"`
	GuardP50US  float64            `json:"decide_guarded_p50_us"`
	GuardP99US  float64            `json:"decide_guarded_p99_us"`
	ColdP50US   float64            `json:"decide_cold_p50_us"`
	ColdP99US   float64            `json:"decide_cold_p99_us"`
	// A door running since the page cache was dropped: after warmup
	// decisions, the next ones, timed. The trees' upper pages are back in
	// the cache by then, most leaves are not.
	RunP50US  float64 `json:"decide_running_p50_us"`
	RunP99US  float64 `json:"decide_running_p99_us"`
	AllocsPer float64 `json:"allocs_per_decide"`
	BytesPer  float64 `json:"bytes_per_decide"`
}

// chunkSize is how many cards a snapshot chunk carries.
const chunkSize = 1000

func run(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	n := fs.Int("cards", 100000, "how many cards (a multiple of 1,000)")
	dir := fs.String("dir", "", "where to put the store (default: a new temporary directory, removed after)")
	decisions := fs.Int("decisions", 100000, "warm decisions to time")
	cold := fs.Int("cold", 200, "decisions to time with the file out of the page cache")
	warmup := fs.Int("warmup", 2000, "decisions, after the page cache is dropped, before the running door's are timed")
	asJSON := fs.Bool("json", false, "print one line of JSON")
	table := fs.String("table", "", "print the runs in FILE (lines of -json) as a table, with the growth from the first to the last, and measure nothing")
	loadHash := fs.String("load", "", "(internal) load the cards into -dir's store, given the snapshot's state hash, and print the load's time and peak RSS")
	loadPIN := fs.String("load-pin-hash", "", "(internal) with -load, the cards' PIN hash")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *table != "" {
		return printTable(*table)
	}
	if *loadHash != "" {
		return load(filepath.Join(*dir, "latch.db"), *n, *loadHash, *loadPIN)
	}
	if *n < chunkSize || *n%chunkSize != 0 || *decisions < 1 || *cold < 1 {
		return errors.New("-cards is a positive multiple of 1,000; -decisions and -cold are positive")
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "latch-scale-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	path := filepath.Join(*dir, "latch.db")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	pinHash, err := store.HashPIN([]byte("246810"), nil, store.DefaultPINParams)
	if err != nil {
		return err
	}
	chunks := chunkCount(*n)
	r := result{Cards: *n, Revoked: *n / 10}

	// The state hash the snapshot must have, a chunk at a time, as the
	// site computes it; then the load, timed, a chunk at a time.
	var h store.SnapshotHasher
	for c := range chunks {
		h.Add(chunk(c, *n, pinHash))
	}
	// The load runs in a process of its own, as in a door, so that its
	// peak RSS is the load's alone.
	cmd := exec.Command(os.Args[0], "-cards", strconv.Itoa(*n), "-dir", *dir, "-load", h.Hash(1), "-load-pin-hash", pinHash)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("load: %w: %s", err, out)
	}
	r.Cards, r.Revoked = *n, *n/10
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	r.FileMiB = float64(fi.Size()) / (1 << 20)
	if err := space(path, &r); err != nil {
		return err
	}

	// Open with the full check, then as latchd does, and the background
	// check that follows.
	if err := dropCache(path); err != nil {
		return err
	}
	t0 := time.Now()
	st, err := store.Open(path, &store.Options{CheckAtOpen: true})
	if err != nil {
		return err
	}
	r.OpenCheckMS = float64(time.Since(t0).Microseconds()) / 1000
	if err := st.Close(); err != nil {
		return err
	}
	if err := dropCache(path); err != nil {
		return err
	}
	t0 = time.Now()
	st, err = store.Open(path, nil)
	if err != nil {
		return err
	}
	r.OpenMS = float64(time.Since(t0).Microseconds()) / 1000
	<-st.CheckDone()
	r.CheckS = time.Since(t0).Seconds()
	if err := st.Fault(); err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}

	// The card stage of Decide: 7 in 8 known cards (a tenth of them
	// revoked), 1 in 8 unknown.
	rng := rand.New(rand.NewPCG(1, 2))
	req := func() store.Request {
		uid := cardUID(rng.IntN(*n))
		if rng.IntN(8) == 0 {
			uid = []byte{0x08, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		}
		return store.Request{UID: uid, Door: "front", DoorGroups: []string{"lobby"}, Mode: store.ModeCardPIN,
			Now: time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), ClockTrusted: true}
	}
	if err := readAll(path); err != nil { // warm: the whole file in the page cache
		return err
	}
	// Warm, once the background check has passed (the store's steady
	// state), and with every check skipped, which leaves Decide's lookups
	// guarded.
	lat := make([]time.Duration, 0, *decisions)
	for _, guarded := range []bool{false, true} {
		st, err := store.Open(path, &store.Options{SkipCheck: guarded})
		if err != nil {
			return err
		}
		<-st.CheckDone()
		for range 10000 {
			if _, err := st.Decide(req()); err != nil {
				return err
			}
		}
		lat = lat[:0]
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range *decisions {
			q := req()
			t0 := time.Now()
			if _, err := st.Decide(q); err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
		}
		runtime.ReadMemStats(&m1)
		if guarded {
			r.GuardP50US, r.GuardP99US = percentiles(lat)
		} else {
			r.AllocsPer = float64(m1.Mallocs-m0.Mallocs) / float64(*decisions)
			r.BytesPer = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(*decisions)
			r.WarmP50US, r.WarmP99US = percentiles(lat)
		}
		if err := st.Close(); err != nil {
			return err
		}
	}
	// Cold: the file is closed (unmapped) and out of the page cache before
	// each decision, made right after Open, with the checks skipped (as
	// before the background check has run): only the decision is timed.
	lat = lat[:0]
	for range *cold {
		if err := dropCache(path); err != nil {
			return err
		}
		st, err := store.Open(path, &store.Options{SkipCheck: true})
		if err != nil {
			return err
		}
		q := req()
		t0 := time.Now()
		_, err = st.Decide(q)
		lat = append(lat, time.Since(t0))
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	r.ColdP50US, r.ColdP99US = percentiles(lat)

	// Running: the page cache dropped once, then warmup decisions
	// untimed and cold ones timed, on one open store.
	if err := dropCache(path); err != nil {
		return err
	}
	st, err = store.Open(path, &store.Options{SkipCheck: true})
	if err != nil {
		return err
	}
	for range *warmup {
		if _, err := st.Decide(req()); err != nil {
			return err
		}
	}
	lat = lat[:0]
	for range *cold {
		q := req()
		t0 := time.Now()
		_, err := st.Decide(q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			return err
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	r.RunP50US, r.RunP99US = percentiles(lat)

	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("cards %d (%d revoked): bytes per card: cards %.0f, holders %.0f, holder index %.0f, revocations %.0f\n", r.Cards, r.Revoked,
		r.BucketBytes["cards"], r.BucketBytes["holders"], r.BucketBytes["holder_cards"], r.BucketBytes["revoked_cards"])
	fmt.Printf("cards %d (%d revoked): load %.1f s, peak RSS %.0f MiB, file %.0f MiB (data %.0f MiB, %.0f B/card), open %.1f ms (%.0f ms with the full check; background check %.1f s), Decide warm p50 %.1f µs p99 %.1f µs, guarded p50 %.1f µs p99 %.1f µs, cold p50 %.0f µs p99 %.0f µs, running after a cache drop p50 %.0f µs p99 %.0f µs, %.0f allocs and %.0f B per decision\n",
		r.Cards, r.Revoked, r.LoadS, r.PeakRSSMiB, r.FileMiB, r.DataMiB, r.BytesPerCard, r.OpenMS, r.OpenCheckMS, r.CheckS, r.WarmP50US, r.WarmP99US, r.GuardP50US, r.GuardP99US, r.ColdP50US, r.ColdP99US, r.RunP50US, r.RunP99US, r.AllocsPer, r.BytesPer)
	return nil
}

// space reads how much of the file the data takes, in all and per
// allowlist bucket.
func space(path string, r *result) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		r.DataMiB = float64(tx.Size()) / (1 << 20)
		r.BytesPerCard = float64(tx.Size()) / float64(r.Cards)
		r.BucketBytes = map[string]float64{}
		for _, name := range []string{"cards", "holders", "holder_cards", "revoked_cards"} {
			b := tx.Bucket([]byte(name))
			if b == nil {
				return fmt.Errorf("no %s bucket", name)
			}
			st := b.Stats()
			r.BucketBytes[name] = float64(st.BranchAlloc+st.LeafAlloc) / float64(r.Cards)
		}
		return nil
	})
}

// load loads n cards into the store at path, a chunk at a time, and prints
// the time it took and the process's peak RSS as JSON.
func load(path string, n int, hash, pinHash string) error {
	chunks := chunkCount(n)
	st, err := store.Open(path, nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := st.BeginSnapshot(1, hash, chunks); err != nil {
		return err
	}
	for c := range chunks {
		if err := st.StageChunk(1, c, chunk(c, n, pinHash)); err != nil {
			return fmt.Errorf("chunk %d: %w", c, err)
		}
	}
	if err := st.CommitSnapshot(1); err != nil {
		return err
	}
	var r result
	r.LoadS = time.Since(t0).Seconds()
	if r.PeakRSSMiB, err = peakRSS(); err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// printTable prints runs as a table, one column a run, and the growth
// from the first run to the last.
func printTable(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rs []result
	for line := range strings.Lines(string(b)) {
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return fmt.Errorf("%s: no runs", path)
	}
	rows := []struct {
		name string
		v    func(r *result) float64
		f    string
	}{
		{"load (s)", func(r *result) float64 { return r.LoadS }, "%.1f"},
		{"peak RSS (MiB)", func(r *result) float64 { return r.PeakRSSMiB }, "%.0f"},
		{"file (MiB)", func(r *result) float64 { return r.FileMiB }, "%.0f"},
		{"data in it (MiB)", func(r *result) float64 { return r.DataMiB }, "%.0f"},
		{"data per card (bytes)", func(r *result) float64 { return r.BytesPerCard }, "%.0f"},
		{"open (ms)", func(r *result) float64 { return r.OpenMS }, "%.1f"},
		{"open, full check (ms)", func(r *result) float64 { return r.OpenCheckMS }, "%.0f"},
		{"background check (s)", func(r *result) float64 { return r.CheckS }, "%.1f"},
		{"Decide warm p50 (µs)", func(r *result) float64 { return r.WarmP50US }, "%.1f"},
		{"Decide warm p99 (µs)", func(r *result) float64 { return r.WarmP99US }, "%.1f"},
		{"Decide guarded p50 (µs)", func(r *result) float64 { return r.GuardP50US }, "%.1f"},
		{"Decide guarded p99 (µs)", func(r *result) float64 { return r.GuardP99US }, "%.1f"},
		{"Decide cold p50 (µs)", func(r *result) float64 { return r.ColdP50US }, "%.0f"},
		{"Decide cold p99 (µs)", func(r *result) float64 { return r.ColdP99US }, "%.0f"},
		{"Decide running after a cache drop p50 (µs)", func(r *result) float64 { return r.RunP50US }, "%.0f"},
		{"Decide running after a cache drop p99 (µs)", func(r *result) float64 { return r.RunP99US }, "%.0f"},
		{"allocations per Decide", func(r *result) float64 { return r.AllocsPer }, "%.0f"},
		{"bytes allocated per Decide", func(r *result) float64 { return r.BytesPer }, "%.0f"},
	}
	head := "| |"
	rule := "| --- |"
	for _, r := range rs {
		head += fmt.Sprintf(" %d cards |", r.Cards)
		rule += " --- |"
	}
	if len(rs) > 1 {
		head += fmt.Sprintf(" %d → %d |", rs[0].Cards, rs[len(rs)-1].Cards)
		rule += " --- |"
	}
	fmt.Println(head)
	fmt.Println(rule)
	for _, row := range rows {
		line := "| " + row.name + " |"
		for i := range rs {
			line += " " + fmt.Sprintf(row.f, row.v(&rs[i])) + " |"
		}
		if len(rs) > 1 {
			first, last := row.v(&rs[0]), row.v(&rs[len(rs)-1])
			if first > 0 {
				line += fmt.Sprintf(" %.2f× |", last/first)
			} else {
				line += " – |"
			}
		}
		fmt.Println(line)
	}
	return nil
}

// cardUID is the UID of card i: 7 bytes, as most cards have.
func cardUID(i int) []byte {
	return []byte{0x04, byte(i >> 16), byte(i >> 8), byte(i), 0x3A, 0x91, byte(i >> 24)}
}

// chunkCount is how many chunks a snapshot of n cards takes.
func chunkCount(n int) int {
	revs := n / 10
	return 2*n/chunkSize + (revs+chunkSize-1)/chunkSize
}

// chunk is chunk c of the snapshot of n cards, in the order the site
// sends a snapshot (mqtt.PlanSnapshot): the holders, then the cards in UID
// order, then the revocations, chunkSize entries a chunk. Card i belongs
// to holder i; every tenth card is revoked, and every tenth has a validity
// and a weekly schedule.
func chunk(c, n int, pinHash string) store.Snapshot {
	part := store.Snapshot{Seq: 1}
	holders := n / chunkSize
	switch {
	case c < holders:
		for i := c * chunkSize; i < (c+1)*chunkSize; i++ {
			part.Holders = append(part.Holders, store.Holder{ID: holderID(i), Name: "Holder " + strconv.Itoa(i)})
		}
	case c < 2*holders:
		for i := (c - holders) * chunkSize; i < (c-holders+1)*chunkSize; i++ {
			card := store.Card{UID: cardUID(i), HolderID: holderID(i), HolderName: "Holder " + strconv.Itoa(i), PINHash: pinHash, Doors: []string{"front", "staff"}}
			if i%10 == 3 {
				card.ValidFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
				card.ValidUntil = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
				for d := time.Monday; d <= time.Friday; d++ {
					card.Schedule.Weekly[d] = []store.Window{{From: 7 * 60, To: 19 * 60}}
				}
			}
			part.Cards = append(part.Cards, card)
		}
	default:
		// Revocation r is of card 10r+7.
		first := (c - 2*holders) * chunkSize
		for r := first; r < first+chunkSize && r < n/10; r++ {
			part.Revocations = append(part.Revocations, store.Revocation{UID: cardUID(10*r + 7), Reason: "lost"})
		}
	}
	return part
}

func holderID(i int) string { return fmt.Sprintf("h%07d", i) }

// peakRSS is this process's VmHWM.
func peakRSS() (float64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// readAll reads a file through, so that its pages are in the page cache.
func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// dropCache takes a closed file's pages out of the page cache.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// percentiles returns the median and the 99th percentile in µs.
func percentiles(lat []time.Duration) (p50, p99 float64) {
	s := slices.Clone(lat)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	return us(s[len(s)/2]), us(s[len(s)*99/100])
}
