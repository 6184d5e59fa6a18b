package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshotChunk is chunk c of a test snapshot at seq made of chunks chunks
// of per cards each (per a multiple of 10; chunks*per not a multiple of
// 7919): a holder for every 10 cards, two revocations of cards never
// enrolled and, every fifth chunk, of a holder. A tenth of the cards have
// schedules and validity dates. The cards of a holder are not next to each
// other by UID. With scattered the cards are spread over the chunks, not
// in UID order; else each chunk holds the next cards by UID, as a site
// sends them when it reads its own cards in key order. Either way they are
// shuffled within the chunk. The holders' names carry seq, so each seq has
// its own state hash.
func snapshotChunk(seq uint64, c, chunks, per int, pinHash string, scattered bool) Snapshot {
	n := chunks * per
	perm := func(i int) int { return i * 7919 % n }
	part := Snapshot{Seq: seq}
	for i := c * per; i < (c+1)*per; i++ {
		k := i
		if scattered {
			k = perm(i)
		}
		card := Card{UID: fixtureUID(k), HolderID: fmt.Sprintf("holder-%06d", perm(k)/10), HolderName: "Fixture Person",
			PINHash: pinHash, Doors: []string{"front", "staff"}}
		if k%10 == 0 {
			card.ValidFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			card.ValidUntil = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			for d := time.Monday; d <= time.Friday; d++ {
				card.Schedule.Weekly[d] = []Window{{From: 7 * 60, To: 12 * 60}, {From: 13 * 60, To: 19 * 60}}
			}
			card.Schedule.Holidays = []string{"2026-01-01", "2026-12-25"}
		}
		part.Cards = append(part.Cards, card)
		if i%10 == 0 {
			part.Holders = append(part.Holders, Holder{ID: fmt.Sprintf("holder-%06d", i/10), Name: fmt.Sprintf("Holder %d at %d", i/10, seq)})
		}
	}
	for j := range 2 {
		part.Revocations = append(part.Revocations, Revocation{UID: []byte{0x08, byte(c >> 8), byte(c), byte(j)}, Reason: "lost"})
	}
	if c%5 == 0 {
		part.Revocations = append(part.Revocations, Revocation{HolderID: fmt.Sprintf("holder-%06d", c*per/10), Reason: "left"})
	}
	rng := rand.New(rand.NewPCG(seq, uint64(c)))
	rng.Shuffle(len(part.Cards), func(i, j int) { part.Cards[i], part.Cards[j] = part.Cards[j], part.Cards[i] })
	return part
}

// testChunks is a test snapshot at seq in chunks of per cards, and the
// whole of it.
func testChunks(seq uint64, chunks, per int) ([]Snapshot, Snapshot) {
	parts := make([]Snapshot, chunks)
	whole := Snapshot{Seq: seq}
	for c := range parts {
		parts[c] = snapshotChunk(seq, c, chunks, per, "", true)
		whole.Cards = append(whole.Cards, parts[c].Cards...)
		whole.Holders = append(whole.Holders, parts[c].Holders...)
		whole.Revocations = append(whole.Revocations, parts[c].Revocations...)
	}
	return parts, whole
}

// split cuts each kind of entry of sn into k runs, some of them empty when
// sn is small.
func split(sn Snapshot, k int) []Snapshot {
	parts := make([]Snapshot, k)
	for c := range parts {
		cut := func(n int) (int, int) { return c * n / k, (c + 1) * n / k }
		parts[c].Seq = sn.Seq
		i, j := cut(len(sn.Cards))
		parts[c].Cards = sn.Cards[i:j]
		i, j = cut(len(sn.Holders))
		parts[c].Holders = sn.Holders[i:j]
		i, j = cut(len(sn.Revocations))
		parts[c].Revocations = sn.Revocations[i:j]
	}
	return parts
}

// stageAll stages parts as snapshot seq, whose hash is hash, and commits it.
func stageAll(t testing.TB, s *Store, seq uint64, hash string, parts []Snapshot) {
	t.Helper()
	mustDo(t, s.BeginSnapshot(seq, hash, len(parts)))
	for c := range parts {
		mustDo(t, s.StageChunk(seq, c, parts[c]))
	}
	mustDo(t, s.CommitSnapshot(seq))
}

// dumpBucket returns the raw contents of a top-level bucket.
func dumpBucket(t testing.TB, s *Store, name []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	mustDo(t, s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
	}))
	return m
}

// doorWithHistory is a store with cards a snapshot replaces, a lockout
// and a lockdown, which it keeps.
func doorWithHistory(t *testing.T) *Store {
	t.Helper()
	s := openTest(t, nil)
	enrol(t, s, uidCleo, "cleo", "", nil)
	enrol(t, s, uidAda, "ada", adaPIN, nil)
	expect(t, "bad PIN", decide(t, s, pinReq(uidAda, "000000", testEpoch)), Denied, ReasonBadPIN)
	mustDo(t, s.SetLockdown("front", true))
	return s
}

