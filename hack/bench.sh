#!/usr/bin/env bash
# Runs the benchmarks that give latch's measured figures (decision time, PIN
# hash time, audit append rate, SPI traffic per card read, idle CPU, relay
# latency, MQTT revocation latency, snapshot catch-up and staging). Pass a
# package pattern to narrow it and BENCHTIME to change how long each runs,
# e.g.
#   BENCHTIME=3x ./hack/bench.sh ./store/...
# The 1,000,000-card cases take a few minutes; SHORT=1 skips them.
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/sbin"
pkgs=("${@:-./...}")
go test -run='^$' -bench=. -benchtime="${BENCHTIME:-1s}" -count=1 ${SHORT:+-short} "${pkgs[@]}"
