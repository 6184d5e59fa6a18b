package store_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/latchdoor/latch/store"
)

// A card+PIN door: enrol a card, decide on a tap and a PIN, record the
// decision in the audit chain and hand it to the site.
func Example() {
	dir, err := os.MkdirTemp("", "latch-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := store.Open(filepath.Join(dir, "latch.db"), &store.Options{Location: time.UTC})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	uid := []byte{0x04, 0x52, 0x7A, 0x91, 0x33, 0x6E, 0x80}
	hash, err := store.HashPIN([]byte("482916"), uid, store.DefaultPINParams)
	if err != nil {
		log.Fatal(err)
	}
	if err := s.PutCard(store.Card{UID: uid, HolderID: "ada", HolderName: "Ada Lovelace", PINHash: hash, Doors: []string{"front"}}); err != nil {
		log.Fatal(err)
	}

	now := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	req := store.Request{UID: uid, Door: "front", Mode: store.ModeCardPIN, Now: now, ClockTrusted: true}
	d, err := s.Decide(req) // card stage
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("card:", d.Reason)

	req.PIN = []byte("482916") // PIN stage
	if d, err = s.Decide(req); err != nil {
		log.Fatal(err)
	}
	fmt.Println("pin:", d.Reason, d.HolderName)

	e, err := s.Append(store.Event{Time: now, Clock: store.TimeSynced, Door: "front", Type: store.TypeAccess,
		Reason: d.Reason, UID: fmt.Sprintf("%X", uid), Holder: d.HolderID})
	if err != nil {
		log.Fatal(err)
	}
	pending, _ := s.Pending(100)
	fmt.Println("owed to the site:", len(pending), "entry, seq", e.Seq)
	if err := s.Ack(e.Seq); err != nil {
		log.Fatal(err)
	}
	depth, _ := s.OutboxDepth()
	fmt.Println("after the site's ack:", depth)
	// Output:
	// card: pin_required
	// pin: granted Ada Lovelace
	// owed to the site: 1 entry, seq 1
	// after the site's ack: 0
}

// A site sends allowlist changes as numbered deltas; the door applies
// them in order and reports its state hash, which the site computes from
// its own snapshot.
func ExampleStore_ApplyDelta() {
	dir, err := os.MkdirTemp("", "latch-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := store.Open(filepath.Join(dir, "latch.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	card := store.Card{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, HolderID: "bob", Doors: []string{"*"}}
	err = s.ApplyDelta(store.Delta{Seq: 1, Ops: []store.Op{{Kind: store.OpUpsertCard, Card: &card}}})
	fmt.Println("delta 1:", err)
	err = s.ApplyDelta(store.Delta{Seq: 3, Ops: []store.Op{{Kind: store.OpRevokeHolder, HolderID: "bob"}}})
	fmt.Println("delta 3:", err)

	st, _ := s.SyncState()
	site := store.Snapshot{Seq: 1, Cards: []store.Card{card}}
	fmt.Println("same state as the site:", st.SnapshotHash == store.HashSnapshot(site))
	// Output:
	// delta 1: <nil>
	// delta 3: store: apply delta: delta 3, applied 1 (missing 2..2): allowlist sequence gap
	// same state as the site: true
}
