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

// A large snapshot arrives in chunks that the door stages one at a time,
// in order, and commits once all are in. After a restart Stage says which
// chunk to ask for next.
func ExampleStore_StageChunk() {
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

	// What the site sends: seq, hash and chunk count with every chunk.
	chunks := []store.Snapshot{
		{Cards: []store.Card{{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, HolderID: "bob", Doors: []string{"*"}}}},
		{Holders: []store.Holder{{ID: "bob", Name: "Bob"}}},
		{Revocations: []store.Revocation{{UID: []byte{1, 2, 3, 4}, Reason: "lost"}}},
	}
	whole := store.Snapshot{Seq: 7, Cards: chunks[0].Cards, Holders: chunks[1].Holders, Revocations: chunks[2].Revocations}
	hash := store.HashSnapshot(whole)

	if err := s.BeginSnapshot(7, hash, len(chunks)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("chunk 0:", s.StageChunk(7, 0, chunks[0]))
	fmt.Println("chunk 2:", s.StageChunk(7, 2, chunks[2]))
	st, _, _ := s.Stage()
	for c := st.Next; c < st.Chunks; c++ {
		if err := s.StageChunk(7, c, chunks[c]); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("commit:", s.CommitSnapshot(7))
	sync, _ := s.SyncState()
	fmt.Println("applied:", sync.AppliedSeq, sync.SnapshotHash == hash)
	// Output:
	// chunk 0: <nil>
	// chunk 2: store: stage chunk 2 of snapshot 7: snapshot chunk out of order: chunk 2, but chunk 1 is next
	// commit: <nil>
	// applied: 7 true
}