func TestStageSnapshotMatchesApplySnapshot(t *testing.T) {
	gen, whole := testChunks(10, 7, 30)
	small := Snapshot{Seq: 10,
		Cards:       []Card{{UID: uidBob, HolderID: "bob", Doors: []string{"*"}}, {UID: uidAda, HolderID: "ada", Doors: []string{"front"}}},
		Holders:     []Holder{{ID: "ada", Name: "Ada"}},
		Revocations: []Revocation{{UID: []byte{1, 2, 3, 4}, Reason: "lost"}, {HolderID: "eve"}},
	}
	for _, tc := range []struct {
		name  string
		whole Snapshot
		parts []Snapshot
	}{
		{"generated chunks", whole, gen},
		{"all in one chunk", whole, split(whole, 1)},
		{"more chunks than entries", small, split(small, 6)},
		{"empty snapshot", Snapshot{Seq: 10}, split(Snapshot{Seq: 10}, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applied, staged := doorWithHistory(t), doorWithHistory(t)
			lockout := dumpBucket(t, staged, bucketLockout)
			if len(lockout) == 0 {
				t.Fatal("no lockout record to keep")
			}
			mustDo(t, applied.ApplySnapshot(tc.whole))
			stageAll(t, staged, tc.whole.Seq, HashSnapshot(tc.whole), tc.parts)

			// A door that reached the same state by deltas.
			deltas := openTest(t, nil)
			var ops []Op
			for i := range tc.whole.Holders {
				ops = append(ops, Op{Kind: OpUpsertHolder, Holder: &tc.whole.Holders[i]})
			}
			for i := range tc.whole.Cards {
				ops = append(ops, Op{Kind: OpUpsertCard, Card: &tc.whole.Cards[i]})
			}
			for _, r := range tc.whole.Revocations {
				if len(r.UID) > 0 {
					ops = append(ops, Op{Kind: OpRevokeCard, UID: r.UID, Reason: r.Reason})
				} else {
					ops = append(ops, Op{Kind: OpRevokeHolder, HolderID: r.HolderID, Reason: r.Reason})
				}
			}
			for seq := uint64(1); seq < tc.whole.Seq; seq++ {
				mustDo(t, deltas.ApplyDelta(Delta{Seq: seq}))
			}
			mustDo(t, deltas.ApplyDelta(Delta{Seq: tc.whole.Seq, Ops: ops}))

			want := HashSnapshot(tc.whole)
			for name, s := range map[string]*Store{"ApplySnapshot": applied, "staged": staged, "deltas": deltas} {
				st, err := s.SyncState()
				mustDo(t, err)
				if st.AppliedSeq != tc.whole.Seq || st.SnapshotHash != want {
					t.Errorf("%s: sync state %+v, want seq %d hash %s", name, st, tc.whole.Seq, want)
				}
			}
			snA, err := applied.Snapshot()
			mustDo(t, err)
			snS, err := staged.Snapshot()
			mustDo(t, err)
			if !reflect.DeepEqual(snA, snS) {
				t.Error("the staged allowlist reads back differently from the applied one")
			}
			for _, c := range tc.whole.Cards {
				ca, errA := applied.Card(c.UID)
				cs, errS := staged.Card(c.UID)
				if errA != nil || errS != nil || !reflect.DeepEqual(ca, cs) {
					t.Errorf("card %X: applied %+v (%v), staged %+v (%v)", c.UID, ca, errA, cs, errS)
				}
				ua, errA := applied.CardsOf(c.HolderID)
				us, errS := staged.CardsOf(c.HolderID)
				if errA != nil || errS != nil || len(us) == 0 || !reflect.DeepEqual(ua, us) {
					t.Errorf("cards of %q: applied %X (%v), staged %X (%v)", c.HolderID, ua, errA, us, errS)
				}
			}
			for _, h := range tc.whole.Holders {
				ha, errA := applied.Holder(h.ID)
				hs, errS := staged.Holder(h.ID)
				if errA != nil || errS != nil || !reflect.DeepEqual(ha, hs) {
					t.Errorf("holder %q: applied %+v (%v), staged %+v (%v)", h.ID, ha, errA, hs, errS)
				}
			}
			if _, err := staged.Card(uidCleo); !errors.Is(err, ErrNotFound) {
				t.Errorf("a card absent from the snapshot survived the commit: %v", err)
			}
			if got := dumpBucket(t, staged, bucketLockout); !reflect.DeepEqual(got, lockout) {
				t.Error("the commit changed the lockout state")
			}
			if on, err := staged.Lockdown("front"); err != nil || !on {
				t.Errorf("lockdown after the commit: %v, %v; want it kept", on, err)
			}
			if _, ok, err := staged.Stage(); ok || err != nil {
				t.Errorf("stage after the commit: %v, %v; want none", ok, err)
			}
		})
	}
}

func TestStageResumesAfterReopen(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	parts, whole := testChunks(4, 5, 20)
	hash := HashSnapshot(whole)
	mustDo(t, s.BeginSnapshot(4, hash, 5))
	entries := 0
	for c := range 2 {
		mustDo(t, s.StageChunk(4, c, parts[c]))
		entries += len(parts[c].Cards) + len(parts[c].Holders) + len(parts[c].Revocations)
	}
	s = reopen(t, s, opts)
	want := SnapshotStage{Seq: 4, Hash: hash, Chunks: 5, Next: 2, Entries: entries}
	st, ok, err := s.Stage()
	if err != nil || !ok || st != want {
		t.Fatalf("Stage after reopen: %+v, %v, %v; want %+v", st, ok, err, want)
	}
	// The door asks for the snapshot again and carries on where it was.
	mustDo(t, s.BeginSnapshot(4, hash, 5))
	if st, _, _ := s.Stage(); st != want {
		t.Errorf("BeginSnapshot of the staged snapshot changed the stage: %+v", st)
	}
	mustDo(t, s.StageChunk(4, 1, parts[1])) // delivered twice
	for c := 2; c < 5; c++ {
		mustDo(t, s.StageChunk(4, c, parts[c]))
	}
	s = reopen(t, s, opts)
	if st, _, _ := s.Stage(); st.Next != 5 {
		t.Errorf("complete stage after reopen: %+v", st)
	}
	mustDo(t, s.CommitSnapshot(4))
	if st, err := s.SyncState(); err != nil || st.SnapshotHash != hash {
		t.Errorf("sync state after commit: %+v, %v; want hash %s", st, err, hash)
	}
}

