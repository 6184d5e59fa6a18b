package site

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// FuzzAddEvents feeds AddEvents events as a wire decoder could hand them
// over: any seq, time, strings and hashes, some with the right hash for
// their content (so they are stored) and some not. It checks that nothing
// panics, that every stored event has the hash of its content, and that
// an event once stored is never replaced.
func FuzzAddEvents(f *testing.F) {
	f.Add([]byte("\x01\x00\x01alice\x00\x02\x01\x02bob\x00\x01\x00\x01eve"))
	f.Add([]byte("\x05\x01\x05\xff\xfe\x00\x03\x00\x03\x00\x03\x01\x03x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := Open(filepath.Join(t.TempDir(), "site.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		evs := fuzzEvents(data)
		first := map[uint64]string{}
		for round := range 2 {
			batch := evs
			if round == 1 {
				// The same events again, and each one altered.
				for _, e := range evs {
					e.Detail += "!"
					e.Hash, _ = store.HashEvent(e)
					batch = append(batch, e)
				}
			}
			if _, _, _, err := db.AddEvents("door", batch, t0); err != nil {
				t.Fatal(err)
			}
			for e, err := range db.Query(Filter{Door: "door"}) {
				if err != nil {
					t.Fatal(err)
				}
				h, herr := store.HashEvent(e.Event)
				if herr != nil || h != e.Event.Hash {
					t.Fatalf("stored event %d with a hash not of its content", e.Event.Seq)
				}
				if old, ok := first[e.Event.Seq]; ok && old != h {
					t.Fatalf("event %d replaced", e.Event.Seq)
				}
				first[e.Event.Seq] = h
			}
		}
		if err := db.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzEvents reads events from data: per event a seq byte, a flags byte
// (bit 0: give it its true hash; bit 1: link to the event before), a
// time byte and a string for a field chosen by the flags.
func fuzzEvents(data []byte) []store.Event {
	var out []store.Event
	prev := zeroHash
	for len(data) >= 3 && len(out) < 64 {
		seq, flags, tm := data[0], data[1], data[2]
		data = data[3:]
		n := 0
		if len(data) > 0 {
			n = min(int(data[0]), len(data)-1)
			data = data[1:]
		}
		s := string(data[:n])
		data = data[n:]
		e := store.Event{Seq: uint64(seq), Time: time.Unix(int64(tm)*int64(binary.MaxVarintLen64)*1e7, 0), Clock: store.TimeSynced,
			Door: "door", Type: store.TypeAccess, Reason: store.Reason(s), Prev: zeroHash}
		switch flags >> 2 & 3 {
		case 0:
			e.Holder = s
		case 1:
			e.UID = s
		case 2:
			e.Detail = s
		case 3:
			e.HolderName, e.Prev = s, s
		}
		if flags&2 != 0 {
			e.Prev = prev
		}
		if flags&1 != 0 {
			e.Hash, _ = store.HashEvent(e)
		} else {
			e.Hash = s
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out
}
