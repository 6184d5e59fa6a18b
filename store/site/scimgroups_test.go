package site

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

func memberHolders(ms []SCIMMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Holder)
	}
	return out
}

// SCIM groups and memberships survive a reopen, are found by group and
// by holder, go with their group, and a membership of a missing group
// changes nothing.
func TestSCIMGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gs, err := d.SCIMGroups(); err != nil || len(gs) != 0 {
		t.Fatalf("a new file lists %v, %v", gs, err)
	}
	if _, err := d.SCIMGroup("lab"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SCIMGroup before any: %v", err)
	}
	if ms, err := d.SCIMGroupsOf("alice"); err != nil || len(ms) != 0 {
		t.Fatalf("SCIMGroupsOf before any: %v, %v", ms, err)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	uid := []byte{4, 1, 2, 3}
	if err := d.ChangeSCIM(SCIMChange{Group: &SCIMGroup{Name: "lab", Created: now},
		Put: []SCIMMember{{Group: "lab", Holder: "alice", Added: [][]byte{uid}}, {Group: "lab", Holder: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.ChangeSCIM(SCIMChange{Group: &SCIMGroup{Name: "ops", Created: now}, Put: []SCIMMember{{Group: "ops", Holder: "alice"}}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []SCIMChange{
		{Put: []SCIMMember{{Group: "nope", Holder: "alice"}}}, // no such group
		{Delete: "nope"}, // no such group
		{Put: []SCIMMember{{Group: "lab", Holder: ""}}},                               // no holder
		{Put: []SCIMMember{{Group: "lab", Holder: "carol", Added: [][]byte{{1, 2}}}}}, // a bad UID
		{Group: &SCIMGroup{Name: "a\nb"}},                                             // a control character
	} {
		if err := d.ChangeSCIM(bad); err == nil {
			t.Errorf("ChangeSCIM(%+v) took it", bad)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	g, err := d.SCIMGroup("lab")
	if err != nil || !g.Created.Equal(now) {
		t.Fatalf("SCIMGroup(lab): %+v, %v", g, err)
	}
	ms, err := d.SCIMMembers("lab")
	if err != nil || !slices.Equal(memberHolders(ms), []string{"alice", "bob"}) || len(ms[0].Added) != 1 || !slices.Equal(ms[0].Added[0], uid) {
		t.Fatalf("SCIMMembers(lab): %+v, %v", ms, err)
	}
	of, err := d.SCIMGroupsOf("alice")
	if err != nil || len(of) != 2 || of[0].Group != "lab" || of[1].Group != "ops" {
		t.Fatalf("SCIMGroupsOf(alice): %+v, %v", of, err)
	}
	// A membership ended; a group deleted takes its memberships.
	if err := d.ChangeSCIM(SCIMChange{Remove: []SCIMMember{{Group: "lab", Holder: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	if ms, _ := d.SCIMMembers("lab"); !slices.Equal(memberHolders(ms), []string{"alice"}) {
		t.Fatalf("lab after bob left: %+v", ms)
	}
	if err := d.ChangeSCIM(SCIMChange{Delete: "lab"}); err != nil {
		t.Fatal(err)
	}
	if of, _ := d.SCIMGroupsOf("alice"); len(of) != 1 || of[0].Group != "ops" {
		t.Fatalf("alice after lab was deleted: %+v", of)
	}
	if gs, _ := d.SCIMGroups(); len(gs) != 1 || gs[0].Name != "ops" {
		t.Fatalf("SCIMGroups after the delete: %+v", gs)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}

	// A holder index entry without its membership is damage Check names.
	if err := d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSCIMHolderGroups).Put(scimHolderKey("zed", "ops"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Check with a stray index entry: %v", err)
	}
}

// A membership stored with a commit (ChangingSCIM) is on disk with the
// card the commit changed and the change-log entry, and a failed commit
// stores neither.
func TestSCIMGroupsWithCommit(t *testing.T) {
	d := open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := d.ChangeSCIM(SCIMChange{Group: &SCIMGroup{Name: "lab", Created: now}}); err != nil {
		t.Fatal(err)
	}
	uid := []byte{4, 9, 9, 9}
	if _, err := d.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice"}},
		{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "alice", Doors: []string{"front"}}}}, "test", now); err != nil {
		t.Fatal(err)
	}
	commit := func(doors []string, more ...store.Op) error {
		rec := &ChangeRecord{Entry: ChangeEntry{Time: now, Who: "okta", Op: "scim group patch", Target: "scim group lab", Result: "ok"}}
		if err := rec.ChangingSCIM(SCIMChange{Put: []SCIMMember{{Group: "lab", Holder: "alice", Added: [][]byte{uid}}}}); err != nil {
			t.Fatal(err)
		}
		ops := append([]store.Op{{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "alice", Doors: doors}}}, more...)
		_, err := d.Recording(rec).Commit(ops, "okta", now)
		return err
	}
	// The holder still has a card: the transaction fails after the card.
	if err := commit([]string{"front", "lab"}, store.Op{Kind: store.OpDeleteHolder, HolderID: "alice"}); err == nil {
		t.Fatal("a commit that deletes a holder with cards took it")
	}
	if ms, _ := d.SCIMMembers("lab"); len(ms) != 0 {
		t.Fatalf("the refused commit stored a membership: %+v", ms)
	}
	if c, _ := d.Card(uid); slices.Contains(c.Doors, "lab") {
		t.Fatalf("the refused commit changed the card: %+v", c)
	}
	if err := commit([]string{"front", "lab"}); err != nil {
		t.Fatal(err)
	}
	ms, _ := d.SCIMMembers("lab")
	c, _ := d.Card(uid)
	es, _, _ := d.Changes(ChangeFilter{Target: "scim group lab"})
	if len(ms) != 1 || !slices.Contains(c.Doors, "lab") || len(es) != 1 {
		t.Fatalf("after the commit: members %+v, card %+v, entries %+v", ms, c, es)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
}

// A deleted holder's memberships go with it, in the same commit: a later
// holder of the same id is in no group.
func TestSCIMMembershipsEndWithTheHolder(t *testing.T) {
	d := open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := d.Commit([]store.Op{{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "vic"}}}, "test", now); err != nil {
		t.Fatal(err)
	}
	if err := d.ChangeSCIM(SCIMChange{Group: &SCIMGroup{Name: "lab", Created: now}, Put: []SCIMMember{{Group: "lab", Holder: "vic"}}}); err != nil {
		t.Fatal(err)
	}
	if ms, err := d.SCIMGroupsOf("vic"); err != nil || len(ms) != 1 {
		t.Fatalf("vic's groups: %+v, %v", ms, err)
	}
	if _, err := d.Commit([]store.Op{{Kind: store.OpDeleteHolder, HolderID: "vic"}}, "test", now); err != nil {
		t.Fatal(err)
	}
	if ms, err := d.SCIMGroupsOf("vic"); err != nil || len(ms) != 0 {
		t.Fatalf("vic's groups after the holder's deletion: %+v, %v", ms, err)
	}
	if ms, err := d.SCIMMembers("lab"); err != nil || len(ms) != 0 {
		t.Fatalf("lab's members after vic's deletion: %+v, %v", ms, err)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
}
