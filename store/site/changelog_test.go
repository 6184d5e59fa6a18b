package site

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// appendN appends n plain entries, one a second from t0.
func appendN(t testing.TB, db *DB, n int) []ChangeEntry {
	t.Helper()
	var out []ChangeEntry
	for i := range n {
		e, err := db.AppendChange(ChangeEntry{Time: t0.Add(time.Duration(i) * time.Second), Who: "alice", From: "socket",
			Op: "holder add", Target: fmt.Sprintf("holder h%d", i), After: json.RawMessage(fmt.Sprintf(`{"id": "h%d"}`, i)), Result: "ok"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// rawChange rewrites the stored record under key seq with fn's edit of
// it, resealed so that only the chain can tell (del: removes it).
func rawChange(t testing.TB, db *DB, seq uint64, fn func(e *ChangeEntry), del bool) {
	t.Helper()
	err := db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChanges)
		if del {
			return b.Delete(be64(seq))
		}
		var e ChangeEntry
		if err := decodeJSON(b.Get(be64(seq)), &e); err != nil {
			return err
		}
		fn(&e)
		v, err := encodeJSON(&e)
		if err != nil {
			return err
		}
		return b.Put(be64(seq), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChangeLogChain(t *testing.T) {
	db := open(t)
	es := appendN(t, db, 5)
	if es[0].Seq != 1 || es[0].Prev != zeroChangeHash || es[1].Prev != es[0].Hash || es[4].Seq != 5 {
		t.Fatalf("entries not chained: %+v", es)
	}
	if string(es[0].After) != `{"id":"h0"}` || string(es[0].Before) != "null" {
		t.Errorf("values not canonical: before %s after %s", es[0].Before, es[0].After)
	}
	v, err := db.VerifyChanges()
	if err != nil || v.Bad != 0 || v.Entries != 5 || v.Head != es[4].Hash {
		t.Fatalf("verify a whole log: %+v, %v", v, err)
	}
	// The documented hash, recomputed by hand for entry 2.
	e := es[1]
	prev, _ := hex.DecodeString(e.Prev)
	b := append([]byte("latch change log v1\n"), prev...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Time.Nanosecond()))
	for _, s := range []string{e.Who, e.Role, e.From, e.Op, e.Target, e.Detail, string(e.Before), string(e.After), e.Result} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, e.Ref)
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Hash {
		t.Errorf("hash of entry 2 is not the documented one")
	}
	if _, err := db.AppendChange(ChangeEntry{Who: "a", Op: "note", Result: "ok", Ref: 9}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a note of an entry to come: %v, want ErrInvalid", err)
	}
	if _, err := db.AppendChange(ChangeEntry{Who: "a", Op: "x", Result: "ok", Before: json.RawMessage("{")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a value that is not JSON: %v, want ErrInvalid", err)
	}
}

func TestVerifyChangesNamesTheFirstBadEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  uint64
		word string
		edit func(t *testing.T, db *DB)
	}{
		{"edited", 3, "altered", func(t *testing.T, db *DB) {
			rawChange(t, db, 3, func(e *ChangeEntry) { e.Who = "mallory" }, false)
		}},
		{"deleted", 2, "missing", func(t *testing.T, db *DB) { rawChange(t, db, 2, nil, true) }},
		{"reordered", 3, "reordered", func(t *testing.T, db *DB) { swap34(t, db, false) }},
		{"reordered and renumbered", 3, "does not link", func(t *testing.T, db *DB) { swap34(t, db, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t)
			appendN(t, db, 6)
			tc.edit(t, db)
			v, err := db.VerifyChanges()
			if err != nil {
				t.Fatal(err)
			}
			if v.Bad != tc.bad || !strings.Contains(v.Problem, tc.word) {
				t.Errorf("verify: bad %d %q, want %d and %q", v.Bad, v.Problem, tc.bad, tc.word)
			}
		})
	}
}

// swap34 swaps entries 3 and 4 in the file; renumber gives each the seq
// of its new place.
func swap34(t *testing.T, db *DB, renumber bool) {
	var e3, e4 ChangeEntry
	_ = db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChanges)
		_ = decodeJSON(b.Get(be64(3)), &e3)
		return decodeJSON(b.Get(be64(4)), &e4)
	})
	if renumber {
		e3.Seq, e4.Seq = 4, 3
	}
	rawChange(t, db, 3, func(e *ChangeEntry) { *e = e4 }, false)
	rawChange(t, db, 4, func(e *ChangeEntry) { *e = e3 }, false)
}

