#!/usr/bin/env bash
# Measures the door's store at each size given (cards), one run after the
# other, and prints the table: load time, peak RSS, file size, open time (as
# latchd opens, and with the full check), the background check's time,
# Decide warm, guarded and cold, and the growth from the first size to the
# last.
#
#   ./hack/scale.sh 100000 1000000
#
# Environment: DIR (where the stores go; default a temporary directory per
# run), DECISIONS (warm decisions timed, default 100000), COLD (cold ones,
# default 200).
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ $# -ge 1 ] || { echo "usage: hack/scale.sh N [N ...]   (cards, multiples of 1000)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/latch-scale-sh.XXXXXX")"
trap 'rm -rf "$work"' EXIT
go build -o "$work/scale" ./hack/scale
for n in "$@"; do
	echo "scale.sh: $n cards" >&2
	args=(-cards "$n" -decisions "${DECISIONS:-100000}" -cold "${COLD:-200}" -json)
	if [ -n "${DIR:-}" ]; then
		mkdir -p "$DIR/$n"
		args+=(-dir "$DIR/$n")
	fi
	"$work/scale" "${args[@]}" >> "$work/runs.jsonl"
done
"$work/scale" -table "$work/runs.jsonl"
