package site

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDoors(t *testing.T) {
	db := open(t)
	if err := db.PutDoor(Door{ID: "front", Groups: []string{"ground", "all", "ground"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutDoor(Door{ID: "lab", Groups: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	if ids, err := db.DoorsIn("all"); err != nil || !slices.Equal(ids, []string{"front", "lab"}) {
		t.Errorf("doors in all: %v, %v", ids, err)
	}
	// Moving front out of ground updates the index.
	if err := db.UpdateDoor("front", func(d *Door) error { d.Groups = []string{"all"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if ids, err := db.DoorsIn("ground"); err != nil || len(ids) != 0 {
		t.Errorf("doors in ground: %v, %v", ids, err)
	}

	id1 := Identity{SignKey: []byte{1}, SealKey: []byte{2}, Fingerprint: "fp-1"}
	if err := db.Announce("front", id1, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Approve("front", "fp-other"); !errors.Is(err, ErrConflict) {
		t.Errorf("approve with the wrong fingerprint: %v", err)
	}
	if err := db.Approve("lab", "fp-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve with nothing pending: %v", err)
	}
	if err := db.Approve("front", "fp-1"); err != nil {
		t.Fatal(err)
	}
	d, err := db.Door("front")
	if err != nil || d.Approved == nil || d.Approved.Fingerprint != "fp-1" || d.Pending != nil || d.Former != nil {
		t.Fatalf("after approve: %+v, %v", d, err)
	}
	// A rotation: the approved key vouched for fp-2.
	if err := db.UpdateDoor("front", func(d *Door) error {
		d.Next = &Identity{SignKey: []byte{3}, SealKey: []byte{4}, Fingerprint: "fp-2"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.ApproveNext("front", "fp-2"); err != nil {
		t.Fatal(err)
	}
	d, _ = db.Door("front")
	if d.Approved.Fingerprint != "fp-2" || d.Former.Fingerprint != "fp-1" || d.Next != nil {
		t.Errorf("after rotation: approved %v former %v next %v", d.Approved, d.Former, d.Next)
	}
	if err := db.SetView("front", 7, 42); err != nil {
		t.Fatal(err)
	}
	if err := db.SetStatus("front", json.RawMessage(`{"door_state":"closed"}`), 6, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.SetStatus("front", json.RawMessage(`{not json`), 6, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status: %v", err)
	}
	doors, err := db.ListDoors()
	if err != nil || len(doors) != 2 {
		t.Fatalf("list: %v, %v", doors, err)
	}
	f := doors[0]
	if f.ID != "front" || f.ViewSeq != 7 || f.ViewOf != 42 || f.AppliedSeq != 6 || !f.LastSeen.Equal(t0) || string(f.Status) != `{"door_state":"closed"}` {
		t.Errorf("front: %+v", f)
	}
	if _, err := db.Door("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown door: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// Statuses of many doors are recorded in one transaction; a head that
// contradicts a held one is refused for its door alone, whose status is
// recorded all the same; bad input records nothing.
func TestRecordStatuses(t *testing.T) {
	db := open(t)
	if err := db.PutHead("lab", SignedHead{Seq: 4, Hash: strings.Repeat("ab", 32), Sig: "s", From: HeadFromEvent}); err != nil {
		t.Fatal(err)
	}
	ups := map[string]StatusUpdate{
		"front": {Status: json.RawMessage(`{"online":true}`), AppliedSeq: 7, LastSeen: t0,
			Head: &SignedHead{Seq: 3, Hash: strings.Repeat("cd", 32), Sig: "s", From: HeadFromStatus}},
		"lab": {Status: json.RawMessage(`{"online":false}`), AppliedSeq: 2, LastSeen: t0,
			Head: &SignedHead{Seq: 4, Hash: strings.Repeat("ef", 32), Sig: "s", From: HeadFromStatus}},
		"side": {Status: json.RawMessage(`{}`), AppliedSeq: 1, LastSeen: t0},
	}
	conflicts, err := db.RecordStatuses(ups)
	if err != nil {
		t.Fatal(err)
	}
	if len(conflicts) != 1 || !errors.Is(conflicts["lab"], ErrConflict) {
		t.Fatalf("conflicts %v", conflicts)
	}
	for id, want := range map[string]struct {
		applied, headSeq uint64
		status           string
	}{"front": {7, 3, `{"online":true}`}, "lab": {2, 0, `{"online":false}`}, "side": {1, 0, `{}`}} {
		d, err := db.Door(id)
		if err != nil {
			t.Fatal(err)
		}
		if d.AppliedSeq != want.applied || d.StatusHeadSeq != want.headSeq || string(d.Status) != want.status || !d.LastSeen.Equal(t0) {
			t.Errorf("door %s: %+v", id, d)
		}
	}
	if h, err := db.Head("lab", 4); err != nil || h.Hash != strings.Repeat("ab", 32) {
		t.Errorf("lab's head 4: %+v %v", h, err)
	}
	if h, err := db.Head("front", 3); err != nil || h.From != HeadFromStatus {
		t.Errorf("front's head 3: %+v %v", h, err)
	}
	for name, bad := range map[string]map[string]StatusUpdate{
		"bad door id":  {"": {AppliedSeq: 1}},
		"head seq 0":   {"front": {AppliedSeq: 9, Head: &SignedHead{Hash: strings.Repeat("cd", 32)}}},
		"head not hex": {"front": {AppliedSeq: 9, Head: &SignedHead{Seq: 5, Hash: "xyz"}}},
	} {
		if _, err := db.RecordStatuses(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if d, _ := db.Door("front"); d.AppliedSeq != 7 {
		t.Errorf("a refused batch changed front: %+v", d)
	}
	// An offline status (a last will) keeps the applied seq the door holds.
	t1 := t0.Add(time.Minute)
	if _, err := db.RecordStatuses(map[string]StatusUpdate{"front": {Status: json.RawMessage(`{"online":false}`), Offline: true, LastSeen: t1}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := db.Door("front"); d.AppliedSeq != 7 || string(d.Status) != `{"online":false}` || !d.LastSeen.Equal(t1) {
		t.Errorf("front after its last will: %+v", d)
	}
}
