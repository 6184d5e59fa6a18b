#!/usr/bin/env bash
# Measures the audit figures: `latch audit query --holder` among
# 10,000,000 collected events (100 doors, 5,000 holders), and
# `latch audit export` of 1,000,000 events as CSV and as JSON lines, each
# through a real `latch serve` on its unix socket and as Go benchmarks.
# The site databases are built by hack/bigsite in DIR (default
# /tmp/latch-figures) and kept for the next run: the big one takes about
# 11 GB and ten minutes. EVENTS and EXPORT_EVENTS change the sizes, e.g.
#   EVENTS=1000000 ./hack/audit-figures.sh
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${DIR:-/tmp/latch-figures}"
mkdir -p "$dir"
go build -o "$dir/latch" ./cmd/latch
go build -o "$dir/bigsite" ./hack/bigsite
latch="$dir/latch"

# site NAME EVENTS: a site made by latch init and filled by bigsite.
site() {
	local d="$dir/$1"
	if [ ! -e "$d/site.db" ]; then
		mkdir -p "$d"
		"$latch" init --db "$d/site.db" --key "$d/site.key" --site hq >/dev/null
		"$dir/bigsite" -db "$d/site.db" -events "$2"
	fi
	echo "audit-figures.sh: $d/site.db: $(du -h "$d/site.db" | cut -f1)"
}

# serve NAME: latch serve on the site, until stop.
serve() {
	local d="$dir/$1"
	sock="$d/latch.sock"
	"$latch" serve --db "$d/site.db" --key "$d/site.key" --socket "$sock" --log-level warn &
	pid=$!
	until "$latch" door list --socket "$sock" >/dev/null 2>&1; do
		kill -0 "$pid"
		sleep 0.1
	done
}

stop() {
	kill "$pid"
	wait "$pid" || true
}

site big "${EVENTS:-10000000}"
site export "${EXPORT_EVENTS:-1000000}"

echo "audit-figures.sh: holder queries, in-process"
LATCH_BIG_DB="$dir/big/site.db" go test -run '^$' -bench BenchmarkBigQueryByHolder -benchtime 50x -count 1 ./store/site

echo "audit-figures.sh: holder queries through latch serve"
serve big
TIMEFORMAT='%3R s'
for h in h00042 h01234 h04321; do
	for limit in 1000 100000; do
		echo "latch audit query --holder $h --limit $limit --json: events, and the time"
		time ("$latch" audit query --holder "$h" --limit "$limit" --json --socket "$sock" | grep -c '"seq"')
	done
done
stop

echo "audit-figures.sh: exports, in-process through the API on a unix socket"
LATCH_EXPORT_DB="$dir/export/site.db" go test -run '^$' -bench BenchmarkAuditExport -benchtime 3x -count 1 ./cmd/latch

echo "audit-figures.sh: exports through latch serve"
serve export
for format in csv jsonl; do
	rm -f "$dir/export/out.$format"
	"$latch" audit export --format "$format" --out "$dir/export/out.$format" --socket "$sock"
	rm -f "$dir/export/out.$format"
done
stop
