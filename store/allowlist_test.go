package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestPutCardAndHolderIndex(t *testing.T) {
	s := openTest(t, nil)
	c := sampleCard(t)
	mustDo(t, s.PutCard(c))
	got, err := s.Card(c.UID)
	mustDo(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Errorf("Card: %+v, want %+v", got, c)
	}
	enrol(t, s, uidBob, "ada", "", nil)
	uids, err := s.CardsOf("ada")
	mustDo(t, err)
	if len(uids) != 2 {
		t.Errorf("ada has %d cards, want 2", len(uids))
	}
	// Moving a card to another holder moves it in the index.
	enrol(t, s, uidBob, "bob", "", nil)
	if uids, _ := s.CardsOf("ada"); len(uids) != 1 {
		t.Errorf("after moving a card ada has %d cards, want 1", len(uids))
	}
	if uids, _ := s.CardsOf("bob"); len(uids) != 1 || !sameBytes(uids[0], uidBob) {
		t.Errorf("bob's cards: %X", uids)
	}
	// A holder id that is a prefix of another does not see its cards.
	enrol(t, s, uidCleo, "bo", "", nil)
	if uids, _ := s.CardsOf("bo"); len(uids) != 1 || !sameBytes(uids[0], uidCleo) {
		t.Errorf("bo's cards: %X", uids)
	}
	mustDo(t, s.DeleteCard(uidBob))
	mustDo(t, s.DeleteCard(uidBob)) // absent: fine
	if _, err := s.Card(uidBob); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted card: %v", err)
	}
	if err := s.PutCard(Card{UID: []byte{1, 2, 3}, HolderID: "x"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad card accepted: %v", err)
	}
}

func TestHolders(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada"}))
	enrol(t, s, uidAda, "ada", "", nil)
	if err := s.DeleteHolder("ada"); !errors.Is(err, ErrInvalidOp) {
		t.Errorf("deleting a holder with cards: %v, want ErrInvalidOp", err)
	}
	mustDo(t, s.DeleteCard(uidAda))
	mustDo(t, s.DeleteHolder("ada"))
	if _, err := s.Holder("ada"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted holder: %v", err)
	}
	if err := s.PutHolder(Holder{ID: "x", DuressPINHash: "1234"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("duress PIN in clear accepted: %v", err)
	}
}

func TestRevocationWinsAndReinstate(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidAda, "ada", "", nil)
	enrol(t, s, uidBob, "ada", "", nil)
	mustDo(t, s.Revoke(Revocation{HolderID: "ada", Reason: "left"}))
	for _, uid := range [][]byte{uidAda, uidBob} {
		expect(t, "revoked holder", decide(t, s, cardReq(uid, ModeCardOnly, testEpoch)), Denied, ReasonRevoked)
	}
	// Re-enrolling the card does not lift the revocation.
	enrol(t, s, uidAda, "ada", "", nil)
	expect(t, "re-enrolled", decide(t, s, cardReq(uidAda, ModeCardOnly, testEpoch)), Denied, ReasonRevoked)
	mustDo(t, s.Revoke(Revocation{UID: uidBob, Reason: "lost"}))
	mustDo(t, s.Reinstate(Revocation{HolderID: "ada"}))
	expect(t, "holder reinstated", decide(t, s, cardReq(uidAda, ModeCardOnly, testEpoch)), Granted, ReasonGranted)
	expect(t, "card still revoked", decide(t, s, cardReq(uidBob, ModeCardOnly, testEpoch)), Denied, ReasonRevoked)
	for _, bad := range []Revocation{{}, {UID: uidAda, HolderID: "ada"}, {UID: []byte{1}}} {
		if err := s.Revoke(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Revoke(%+v): %v", bad, err)
		}
	}
}