func TestBeginSnapshot(t *testing.T) {
	_, whole := testChunks(8, 4, 10)
	hash := HashSnapshot(whole)
	other := HashSnapshot(Snapshot{Seq: 8})
	for _, tc := range []struct {
		name    string
		seq     uint64
		hash    string
		chunks  int
		wantErr error
		want    SnapshotStage // the stage after the call
	}{
		{"the staged snapshot again", 8, hash, 4, nil, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"another hash", 8, other, 4, nil, SnapshotStage{Seq: 8, Hash: other, Chunks: 4}},
		{"another chunk count", 8, hash, 5, nil, SnapshotStage{Seq: 8, Hash: hash, Chunks: 5}},
		{"a newer snapshot", 9, hash, 4, nil, SnapshotStage{Seq: 9, Hash: hash, Chunks: 4}},
		{"the applied seq", 5, hash, 4, ErrSeqOld, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"an older seq", 3, hash, 4, ErrSeqOld, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"upper-case hash", 9, strings.ToUpper(hash), 4, ErrInvalidOp, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"short hash", 9, hash[:62], 4, ErrInvalidOp, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"no hash", 9, "", 4, ErrInvalidOp, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"no chunks", 9, hash, 0, ErrInvalidOp, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
		{"negative chunks", 9, hash, -1, ErrInvalidOp, SnapshotStage{Seq: 8, Hash: hash, Chunks: 4, Next: 2, Entries: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			mustDo(t, s.ApplySnapshot(Snapshot{Seq: 5}))
			parts, _ := testChunks(8, 4, 10)
			mustDo(t, s.BeginSnapshot(8, hash, 4))
			mustDo(t, s.StageChunk(8, 0, parts[0]))
			mustDo(t, s.StageChunk(8, 1, parts[1]))
			before, _, err := s.Stage()
			mustDo(t, err)
			if tc.want.Entries == -1 {
				tc.want.Entries = before.Entries
			}
			err = s.BeginSnapshot(tc.seq, tc.hash, tc.chunks)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("BeginSnapshot: %v, want %v", err, tc.wantErr)
			}
			if got, ok, err := s.Stage(); err != nil || !ok || got != tc.want {
				t.Errorf("stage %+v, %v, %v; want %+v", got, ok, err, tc.want)
			}
		})
	}
}

func TestStageChunk(t *testing.T) {
	const seq = 8
	parts, whole := testChunks(seq, 4, 10)
	with := func(c int, mod func(p *Snapshot)) Snapshot {
		p := parts[c]
		p.Cards, p.Holders, p.Revocations = slices.Clone(p.Cards), slices.Clone(p.Holders), slices.Clone(p.Revocations)
		mod(&p)
		return p
	}
	for _, tc := range []struct {
		name    string
		seq     uint64
		chunk   int
		part    Snapshot
		wantErr error
		wantIn  string // in the error
		next    int    // SnapshotStage.Next after the call
	}{
		{"the next chunk", seq, 2, parts[2], nil, "", 3},
		{"a repeat", seq, 0, parts[0], nil, "", 2},
		{"a repeat, the chunk before", seq, 1, parts[1], nil, "", 2},
		{"a chunk ahead", seq, 3, parts[3], ErrChunkOrder, "chunk 3, but chunk 2 is next", 2},
		{"past the last chunk", seq, 4, parts[3], ErrInvalidOp, "chunk 4 outside 0..3", 2},
		{"negative chunk", seq, -1, parts[3], ErrInvalidOp, "outside", 2},
		{"another snapshot", seq + 1, 2, with(2, func(p *Snapshot) { p.Seq = seq + 1 }), ErrNotFound, "the stage holds snapshot 8", 2},
		{"entries of another snapshot", seq, 2, with(2, func(p *Snapshot) { p.Seq = 9 }), ErrInvalidOp, "snapshot 9", 2},
		{"a card staged by chunk 0", seq, 2, with(2, func(p *Snapshot) { p.Cards = append(p.Cards, parts[0].Cards[3]) }),
			ErrInvalidOp, fmt.Sprintf("card %X appears twice", parts[0].Cards[3].UID), 2},
		{"a holder staged by chunk 1", seq, 2, with(2, func(p *Snapshot) { p.Holders = append(p.Holders, parts[1].Holders[0]) }),
			ErrInvalidOp, fmt.Sprintf("holder %q appears twice", parts[1].Holders[0].ID), 2},
		{"a revocation staged by chunk 0", seq, 2, with(2, func(p *Snapshot) { p.Revocations = append(p.Revocations, parts[0].Revocations[2]) }),
			ErrInvalidOp, "revocation of holder", 2},
		{"a card twice in the chunk", seq, 2, with(2, func(p *Snapshot) { p.Cards = append(p.Cards, p.Cards[0]) }), ErrInvalidOp, "appears twice", 2},
		{"an invalid card", seq, 2, with(2, func(p *Snapshot) { p.Cards[5].UID = []byte{1, 2, 3} }), ErrInvalidOp, "uid has 3 bytes", 2},
		{"an invalid holder", seq, 2, with(2, func(p *Snapshot) { p.Holders[0].ID = "" }), ErrInvalidOp, "holder id is empty", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			mustDo(t, s.BeginSnapshot(seq, HashSnapshot(whole), 4))
			mustDo(t, s.StageChunk(seq, 0, parts[0]))
			mustDo(t, s.StageChunk(seq, 1, parts[1]))
			before, _, err := s.Stage()
			mustDo(t, err)
			commits := s.Commits()
			err = s.StageChunk(tc.seq, tc.chunk, tc.part)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantIn)) {
				t.Fatalf("StageChunk: %v, want %v saying %q", err, tc.wantErr, tc.wantIn)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("store: stage chunk %d of snapshot %d: ", tc.chunk, tc.seq)) {
				t.Errorf("error %q does not say which chunk", err)
			}
			st, _, err := s.Stage()
			mustDo(t, err)
			if st.Next != tc.next {
				t.Errorf("next chunk %d, want %d", st.Next, tc.next)
			}
			if tc.next == 2 && (st != before || s.Commits() != commits) {
				t.Errorf("the stage changed: %+v, was %+v (%d commits)", st, before, s.Commits()-commits)
			}
			// The rest of the snapshot stages and commits as if nothing
			// had happened.
			for c := st.Next; c < 4; c++ {
				mustDo(t, s.StageChunk(seq, c, parts[c]))
			}
			mustDo(t, s.CommitSnapshot(seq))
		})
	}
	t.Run("nothing staged", func(t *testing.T) {
		s := openTest(t, nil)
		if err := s.StageChunk(seq, 0, parts[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("StageChunk without a stage: %v, want ErrNotFound", err)
		}
	})
}

