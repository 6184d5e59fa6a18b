package site

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// bigAccessSite is a site of 1,000 doors, each in one of 50 groups and in
// the group "all", with 100,000 holders of one card each opening "all"
// (with a schedule and an end date), and holder "multi" whose card lists
// the 50 groups.
func bigAccessSite(b *testing.B) *Site {
	db := openDB(b, filepath.Join(b.TempDir(), "site.db"))
	for i := range 1000 {
		id, err := mqtt.NewIdentity()
		if err != nil {
			b.Fatal(err)
		}
		pub := id.Public()
		if err := Provision(db, fmt.Sprintf("d%04d", i), &pub, []string{"all", fmt.Sprintf("g%02d", i%50)}); err != nil {
			b.Fatal(err)
		}
	}
	var sched store.Schedule
	for d := range 7 {
		sched.Weekly[d] = []store.Window{{From: 7 * 60, To: 19 * 60}}
	}
	sched.Holidays = []string{"2025-12-25"}
	for start := 0; start < 100_000; start += 10_000 {
		ops := make([]store.Op, 0, 20_000)
		for n := start; n < start+10_000; n++ {
			h := fmt.Sprintf("h%06d", n)
			ops = append(ops, store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: h, Name: "Holder " + h}},
				store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: binary.BigEndian.AppendUint32(nil, uint32(n)|0x20000000),
					HolderID: h, Doors: []string{"all"}, Schedule: sched, ValidUntil: t0.AddDate(1, 0, 0)}})
		}
		if _, err := db.Commit(ops, "bench", t0); err != nil {
			b.Fatal(err)
		}
	}
	groups := make([]string, 50)
	for i := range groups {
		groups[i] = fmt.Sprintf("g%02d", i)
	}
	if _, err := db.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "multi"}},
		{Kind: store.OpUpsertCard, Card: &store.Card{UID: []byte{0x30, 0, 0, 1}, HolderID: "multi", Doors: groups}}}, "bench", t0); err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Site: site, Signer: newSigner(b, "site-1"), DB: db})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func cardPIN(string) DoorPolicy { return DoorPolicy{Mode: store.ModeCardPIN, ClockTrusted: true} }

// BenchmarkAccessWho is `latch access who` for a door that 100,000
// holders' cards open, on a site of 1,000 doors: every card judged by
// store.JudgeCard, and each card's last use looked up in the collected
// events (none here: each lookup is one seek of the UID index).
func BenchmarkAccessWho(b *testing.B) {
	s := bigAccessSite(b)
	b.ResetTimer()
	for range b.N {
		rep, err := s.Who("d0007", AccessQuery{At: t0, Policy: cardPIN})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Entries) != 100_000 {
			b.Fatalf("%d entries", len(rep.Entries))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/report")
}

// BenchmarkAccessWhat is `latch access what` for a holder whose card lists
// 50 groups, on a site of 1,000 doors and 100,001 cards: it opens all
// 1,000 doors.
func BenchmarkAccessWhat(b *testing.B) {
	s := bigAccessSite(b)
	b.ResetTimer()
	for range b.N {
		rep, err := s.What("multi", AccessQuery{At: t0, Policy: cardPIN})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Entries) != 1000 {
			b.Fatalf("%d entries", len(rep.Entries))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/report")
}
