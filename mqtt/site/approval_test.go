package site

import (
	"testing"

	"github.com/latchdoor/latch/mqtt"
)

func newPublic(t *testing.T) mqtt.PublicIdentity {
	t.Helper()
	id, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Public()
}

// The approval book: an identity is pending until approved by its
// fingerprint; an approved door announcing another identity keeps its
// approval and has the other pending; announcing the approved one again
// clears what was pending.
func TestDoorBook(t *testing.T) {
	a, b, c := newPublic(t), newPublic(t), newPublic(t)
	book := newDoorBook()
	book.approved["front"] = a
	steps := []struct {
		door    string
		id      mqtt.PublicIdentity
		want    verdict
		changed bool
	}{
		{"front", a, verdictApproved, false},
		{"back", b, verdictPending, true},
		{"back", b, verdictPending, false},
		{"back", c, verdictPending, true},
		{"front", b, verdictMismatch, true},
		{"front", b, verdictMismatch, false},
		{"front", a, verdictApproved, true},
	}
	for i, st := range steps {
		v, changed := book.announce(st.door, st.id)
		if v != st.want || changed != st.changed {
			t.Fatalf("step %d: %v %v, want %v %v", i, v, changed, st.want, st.changed)
		}
	}
	if p := book.pendingFingerprints(); len(p) != 1 || p["back"] != c.Fingerprint() {
		t.Fatalf("pending %v", p)
	}
	if _, _, err := book.approve("back", b.Fingerprint()); err == nil {
		t.Fatal("approved an identity no longer pending")
	}
	if _, _, err := book.approve("side", c.Fingerprint()); err == nil {
		t.Fatal("approved a door with nothing pending")
	}
	id, replaced, err := book.approve("back", c.Fingerprint())
	if err != nil || replaced || !sameIdentity(id, c) {
		t.Fatalf("approve back: %v %v", replaced, err)
	}
	book.announce("front", b)
	if _, replaced, err := book.approve("front", b.Fingerprint()); err != nil || !replaced {
		t.Fatalf("approve front again: %v %v", replaced, err)
	}
	if got, _ := book.identity("front"); !sameIdentity(got, b) {
		t.Fatal("front's identity not replaced")
	}
	if p := book.pendingFingerprints(); len(p) != 0 {
		t.Fatalf("pending %v", p)
	}
}
