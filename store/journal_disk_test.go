package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store/storetest"
)

// On a real full filesystem (a tmpfs, so root only): the reserve is
// released and writing goes on; when that is used up too, writes fail and
// are counted; once space is freed, everything held is written and the
// chain verifies.
func TestJournalFullDisk(t *testing.T) {
	dir := storetest.SmallDisk(t, "1m")
	r := newJournalRig(t, dir, func(o *JournalOptions) {
		o.Reserve = 96 << 10
		o.ReserveCheck = time.Millisecond
	})
	if _, err := os.Stat(filepath.Join(dir, reserveFileName)); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	filler := storetest.Fill(t, dir)
	detail := strings.Repeat("x", 200)
	i := 0
	add := func() {
		i++
		e := jev(ReasonExitRequest, i)
		e.Detail = detail
		r.j.Add(JournalEntry{Events: []Event{e}})
	}
	// Write until the reserve is gone and then until writes fail.
	for r.j.Health().OK {
		add()
		if _, err := r.flush(jev(ReasonGranted, i)); err != nil {
			break
		}
		if i > 100000 {
			t.Fatal("the disk never filled")
		}
	}
	h := r.waitHealth("fault", func(h JournalHealth) bool { return !h.OK && h.Reserve })
	if !strings.Contains(h.Err, "no space") {
		t.Errorf("health error %q", h.Err)
	}
	for range 10 {
		add()
	}
	r.waitHealth("held events counted", func(h JournalHealth) bool { return h.Recorded >= 10 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.waitHealth("written and reserve back", func(h JournalHealth) bool {
		return h.OK && h.Pending == 0 && h.Recorded == 0 && !h.Reserve
	})
	got := r.all()
	var faults, exits int
	for _, e := range got {
		switch e.Reason {
		case ReasonJournalFault:
			faults++
		case ReasonExitRequest:
			exits++
		case ReasonEventsLost:
			t.Errorf("events_lost %q: nothing was shed", e.Detail)
		}
	}
	if exits != i || faults < 2 {
		t.Errorf("%d exit requests of %d, %d journal_fault events (want the reserve's and the recovery's)", exits, i, faults)
	}
	r.verify()
	if err := r.st.Check(); err != nil {
		t.Fatal(err)
	}
}