func TestApplyDeltaSequence(t *testing.T) {
	s := openTest(t, nil)
	card := &Card{UID: uidAda, HolderID: "ada", Doors: []string{"front"}}
	mustDo(t, s.ApplyDelta(Delta{Seq: 1, Ops: []Op{{Kind: OpUpsertCard, Card: card}}}))
	err := s.ApplyDelta(Delta{Seq: 3, Ops: []Op{{Kind: OpDeleteCard, UID: uidAda}}})
	if !errors.Is(err, ErrSeqGap) {
		t.Errorf("delta 3 after 1: %v, want ErrSeqGap", err)
	}
	for _, seq := range []uint64{0, 1} {
		if err := s.ApplyDelta(Delta{Seq: seq, Ops: []Op{{Kind: OpDeleteCard, UID: uidAda}}}); !errors.Is(err, ErrSeqOld) {
			t.Errorf("delta %d after 1: %v, want ErrSeqOld", seq, err)
		}
	}
	if _, err := s.Card(uidAda); err != nil {
		t.Errorf("a refused delta changed the allowlist: %v", err)
	}
	mustDo(t, s.ApplyDelta(Delta{Seq: 2}))
	st, err := s.SyncState()
	mustDo(t, err)
	if st.AppliedSeq != 2 {
		t.Errorf("applied %d, want 2", st.AppliedSeq)
	}
}

func TestApplyDeltaAllOrNothing(t *testing.T) {
	s := openTest(t, nil)
	before, err := s.SyncState()
	mustDo(t, err)
	good := Op{Kind: OpUpsertCard, Card: &Card{UID: uidAda, HolderID: "ada", Doors: []string{"front"}}}
	revoke := Op{Kind: OpRevokeCard, UID: uidBob, Reason: "lost"}
	for name, bad := range map[string]Op{
		"unknown kind":          {Kind: "grant_everyone"},
		"upsert without card":   {Kind: OpUpsertCard},
		"card with bad uid":     {Kind: OpUpsertCard, Card: &Card{UID: []byte{1}, HolderID: "x"}},
		"revoke with a card":    {Kind: OpRevokeCard, UID: uidBob, Card: &Card{}},
		"revoke holder no id":   {Kind: OpRevokeHolder},
		"delete card 3 bytes":   {Kind: OpDeleteCard, UID: []byte{1, 2, 3}},
		"holder with bad hash":  {Kind: OpUpsertHolder, Holder: &Holder{ID: "h", DuressPINHash: "x"}},
		"delete busy holder":    {Kind: OpDeleteHolder, HolderID: "ada"},
		"reinstate both fields": {Kind: OpReinstateCard, UID: uidBob, HolderID: "ada"},
	} {
		err := s.ApplyDelta(Delta{Seq: 1, Ops: []Op{good, revoke, bad}})
		var oe *OpError
		if !errors.Is(err, ErrInvalidOp) || !errors.As(err, &oe) || oe.Index != 2 || oe.Seq != 1 {
			t.Errorf("%s: %v, want an OpError for op 2 wrapping ErrInvalidOp", name, err)
		}
		after, err := s.SyncState()
		mustDo(t, err)
		if after != before {
			t.Errorf("%s: sync state changed by a refused delta: %+v", name, after)
		}
		if _, err := s.Card(uidAda); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the card from op 0 was applied: %v", name, err)
		}
		expect(t, name, decide(t, s, cardReq(uidBob, ModeCardOnly, testEpoch)), Denied, ReasonUnknownCard)
	}
}

func TestApplySnapshot(t *testing.T) {
	s := openTest(t, nil)
	enrol(t, s, uidCleo, "cleo", "", nil)
	mustDo(t, s.SetLockdown("front", false))
	sn := Snapshot{
		Seq:         10,
		Cards:       []Card{sampleCard(t), {UID: uidBob, HolderID: "bob", Doors: []string{"*"}}},
		Holders:     []Holder{{ID: "ada", Name: "Ada"}},
		Revocations: []Revocation{{UID: []byte{1, 2, 3, 4}, Reason: "lost"}, {HolderID: "eve"}},
	}
	mustDo(t, s.ApplySnapshot(sn))
	if _, err := s.Card(uidCleo); !errors.Is(err, ErrNotFound) {
		t.Errorf("a card absent from the snapshot survived: %v", err)
	}
	got, err := s.Snapshot()
	mustDo(t, err)
	if HashSnapshot(got) != HashSnapshot(sn) || got.Seq != 10 || len(got.Cards) != 2 {
		t.Errorf("snapshot read back differs: %+v", got)
	}
	st, err := s.SyncState()
	mustDo(t, err)
	if st.SnapshotHash != HashSnapshot(sn) || st.AppliedSeq != 10 {
		t.Errorf("sync state %+v, want hash %s", st, HashSnapshot(sn))
	}
	if err := s.ApplySnapshot(Snapshot{Seq: 10}); !errors.Is(err, ErrSeqOld) {
		t.Errorf("same seq again: %v, want ErrSeqOld", err)
	}
	dup := Snapshot{Seq: 11, Cards: []Card{{UID: uidBob, HolderID: "a"}, {UID: uidBob, HolderID: "b"}}}
	if err := s.ApplySnapshot(dup); !errors.Is(err, ErrInvalidOp) {
		t.Errorf("duplicate card: %v, want ErrInvalidOp", err)
	}
	if st2, _ := s.SyncState(); st2 != st {
		t.Errorf("a refused snapshot changed the state: %+v", st2)
	}
	// Deltas continue from the snapshot's sequence.
	mustDo(t, s.ApplyDelta(Delta{Seq: 11, Ops: []Op{{Kind: OpRevokeHolder, HolderID: "bob"}}}))
	expect(t, "bob revoked by delta", decide(t, s, cardReq(uidBob, ModeCardOnly, testEpoch)), Denied, ReasonRevoked)
}

