package site

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// What the site knows outlives it: the allowlist and its seq, approvals,
// pending identities, the views' seqs and the key chain are read back
// from the database. A door at its view's seq is up to date after a
// restart; one behind it gets a snapshot (the deltas before a restart
// are not kept), and one at its seq with another state is rebased.
func TestRestartKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	db, err := sitestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, rec, ds := newSiteWithDoors(t, func(o *Options) { o.DB = db }, "front", "back")
	front, back := ds[0], ds[1]
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "front", "back"), ucard(2, "h2", "front")); err != nil {
		t.Fatal(err)
	}
	front.apply(rec.take(front.top.DoorACL("front")))
	// back misses the first delta and the next one.
	rec.take(back.top.DoorACL("back"))
	if _, err := s.Publish(ctx, ucard(3, "h3", "front", "back")); err != nil {
		t.Fatal(err)
	}
	front.apply(rec.take(front.top.DoorACL("front")))
	// A door announcing itself, waiting for approval.
	side := newTestDoor(t, "side", s)
	s.handle(side.top.Status("side"), side.status(side.id, 0, ""))
	next := newSigner(t, "site-2")
	if err := s.RotateKey(ctx, next, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	gseq, _ := s.History().Head()
	fseq, fhash := s.Head("front")
	bseq, _ := s.Head("back")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s2, rec2 := newTestSite(t, func(o *Options) { o.DB = openDB(t, path); o.Signer = next })
	if g, _ := s2.History().Head(); g != gseq {
		t.Fatalf("global seq %d after a restart, want %d", g, gseq)
	}
	if seq, hash := s2.Head("front"); seq != fseq || hash != fhash {
		t.Fatalf("front's view at %d %s after a restart, was %d %s", seq, hash, fseq, fhash)
	}
	if seq, _ := s2.Head("back"); seq != bseq {
		t.Fatalf("back's view at %d after a restart, was %d", seq, bseq)
	}
	if _, ok := s2.Approved("front"); !ok {
		t.Fatal("front not approved after a restart")
	}
	if p := s2.Stats().Pending; p["side"] != side.id.Public().Fingerprint() {
		t.Fatalf("pending after a restart: %v", p)
	}
	if len(s2.rotations) != 1 {
		t.Fatalf("%d rotations after a restart", len(s2.rotations))
	}
	// front is up to date: nothing to send.
	if msgs := syncOnce(t, s2, rec2, front, front.request("", 0)); len(msgs) != 0 {
		t.Fatalf("%d messages to a door up to date", len(msgs))
	}
	// back, behind, catches up with a snapshot signed by the new key.
	back.v = newVerifier(t, "back", back.id, next)
	catchUp(t, s2, rec2, back, 4)
	if st := s2.Stats(); st.SyncSnapshots != 1 {
		t.Fatalf("%+v", st)
	}
	// A change after the restart reaches front as a delta.
	front.v = newVerifier(t, "front", front.id, next)
	if _, err := s2.Publish(ctx, urevoke(1)); err != nil {
		t.Fatal(err)
	}
	front.apply(rec2.take(front.top.DoorACL("front")))
	if seq, hash := front.state(); seq != fseq+1 {
		t.Fatalf("front at %d %s, want %d", seq, hash, fseq+1)
	}
}

func newVerifier(t testing.TB, door string, id *mqtt.Identity, sg *mqtt.Signer) *mqtt.Verifier {
	t.Helper()
	v, err := mqtt.NewDoorVerifier(site, door, map[string]ed25519.PublicKey{sg.KeyID(): sg.Public()}, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A door put in a group gets the group's cards as a delta; taken out of
// it, the delta takes them away; the groups are in the database.
func TestSetGroups(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, nil, "back")
	d := ds[0]
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "staff"), ucard(2, "h2", "back")); err != nil {
		t.Fatal(err)
	}
	d.apply(rec.take(d.top.DoorACL("back")))
	if n := len(s.View("back").Cards); n != 1 {
		t.Fatalf("%d cards in back's view before it joins staff", n)
	}
	seq, err := s.SetGroups(ctx, "back", []string{"staff"}, true)
	if err != nil {
		t.Fatal(err)
	}
	d.apply(rec.take(d.top.DoorACL("back")))
	if got, _ := d.state(); got != seq || len(s.View("back").Cards) != 2 {
		t.Fatalf("door at %d, view at %d with %d cards", got, seq, len(s.View("back").Cards))
	}
	if dr, err := s.db.Door("back"); err != nil || len(dr.Groups) != 1 || dr.ViewSeq != seq {
		t.Fatalf("%+v %v", dr, err)
	}
	if _, err := s.SetGroups(ctx, "back", nil, true); err != nil {
		t.Fatal(err)
	}
	d.apply(rec.take(d.top.DoorACL("back")))
	catchUp(t, s, rec, d, 4)
	if n := len(s.View("back").Cards); n != 1 {
		t.Fatalf("%d cards in back's view after it left staff", n)
	}
	if _, err := s.SetGroups(ctx, "back", []string{"*"}, true); err == nil {
		t.Fatal("a group named *")
	}
}

