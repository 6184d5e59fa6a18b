package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "64KiB": 64 << 10, "256MiB": 256 << 20, "2GiB": 2 << 30, "100B": 100} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "12MB", "1.5GiB", "9999999999GiB", "1 GiB x"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}

// latch serve's soft memory limit: the flag when given, else none of its
// own when GOMEMLIMIT is set, else the default.
func TestMemoryLimit(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })
	env := func(gomemlimit string) *env {
		return &env{getenv: func(k string) string {
			if k == "GOMEMLIMIT" {
				return gomemlimit
			}
			return ""
		}}
	}
	for _, c := range []struct {
		flag      string
		given     bool
		env       string
		want, set int64
	}{
		{"256MiB", false, "", defaultMemoryLimit, defaultMemoryLimit},
		{"1GiB", true, "", 1 << 30, 1 << 30},
		{"1GiB", true, "300MiB", 1 << 30, 1 << 30},
		{"0", true, "", 0, math.MaxInt64},
	} {
		got, err := memoryLimit(env(c.env), c.flag, c.given)
		if err != nil || got != c.want || debug.SetMemoryLimit(-1) != c.set {
			t.Errorf("%+v: limit %d (runtime %d), %v", c, got, debug.SetMemoryLimit(-1), err)
		}
	}
	debug.SetMemoryLimit(12345 << 20)
	if got, err := memoryLimit(env("12345MiB"), "256MiB", false); err != nil || got != 0 || debug.SetMemoryLimit(-1) != 12345<<20 {
		t.Errorf("with GOMEMLIMIT: %d %v, runtime %d", got, err, debug.SetMemoryLimit(-1))
	}
	if _, err := memoryLimit(env(""), "lots", true); err == nil {
		t.Error("--memory-limit lots accepted")
	}
}
