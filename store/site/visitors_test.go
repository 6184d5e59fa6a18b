package site

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
)

// TestVisitorTally: a visitor's granted uses are counted from collected
// events once each, in arrival order, from the first visitor on; the first
// use is marked, and reaching Uses says the credential is spent.
func TestVisitorTally(t *testing.T) {
	db := open(t)
	evs := chain(t, "front", 1, 18, zeroHash) // bob at seq 1, 4, 7, 10, 13, 16
	add := func(from, to int) {
		t.Helper()
		if _, _, _, err := db.AddEvents("front", evs[from-1:to], t0); err != nil {
			t.Fatal(err)
		}
	}
	add(1, 6)
	v := Visitor{Holder: "bob", Name: "Bob", Host: "alice", From: t0, Until: t0.Add(time.Hour), Doors: []string{"front"}, Uses: 3, Added: t0, AddedBy: "admin"}
	if err := db.PutVisitor(v); err != nil {
		t.Fatal(err)
	}
	tally := func(step string) []VisitNews {
		t.Helper()
		news, err := db.TallyVisits()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return news
	}
	if news := tally("events before the visitor"); len(news) != 0 {
		t.Fatalf("events before the visitor counted: %+v", news)
	}
	add(7, 12)
	news := tally("two uses")
	if len(news) != 1 || !news[0].First || news[0].Spent || news[0].Visitor.Used != 2 ||
		!news[0].Visitor.FirstSeen.Equal(t0.Add(7*time.Minute)) || news[0].Visitor.FirstDoor != "front" {
		t.Fatalf("two uses: %+v", news)
	}
	if news := tally("nothing new"); len(news) != 0 {
		t.Fatalf("counted twice: %+v", news)
	}
	add(13, 18)
	news = tally("four uses")
	if len(news) != 1 || news[0].First || !news[0].Spent || news[0].Visitor.Used != 4 {
		t.Fatalf("four uses of three: %+v", news)
	}
	if _, err := db.EndVisitor("bob", "uses spent", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EndVisitor("bob", "again", t0.Add(time.Hour)); !errors.Is(err, ErrVisitorEnded) {
		t.Fatalf("ending twice: %v", err)
	}
	if _, err := db.EndVisitor("nobody", "", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ending no visitor: %v", err)
	}
	all, err := db.Visitors()
	if err != nil || len(all) != 1 || all[0].Used != 4 || all[0].EndReason != "uses spent" {
		t.Fatalf("visitors %+v %v", all, err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	if err := db.PutVisitor(Visitor{Holder: "eve", Host: "alice", From: t0, Until: t0, Doors: []string{"front"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty window: %v", err)
	}
}

// A visitor added by a recorded change is stored with the change and its
// entry; ending it rides on the revocation's change, and a second end
// undoes that change and its entry.
func TestChangePuttingAndEndingVisitor(t *testing.T) {
	db := open(t)
	uid := []byte{0x0E, 1, 2, 3}
	v := Visitor{Holder: "vera", Name: "Vera", Host: "alice", From: t0, Until: t0.Add(time.Hour), Doors: []string{"front"}, Uses: 2, Added: t0, AddedBy: "ada"}
	entry := func(op string) *ChangeRecord {
		rec := &ChangeRecord{Entry: ChangeEntry{Time: t0, Who: "ada", From: "socket", Op: op, Target: "visitor vera", Result: "ok"}}
		rec.After = func(r *Reader) (json.RawMessage, error) {
			v, err := r.Visitor("vera")
			if err != nil {
				return nil, err
			}
			return json.Marshal(v)
		}
		return rec
	}
	if err := (&ChangeRecord{}).PuttingVisitor(Visitor{Holder: "vera"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a visitor without a host or window: %v", err)
	}
	add := entry("visitor add")
	if err := add.PuttingVisitor(v); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Recording(add).Commit([]store.Op{
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "vera", Name: "Vera"}},
		{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "vera", Doors: v.Doors, ValidFrom: v.From, ValidUntil: v.Until}},
	}, "ada", t0); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Visitor("vera"); err != nil || got.Host != "alice" || got.Uses != 2 {
		t.Fatalf("visitor after its add: %+v, %v", got, err)
	}
	if st := add.Stored(); st == nil || !strings.Contains(string(st.After), `"host":"alice"`) {
		t.Fatalf("add's entry: %+v", st)
	}

	end := entry("visitor end")
	end.EndingVisitor("vera", "uses spent", t0.Add(time.Minute))
	if _, err := db.Recording(end).Commit([]store.Op{{Kind: store.OpRevokeCard, UID: uid, Reason: "uses spent"}}, "latch serve", t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Visitor("vera"); got.EndReason != "uses spent" || !got.Ended.Equal(t0.Add(time.Minute)) {
		t.Fatalf("visitor after its end: %+v", got)
	}
	if _, err := db.Revoked(uid); err != nil {
		t.Fatalf("the card is not revoked: %v", err)
	}

	// Ending again refuses, and the revocation it rode on is not stored.
	again := entry("visitor end")
	again.EndingVisitor("vera", "again", t0)
	if _, err := db.Recording(again).Commit([]store.Op{{Kind: store.OpReinstateCard, UID: uid}}, "ada", t0); !errors.Is(err, ErrVisitorEnded) {
		t.Fatalf("second end: %v, want ErrVisitorEnded", err)
	}
	if _, err := db.Revoked(uid); err != nil {
		t.Errorf("the refused change was committed: %v", err)
	}
	if es, _, _ := db.Changes(ChangeFilter{}); len(es) != 2 || again.Stored() != nil {
		t.Errorf("%d entries, want add and end", len(es))
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
