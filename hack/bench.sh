#!/usr/bin/env bash
# Runs every benchmark and prints one table of the figures: the time per
# operation and each domain figure the benchmark reports (µs per decision,
# bytes on the SPI bus per read, events/s, …). Pass a package pattern to
# narrow it and BENCHTIME to change how long each runs, e.g.
#   BENCHTIME=3x ./hack/bench.sh ./store/...
# The 1,000,000-card cases take a few minutes; SHORT=1 skips them. RAW=FILE
# keeps go test's own output in FILE as well (benchstat reads it).
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/sbin"
pkgs=("${@:-./...}")
raw="${RAW:-$(mktemp)}"
[[ -n "${RAW:-}" ]] || trap 'rm -f "$raw"' EXIT

echo "# $(go version | cut -d' ' -f3-), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), benchtime ${BENCHTIME:-1s}${SHORT:+, -short}"
status=0
go test -run='^$' -bench=. -benchtime="${BENCHTIME:-1s}" -count=1 ${SHORT:+-short} "${pkgs[@]}" >"$raw" 2>&1 || status=$?

# One row per benchmark: the package (without the module path), the name
# (without the -GOMAXPROCS suffix), and its figures as value and unit.
awk '
	/^pkg: / { pkg = $2; sub(/^github.com\/latchdoor\/latch\/?/, "", pkg); if (pkg == "") pkg = "."; next }
	/^Benchmark/ && NF >= 4 {
		name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
		figs = ""
		for (i = 3; i < NF; i += 2) figs = figs (figs == "" ? "" : ", ") $i " " $(i + 1)
		rows[++n] = sprintf("| %s | %s | %s |", pkg, name, figs)
		next
	}
	/^(--- FAIL|FAIL|panic:)/ { fails[++f] = $0 }
	END {
		print "| package | benchmark | figures (per op unless named) |"
		print "| --- | --- | --- |"
		for (i = 1; i <= n; i++) print rows[i]
		for (i = 1; i <= f; i++) print "FAILED: " fails[i] > "/dev/stderr"
	}
' "$raw"
if [[ $status -ne 0 ]]; then
	echo "go test failed (exit $status); its output is in ${RAW:-the raw file (set RAW=FILE to keep it)}" >&2
fi
exit $status
