package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// defaultMemoryLimit is latch serve's soft memory limit unless
// --memory-limit or GOMEMLIMIT says otherwise: room for a site of a
// thousand doors and a thousand cards (docs/scale.md) with the garbage
// collector's headroom kept small.
const defaultMemoryLimit = 256 << 20

// parseSize reads a size in bytes with an optional unit: B, KiB, MiB, GiB
// (1024-based), as in 256MiB; 0 means none.
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "BKMGi")
	unit := s[len(num):]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a size such as 256MiB or 1GiB, or 0 for none", s)
	}
	shift, ok := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30}[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unit %q, want B, KiB, MiB or GiB", s, unit)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n << shift, nil
}

// memoryLimit sets the service's soft memory limit: the flag's value when
// given, else none when GOMEMLIMIT is set (the Go runtime has read it),
// else defaultMemoryLimit. It is soft: near it the garbage collector
// runs more often; a site whose live data outgrows it runs on, using
// more CPU for collection (watchHeap warns). It returns the limit set, 0
// for none.
func memoryLimit(e *env, flag string, given bool) (int64, error) {
	switch {
	case given:
		n, err := parseSize(flag)
		if err != nil {
			return 0, usagef("--memory-limit %v", err)
		}
		if n == 0 {
			debug.SetMemoryLimit(math.MaxInt64) // the runtime's "no limit"
			return 0, nil
		}
		debug.SetMemoryLimit(n)
		return n, nil
	case e.getenv("GOMEMLIMIT") != "":
		return 0, nil
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
	return defaultMemoryLimit, nil
}

// heapWarnEvery is how often watchHeap may warn.
const heapWarnEvery = time.Hour

// watchHeap warns, at most every heapWarnEvery, when the live heap after
// a collection passes three quarters of the soft memory limit: the
// garbage collector then runs often, and the limit should be raised.
func watchHeap(ctx context.Context, limit int64, log *slog.Logger) {
	if limit <= 0 {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := int64(sample[0].Value.Uint64())
		if live > limit/4*3 && time.Since(warned) >= heapWarnEvery {
			warned = time.Now()
			log.Warn("the site's live data is near its memory limit; the garbage collector runs often: raise --memory-limit",
				"live_mib", live>>20, "limit_mib", limit>>20)
		}
	}
}