// TestStateHashFollowsDeltas applies random deltas and checks after each
// that the door's state hash is what the site computes from its own model
// of the allowlist, with HashSnapshot.
func TestStateHashFollowsDeltas(t *testing.T) {
	s := openTest(t, nil)
	rng := rand.New(rand.NewPCG(11, 12))
	cards := map[string]Card{}
	holders := map[string]Holder{}
	revs := map[string]Revocation{}
	uid := func() []byte { return []byte{0x04, 0, 0, byte(rng.IntN(12))} }
	hid := func() string { return fmt.Sprintf("h%d", rng.IntN(4)) }
	for seq := uint64(1); seq <= 60; seq++ {
		var ops []Op
		for range 1 + rng.IntN(5) {
			switch rng.IntN(7) {
			case 0, 1:
				c := Card{UID: uid(), HolderID: hid(), Doors: []string{fmt.Sprintf("d%d", rng.IntN(3))},
					ValidUntil: time.Date(2027, 1, 1, rng.IntN(24), 0, 0, 0, time.UTC)}
				ops = append(ops, Op{Kind: OpUpsertCard, Card: &c})
				cards[string(c.UID)] = c
			case 2:
				u := uid()
				ops = append(ops, Op{Kind: OpDeleteCard, UID: u})
				delete(cards, string(u))
			case 3:
				h := Holder{ID: hid(), Name: fmt.Sprintf("n%d", rng.IntN(100))}
				ops = append(ops, Op{Kind: OpUpsertHolder, Holder: &h})
				holders[h.ID] = h
			case 4:
				r := Revocation{UID: uid(), Reason: fmt.Sprintf("r%d", rng.IntN(3))}
				ops = append(ops, Op{Kind: OpRevokeCard, UID: r.UID, Reason: r.Reason})
				revs["c"+string(r.UID)] = r
			case 5:
				r := Revocation{HolderID: hid(), Reason: "left"}
				ops = append(ops, Op{Kind: OpRevokeHolder, HolderID: r.HolderID, Reason: r.Reason})
				revs["h"+r.HolderID] = r
			case 6:
				if rng.IntN(2) == 0 {
					u := uid()
					ops = append(ops, Op{Kind: OpReinstateCard, UID: u})
					delete(revs, "c"+string(u))
				} else {
					h := hid()
					ops = append(ops, Op{Kind: OpReinstateHolder, HolderID: h})
					delete(revs, "h"+h)
				}
			}
		}
		mustDo(t, s.ApplyDelta(Delta{Seq: seq, Ops: ops}))
		site := Snapshot{Seq: seq}
		for _, c := range cards {
			site.Cards = append(site.Cards, c)
		}
		for _, h := range holders {
			site.Holders = append(site.Holders, h)
		}
		for _, r := range revs {
			site.Revocations = append(site.Revocations, r)
		}
		st, err := s.SyncState()
		mustDo(t, err)
		if st.SnapshotHash != HashSnapshot(site) {
			t.Fatalf("after delta %d the door's hash %s differs from the site's %s", seq, st.SnapshotHash, HashSnapshot(site))
		}
	}
	// The hash does not depend on the order of entries, and a snapshot
	// with the same content applied to another door gives the same hash.
	sn, err := s.Snapshot()
	mustDo(t, err)
	rev := sn
	rev.Cards = slices.Clone(sn.Cards)
	slices.Reverse(rev.Cards)
	if HashSnapshot(rev) != HashSnapshot(sn) {
		t.Error("the state hash depends on entry order")
	}
	other := openTest(t, nil)
	mustDo(t, other.ApplySnapshot(rev))
	st1, _ := s.SyncState()
	st2, _ := other.SyncState()
	if st1.SnapshotHash != st2.SnapshotHash {
		t.Error("a door that took the snapshot has another hash than one that took the deltas")
	}
	// Any change shows.
	changed := sn
	changed.Revocations = append(slices.Clone(sn.Revocations), Revocation{HolderID: "zz"})
	if HashSnapshot(changed) == HashSnapshot(sn) {
		t.Error("adding a revocation left the hash unchanged")
	}
	changed = sn
	changed.Seq++
	if HashSnapshot(changed) == HashSnapshot(sn) {
		t.Error("the hash does not cover the sequence")
	}
}

