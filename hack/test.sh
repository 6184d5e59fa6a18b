#!/usr/bin/env bash
# Runs every check and test of the repository, installing what the tests need
# when it is missing: mosquitto and chromium (Debian packages) and
# staticcheck (Go module).
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATICCHECK_VERSION=v0.8.2

need_mosquitto() {
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

need_chromium() {
	command -v chromium >/dev/null 2>&1
}

missing=()
need_mosquitto || missing+=(mosquitto mosquitto-clients)
need_chromium || missing+=(chromium fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "test.sh: installing ${missing[*]} from Debian's packages"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "test.sh: ${missing[*]} missing; install first: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi
# The console's browser tests fail, rather than skip, without chromium;
# their screenshots go here for review.
export LATCH_REQUIRE_BROWSER=1
if [ -z "${LATCH_SCREENSHOTS:-}" ]; then
	LATCH_SCREENSHOTS="${TMPDIR:-/tmp}/latch-console-screenshots"
	rm -rf "$LATCH_SCREENSHOTS" # this run's alone
fi
export LATCH_SCREENSHOTS

GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH:/usr/sbin"
if ! staticcheck -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
	echo "test.sh: installing staticcheck ${STATICCHECK_VERSION}"
	go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi

echo "test.sh: gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "test.sh: these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "test.sh: go vet"
go vet ./...

echo "test.sh: staticcheck"
staticcheck ./...

echo "test.sh: cross builds"
./hack/build-cross.sh

echo "test.sh: go test -race"
go test -race -count=1 -timeout 20m ./...
echo "test.sh: the console's screenshots are in $LATCH_SCREENSHOTS"

# The race detector slows a 100,000-card snapshot tenfold, so the tests
# run it smaller; here it runs at full size without it.
echo "test.sh: the 100,000-card snapshot, without the race detector"
go test -count=1 -run 'TestSnapshot100kCardsResumes' ./mqtt/
