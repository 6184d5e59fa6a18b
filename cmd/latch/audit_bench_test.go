package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// BenchmarkAuditExport is `latch audit export --format F --out FILE` of
// every event of the site database LATCH_EXPORT_DB names (built by
// hack/bigsite; without it the benchmark is skipped, so that CI does not
// run it), through the API on a unix socket, into a file beside the
// database. It reports seconds and MiB/s per export.
func BenchmarkAuditExport(b *testing.B) {
	path := os.Getenv("LATCH_EXPORT_DB")
	if path == "" {
		b.Skip("LATCH_EXPORT_DB names a site database built by go run ./hack/bigsite")
	}
	db, err := site.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	dir := b.TempDir()
	sock := filepath.Join(dir, "latch.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	a := &api{db: db, log: slog.New(slog.DiscardHandler), now: time.Now}
	srv := &http.Server{Handler: a.handler(), ConnContext: connContext}
	go srv.Serve(ln)
	defer srv.Close()
	for _, format := range []string{"csv", "jsonl"} {
		b.Run(format, func(b *testing.B) {
			out := filepath.Join(filepath.Dir(path), "bench-export."+format)
			var size int64
			var summary string
			for b.Loop() {
				_ = os.Remove(out)
				var errb strings.Builder
				code := run(context.Background(), []string{"audit", "export", "--format", format, "--out", out, "--socket", sock},
					strings.NewReader(""), io.Discard, &errb)
				if code != 0 {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
				fi, err := os.Stat(out)
				if err != nil {
					b.Fatal(err)
				}
				size, summary = fi.Size(), errb.String()
			}
			_ = os.Remove(out)
			b.Log(strings.TrimSpace(summary))
			secs := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(secs, "s/export")
			b.ReportMetric(float64(size)/(1<<20)/secs, "MiB/s")
			b.ReportMetric(float64(size)/(1<<20), "MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}
