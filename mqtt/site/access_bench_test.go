package site

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// accessSite is a site of doors doors, door i in group "all" and in group
// g(i mod 50), with cards holders of one card each that opens the group
// "all" (with a schedule and an end date), and holder "multi" whose card
// lists the 50 groups.
func accessSite(b *testing.B, doors, cards int) *Site {
	db := openDB(b, filepath.Join(b.TempDir(), "site.db"))
	for i := range doors {
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
	for start := 0; start < cards; start += 10_000 {
		ops := make([]store.Op, 0, 20_000)
		for n := start; n < min(start+10_000, cards); n++ {
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
// holders' cards open, on a site of 10 doors (the site keeps every door's
// view in memory: 1,000 doors that each 100,000 cards open would be 10^8
// view entries, a site this benchmark does not build): every card judged by
// store.JudgeCard, and each card's last use looked up in the collected
// events (none here: each lookup is one seek of the UID index).
//
// "now" reads the live allowlist; "at" answers for a past moment, replaying
// the history (here 11 changes holding 100,001 cards) up to it.
func BenchmarkAccessWho(b *testing.B) {
	s := accessSite(b, 10, 100_000)
	benchAccess(b, 100_001, func(q AccessQuery) (AccessReport, error) { return s.Who("d0007", q) }) // every card, and multi's through g07
}

// BenchmarkAccessWhat is `latch access what` for a holder whose card lists
// 50 groups, on a site of 1,000 doors and 1,001 cards: it opens all
// 1,000 doors.
func BenchmarkAccessWhat(b *testing.B) {
	s := accessSite(b, 1000, 1000)
	benchAccess(b, 1000, func(q AccessQuery) (AccessReport, error) { return s.What("multi", q) })
}

// benchAccess measures report now and at a past moment (t0), each answer
// holding want entries.
func benchAccess(b *testing.B, want int, report func(AccessQuery) (AccessReport, error)) {
	for _, at := range []struct {
		name string
		at   time.Time
	}{{"now", time.Time{}}, {"at", t0}} {
		b.Run(at.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := report(AccessQuery{At: at.at, Policy: cardPIN})
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.Entries) != want {
					b.Fatalf("%d entries, want %d", len(rep.Entries), want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/report")
		})
	}
}
