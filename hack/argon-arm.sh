#!/usr/bin/env bash
# Measures what one argon2id PIN check costs (BenchmarkVerifyPIN with
# store.DefaultPINParams, and BenchmarkPINParams' sweep around it) for the
# door's targets: linux/arm GOARM=6 (Pi Zero, Pi 1), GOARM=7 (Pi 2, and a
# Pi 3 on a 32-bit system) and linux/arm64 (Pi 3, 4, 5 on a 64-bit system),
# next to this machine natively, with and without x/crypto's assembly
# (-tags purego). The arm binaries run under qemu user-mode emulation
# (Debian's qemu-user) when it is installed: emulated times are not
# Raspberry Pi times; docs/pin.md says how to read them. With gcc, the
# guest instructions of one check are also counted, with the QEMU plugin
# hack/qemu-insn.c: unlike a time, that count does not depend on the host.
# Last, the peak resident memory of checks one after another, natively.
#
# Each benchmark runs COUNT times (default 3) for BENCHTIME (default 5x);
# the table has the median. SWEEP=0 leaves out the sweep. The whole run
# takes about six minutes here, e.g.
#   apt-get install -y --no-install-recommends qemu-user
#   ./hack/argon-arm.sh
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
benchtime="${BENCHTIME:-5x}"
count="${COUNT:-3}"
bench='^BenchmarkVerifyPIN$'
if [ "${SWEEP:-1}" != 0 ]; then
	bench='^Benchmark(VerifyPIN|PINParams)$'
fi
dir="$(mktemp -d /tmp/latch-argon-arm.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
host="$(go env GOHOSTARCH)"

# The targets: name, GOARCH, GOARM, build tags, the qemu that runs it (none:
# natively), the CPU qemu emulates, what it stands for.
targets=(
	"$host|$host|||||this machine"
	"$host-purego|$host||purego|||this machine, generic Go (no assembly)"
	"armv6|arm|6||qemu-arm|arm1176|Pi Zero, Zero W, Pi 1 (ARM1176)"
	"armv7|arm|7||qemu-arm|cortex-a7|Pi 2 (Cortex-A7); Pi 3 or Zero 2 W on a 32-bit system"
	"arm64|arm64|||qemu-aarch64|cortex-a53|Pi 3, Zero 2 W (Cortex-A53), Pi 4 (A72), Pi 5 (A76), 64-bit"
)

# The counting plugin, if gcc is here and the host's qemu takes one of the
# plugin API versions it can claim.
plugin=""
counter="qemu-$(uname -m)"
if command -v gcc >/dev/null && command -v "$counter" >/dev/null; then
	for v in 1 2 3 4; do
		gcc -O2 -shared -fPIC -DQEMU_PLUGIN_API="$v" -o "$dir/insn.so" hack/qemu-insn.c
		if "$counter" -plugin "$dir/insn.so" /bin/true 2>&1 | grep -q '^guest-insns'; then
			plugin="$dir/insn.so"
			break
		fi
	done
fi
[ -n "$plugin" ] || echo "argon-arm.sh: no instruction counts (needs gcc and a qemu that loads hack/qemu-insn.c)" >&2

# runbin QEMU CPU BIN ARGS...: BIN natively, or under QEMU emulating CPU.
runbin() {
	local q="$1" cpu="$2"
	shift 2
	if [ -z "$q" ]; then
		"$@"
	else
		"$q" -cpu "$cpu" "$@"
	fi
}

# insns QEMU CPU BIN: guest instructions of one check, the difference
# between 5 checks and 1 (the hash that the benchmark verifies, startup and
# test harness cancel out), divided by 4.
insns() {
	local q="${1:-$counter}" cpu="$2" bin="$3" a b
	[ -n "$1" ] || cpu=max
	count() {
		"$q" -cpu "$cpu" -plugin "$plugin" "$bin" -test.run='^$' -test.bench='^BenchmarkVerifyPIN$' \
			-test.benchtime="$1x" 2>&1 >/dev/null | sed -n 's/^guest-insns //p'
	}
	a="$(count 1)"
	b="$(count 5)"
	echo $(((b - a) / 4))
}