func TestCommitSnapshotRefusals(t *testing.T) {
	const seq = 8
	parts, whole := testChunks(seq, 4, 10)
	hash := HashSnapshot(whole)
	wrong := HashSnapshot(Snapshot{Seq: seq})
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, s *Store)
		wantErr error
		wantIn  []string
		staged  bool // the stage is kept
	}{
		{"wrong hash", func(t *testing.T, s *Store) {
			mustDo(t, s.BeginSnapshot(seq, wrong, 4))
			for c := range parts {
				mustDo(t, s.StageChunk(seq, c, parts[c]))
			}
		}, ErrInvalidOp, []string{hash, wrong, "the stage is dropped"}, false},
		{"chunks missing", func(t *testing.T, s *Store) {
			mustDo(t, s.BeginSnapshot(seq, hash, 4))
			mustDo(t, s.StageChunk(seq, 0, parts[0]))
			mustDo(t, s.StageChunk(seq, 1, parts[1]))
		}, ErrChunkOrder, []string{"2 of 4 chunks staged, chunk 2 is next"}, true},
		{"overtaken by a delta", func(t *testing.T, s *Store) {
			mustDo(t, s.BeginSnapshot(seq, hash, 4))
			for c := range parts {
				mustDo(t, s.StageChunk(seq, c, parts[c]))
			}
			for d := uint64(6); d <= seq; d++ {
				mustDo(t, s.ApplyDelta(Delta{Seq: d}))
			}
		}, ErrSeqOld, []string{"applied 8", "the stage is dropped"}, false},
		{"overtaken by a snapshot", func(t *testing.T, s *Store) {
			mustDo(t, s.BeginSnapshot(seq, hash, 4))
			for c := range parts {
				mustDo(t, s.StageChunk(seq, c, parts[c]))
			}
			mustDo(t, s.ApplySnapshot(Snapshot{Seq: seq + 1}))
		}, ErrSeqOld, []string{"applied 9"}, false},
		{"nothing staged", func(t *testing.T, s *Store) {}, ErrNotFound, []string{"nothing is staged"}, false},
		{"another snapshot staged", func(t *testing.T, s *Store) {
			mustDo(t, s.BeginSnapshot(seq+1, hash, 4))
		}, ErrNotFound, []string{"the stage holds snapshot 9"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			live, liveWhole := testChunks(5, 2, 10)
			stageAll(t, s, 5, HashSnapshot(liveWhole), live)
			tc.prepare(t, s)
			beforeSn, err := s.Snapshot()
			mustDo(t, err)
			beforeSt, err := s.SyncState()
			mustDo(t, err)
			err = s.CommitSnapshot(seq)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CommitSnapshot: %v, want %v", err, tc.wantErr)
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if _, ok, err := s.Stage(); ok != tc.staged || err != nil {
				t.Errorf("after the refusal the stage is there: %v (%v), want %v", ok, err, tc.staged)
			}
			afterSn, err := s.Snapshot()
			mustDo(t, err)
			afterSt, err := s.SyncState()
			mustDo(t, err)
			if !reflect.DeepEqual(afterSn, beforeSn) || afterSt != beforeSt {
				t.Error("a refused commit changed the live allowlist")
			}
		})
	}
}

func TestStageChunkSeqOvertaken(t *testing.T) {
	s := openTest(t, nil)
	parts, whole := testChunks(3, 2, 10)
	mustDo(t, s.BeginSnapshot(3, HashSnapshot(whole), 2))
	mustDo(t, s.StageChunk(3, 0, parts[0]))
	mustDo(t, s.ApplySnapshot(Snapshot{Seq: 3}))
	err := s.StageChunk(3, 1, parts[1])
	if !errors.Is(err, ErrSeqOld) || !strings.Contains(err.Error(), "the stage is dropped") {
		t.Errorf("StageChunk of a snapshot no longer new: %v, want ErrSeqOld and the stage dropped", err)
	}
	if _, ok, err := s.Stage(); ok || err != nil {
		t.Errorf("stage kept: %v, %v", ok, err)
	}
}

// TestStageCloseBeforeCommit stops the door with every chunk staged but
// the snapshot not committed: the live allowlist is what it was, and the
// commit happens after the restart.
func TestStageCloseBeforeCommit(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	enrol(t, s, uidCleo, "cleo", "", nil)
	mustDo(t, s.ApplyDelta(Delta{Seq: 1, Ops: []Op{{Kind: OpRevokeCard, UID: uidBob, Reason: "lost"}}}))
	before, err := s.Snapshot()
	mustDo(t, err)
	beforeSt, err := s.SyncState()
	mustDo(t, err)
	parts, whole := testChunks(2, 3, 20)
	mustDo(t, s.BeginSnapshot(2, HashSnapshot(whole), 3))
	for c := range parts {
		mustDo(t, s.StageChunk(2, c, parts[c]))
		if got, _ := s.Snapshot(); !reflect.DeepEqual(got, before) {
			t.Fatalf("staging chunk %d changed the live allowlist", c)
		}
	}
	s = reopen(t, s, opts)
	got, err := s.Snapshot()
	mustDo(t, err)
	gotSt, err := s.SyncState()
	mustDo(t, err)
	if !reflect.DeepEqual(got, before) || gotSt != beforeSt {
		t.Fatal("the live allowlist changed across the restart")
	}
	expect(t, "enrolled card before the commit", decide(t, s, cardReq(uidCleo, ModeCardOnly, testEpoch)), Granted, ReasonGranted)
	mustDo(t, s.CommitSnapshot(2))
	expect(t, "card gone after the commit", decide(t, s, cardReq(uidCleo, ModeCardOnly, testEpoch)), Denied, ReasonUnknownCard)
	if st, _ := s.SyncState(); st.SnapshotHash != HashSnapshot(whole) {
		t.Errorf("hash after commit %s, want %s", st.SnapshotHash, HashSnapshot(whole))
	}
}

