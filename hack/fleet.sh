#!/usr/bin/env bash
# Runs a fleet of N doors on this machine and prints one table of figures:
#   ./hack/fleet.sh 1000
# A real mosquitto, `latch serve` and N doors, each latchd itself (-sim
# -join) on emulated hardware with its own data directory, identity and
# broker login, all N in one process (the cmd/latchd test binary). Doors
# are approved and grouped, and cards enrolled, through the latch CLI. It
# measures a revocation's application at every door, 1,000 enrolments with
# PINs, a broker restart with every door reconnecting at once, and a
# minute of one event a second from every door. See docs/scale.md.
#
# The site's database and the broker's files are on this machine's disk.
# The doors' data directories are on tmpfs (/dev/shm) when there is one: a
# real door writes to its own storage, and a thousand doors sharing one
# disk would measure that disk's queue of fsyncs, not the doors or the
# site. DOORS_DIR=DIR puts them elsewhere (DOORS_DIR=disk: beside the
# site's).
#
# Environment: CARDS (default 1000), EVENTS (default 1m), KEEP=DIR keeps
# the fleet's data in DIR, REPORT=FILE also writes the figures as JSON.
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:?usage: hack/fleet.sh N (doors)}"
case "$n" in '' | *[!0-9]*) echo "fleet.sh: N must be a number of doors" >&2; exit 2 ;; esac
export PATH="$PATH:/usr/sbin"
if ! command -v mosquitto >/dev/null 2>&1; then
	echo "fleet.sh: mosquitto is missing; install it first: sudo apt-get install mosquitto" >&2
	exit 1
fi

# Every door holds a broker connection, a database and journal files:
# the doors' process and mosquitto need more than the usual 1,024 files.
want=$((4 * n + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
	ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

work="$(mktemp -d -t latch-fleet.XXXXXX)"
doors=""
case "${DOORS_DIR:-}" in
disk) ;;
"") [ -d /dev/shm ] && [ -w /dev/shm ] && doors="$(mktemp -d -p /dev/shm latch-fleet-doors.XXXXXX)" ;;
*) doors="$DOORS_DIR" ;;
esac
cleanup() {
	rm -rf "$work"
	case "$doors" in /dev/shm/latch-fleet-doors.*) rm -rf "$doors" ;; esac
}
trap cleanup EXIT
go build -o "$work/latch" ./cmd/latch
go test -c -o "$work/fleet.test" ./cmd/latchd

dir="${KEEP:-$work/data}"
"$work/fleet.test" -test.run '^TestFleet$' -test.timeout 2h \
	-fleet.doors "$n" -fleet.cards "${CARDS:-1000}" -fleet.events "${EVENTS:-1m}" \
	-fleet.latch "$work/latch" -fleet.dir "$dir" ${doors:+-fleet.doors-dir "$doors"} ${REPORT:+-fleet.report "$REPORT"}