# median FILE NAME: the median ms per op of benchmark NAME in FILE.
median() {
	awk -v b="$2" '{n = $1; sub(/-[0-9]+$/, "", n)} n == b {print $3 / 1e6}' "$1" | sort -n |
		awk '{v[NR] = $1} END {printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

rows=()
for t in "${targets[@]}"; do
	IFS='|' read -r name goarch goarm tags q cpu what <<<"$t"
	if [ -n "$q" ] && ! command -v "$q" >/dev/null; then
		echo "argon-arm.sh: $name: $q not installed (Debian: qemu-user), skipped" >&2
		continue
	fi
	bin="$dir/store.$name"
	CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="$goarm" go test -c -tags "$tags" -o "$bin" ./store
	mode=native
	[ -z "$q" ] || mode="emulated ($q -cpu $cpu)"
	echo "argon-arm.sh: $name, $mode" >&2
	(cd "$dir" && runbin "$q" "$cpu" "$bin" -test.run='^$' -test.bench="$bench" -test.benchtime="$benchtime" -test.count="$count") |
		tee "$dir/$name.txt" | grep '^Benchmark' >&2
	ms="$(median "$dir/$name.txt" BenchmarkVerifyPIN)"
	n="-"
	if [ -n "$plugin" ] && { [ -n "$q" ] || [ "$host" = amd64 ]; }; then
		n="$(insns "$q" "$cpu" "$bin")"
		n="$(awk -v n="$n" 'BEGIN {printf "%.0f", n / 1e6}')"
	fi
	rows+=("| $name | $what | $mode | $ms | $n |")
done

echo
echo "One check with DefaultPINParams (m=32 MiB, t=2, p=1), BenchmarkVerifyPIN -test.benchtime=$benchtime, median of $count:"
echo
echo "| target | stands for | mode | ms per check | million instructions per check |"
echo "| --- | --- | --- | ---: | ---: |"
printf '%s\n' "${rows[@]}"

if [ "${SWEEP:-1}" != 0 ]; then
	echo
	echo "BenchmarkPINParams, ms per check, median of $count:"
	echo
	names=()
	for t in "${targets[@]}"; do
		IFS='|' read -r name _ <<<"$t"
		[ -e "$dir/$name.txt" ] && names+=("$name")
	done
	printf '| parameters |'
	printf ' %s |' "${names[@]}"
	printf '\n| --- |'
	printf ' ---: |%.0s' "${names[@]}"
	echo
	for p in $(awk '$1 ~ /^BenchmarkPINParams\// {sub(/^BenchmarkPINParams\//, "", $1); sub(/-[0-9]+$/, "", $1); if (!seen[$1]++) print $1}' "$dir/${names[0]}.txt"); do
		printf '| %s |' "$p"
		for name in "${names[@]}"; do
			printf ' %s |' "$(median "$dir/$name.txt" "BenchmarkPINParams/$p")"
		done
		echo
	done
fi

# The peak memory of checks one after another: the native binary's maximum
# resident set with BenchmarkVerifyPIN, less its own without.
if [ -x /usr/bin/time ]; then
	rss() {
		(cd "$dir" && /usr/bin/time -f 'maxrss %M' "$dir/store.$host" -test.run='^$' -test.bench="$1" \
			-test.benchtime="$benchtime" 2>&1 >/dev/null) | sed -n 's/^maxrss //p'
	}
	idle="$(rss '^$')"
	busy="$(rss '^BenchmarkVerifyPIN$')"
	echo
	echo "Peak resident memory of checks at the defaults, above the idle process: $(((busy - idle) / 1024)) MiB ($host, native)"
fi
