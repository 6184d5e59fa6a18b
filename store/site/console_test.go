package site

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func TestUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := store.HashSecret([]byte("correct horse battery"), store.PINParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, u := range []User{
		{Name: "alice", Role: RoleAdmin, Hash: hash, Created: now},
		{Name: "bob", Role: RoleAuditor, Hash: hash, Created: now},
	} {
		if err := db.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []User{
		{Name: "", Role: RoleAdmin, Hash: hash},
		{Name: "eve", Role: "root", Hash: hash},
		{Name: "eve", Role: RoleAdmin},
		{Name: "eve", Role: RoleAdmin, Hash: "plain"},
		{Name: "e ve", Role: RoleAdmin, Hash: hash},
	} {
		if err := db.PutUser(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutUser(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	// Kept across a reopen.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.User("alice")
	if err != nil || u.Role != RoleAdmin || u.Hash != hash || !u.Created.Equal(now) {
		t.Fatalf("User(alice) = %+v, %v", u, err)
	}
	if ok, err := store.VerifyPIN(u.Hash, []byte("correct horse battery")); !ok || err != nil {
		t.Fatalf("the stored hash does not verify its password: %v %v", ok, err)
	}
	us, err := db.ListUsers()
	if err != nil || len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
		t.Fatalf("ListUsers = %+v, %v", us, err)
	}
	if err := db.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.User("bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("User(bob) after delete: %v", err)
	}
	if err := db.DeleteUser("bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteUser twice: %v", err)
	}
	if _, err := ParseRole("superuser"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ParseRole(superuser) = %v", err)
	}
}

func TestActions(t *testing.T) {
	db := open(t)
	if out, next, err := db.Actions(0, 10, 0, nil); err != nil || len(out) != 0 || next != 0 {
		t.Fatalf("an empty log: %v %d %v", out, next, err)
	}
	if _, err := db.AppendAction(Action{User: "alice"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an action without what: %v", err)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range 25 {
		user := "alice"
		if i%5 == 0 {
			user = "bob"
		}
		seq, err := db.AppendAction(Action{Time: now.Add(time.Duration(i) * time.Second), User: user, From: "127.0.0.1", What: "revoke", Target: "card 04A1", Result: "ok"})
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
	}
	// Newest first, a page at a time, without loss or repeat.
	var seen []uint64
	for before := uint64(0); ; {
		out, next, err := db.Actions(before, 10, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range out {
			seen = append(seen, a.Seq)
		}
		if next == 0 {
			break
		}
		before = next
	}
	if len(seen) != 25 || seen[0] != 25 || seen[24] != 1 {
		t.Fatalf("paged seqs: %v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[i-1]-1 {
			t.Fatalf("paged seqs out of order: %v", seen)
		}
	}
	// A filter, and a scan bound that stops before the page fills.
	bob := func(a *Action) bool { return a.User == "bob" }
	out, next, err := db.Actions(0, 10, 0, bob)
	if err != nil || len(out) != 5 || out[0].Seq != 21 || next != 0 {
		t.Fatalf("bob's actions: %+v next %d, %v", out, next, err)
	}
	out, next, err = db.Actions(0, 10, 7, bob)
	if err != nil || len(out) != 1 || out[0].Seq != 21 || next != 19 {
		t.Fatalf("bob's actions within 7 read: %+v next %d, %v", out, next, err)
	}
	// Over-long strings are cut.
	seq, err := db.AppendAction(Action{What: "note", Detail: strings.Repeat("x", 5000)})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = db.Actions(seq+1, 1, 0, nil)
	if err != nil || len(out) != 1 || len(out[0].Detail) > maxActionText+len("…") {
		t.Fatalf("a long detail was kept at %d bytes: %v", len(out[0].Detail), err)
	}
}