// TestDamagedStage damages the stage in a closed file. With the check
// skipped at Open, Stage reports the damage and DropStage clears it; with
// the check, at Open or in the background, the store drops the stage
// itself, with a warning, and the door keeps working.
func TestDamagedStage(t *testing.T) {
	parts, whole := testChunks(6, 3, 10)
	hash := HashSnapshot(whole)
	reseal := func(mod func(sg *stage)) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketStage).Bucket(bucketMeta)
			sg, err := decodeStage(meta.Get(keyProgress))
			if err != nil {
				return err
			}
			mod(&sg)
			return meta.Put(keyProgress, encodeStage(&sg))
		}
	}
	for _, tc := range []struct {
		name      string
		damage    func(tx *bolt.Tx) error
		stageSays string // in the error from Stage; "" when only the full check sees it
		checkSays string // in the error from Check
	}{
		{"progress checksum", func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketStage).Bucket(bucketMeta)
			v := bytes.Clone(meta.Get(keyProgress))
			v[5] ^= 1
			return meta.Put(keyProgress, v)
		}, "record checksum", "record checksum"},
		{"no progress record", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketStage).Bucket(bucketMeta).Delete(keyProgress)
		}, "no progress record", "no progress record"},
		{"next past the chunks", reseal(func(sg *stage) { sg.Next = 7 }),
			"next chunk 7 beyond its 3 chunks", "next chunk 7 beyond its 3 chunks"},
		{"no cards bucket", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketStage).DeleteBucket(bucketCards)
		}, "no cards bucket", "no cards bucket"},
		{"a staged card damaged", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketStage).Bucket(bucketCards)
			k, v := b.Cursor().First()
			bad := bytes.Clone(v)
			bad[len(bad)-1] ^= 1
			return b.Put(bytes.Clone(k), bad)
		}, "", "record checksum"},
		{"sum does not match", reseal(func(sg *stage) { sg.sum[0]++ }),
			"", "do not match the staged state sum"},
		{"entry count does not match", reseal(func(sg *stage) { sg.Entries++ }),
			"", "progress record says"},
		{"key count does not match", reseal(func(sg *stage) { sg.keys-- }),
			"", "cards staged, the progress record says"},
		{"keys merged before the last chunk", reseal(func(sg *stage) { sg.indexed = 1 }),
			"holder index keys merged with chunk 2 of 3 next", "holder index keys merged with chunk 2 of 3 next"},
		{"a stage of an older build", func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketStage).Bucket(bucketMeta)
			_, body, err := unseal(meta.Get(keyProgress))
			if err != nil {
				return err
			}
			return meta.Put(keyProgress, seal(1, body[:len(body)-16]))
		}, "record version 1, want 2", "record version 1, want 2"},
		{"a run damaged", func(tx *bolt.Tx) error {
			runs := tx.Bucket(bucketStage).Bucket(bucketRuns)
			bad := bytes.Clone(runs.Get(be64(1)))
			bad[7] ^= 1
			return runs.Put(be64(1), bad)
		}, "", "index run of chunk 1: damaged database: record checksum"},
		{"a run missing", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketStage).Bucket(bucketRuns).Delete(be64(0))
		}, "", "the index runs hold 10 keys, the progress record says 20"},
		{"a run out of order", func(tx *bolt.Tx) error {
			runs := tx.Bucket(bucketStage).Bucket(bucketRuns)
			_, body, err := unseal(runs.Get(be64(0)))
			if err != nil {
				return err
			}
			var keys [][]byte
			r := runReader{d: decoder{b: body}}
			for r.next() {
				keys = append(keys, r.key)
			}
			keys[3], keys[4] = keys[4], keys[3]
			return runs.Put(be64(0), encodeRun(keys))
		}, "", "out of order"},
		{"a run of another card", func(tx *bolt.Tx) error {
			runs := tx.Bucket(bucketStage).Bucket(bucketRuns)
			_, body, err := unseal(runs.Get(be64(0)))
			if err != nil {
				return err
			}
			var keys [][]byte
			r := runReader{d: decoder{b: body}}
			for r.next() {
				keys = append(keys, bytes.Clone(r.key))
			}
			keys[len(keys)-1][len(keys[len(keys)-1])-1] ^= 1
			return runs.Put(be64(0), encodeRun(keys))
		}, "", "the index runs do not hold the keys of the staged cards"},
		{"no runs bucket", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketStage).DeleteBucket(bucketRuns)
		}, "no runs bucket", "no runs bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			enrol(t, s, uidCleo, "cleo", "", nil)
			mustDo(t, s.BeginSnapshot(6, hash, 3))
			mustDo(t, s.StageChunk(6, 0, parts[0]))
			mustDo(t, s.StageChunk(6, 1, parts[1]))
			mustDo(t, s.Close())
			rawUpdate(t, s.Path(), tc.damage)

			path := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, s.Path(), path)

			// Check skipped: the damage is reported and can be dropped.
			s2, err := Open(s.Path(), &Options{PINParams: fastPIN, SkipCheck: true})
			mustDo(t, err)
			_, ok, err := s2.Stage()
			if tc.stageSays != "" {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.stageSays) || ok {
					t.Errorf("Stage: %v, %v; want ErrCorrupt saying %q", ok, err, tc.stageSays)
				}
				if err := s2.StageChunk(6, 2, parts[2]); !errors.Is(err, ErrCorrupt) {
					t.Errorf("StageChunk on a damaged stage: %v, want ErrCorrupt", err)
				}
				if err := s2.CommitSnapshot(6); !errors.Is(err, ErrCorrupt) {
					t.Errorf("CommitSnapshot on a damaged stage: %v, want ErrCorrupt", err)
				}
			}
			if err := s2.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "snapshot stage") || !strings.Contains(err.Error(), tc.checkSays) {
				t.Errorf("Check: %v; want ErrCorrupt about the snapshot stage saying %q", err, tc.checkSays)
			}
			mustDo(t, s2.DropStage())
			if _, ok, err := s2.Stage(); ok || err != nil {
				t.Errorf("Stage after DropStage: %v, %v", ok, err)
			}
			mustDo(t, s2.Check())
			mustDo(t, s2.Close())

			// Checked at Open or in the background: the stage goes, with
			// a warning; the live allowlist stays and a new transfer can
			// start.
			for _, atOpen := range []bool{true, false} {
				copyPath := filepath.Join(t.TempDir(), "copy.db")
				copyFile(t, path, copyPath)
				var log strings.Builder
				var mu sync.Mutex
				opts := &Options{PINParams: fastPIN, CheckAtOpen: atOpen, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &log, mu: &mu}, nil))}
				s3 := openTestAt(t, copyPath, opts)
				<-s3.CheckDone()
				if err := s3.Fault(); err != nil {
					t.Errorf("a damaged stage made a fault: %v", err)
				}
				mu.Lock()
				logged := log.String()
				mu.Unlock()
				if !strings.Contains(logged, "dropping a damaged snapshot stage") || !strings.Contains(logged, tc.checkSays) {
					t.Errorf("at Open %v: logged %q; want a warning that the damaged stage is dropped", atOpen, logged)
				}
				if _, ok, err := s3.Stage(); ok || err != nil {
					t.Errorf("at Open %v: Stage after the check: %v, %v; want none", atOpen, ok, err)
				}
				expect(t, "live card", decide(t, s3, cardReq(uidCleo, ModeCardOnly, testEpoch)), Granted, ReasonGranted)
				stageAll(t, s3, 6, hash, parts)
			}
		})
	}
}

