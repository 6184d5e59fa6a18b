#!/usr/bin/env bash
# Builds the commands for the Raspberry Pi targets without cgo:
# linux/arm with GOARM=6 (Pi Zero, Pi 1) and GOARM=7 (Pi 2, 3), and linux/arm64.
# The binaries land in bin/<os>-<arch>[v<arm>]/.
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

build() {
	local goarch="$1" goarm="$2" out="bin/linux-$1${2:+v$2}"
	mkdir -p "$out"
	CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="$goarm" go build -trimpath -o "$out/" ./cmd/...
	echo "build-cross.sh: $out: $(ls "$out" | tr '\n' ' ')"
}

build arm 6
build arm 7
build arm64 ""
