//go:build race

package mqtt_test

// raceEnabled is true when the tests run under the race detector, which
// makes JSON decoding and hashing ten times slower: the largest transfers
// are tested smaller there, and at full size without it (hack/test.sh).
const raceEnabled = true