// stageIndexState returns the index progress of the stage: keys merged
// into the staged holder index, and keys in all.
func stageIndexState(t testing.TB, s *Store) (indexed, keys int) {
	t.Helper()
	mustDo(t, s.view(func(tx *bolt.Tx) error {
		sg, err := readStage(tx)
		if err == nil && sg == nil {
			err = errors.New("nothing is staged")
		}
		if err == nil {
			indexed, keys = sg.indexed, sg.keys
		}
		return err
	}))
	return indexed, keys
}

// TestStageIndexResumes stops a commit while it builds the staged holder
// index, a few batches in. The stage keeps what was merged, passes the
// check across a restart, stays out of the live allowlist, and the next
// commit carries on from there to the same result as ApplySnapshot.
func TestStageIndexResumes(t *testing.T) {
	opts := testOptions()
	parts, whole := testChunks(7, 5, 40)
	hash := HashSnapshot(whole)
	applied := openTest(t, nil)
	mustDo(t, applied.ApplySnapshot(whole))

	s := openTest(t, opts)
	enrol(t, s, uidCleo, "cleo", "", nil)
	before, err := s.Snapshot()
	mustDo(t, err)
	mustDo(t, s.BeginSnapshot(7, hash, len(parts)))
	for c := range parts {
		mustDo(t, s.StageChunk(7, c, parts[c]))
	}
	const batch = 17
	errStop := errors.New("stopped")
	for stop := 1; stop <= 3; stop++ { // stopped after 1 batch, then 2 more, then 3 more
		from, keys := stageIndexState(t, s)
		s.indexBatch = batch
		batches := 0
		s.indexHook = func(indexed, total int) error {
			batches++
			if indexed != from+batches*batch || total != keys {
				t.Errorf("batch %d: %d of %d keys merged, want %d of %d", batches, indexed, total, from+batches*batch, keys)
			}
			if batches == stop {
				return errStop
			}
			return nil
		}
		if err := s.CommitSnapshot(7); !errors.Is(err, errStop) {
			t.Fatalf("CommitSnapshot stopped by the hook: %v", err)
		}
		mustDo(t, s.Check())
		s = reopen(t, s, opts) // checked at Open: a damaged stage would be dropped
		if got, _ := stageIndexState(t, s); got != from+stop*batch {
			t.Fatalf("after the restart %d keys merged, want %d", got, from+stop*batch)
		}
		if got, err := s.Snapshot(); err != nil || !reflect.DeepEqual(got, before) {
			t.Fatalf("the live allowlist changed while the index was built (%v)", err)
		}
		// A repeated chunk or BeginSnapshot of the same snapshot keeps it.
		mustDo(t, s.StageChunk(7, 2, parts[2]))
		mustDo(t, s.BeginSnapshot(7, hash, len(parts)))
		if got, _ := stageIndexState(t, s); got != from+stop*batch {
			t.Fatalf("a repeat changed the index progress: %d keys merged, want %d", got, from+stop*batch)
		}
		if st, ok, err := s.Stage(); err != nil || !ok || st.Next != len(parts) {
			t.Fatalf("stage %+v, %v, %v", st, ok, err)
		}
	}
	from, keys := stageIndexState(t, s)
	if keys != len(whole.Cards) {
		t.Fatalf("%d index keys staged for %d cards", keys, len(whole.Cards))
	}
	s.indexBatch = batch
	batches := 0
	s.indexHook = func(int, int) error { batches++; return nil }
	mustDo(t, s.CommitSnapshot(7))
	if want := (keys - from + batch - 1) / batch; batches != want {
		t.Errorf("the resumed commit merged in %d batches, want %d", batches, want)
	}
	if _, ok, err := s.Stage(); ok || err != nil {
		t.Errorf("stage after the commit: %v, %v", ok, err)
	}
	for _, name := range allowlistBuckets() {
		if got, want := dumpBucket(t, s, name), dumpBucket(t, applied, name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s after the resumed commit differs from ApplySnapshot's (%d entries, want %d)", name, len(got), len(want))
		}
	}
	if st, err := s.SyncState(); err != nil || st.AppliedSeq != 7 || st.SnapshotHash != hash {
		t.Errorf("sync state %+v, %v", st, err)
	}
}

