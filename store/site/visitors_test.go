package site

import (
	"errors"
	"testing"
	"time"
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
