package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/storetest"
)

// exhaust makes events (unknown cards) until the journal cannot write: a
// full disk still takes writes into the pages bbolt freed before.
func (c *child) exhaust() {
	c.t.Helper()
	for i := range 5000 {
		c.send("tap 01020304")
		c.send("remove")
		if i%10 != 9 {
			continue
		}
		c.send("status")
		m := c.out.next("status", func(m map[string]any) bool {
			msg, _ := m["msg"].(string)
			return strings.HasPrefix(msg, "status ")
		})
		if field(m["msg"].(string), "journal_ok") == "false" {
			c.out.pending = nil // what came before was written
			return
		}
	}
	c.t.Fatal("the journal never failed on a full disk")
}

// The real daemon with its data directory on a small filesystem it fills:
// under the default policy a valid card and PIN do not unlock, the relay
// stays locked and the status shows the fault, while the exit button still
// opens; with the open policy the door opens. After a kill -9 and space
// freed, the journal holds every event it wrote and an events_lost event
// with the count of those it held in memory, and the chain verifies.
func TestSimJournalFullDisk(t *testing.T) {
	for _, policy := range []string{"refuse", "open"} {
		t.Run(policy, func(t *testing.T) {
			dir := storetest.SmallDisk(t, "3m")
			args := []string{"-sim", "-data", dir, "-log-format", "json", "-broker-addr", "127.0.0.1:0",
				"-journal-reserve-mib", "0", "-unrecorded-grant", policy}
			c := startChild(t, args...)
			c.out.relay("locked")
			c.out.event("started")
			filler := storetest.Fill(t, dir)
			c.exhaust()

			c.send("tap 04A1B2C3D4E5F6")
			c.send("key 1234#")
			// The grant's record fails: refused, or opened anyway.
			st := c.status("the grant decided with the journal failing", func(s string) bool {
				return field(s, "journal_ok") == "false" && field(s, "awaiting_pin") == "false" && field(s, "journal_pending") == field(s, "journal_counted")
			})
			if policy == "refuse" {
				if !strings.HasPrefix(field(st, "relay"), "locked") {
					t.Fatalf("refuse policy: %s", st)
				}
				for _, m := range c.out.pending {
					if m["type"] == "relay" && m["state"] == "unlocked" {
						t.Fatal("the relay unlocked for a grant that was not recorded")
					}
				}
				c.send("rex")
				c.out.relay("unlocked") // the exit button works without a journal
				c.out.relay("locked")
			} else {
				c.out.relay("unlocked")
				c.out.relay("locked")
			}
			c.send("remove")
			c.send("tap 01020304") // unknown card: one more event held
			held := c.status("the events held counted on disk", func(s string) bool {
				n, _ := strconv.Atoi(field(s, "journal_pending"))
				return field(s, "journal_pending") == field(s, "journal_counted") && field(s, "relay") == "locked" && n >= 2
			})
			if _, err := strconv.Atoi(field(held, "journal_counted")); err != nil {
				t.Fatal(err)
			}
			// No event was printed while the disk was full: printing
			// follows writing.
			for _, m := range c.out.pending {
				if _, ok := m["seq"]; ok {
					t.Fatalf("event printed while the disk was full: %v", m)
				}
			}
			c.kill()
			// What a kill -9 leaves: the count of the events held in memory.
			loss, err := store.ReadJournalLoss(dir)
			if err != nil || loss.Count < 2 {
				t.Fatalf("loss record after the kill: %+v %v", loss, err)
			}
			n := int(loss.Count)

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			c = startChild(t, args...)
			c.out.relay("locked")
			lost := c.out.event("events_lost")
			var got int
			if _, err := fmt.Sscanf(lost["detail"].(string), "%d events lost", &got); err != nil || got != n {
				t.Fatalf("events_lost %q: want %d events", lost["detail"], n)
			}
			c.out.event("started")
			c.send("quit")
			if err := c.cmd.Wait(); err != nil {
				t.Fatalf("second run: %v", err)
			}

			s, err := store.Open(filepath.Join(dir, dbFile), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rep, err := s.Verify()
			if err != nil || !rep.OK {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			evs, err := s.EventsAfter(0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, e := range evs {
				switch e.Reason {
				case store.ReasonStarted, store.ReasonStopped, store.ReasonEventsLost, store.ReasonGranted, store.ReasonJournalFault:
					reasons = append(reasons, string(e.Reason))
				}
			}
			// The held grant (or its refusal) is in the count, not the chain.
			if got := strings.Join(reasons, ","); got != "started,events_lost,started,stopped" {
				t.Errorf("chain %s", got)
			}
		})
	}
}

// A stop while the journal cannot write exits non-zero and leaves the
// count for the next start.
func TestSimJournalStopWhileFull(t *testing.T) {
	dir := storetest.SmallDisk(t, "3m")
	args := []string{"-sim", "-data", dir, "-log-format", "json", "-broker-addr", "127.0.0.1:0", "-journal-reserve-mib", "0"}
	c := startChild(t, args...)
	c.out.event("started")
	filler := storetest.Fill(t, dir)
	c.exhaust()
	held := c.status("the denials held", func(s string) bool {
		return field(s, "journal_pending") != "0" && field(s, "journal_pending") == field(s, "journal_counted")
	})
	n, err := strconv.Atoi(field(held, "journal_counted"))
	if err != nil {
		t.Fatal(err)
	}
	c.send("quit")
	if err := c.cmd.Wait(); err == nil || !strings.Contains(c.err.String(), "not written") {
		t.Fatalf("exit %v; stderr %s", err, c.err.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c = startChild(t, args...)
	lost := c.out.event("events_lost")
	// The denials held and the stop.
	if d := lost["detail"].(string); !strings.HasPrefix(d, fmt.Sprintf("%d events lost", n+1)) {
		t.Fatalf("events_lost %q, want %d", d, n+1)
	}
	c.send("quit")
	if err := c.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