// A snapshot hashed in parts, in any order, has HashSnapshot's hash.
func TestSnapshotHasher(t *testing.T) {
	pinHash, err := HashPIN([]byte("246810"), nil, fastPIN)
	if err != nil {
		t.Fatal(err)
	}
	const chunks, per = 6, 50
	var whole Snapshot
	var h SnapshotHasher
	for _, c := range []int{3, 0, 5, 1, 4, 2} {
		part := snapshotChunk(9, c, chunks, per, pinHash, true)
		h.Add(part)
		whole.Cards = append(whole.Cards, part.Cards...)
		whole.Holders = append(whole.Holders, part.Holders...)
		whole.Revocations = append(whole.Revocations, part.Revocations...)
	}
	whole.Seq = 9
	if got, want := h.Hash(9), HashSnapshot(whole); got != want {
		t.Fatalf("hashed in parts %s, whole %s", got, want)
	}
	if h.Hash(10) == HashSnapshot(whole) {
		t.Fatal("the seq is not in the hash")
	}
}

// TestCardNameLeftToHolder: a card whose holder name is its holder
// record's leaves it out, and keeps it when the holder is renamed; the
// state hash follows the canonical entries throughout.
func TestCardNameLeftToHolder(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada Lovelace"}))
	c := Card{UID: uidAda, HolderID: "ada", HolderName: "Ada Lovelace", Doors: []string{"*"}}
	mustDo(t, s.PutCard(c))
	other := Card{UID: uidBob, HolderID: "ada", HolderName: "A. Lovelace", Doors: []string{"*"}}
	mustDo(t, s.PutCard(other))
	mustDo(t, s.view(func(tx *bolt.Tx) error {
		if r, err := parseCardRec(uidAda, tx.Bucket(bucketCards).Get(uidAda)); err != nil || r.flags&recHolderName == 0 {
			t.Errorf("card with the holder's name: flags %#x, %v; want the name left out", r.flags, err)
		}
		return nil
	}))
	mustDo(t, s.PutHolder(Holder{ID: "ada", Name: "Ada King"}))
	for _, want := range []Card{c, other} {
		got, err := s.Card(want.UID)
		if err != nil || got.HolderName != want.HolderName {
			t.Errorf("card %X after the holder's rename: name %q, %v; want %q", want.UID, got.HolderName, err, want.HolderName)
		}
	}
	d, err := s.Decide(Request{UID: uidAda, Door: "front", Mode: ModeCardOnly, Now: testEpoch, ClockTrusted: true})
	if err != nil || d.HolderName != "Ada King" {
		t.Errorf("Decide after the rename: %+v, %v; want the holder record's name", d, err)
	}
	sn, err := s.Snapshot()
	mustDo(t, err)
	st, err := s.SyncState()
	mustDo(t, err)
	if st.SnapshotHash != HashSnapshot(sn) {
		t.Error("state hash does not match the snapshot after the rename")
	}
	mustDo(t, s.Check())
	// Deleting the holder is refused while it has cards, so a card never
	// leaves its name to a missing record.
	if err := s.DeleteHolder("ada"); !errors.Is(err, ErrInvalidOp) {
		t.Errorf("DeleteHolder with cards: %v", err)
	}
}
