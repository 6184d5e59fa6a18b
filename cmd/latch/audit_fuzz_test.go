package main

import (
	"net/url"
	"strconv"
	"testing"
)

// encodeTail is the query of a tailReq, as a client would send it.
func encodeTail(r tailReq) url.Values {
	q := url.Values{}
	if r.hasAfter {
		q.Set("after", strconv.FormatUint(r.after, 10))
	}
	if !(r.hasAfter && r.follow) {
		q.Set("n", strconv.Itoa(r.n))
	}
	if r.door != "" {
		q.Set("door", r.door)
	}
	if r.follow {
		q.Set("follow", "1")
	}
	return q
}

// fuzzQuery fuzzes check with each URL query that parses, from seeds.
func fuzzQuery(f *testing.F, check func(t *testing.T, q string, vals url.Values), seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if vals, err := parseQuery(q); err == nil {
			check(t, q, vals)
		}
	})
}

func FuzzDecodeTail(f *testing.F) {
	fuzzQuery(f, func(t *testing.T, q string, vals url.Values) {
		r, err := decodeTail(vals)
		if err != nil {
			return
		}
		if r.n < 0 || r.n > maxTailN || (r.hasAfter && r.follow && vals.Get("n") != "") || checkText("door", r.door, 255) != nil {
			t.Fatalf("%q accepted as %+v", q, r)
		}
		again, err := decodeTail(encodeTail(r))
		if err != nil || again != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	}, "n=5&door=front&follow=1", "after=18446744073709551615&follow=true", "after=3&n=2", "after=1&follow=1&n=2",
		"after=-1", "after=+1", "n=100001", "follow=yes", "door=a&door=b", "door=%00")
}

func FuzzDecodeExport(f *testing.F) {
	fuzzQuery(f, func(t *testing.T, q string, vals url.Values) {
		format, fl, err := decodeExport(vals)
		if err != nil {
			return
		}
		if exportFormats[format] == "" || len(vals["format"]) != 1 || vals.Has("limit") || fl.Limit != 0 {
			t.Fatalf("%q accepted as %q %+v", q, format, fl)
		}
	}, "format=csv&holder=alice&from=2026-01-01T00:00:00Z", "format=jsonl&uid=04a1b2c3&door=front&type=access&reason=granted",
		"format=xml", "format=csv&format=jsonl", "format=csv&limit=10", "holder=alice", "format=csv&bogus=1")
}
