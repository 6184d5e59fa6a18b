package site

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// A recorded change's entry is in the change log once it is committed; a
// refused one leaves the entry to the caller.
func TestRecorderAppendsInTheChangesTransaction(t *testing.T) {
	s, _, _ := newSiteWithDoors(t, nil, "front")
	entry := func(op string) *sitestore.ChangeRecord {
		return &sitestore.ChangeRecord{Entry: sitestore.ChangeEntry{Who: "alice", From: "socket", Op: op, Result: "ok"},
			After: func(r *sitestore.Reader) (json.RawMessage, error) {
				d, err := r.Door("front")
				if err != nil {
					return nil, err
				}
				return json.Marshal(d.Groups)
			}}
	}
	commit := entry("card add")
	if _, err := s.Recording(commit).Publish(context.Background(), "alice", ucard(1, "h1", "front")); err != nil {
		t.Fatal(err)
	}
	groups := entry("door groups")
	if _, err := s.Recording(groups).SetGroups(context.Background(), "front", []string{"lobby"}, false); err != nil {
		t.Fatal(err)
	}
	refused := entry("door approve")
	if err := s.Recording(refused).Approve("front", "not-the-fingerprint"); err == nil {
		t.Fatal("approved a fingerprint the door never announced")
	}
	if commit.Stored() == nil || groups.Stored() == nil || refused.Stored() != nil {
		t.Fatalf("stored: commit %v, groups %v, refused %v", commit.Stored(), groups.Stored(), refused.Stored())
	}
	if got := string(groups.Stored().After); got != `["lobby"]` {
		t.Errorf("groups entry after = %s", got)
	}
	es, _, err := s.db.Changes(sitestore.ChangeFilter{})
	if err != nil || len(es) != 2 || es[0].Op != "card add" || es[1].Op != "door groups" {
		t.Fatalf("change log: %+v, %v", es, err)
	}
	if _, err := s.Recording(nil).Commit("x", store.Op{Kind: store.OpRevokeCard, UID: []byte{0, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if es, _, _ := s.db.Changes(sitestore.ChangeFilter{}); len(es) != 2 {
		t.Errorf("an unrecorded change appended an entry: %d", len(es))
	}
}
