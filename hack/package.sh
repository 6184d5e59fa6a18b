#!/usr/bin/env bash
# Builds latch-door, the Debian package of latchd, for armhf (a GOARM=6
# build: every Pi) and arm64 into bin/packages/:
#   hack/package.sh [VERSION]
# VERSION is semver, by default 0.0.0+git<short commit>.
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

version="${1:-0.0.0+git$(git rev-parse --short HEAD)}"
go run ./hack/package -version "$version" -out bin/packages
