//go:build race

package store

// raceEnabled is true when the tests run under the race detector, whose
// instrumentation makes values escape to the heap that otherwise do not:
// allocation counts are checked without it.
const raceEnabled = true