// TestDamagedStageIndex damages a stage whose holder index is half built.
func TestDamagedStageIndex(t *testing.T) {
	parts, whole := testChunks(6, 3, 20)
	hash := HashSnapshot(whole)
	errStop := errors.New("stopped")
	for _, tc := range []struct {
		name   string
		damage func(tx *bolt.Tx) error
		says   string
	}{
		{"an index entry missing", func(tx *bolt.Tx) error {
			idx := tx.Bucket(bucketStage).Bucket(bucketHolderCards)
			k, _ := idx.Cursor().First()
			return idx.Delete(bytes.Clone(k))
		}, "is missing from the holder index"},
		{"an index entry too many", func(tx *bolt.Tx) error {
			idx := tx.Bucket(bucketStage).Bucket(bucketHolderCards)
			k, _ := idx.Cursor().First()
			return idx.Put(append(bytes.Clone(k[:len(k)-1]), k[len(k)-1]^0x80), nil)
		}, "the holder index has"},
		{"an index entry past the merged keys", func(tx *bolt.Tx) error {
			idx := tx.Bucket(bucketStage).Bucket(bucketHolderCards)
			return idx.Put([]byte{0xff, 1, 2, 3, 4}, nil)
		}, "is missing from the holder index"},
		{"merged count does not match", func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketStage).Bucket(bucketMeta)
			sg, err := decodeStage(meta.Get(keyProgress))
			if err != nil {
				return err
			}
			sg.indexed--
			return meta.Put(keyProgress, encodeStage(&sg))
		}, "the progress record says"},
		{"a run damaged", func(tx *bolt.Tx) error {
			runs := tx.Bucket(bucketStage).Bucket(bucketRuns)
			bad := bytes.Clone(runs.Get(be64(2)))
			bad[len(bad)-1] ^= 1
			return runs.Put(be64(2), bad)
		}, "record checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, nil)
			mustDo(t, s.BeginSnapshot(6, hash, len(parts)))
			for c := range parts {
				mustDo(t, s.StageChunk(6, c, parts[c]))
			}
			s.indexBatch = 25
			s.indexHook = func(int, int) error { return errStop }
			if err := s.CommitSnapshot(6); !errors.Is(err, errStop) {
				t.Fatalf("CommitSnapshot: %v", err)
			}
			mustDo(t, s.Check())
			mustDo(t, s.Close())
			rawUpdate(t, s.Path(), tc.damage)
			s2, err := Open(s.Path(), &Options{PINParams: fastPIN, SkipCheck: true})
			mustDo(t, err)
			if err := s2.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "snapshot stage") || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Check: %v; want ErrCorrupt about the snapshot stage saying %q", err, tc.says)
			}
			mustDo(t, s2.Close())
			copyPath := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, s.Path(), copyPath)
			s3 := openTestAt(t, s.Path(), &Options{PINParams: fastPIN, CheckAtOpen: true}) // drops the stage
			if _, ok, err := s3.Stage(); ok || err != nil {
				t.Errorf("Stage after Open: %v, %v; want none", ok, err)
			}
			stageAll(t, s3, 6, hash, parts)
			s4 := openTestAt(t, copyPath, nil) // the background check drops it
			<-s4.CheckDone()
			if _, ok, err := s4.Stage(); ok || err != nil || s4.Fault() != nil {
				t.Errorf("Stage after the background check: %v, %v (fault %v); want none", ok, err, s4.Fault())
			}
			stageAll(t, s4, 6, hash, parts)
		})
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Snapshots of the stage crash test: 6 chunks of 100 cards.
const crashChunks, crashPer = 6, 100

func crashSnapshot(seq uint64) ([]Snapshot, string) {
	parts, whole := testChunks(seq, crashChunks, crashPer)
	return parts, HashSnapshot(whole)
}

// crashIndexBatch is the holder index batch of the stage crash test: the
// index of a snapshot is built in 15 transactions, more than it takes to
// stage it, so that many kills land while it is built.
const crashIndexBatch = 40