func TestRecordingIsAtomic(t *testing.T) {
	db := open(t)
	uid := []byte{4, 1, 2, 3}
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice"}}}, "t", t0); err != nil {
		t.Fatal(err)
	}
	rec := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "bob", From: "socket", Op: "card add", Target: "card 04010203", Result: "ok"},
		After: func(r *Reader) (json.RawMessage, error) {
			c, err := r.Card(uid)
			if err != nil {
				return nil, err
			}
			return json.Marshal(map[string]string{"holder": c.HolderID})
		}}
	seq, err := db.Recording(rec).Commit([]store.Op{{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "alice"}}}, "bob", t0)
	if err != nil || seq != 2 {
		t.Fatal(seq, err)
	}
	got := rec.Stored()
	if got == nil || got.Seq != 1 || string(got.After) != `{"holder":"alice"}` {
		t.Fatalf("stored %+v", got)
	}
	// A second write through the handle appends nothing more.
	if err := db.Recording(rec).PutDoor(Door{ID: "front"}); err != nil {
		t.Fatal(err)
	}
	// A change the database refuses (a holder with cards) commits
	// neither the change nor the entry.
	rec2 := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "bob", From: "socket", Op: "holder remove", Result: "ok"}}
	if _, err := db.Recording(rec2).Commit([]store.Op{{Kind: store.OpDeleteHolder, HolderID: "alice"}}, "bob", t0); err == nil {
		t.Fatal("deleted a holder with cards")
	}
	// An After that fails rolls the change back with it.
	rec3 := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "bob", From: "socket", Op: "card remove", Result: "ok"},
		After: func(*Reader) (json.RawMessage, error) { return nil, io.ErrUnexpectedEOF }}
	if _, err := db.Recording(rec3).Commit([]store.Op{{Kind: store.OpDeleteCard, UID: uid}}, "bob", t0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("commit with a failing After: %v", err)
	}
	if rec2.Stored() != nil || rec3.Stored() != nil {
		t.Error("a failed change has a stored entry")
	}
	if _, err := db.Card(uid); err != nil {
		t.Errorf("the card went with a change whose entry failed: %v", err)
	}
	es, _, err := db.Changes(ChangeFilter{})
	if err != nil || len(es) != 1 {
		t.Fatalf("changes: %d, %v", len(es), err)
	}
	if n, _ := db.ACLSeq(); n != 2 {
		t.Errorf("acl seq %d, want 2", n)
	}
}

func TestChangesFilter(t *testing.T) {
	db := open(t)
	appendN(t, db, 10)
	if _, err := db.AppendChange(ChangeEntry{Time: t0.Add(time.Hour), Who: "bob (console, 10.0.0.1)", From: "console 10.0.0.1", Op: "note", Ref: 3, Detail: "checked", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    ChangeFilter
		want int
	}{
		{ChangeFilter{}, 11},
		{ChangeFilter{Who: "bob"}, 1},
		{ChangeFilter{Target: "holder h1"}, 1},
		{ChangeFilter{From: t0.Add(5 * time.Second), To: t0.Add(8 * time.Second)}, 3},
		{ChangeFilter{After: 9}, 2},
		{ChangeFilter{Limit: 4}, 4},
	} {
		es, _, err := db.Changes(tc.f)
		if err != nil || len(es) != tc.want {
			t.Errorf("%+v: %d entries, %v; want %d", tc.f, len(es), err, tc.want)
		}
	}
}

func TestOpenSchema1Migrates(t *testing.T) {
	src, err := os.ReadFile("testdata/v1.db")
	if err != nil {
		t.Fatal(err)
	}
	db := openBytes(t, src)
	path := db.Path()
	if h, err := db.Holder("alice"); err != nil || h.Name != "Alice" {
		t.Errorf("holder after migration: %+v, %v", h, err)
	}
	if d, err := db.Door("front"); err != nil || len(d.Groups) != 1 {
		t.Errorf("door after migration: %+v, %v", d, err)
	}
	if as, _, err := db.Actions(0, 10, 0, nil); err != nil || len(as) != 1 {
		t.Errorf("actions after migration: %d, %v", len(as), err)
	}
	appendN(t, db, 1)
	if v, err := db.VerifyChanges(); err != nil || v.Entries != 1 || v.Bad != 0 {
		t.Errorf("change log after migration: %+v, %v", v, err)
	}
	bak, err := os.ReadFile(path + ".schema-1.bak")
	if err != nil {
		t.Fatalf("no copy before the migration: %v", err)
	}
	// The copy is the schema 1 file: reading its meta says so.
	cp := filepath.Join(t.TempDir(), "bak.db")
	if err := os.WriteFile(cp, bak, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	_ = bdb.View(func(tx *bolt.Tx) error {
		n, err := decodeU64(tx.Bucket(bucketMeta).Get(keySchema))
		if err != nil || n != 1 || tx.Bucket(bucketChanges) != nil {
			t.Errorf("the copy has schema %d (%v), changes bucket %v", n, err, tx.Bucket(bucketChanges) != nil)
		}
		return nil
	})
}
