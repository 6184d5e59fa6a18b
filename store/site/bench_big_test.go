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
// site: the time to a holder's first event, their first 1,000 (the
// CLI's default limit), and all of them, each a different holder, with
// the file's pages cached (warm) and forgotten before each query (cold).
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
	holder := 0
	for _, cold := range []bool{false, true} {
		for _, tc := range []struct {
			name  string
			limit int
		}{{"first", 1}, {"first-1000", 1000}, {"all", 0}} {
			name := tc.name + "/warm"
			if cold {
				name = tc.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				got, slowest := 0, time.Duration(0)
				for b.Loop() {
					if cold {
						b.StopTimer()
						dropCache(b, db, path)
						if db, err = Open(path, nil); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					holder = (holder + 977) % 5000
					start := time.Now()
					for _, err := range db.Query(Filter{Holder: fmt.Sprintf("h%05d", holder), Limit: tc.limit}) {
						if err != nil {
							b.Fatal(err)
						}
						got++
					}
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
