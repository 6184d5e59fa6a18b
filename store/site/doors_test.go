package site

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
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
