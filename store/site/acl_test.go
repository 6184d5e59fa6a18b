package site

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

func card(uid byte, holder string) *store.Card {
	return &store.Card{UID: []byte{0x04, 0xA1, 0xB2, uid}, HolderID: holder, Doors: []string{"front", "lab"},
		ValidFrom: t0, ValidUntil: t0.Add(365 * 24 * time.Hour),
		Schedule: store.Schedule{Weekly: [7][]store.Window{1: {{From: 480, To: 1080}}}, Holidays: []string{"2025-12-25"}}}
}

func TestCommitSnapshotAndHistory(t *testing.T) {
	db := open(t)
	seq, err := db.Commit([]store.Op{
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice", Name: "Alice"}},
		{Kind: store.OpUpsertCard, Card: card(1, "alice")},
		{Kind: store.OpUpsertCard, Card: card(2, "alice")},
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "bob"}},
	}, "admin", t0)
	if err != nil || seq != 1 {
		t.Fatalf("commit: %d, %v", seq, err)
	}
	seq, err = db.Commit([]store.Op{
		{Kind: store.OpRevokeCard, UID: card(2, "").UID, Reason: "lost"},
		{Kind: store.OpUpsertCard, Card: card(3, "bob")},
		{Kind: store.OpRevokeHolder, HolderID: "bob", Reason: "left"},
	}, "admin", t0.Add(time.Minute))
	if err != nil || seq != 2 {
		t.Fatalf("commit 2: %d, %v", seq, err)
	}
	// Moving a card to another holder moves it in the index.
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertCard, Card: card(1, "bob")}}, "admin", t0); err != nil {
		t.Fatal(err)
	}
	if uids, err := db.CardsOf("alice"); err != nil || len(uids) != 1 || !bytes.Equal(uids[0], card(2, "").UID) {
		t.Errorf("cards of alice: %X, %v", uids, err)
	}
	if uids, err := db.CardsOf("bob"); err != nil || len(uids) != 2 {
		t.Errorf("cards of bob: %X, %v", uids, err)
	}

	// The same ops applied by a door store give the same state hash.
	door, err := store.Open(t.TempDir()+"/door.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer door.Close()
	changes, err := db.DeltasAfter(0, 0)
	if err != nil || len(changes) != 3 {
		t.Fatalf("deltas: %d, %v", len(changes), err)
	}
	for _, c := range changes {
		if c.By != "admin" {
			t.Errorf("change %d by %q", c.Seq, c.By)
		}
		if err := door.ApplyDelta(c.Delta); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := db.Snapshot()
	if err != nil || sn.Seq != 3 {
		t.Fatalf("snapshot: %d, %v", sn.Seq, err)
	}
	ds, err := door.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if got := store.HashSnapshot(sn); got != ds.SnapshotHash {
		t.Errorf("site state hash %s, door %s", got, ds.SnapshotHash)
	}
	if len(sn.Cards) != 3 || len(sn.Holders) != 2 || len(sn.Revocations) != 2 {
		t.Errorf("snapshot: %d cards, %d holders, %d revocations", len(sn.Cards), len(sn.Holders), len(sn.Revocations))
	}
	if later, err := db.DeltasAfter(2, 0); err != nil || len(later) != 1 || later[0].Seq != 3 {
		t.Errorf("deltas after 2: %+v, %v", later, err)
	}
	if r, err := db.Revoked(card(2, "").UID); err != nil || r.Reason != "lost" {
		t.Errorf("revoked: %+v, %v", r, err)
	}
	if r, err := db.HolderRevoked("bob"); err != nil || r.Reason != "left" {
		t.Errorf("holder revoked: %+v, %v", r, err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestCommitRefusesAndChangesNothing(t *testing.T) {
	db := open(t)
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertCard, Card: card(1, "alice")}}, "admin", t0); err != nil {
		t.Fatal(err)
	}
	for name, ops := range map[string][]store.Op{
		"empty":               nil,
		"short uid":           {{Kind: store.OpRevokeCard, UID: []byte{1, 2}}},
		"unknown kind":        {{Kind: "frobnicate"}},
		"card without holder": {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}}}},
		"bad window":          {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", Schedule: store.Schedule{Weekly: [7][]store.Window{{{From: 600, To: 500}}}}}}},
		"bad holiday":         {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", Schedule: store.Schedule{Holidays: []string{"25/12/2025"}}}}},
		"bad pin hash":        {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", PINHash: "1234"}}},
		// What a door's store refuses, the site refuses first.
		"too many holidays":    {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", Schedule: store.Schedule{Holidays: slices.Repeat([]string{"2026-12-25"}, 1025)}}}},
		"too many windows":     {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", Schedule: store.Schedule{Weekly: [7][]store.Window{slices.Repeat([]store.Window{{From: 1, To: 2}}, 49)}}}}},
		"holder name too long": {{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "x", HolderName: strings.Repeat("n", 1025)}}},
		"holder with cards": {
			{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "zed"}},
			{Kind: store.OpDeleteHolder, HolderID: "alice"},
		},
	} {
		if _, err := db.Commit(ops, "admin", t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if seq, err := db.ACLSeq(); err != nil || seq != 1 {
		t.Errorf("acl seq %d, %v; want 1", seq, err)
	}
	if _, err := db.Holder("zed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("holder of a refused commit: %v", err)
	}
	var oe *store.OpError
	_, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "a"}}, {Kind: store.OpDeleteHolder, HolderID: "alice"}}, "admin", t0)
	if !errors.As(err, &oe) || oe.Index != 1 || oe.Seq != 2 {
		t.Errorf("op error: %v", err)
	}
	// Deleting and reinstating what is absent is no error.
	if _, err := db.Commit([]store.Op{{Kind: store.OpDeleteCard, UID: []byte{9, 9, 9, 9}}, {Kind: store.OpReinstateHolder, HolderID: "nobody"}}, "admin", t0); err != nil {
		t.Error(err)
	}
}

func TestListPaging(t *testing.T) {
	db := open(t)
	var ops []store.Op
	for i := range 25 {
		ops = append(ops, store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: string(rune('a' + i))}},
			store.Op{Kind: store.OpUpsertCard, Card: card(byte(i), string(rune('a'+i)))})
	}
	if _, err := db.Commit(ops, "admin", t0); err != nil {
		t.Fatal(err)
	}
	var all []store.Card
	var after []byte
	for {
		page, err := db.ListCards(after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].UID
	}
	if len(all) != 25 {
		t.Errorf("%d cards listed, want 25", len(all))
	}
	for i := 1; i < len(all); i++ {
		if bytes.Compare(all[i-1].UID, all[i].UID) >= 0 {
			t.Fatalf("cards out of order at %d", i)
		}
	}
	hs, err := db.ListHolders("k", 5)
	if err != nil || len(hs) != 5 || hs[0].ID != "l" {
		t.Errorf("holders after k: %+v, %v", hs, err)
	}
	if c, err := db.Card(card(3, "").UID); err != nil || c.HolderID != "d" || !c.ValidFrom.Equal(t0) || len(c.Schedule.Weekly[1]) != 1 {
		t.Errorf("card: %+v, %v", c, err)
	}
	if _, err := db.Card([]byte{1, 1, 1, 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing card: %v", err)
	}
}
