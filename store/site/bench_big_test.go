//go:build linux

package site

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bigDB opens the database LATCH_BIG_DB names, built by hack/bigsite
// (holders h00000 and on); without it the benchmark is skipped, so that
// CI does not run it.
func bigDB(b *testing.B) (*DB, string) {
	path := os.Getenv("LATCH_BIG_DB")
	if path == "" {
		b.Skip("LATCH_BIG_DB names a site database built by go run ./hack/bigsite")
	}
	db, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	return db, path
}

// dropCache closes db and asks the kernel to forget the file's cached
// pages, so that the next reads come from the disk.
func dropCache(b *testing.B, db *DB, path string) {
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBigQueryByHolder is `latch audit query --holder` on the big
// site: a holder's first 1,000 events (the CLI's default limit) and all of
// them, each time another holder. cold: the file's pages are forgotten
// before each query, so that they come from the disk; warm: as the kernel
// keeps them after the queries before; hot: the same query run just
// before, untimed.
func BenchmarkBigQueryByHolder(b *testing.B) {
	db, path := bigDB(b)
	defer func() { db.Close() }()
	end, err := db.ArrivalEnd()
	if err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %d events, %.2f GiB", path, end, float64(fi.Size())/(1<<30))
	query := func(b *testing.B, holder, limit int) int {
		n := 0
		for _, err := range db.Query(Filter{Holder: fmt.Sprintf("h%05d", holder), Limit: limit}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		return n
	}
	holder := 0
	for _, mode := range []string{"cold", "warm", "hot"} {
		for _, tc := range []struct {
			name  string
			limit int
		}{{"first-1000", 1000}, {"all", 0}} {
			b.Run(tc.name+"/"+mode, func(b *testing.B) {
				got, slowest := 0, time.Duration(0)
				for b.Loop() {
					holder = (holder + 977) % 5000
					b.StopTimer()
					switch mode {
					case "cold":
						dropCache(b, db, path)
						if db, err = Open(path, nil); err != nil {
							b.Fatal(err)
						}
					case "hot":
						query(b, holder, tc.limit)
					}
					b.StartTimer()
					start := time.Now()
					got += query(b, holder, tc.limit)
					slowest = max(slowest, time.Since(start))
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
				b.ReportMetric(float64(slowest.Microseconds())/1000, "ms_slowest")
				b.ReportMetric(float64(got)/float64(b.N), "events/query")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