// stageCrashChild is the writer process of TestStageCrash. It receives
// snapshot after snapshot, each one newer than the applied allowlist,
// resuming the one staged when it starts, and prints one line after each
// write has committed:
//
//	B <seq> <next>     BeginSnapshot: the stage starts at chunk next
//	S <seq> <chunk>    a staged chunk
//	I <seq> <indexed>  a batch of the holder index built: indexed keys in all
//	C <seq>            a committed snapshot
//
// It runs until it is killed.
func stageCrashChild() int {
	s, err := Open(os.Getenv("LATCH_STORE_TEST_PATH"), &Options{PINParams: fastPIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 3
	}
	say := func(format string, args ...any) { os.Stdout.WriteString(fmt.Sprintf(format+"\n", args...)) }
	say("ready")
	s.indexBatch = crashIndexBatch
	for {
		st, err := s.SyncState()
		if err != nil {
			return fail(err)
		}
		seq := st.AppliedSeq + 1
		s.indexHook = func(indexed, _ int) error { say("I %d %d", seq, indexed); return nil }
		parts, hash := crashSnapshot(seq)
		if err := s.BeginSnapshot(seq, hash, crashChunks); err != nil {
			return fail(err)
		}
		sg, _, err := s.Stage()
		if err != nil {
			return fail(err)
		}
		say("B %d %d", seq, sg.Next)
		for c := sg.Next; c < crashChunks; c++ {
			if err := s.StageChunk(seq, c, parts[c]); err != nil {
				return fail(err)
			}
			say("S %d %d", seq, c)
		}
		if err := s.CommitSnapshot(seq); err != nil {
			return fail(err)
		}
		say("C %d", seq)
	}
}

// TestStageCrash kills a process receiving snapshots at random moments,
// while it stages chunks and while it builds the staged holder index.
// After every kill the file opens without dropping the stage, passes the
// check, and the live allowlist is one whole committed snapshot, never a
// part of one; a reported chunk or index batch is still staged, and the
// next run resumes from it.
func TestStageCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var committed uint64
	staged := map[uint64]int{}  // seq: chunks reported staged
	indexed := map[uint64]int{} // seq: index keys reported merged
	resumed, inIndex := 0, 0
	kills := max(*crashKills/2, 5) // 50 by default
	for kill := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=stage", "LATCH_STORE_TEST_PATH="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		mustDo(t, err)
		mustDo(t, cmd.Start())
		sc := bufio.NewScanner(out)
		var timer *time.Timer
		var lines []string
		for sc.Scan() {
			if sc.Text() == "ready" {
				timer = time.AfterFunc(time.Millisecond+time.Duration(rng.IntN(40000))*time.Microsecond, func() { _ = cmd.Process.Kill() })
				continue
			}
			lines = append(lines, sc.Text())
		}
		err = cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("kill %d: child did not die by the signal: %v\nstderr: %s", kill, err, stderr.String())
		}
		for _, line := range lines {
			var what string
			var seq uint64
			var n int
			if _, err := fmt.Sscan(line, &what, &seq, &n); err != nil && what != "C" {
				t.Fatalf("kill %d: child said %q", kill, line)
			}
			switch what {
			case "B":
				if n > 0 {
					resumed++
				}
				if n < staged[seq] {
					t.Fatalf("kill %d: snapshot %d resumed at chunk %d, but %d chunks were staged", kill, seq, n, staged[seq])
				}
			case "S":
				staged[seq] = n + 1
			case "I":
				if n <= indexed[seq] {
					t.Fatalf("kill %d: snapshot %d: %d index keys merged after %d", kill, seq, n, indexed[seq])
				}
				indexed[seq] = n
			case "C":
				committed = max(committed, seq)
			}
		}
		if last := ""; len(lines) > 0 {
			last = lines[len(lines)-1]
			if strings.HasPrefix(last, "I ") || strings.HasPrefix(last, "S ") && strings.HasSuffix(last, fmt.Sprintf(" %d", crashChunks-1)) {
				inIndex++
			}
		}

		var log strings.Builder
		var mu sync.Mutex
		s, err := Open(path, &Options{PINParams: fastPIN, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &log, mu: &mu}, nil))})
		if err != nil {
			t.Fatalf("kill %d: Open: %v", kill, err)
		}
		mu.Lock()
		logged := log.String()
		mu.Unlock()
		if strings.Contains(logged, "stage") {
			t.Fatalf("kill %d: Open said %q", kill, logged)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("kill %d: Check: %v", kill, err)
		}
		st, err := s.SyncState()
		mustDo(t, err)
		if st.AppliedSeq < committed {
			t.Fatalf("kill %d: applied %d, but snapshot %d was committed", kill, st.AppliedSeq, committed)
		}
		if st.AppliedSeq > 0 {
			if _, hash := crashSnapshot(st.AppliedSeq); st.SnapshotHash != hash {
				t.Fatalf("kill %d: the live allowlist at %d is not that snapshot", kill, st.AppliedSeq)
			}
		}
		sg, ok, err := s.Stage()
		mustDo(t, err)
		if ok && (sg.Seq != st.AppliedSeq+1 || sg.Next < staged[sg.Seq]) {
			t.Fatalf("kill %d: stage %+v after applied %d; %d chunks were reported staged", kill, sg, st.AppliedSeq, staged[sg.Seq])
		}
		if ok {
			if got, _ := stageIndexState(t, s); got < indexed[sg.Seq] {
				t.Fatalf("kill %d: stage of %d has %d index keys merged; %d were reported", kill, sg.Seq, got, indexed[sg.Seq])
			}
		}
		mustDo(t, s.Close())
	}
	t.Logf("%d kills, %d snapshots committed, %d transfers resumed, %d kills while the index was built", kills, committed, resumed, inIndex)
}

// A snapshot sent in key order fills the card pages whole; one sent out of
// order leaves them as bbolt fills them by default, with room to insert.
func TestStagePacksChunksInKeyOrder(t *testing.T) {
	pinHash, err := HashPIN([]byte("246810"), nil, fastPIN)
	if err != nil {
		t.Fatal(err)
	}
	const chunks, per = 20, 500
	fill := map[bool]float64{}
	for _, scattered := range []bool{false, true} {
		s := openTest(t, &Options{PINParams: fastPIN})
		var h SnapshotHasher
		parts := make([]Snapshot, chunks)
		for c := range parts {
			parts[c] = snapshotChunk(1, c, chunks, per, pinHash, scattered)
			h.Add(parts[c])
		}
		stageAll(t, s, 1, h.Hash(1), parts)
		mustDo(t, s.view(func(tx *bolt.Tx) error {
			st := tx.Bucket(bucketCards).Stats()
			fill[scattered] = float64(st.LeafInuse) / float64(st.LeafAlloc)
			return nil
		}))
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("card pages filled: %.0f%% in key order, %.0f%% out of order", 100*fill[false], 100*fill[true])
	if fill[false] < 0.9 {
		t.Errorf("cards sent in key order fill their pages %.0f%%, want 90%% or more", 100*fill[false])
	}
	if fill[true] > 0.8 {
		t.Errorf("cards sent out of order fill their pages %.0f%%: packed pages split at every later insert", 100*fill[true])
	}
}
