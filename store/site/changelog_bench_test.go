package site

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// benchEntry is an entry of the size a card change makes.
func benchEntry(i int) ChangeEntry {
	return ChangeEntry{Time: t0.Add(time.Duration(i) * time.Second), Who: "alice", From: "console 192.0.2.10", Op: "card set",
		Target: fmt.Sprintf("card %08X", i), Result: "ok",
		Before: json.RawMessage(`{"uid":"04A1B2C3","holder":"alice","doors":["front"],"pin_set":true}`),
		After:  json.RawMessage(`{"uid":"04A1B2C3","holder":"alice","doors":["front","back"],"pin_set":true}`)}
}

// BenchmarkAppendChange appends entries, each in its own synced
// transaction: entries/s is what the log can take on its own.
func BenchmarkAppendChange(b *testing.B) {
	db := open(b)
	b.ResetTimer()
	for i := range b.N {
		if _, err := db.AppendChange(benchEntry(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkCommitLogged is one allowlist change (a card upsert), without
// and with its change-log entry (read before and after in the
// transaction).
func BenchmarkCommitLogged(b *testing.B) {
	for _, logged := range []bool{false, true} {
		b.Run(fmt.Sprintf("log=%v", logged), func(b *testing.B) {
			db := open(b)
			uid := []byte{4, 0xA1, 0xB2, 0xC3}
			read := func(r *Reader) (json.RawMessage, error) {
				c, err := r.Card(uid)
				if err != nil {
					return json.RawMessage("null"), nil
				}
				return json.Marshal(c.Doors)
			}
			b.ResetTimer()
			for i := range b.N {
				op := store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "alice", Doors: []string{fmt.Sprint("d", i)}}}
				h := db
				if logged {
					h = db.Recording(&ChangeRecord{Entry: benchEntry(i), Before: read, After: read})
				}
				if _, err := h.Commit([]store.Op{op}, "alice", t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillChanges appends n entries in transactions of 10,000.
func fillChanges(tb testing.TB, db *DB, n int) {
	tb.Helper()
	for done := 0; done < n; {
		err := db.update(func(tx *bolt.Tx) error {
			for i := 0; i < 10000 && done < n; i, done = i+1, done+1 {
				e := benchEntry(done)
				if err := appendChange(tx, &e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkVerifyChanges100k verifies a change log of 100,000 entries.
func BenchmarkVerifyChanges100k(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "site.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fillChanges(b, db, 100000)
	b.ResetTimer()
	for range b.N {
		v, err := db.VerifyChanges()
		if err != nil || v.Bad != 0 || v.Entries != 100000 {
			b.Fatal(v, err)
		}
	}
}