// A hole in a door's stored chain is a gap only once it has stayed open
// for GapGrace; one that fills is forgotten, and a gap is recorded once.
func TestGapGrace(t *testing.T) {
	s, _, ds := newSiteWithDoors(t, func(o *Options) { o.GapGrace = 5 * time.Minute }, "front")
	d := ds[0]
	evs := d.events(8)
	msg := func(e store.Event) []byte { return d.eventMsg(e, d.id) }
	deliver(t, s, d, msg(evs[0]), msg(evs[1]), msg(evs[2]), msg(evs[5]))
	s.checkGaps(t0)
	s.checkGaps(t0.Add(4 * time.Minute))
	if fs, _ := s.db.Findings(0, 0); len(fs) != 0 || s.Stats().Gaps != 0 {
		t.Fatalf("a hole open for 4 minutes: %+v", fs)
	}
	s.checkGaps(t0.Add(5 * time.Minute))
	s.checkGaps(t0.Add(6 * time.Minute))
	fs, err := s.db.Findings(0, 0)
	if err != nil || len(fs) != 1 || fs[0].Reason != sitestore.FindingGap || fs[0].Seq != 4 || s.Stats().Gaps != 1 {
		t.Fatalf("a hole open for 5 minutes: %+v %v", fs, err)
	}
	if !strings.Contains(fs[0].Detail, "events 4..5 missing") {
		t.Errorf("detail %q", fs[0].Detail)
	}
	// Filled; then a new hole that fills before its grace: no finding.
	deliver(t, s, d, msg(evs[3]), msg(evs[4]), msg(evs[7]))
	s.checkGaps(t0.Add(7 * time.Minute))
	deliver(t, s, d, msg(evs[6]))
	s.checkGaps(t0.Add(20 * time.Minute))
	if fs, _ := s.db.Findings(0, 0); len(fs) != 1 || s.Contiguous("front") != 8 {
		t.Fatalf("findings %+v, contiguous %d", fs, s.Contiguous("front"))
	}
}

// In a batch, a run of a door's events linked by their hashes is
// attributed by the last one's signature, which covers the chain; the
// others are stored without a head of their own. When the last signature
// does not verify, each event stands on its own signature.
func TestAttributeRuns(t *testing.T) {
	s, _, ds := newSiteWithDoors(t, nil, "front")
	d := ds[0]
	evs := d.events(6)
	other, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// 1..3: only 3 is signed by the door (1 and 2 by another key): all
	// three attributed, heads held at 3 alone.
	deliver(t, s, d, d.eventMsg(evs[0], other), d.eventMsg(evs[1], other), d.eventMsg(evs[2], d.id))
	if st := s.Stats(); st.EventsStored != 3 || st.Unattributed != 0 || s.Contiguous("front") != 3 {
		t.Fatalf("a linked run signed at its end: %+v", st)
	}
	if _, err := s.db.Head("front", 2); !errors.Is(err, sitestore.ErrNotFound) {
		t.Fatalf("a head held at 2 from a signature nobody checked: %v", err)
	}
	if h, err := s.db.Head("front", 3); err != nil || VerifyHead(h, site, "front", d.id.Public().SignKey) != nil {
		t.Fatalf("head 3: %+v %v", h, err)
	}
	// 4..6 with 6 signed by another key: each on its own, 5 and 6 refused.
	deliver(t, s, d, d.eventMsg(evs[5], other), d.eventMsg(evs[3], d.id), d.eventMsg(evs[4], nil))
	if st := s.Stats(); st.EventsStored != 4 || st.Unattributed != 2 || s.Contiguous("front") != 4 {
		t.Fatalf("a run whose last signature fails: %+v", st)
	}
}
