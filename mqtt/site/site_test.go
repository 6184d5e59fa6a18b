package site

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

const site = "hq"

func newSigner(t testing.TB, kid string) *mqtt.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mqtt.NewSigner(kid, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sent is a message the site published.
type sent struct {
	topic    string
	payload  []byte
	retained bool
}

// recorder stands in for the broker: it keeps what the site publishes.
type recorder struct {
	mu   sync.Mutex
	msgs []sent
}

func (r *recorder) sink(topic string, payload []byte, retained bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, sent{topic, payload, retained})
	return nil
}

// take returns and forgets what was published on topic.
func (r *recorder) take(topic string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	var rest []sent
	for _, m := range r.msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		} else {
			rest = append(rest, m)
		}
	}
	r.msgs = rest
	return out
}

// newTestSite returns a site that is not connected: what it publishes
// goes to the returned recorder.
func newTestSite(t testing.TB, edit func(o *Options)) (*Site, *recorder) {
	t.Helper()
	o := Options{Site: site, Signer: newSigner(t, "site-1"), Now: func() time.Time { return t0 }, ChunkBytes: 2048}
	if edit != nil {
		edit(&o)
	}
	if o.DB == nil {
		o.DB = openDB(t, filepath.Join(t.TempDir(), "site.db"))
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s.sink = rec.sink
	return s, rec
}

// testDoor plays a door: its identity, its store, and the verifier with
// which it opens what the site sealed to it.
type testDoor struct {
	t     testing.TB
	name  string
	id    *mqtt.Identity
	st    *store.Store
	v     *mqtt.Verifier
	stage *mqtt.ChunkWindow // the snapshot being staged: Seq, Hash, From = next chunk, Count = chunks
	top   mqtt.Topics
}

func newTestDoor(t testing.TB, name string, s *Site) *testDoor {
	t.Helper()
	id, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	sg := s.Signer()
	v, err := mqtt.NewDoorVerifier(site, name, map[string]ed25519.PublicKey{sg.KeyID(): sg.Public()}, id)
	if err != nil {
		t.Fatal(err)
	}
	return &testDoor{t: t, name: name, id: id, st: openStore(t), v: v, top: mqtt.TopicsFor(site)}
}

func (d *testDoor) state() (uint64, string) { return stateOf(d.t, d.st) }

// request returns the door's signed sync request: its chunks when it is
// staging a snapshot, else its applied state.
func (d *testDoor) request(want string, window int) []byte {
	d.t.Helper()
	seq, hash := d.state()
	r := mqtt.SyncRequest{V: mqtt.Version, Type: mqtt.KindSync, Site: site, Door: d.name,
		AppliedSeq: seq, SnapshotHash: hash, Want: want, Window: window, At: t0}
	if st := d.stage; st != nil && want == "" {
		r.Chunks = &mqtt.ChunkWindow{Seq: st.Seq, Hash: st.Hash, From: st.From, Count: max(window, 1)}
	}
	return d.sign(r)
}

func (d *testDoor) sign(r mqtt.SyncRequest) []byte {
	r.Sign(d.id)
	b, err := json.Marshal(r)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// apply opens and applies what the site sent to the door, in order.
func (d *testDoor) apply(msgs [][]byte) {
	d.t.Helper()
	for _, b := range msgs {
		m, _, err := d.v.Open(b)
		if err != nil {
			d.t.Fatalf("door %s: %v", d.name, err)
		}
		switch m := m.(type) {
		case *mqtt.Delta:
			if err := d.st.ApplyDelta(m.StoreDelta()); err != nil {
				d.t.Fatalf("door %s: %v", d.name, err)
			}
		case *mqtt.SnapshotChunk:
			if st := d.stage; st == nil || st.Seq != m.Seq || st.Hash != m.Hash {
				if err := d.st.BeginSnapshot(m.Seq, m.Hash, m.Chunks); err != nil {
					d.t.Fatalf("door %s: %v", d.name, err)
				}
				d.stage = &mqtt.ChunkWindow{Seq: m.Seq, Hash: m.Hash, Count: m.Chunks}
			}
			if m.Chunk != d.stage.From {
				d.t.Fatalf("door %s: chunk %d, want %d", d.name, m.Chunk, d.stage.From)
			}
			if err := d.st.StageChunk(m.Seq, m.Chunk, m.StorePart()); err != nil {
				d.t.Fatalf("door %s: %v", d.name, err)
			}
			if d.stage.From++; d.stage.From == d.stage.Count {
				if err := d.st.CommitSnapshot(m.Seq); err != nil {
					d.t.Fatalf("door %s: %v", d.name, err)
				}
				d.stage = nil
			}
		default:
			d.t.Fatalf("door %s: unexpected %T on its acl topic", d.name, m)
		}
	}
}

// syncOnce hands the site one sync request of the door, lets the site
// answer it, and returns what was sent to the door (nil when the request
// was refused).
func syncOnce(t testing.TB, s *Site, rec *recorder, d *testDoor, req []byte) [][]byte {
	t.Helper()
	s.handle(d.top.Sync(d.name), req)
	select {
	case r := <-s.syncs:
		if err := s.answer(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	default:
		return nil
	}
	return rec.take(d.top.DoorACL(d.name))
}

// catchUp syncs the door until the site has nothing more to send, as a
// door's client does, and checks that it ends at its view's head.
func catchUp(t testing.TB, s *Site, rec *recorder, d *testDoor, window int) {
	t.Helper()
	for range 1000 {
		msgs := syncOnce(t, s, rec, d, d.request("", window))
		if len(msgs) == 0 && d.stage == nil {
			break
		}
		d.apply(msgs)
	}
	seq, hash := d.state()
	if vs, vh := s.Head(d.name); seq != vs || hash != vh {
		t.Fatalf("door %s at %d %s, its view at %d %s", d.name, seq, hash, vs, vh)
	}
	if vh := store.HashSnapshot(s.View(d.name)); hash != vh {
		t.Fatalf("door %s hash %s, its view's snapshot %s", d.name, hash, vh)
	}
}

// newSiteWithDoors makes doors, then a site that approves them: the
// doors' verifiers trust the site's signer.
func newSiteWithDoors(t testing.TB, edit func(o *Options), names ...string) (*Site, *recorder, []*testDoor) {
	t.Helper()
	sg := newSigner(t, "site-1")
	var ds []*testDoor
	ids := map[string]mqtt.PublicIdentity{}
	for _, n := range names {
		id, err := mqtt.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		v, err := mqtt.NewDoorVerifier(site, n, map[string]ed25519.PublicKey{sg.KeyID(): sg.Public()}, id)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, &testDoor{t: t, name: n, id: id, st: openStore(t), v: v, top: mqtt.TopicsFor(site)})
		ids[n] = id.Public()
	}
	s, rec := newTestSite(t, func(o *Options) {
		o.Signer = sg
		if edit != nil {
			edit(o)
		}
		if o.DB == nil {
			o.DB = openDB(t, filepath.Join(t.TempDir(), "site.db"))
		}
		for _, n := range names {
			id := ids[n]
			if err := Provision(o.DB, n, &id, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
	return s, rec, ds
}

// openDB opens a site database that is closed when the test ends.
func openDB(t testing.TB, path string) *sitestore.DB {
	t.Helper()
	db, err := sitestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ucard(n int, holder string, doors ...string) store.Op {
	uid := binary.BigEndian.AppendUint32(nil, uint32(n)|0x10000000)
	return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: holder, HolderName: "Holder " + holder,
		Doors: doors, PINHash: "", Flags: store.Flags{CardOnly: true}}}
}

func urevoke(n int) store.Op {
	return store.Op{Kind: store.OpRevokeCard, UID: binary.BigEndian.AppendUint32(nil, uint32(n)|0x10000000), Reason: "lost"}
}

// Publish sends each door only its own view's delta, sealed to it, on its
// own topic; a door whose view does not change gets nothing.
func TestPublishPerDoor(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, func(o *Options) {
		o.DB = openDB(t, filepath.Join(t.TempDir(), "site.db"))
		if err := Provision(o.DB, "back", nil, []string{"staff"}); err != nil {
			t.Fatal(err)
		}
	}, "front", "back")
	front, back := ds[0], ds[1]
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "front"), ucard(2, "h2", "staff")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish(ctx, ucard(3, "h3", "front")); err != nil {
		t.Fatal(err)
	}
	gseq, err := s.Publish(ctx, urevoke(2))
	if err != nil {
		t.Fatal(err)
	}
	if gseq != 3 {
		t.Fatalf("global seq %d", gseq)
	}
	fm, bm := rec.take(front.top.DoorACL("front")), rec.take(back.top.DoorACL("back"))
	if len(fm) != 2 || len(bm) != 2 {
		t.Fatalf("front got %d deltas, back %d", len(fm), len(bm))
	}
	for _, b := range bm {
		if strings.Contains(string(b), base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, 1|0x10000000))) {
			t.Fatal("a UID travels in clear")
		}
	}
	// A door cannot open another door's delta.
	if _, _, err := back.v.Open(fm[0]); !errors.Is(err, mqtt.ErrWrongDoor) {
		t.Fatalf("back opened front's delta: %v", err)
	}
	front.apply(fm)
	back.apply(bm)
	for _, d := range ds {
		seq, hash := d.state()
		if vs, vh := s.Head(d.name); seq != 2 || vs != 2 || hash != vh {
			t.Fatalf("door %s at %d %s, view %d %s", d.name, seq, hash, vs, vh)
		}
	}
	if n := len(s.View("back").Cards); n != 1 {
		t.Fatalf("back's view has %d cards", n)
	}
}

// A door behind by a few deltas gets them; one further behind than
// DeltaLimit, or asking for a snapshot, or with another hash at its seq,
// gets a snapshot in chunks, a window at a time as it asks.
func TestSyncDeltasAndSnapshots(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, func(o *Options) { o.DeltaLimit = 5 }, "front")
	d := ds[0]
	for n := range 3 {
		if _, err := s.Commit(ucard(n, fmt.Sprint("h", n), "front")); err != nil {
			t.Fatal(err)
		}
	}
	catchUp(t, s, rec, d, 0)
	if st := s.Stats(); st.SyncDeltas != 3 || st.SyncSnapshots != 0 {
		t.Fatalf("%+v", st)
	}
	for n := range 40 {
		if _, err := s.Commit(ucard(100+n, fmt.Sprint("h", 100+n), "front")); err != nil {
			t.Fatal(err)
		}
	}
	// The first answer is the default window of 4 chunks.
	msgs := syncOnce(t, s, rec, d, d.request("", 0))
	if len(msgs) != 4 {
		t.Fatalf("%d chunks in the first window", len(msgs))
	}
	d.apply(msgs)
	catchUp(t, s, rec, d, 3)
	st := s.Stats()
	if st.SyncSnapshots != 1 || st.ChunksSent < 5 {
		t.Fatalf("%+v", st)
	}
	// Asking for a snapshot at the head: nothing to do.
	if msgs := syncOnce(t, s, rec, d, d.request(mqtt.WantSnapshot, 0)); len(msgs) != 0 {
		t.Fatalf("%d messages to a door up to date", len(msgs))
	}
	// Behind by one, but asking for a snapshot.
	if _, err := s.Commit(urevoke(100)); err != nil {
		t.Fatal(err)
	}
	msgs = syncOnce(t, s, rec, d, d.request(mqtt.WantSnapshot, 16))
	if m, _, err := d.v.Open(msgs[0]); err != nil || m.Kind() != mqtt.KindChunk {
		t.Fatalf("%v %v", m, err)
	}
	d.apply(msgs)
	catchUp(t, s, rec, d, 16)
	// Behind by one with a state of its own: a snapshot.
	if _, err := s.Commit(urevoke(101)); err != nil {
		t.Fatal(err)
	}
	if err := d.st.PutCard(store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "local"}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().SyncSnapshots
	catchUp(t, s, rec, d, 16)
	if got := s.Stats().SyncSnapshots; got != before+1 {
		t.Fatalf("%d snapshots, want %d", got, before+1)
	}
}

// The plan of a snapshot is made once per view seq and kept: a door
// asking for chunks of it gets exactly those, even after the view moved
// on; a door asking for chunks of a snapshot the site does not know gets
// the first chunks of the current one.
func TestSnapshotChunksResume(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, nil, "front")
	d := ds[0]
	var ops []store.Op
	for n := range 40 {
		ops = append(ops, ucard(n, fmt.Sprint("h", n), "front"))
	}
	if _, err := s.Commit(ops...); err != nil {
		t.Fatal(err)
	}
	// Seq 1 is a delta from the empty view; ask for a snapshot.
	msgs := syncOnce(t, s, rec, d, d.request(mqtt.WantSnapshot, 2))
	if len(msgs) != 2 {
		t.Fatalf("%d chunks, want the window of 2", len(msgs))
	}
	d.apply(msgs[:1]) // the second is lost
	first := *d.stage
	if _, err := s.Commit(urevoke(3)); err != nil {
		t.Fatal(err)
	}
	msgs = syncOnce(t, s, rec, d, d.request("", 3))
	if len(msgs) != 3 {
		t.Fatalf("%d chunks, want 3", len(msgs))
	}
	for i, b := range msgs {
		m, _, err := d.v.Open(b)
		if err != nil {
			t.Fatal(err)
		}
		if c := m.(*mqtt.SnapshotChunk); c.Seq != first.Seq || c.Chunk != 1+i {
			t.Fatalf("chunk %d of %d, want %d of %d", c.Chunk, c.Seq, 1+i, first.Seq)
		}
	}
	d.apply(msgs)
	// A request for chunks of a snapshot the site never planned.
	r := mqtt.SyncRequest{V: mqtt.Version, Type: mqtt.KindSync, Site: site, Door: "front", SnapshotHash: strings.Repeat("0", 64), At: t0,
		Chunks: &mqtt.ChunkWindow{Seq: 99, Hash: strings.Repeat("a", 64), From: 5, Count: 2}}
	msgs = syncOnce(t, s, rec, d, d.sign(r))
	if len(msgs) != 2 {
		t.Fatalf("%d chunks", len(msgs))
	}
	m, _, err := d.v.Open(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if vs, vh := s.Head("front"); m.(*mqtt.SnapshotChunk).Chunk != 0 || m.Head().Seq != vs || m.(*mqtt.SnapshotChunk).Hash != vh {
		t.Fatalf("chunk %d of %d, want 0 of %d", m.(*mqtt.SnapshotChunk).Chunk, m.Head().Seq, vs)
	}
	catchUp(t, s, rec, d, 4)
}

// A door ahead of its view, or at its seq with another state, has its
// view rebased above what it applied and gets a snapshot it accepts; the
// deltas that follow continue from there.
func TestSyncRebase(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, nil, "front")
	d := ds[0]
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "front")); err != nil {
		t.Fatal(err)
	}
	rec.take(d.top.DoorACL("front"))
	// The door's store says seq 10: it was another site's, or the
	// site's memory was lost.
	if err := d.st.ApplySnapshot(store.Snapshot{Seq: 10, Cards: []store.Card{{UID: []byte{9, 9, 9, 9}, HolderID: "x", Doors: []string{"front"}}}}); err != nil {
		t.Fatal(err)
	}
	catchUp(t, s, rec, d, 0)
	if seq, _ := s.Head("front"); seq != 11 {
		t.Fatalf("view at %d, want 11", seq)
	}
	if _, err := s.Publish(ctx, ucard(2, "h2", "front")); err != nil {
		t.Fatal(err)
	}
	msgs := rec.take(d.top.DoorACL("front"))
	d.apply(msgs)
	if seq, _ := d.state(); seq != 12 {
		t.Fatalf("door at %d after the delta", seq)
	}
	catchUp(t, s, rec, d, 0)
	// At the view's seq with another state.
	if err := d.st.PutCard(store.Card{UID: []byte{1, 2, 3, 4}, HolderID: "local"}); err != nil {
		t.Fatal(err)
	}
	catchUp(t, s, rec, d, 0)
	if seq, _ := s.Head("front"); seq != 13 {
		t.Fatalf("view at %d, want 13", seq)
	}
	st := s.Stats()
	if st.Rebases != 2 || st.HashMismatches != 1 {
		t.Fatalf("%d rebases, %d hash mismatches", st.Rebases, st.HashMismatches)
	}
	if _, err := s.Deltas("front", 11); err == nil {
		t.Fatal("a delta to the rebased seq 13")
	}
}

// signHead signs a chain head as the door does.
func signHead(t testing.TB, id *mqtt.Identity, door string, seq uint64, hash string) string {
	t.Helper()
	sig, err := id.SignHead(site, door, seq, hash)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// events appends n events to the door's store and returns them.
func (d *testDoor) events(n int) []store.Event {
	d.t.Helper()
	evs := make([]store.Event, n)
	for i := range evs {
		evs[i] = store.Event{Time: t0, Clock: store.TimeSynced, Door: d.name, Type: store.TypeAccess, Reason: store.ReasonGranted}
	}
	out, err := d.st.AppendMany(evs)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// eventMsg is event e as the door sends it, signed by id.
func (d *testDoor) eventMsg(e store.Event, id *mqtt.Identity) []byte {
	d.t.Helper()
	m := mqtt.EventMsg{V: mqtt.Version, Type: mqtt.KindEvent, Site: site, Door: d.name, Event: e}
	if id != nil {
		m.Sig = signHead(d.t, id, d.name, e.Seq, e.Hash)
	}
	b, err := json.Marshal(m)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// status is the door's status announcing id (the door's own when nil),
// with the signed head seq/hash when seq > 0.
func (d *testDoor) status(id *mqtt.Identity, seq uint64, hash string) []byte {
	d.t.Helper()
	if id == nil {
		id = d.id
	}
	p := id.Public()
	m := mqtt.Status{V: mqtt.Version, Type: mqtt.KindStatus, Site: site, Door: d.name, Online: true,
		Fingerprint: p.Fingerprint(), SignKey: base64.StdEncoding.EncodeToString(p.SignKey), SealKey: base64.StdEncoding.EncodeToString(p.SealKey)}
	if seq > 0 {
		m.HeadSeq, m.HeadHash, m.HeadSig = seq, hash, signHead(d.t, id, d.name, seq, hash)
	}
	b, err := json.Marshal(m)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// deliver hands the site the door's events and stores what it accepted,
// as the store loop does.
func deliver(t testing.TB, s *Site, d *testDoor, msgs ...[]byte) {
	t.Helper()
	for _, b := range msgs {
		s.handle(d.top.Events(d.name), b)
	}
	var batch []*mqtt.EventMsg
	for {
		select {
		case e := <-s.events:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	doors, err := s.store(batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doors {
		s.ack(d)
	}
}

// A door the site has not approved is pending once its status announces
// its identity, and gets nothing until Approve: its sync requests and
// events are refused. Approve needs the fingerprint the door announced.
func TestApproval(t *testing.T) {
	s, rec := newTestSite(t, nil)
	d := newTestDoor(t, "front", s)
	if _, err := s.Commit(ucard(1, "h1", "front")); err != nil {
		t.Fatal(err)
	}
	if err := s.Approve("front", d.id.Public().Fingerprint()); err == nil {
		t.Fatal("approved a door that announced nothing")
	}
	s.handle(d.top.Status("front"), d.status(nil, 0, ""))
	if fp := s.Stats().Pending["front"]; fp != d.id.Public().Fingerprint() {
		t.Fatalf("pending %q", fp)
	}
	if msgs := syncOnce(t, s, rec, d, d.request("", 0)); msgs != nil {
		t.Fatal("a door not approved got an answer")
	}
	deliver(t, s, d, d.eventMsg(d.events(1)[0], d.id))
	if st := s.Stats(); st.SyncRefused != 1 || st.Unattributed != 1 || st.EventsStored != 0 || st.AcksSent != 0 {
		t.Fatalf("%+v", st)
	}
	if seq, _ := s.Head("front"); seq != 0 || len(s.View("front").Cards) != 0 {
		t.Fatal("a door not approved has a view")
	}
	other, err := mqtt.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Approve("front", other.Public().Fingerprint()); err == nil {
		t.Fatal("approved a fingerprint the door did not announce")
	}
	if err := s.Approve("front", d.id.Public().Fingerprint()); err != nil {
		t.Fatal(err)
	}
	if hb := rec.take(d.top.Heartbeat("front")); len(hb) != 1 {
		t.Fatalf("%d heartbeats at approval", len(hb))
	}
	if st := s.Stats(); len(st.Pending) != 0 {
		t.Fatalf("still pending: %v", st.Pending)
	}
	catchUp(t, s, rec, d, 0)

	// The door comes back with another identity: not trusted until
	// approved, and its events signed with it are refused.
	s.handle(d.top.Status("front"), d.status(other, 0, ""))
	st := s.Stats()
	if st.IdentityMismatch != 1 || st.Pending["front"] != other.Public().Fingerprint() {
		t.Fatalf("%+v", st)
	}
	deliver(t, s, d, d.eventMsg(d.events(1)[0], other))
	if st := s.Stats(); st.Unattributed != 2 || st.EventsStored != 0 {
		t.Fatalf("%+v", st)
	}
	// Approved: the view is sealed to the new identity from then on.
	if err := s.Approve("front", other.Public().Fingerprint()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish(context.Background(), ucard(2, "h2", "front")); err != nil {
		t.Fatal(err)
	}
	msgs := rec.take(d.top.DoorACL("front"))
	if _, _, err := d.v.Open(msgs[0]); !errors.Is(err, mqtt.ErrNotForMe) {
		t.Fatalf("the old identity opened a delta: %v", err)
	}
	sg := s.Signer()
	v2, err := mqtt.NewDoorVerifier(site, "front", map[string]ed25519.PublicKey{sg.KeyID(): sg.Public()}, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v2.Open(msgs[0]); err != nil {
		t.Fatal(err)
	}
}

// Events are stored with their signed heads; an event or a status that
// contradicts a head the door signed is a rewrite: refused, the original
// kept. A status whose head goes back is a rewrite too. Heads outlive the
// site.
func TestEventsAndHeads(t *testing.T) {
	db, err := sitestore.Open(filepath.Join(t.TempDir(), "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var d *testDoor
	s, rec, ds := newSiteWithDoors(t, func(o *Options) { o.DB = db }, "front")
	d = ds[0]
	evs := d.events(10)
	var msgs [][]byte
	for _, e := range evs[:5] {
		msgs = append(msgs, d.eventMsg(e, d.id))
	}
	deliver(t, s, d, msgs...)
	if st := s.Stats(); st.EventsStored != 5 || s.Contiguous("front") != 5 {
		t.Fatalf("%+v", st)
	}
	acks := rec.take(d.top.EventsAck("front"))
	if len(acks) != 1 {
		t.Fatalf("%d acks", len(acks))
	}
	if m, _, err := d.v.Open(acks[0]); err != nil || m.Head().Seq != 5 {
		t.Fatalf("ack %v %v", m, err)
	}
	// The status signs head 8, whose event has not come yet.
	s.handle(d.top.Status("front"), d.status(nil, 8, evs[7].Hash))
	if h, ok := s.Heads("front"); !ok || h.Seq != 8 || h.From != sitestore.HeadFromStatus || VerifyHead(h, site, "front", d.id.Public().SignKey) != nil {
		t.Fatalf("head %+v %v", h, ok)
	}
	// A rewritten event 8 (signed by the door: the door's file was
	// edited, and the door signs what it has).
	rehash := func(e *store.Event) {
		t.Helper()
		var err error
		if e.Hash, err = store.HashEvent(*e); err != nil {
			t.Fatal(err)
		}
	}
	forged := evs[7]
	forged.Detail = "edited"
	rehash(&forged)
	deliver(t, s, d, d.eventMsg(forged, d.id))
	// A rewritten event 3, already stored.
	forged3 := evs[2]
	forged3.Detail = "edited too"
	rehash(&forged3)
	deliver(t, s, d, d.eventMsg(forged3, d.id))
	st := s.Stats()
	if st.Rewrites != 2 || st.Conflicts != 1 || st.EventsStored != 5 {
		t.Fatalf("%+v", st)
	}
	// An unsigned event, an event on another door's topic, one naming
	// another door.
	deliver(t, s, d, d.eventMsg(evs[5], nil))
	s.handle(d.top.Events("back"), d.eventMsg(evs[5], d.id))
	other := evs[5]
	other.Door = "back"
	rehash(&other)
	deliver(t, s, d, d.eventMsg(other, d.id))
	if st := s.Stats(); st.Unattributed != 1 || st.WrongDoor != 2 || st.EventsStored != 5 {
		t.Fatalf("%+v", st)
	}
	// The rest, the true 8 among them.
	msgs = nil
	for _, e := range evs[5:] {
		msgs = append(msgs, d.eventMsg(e, d.id))
	}
	deliver(t, s, d, msgs...)
	if st := s.Stats(); st.EventsStored != 10 || s.Contiguous("front") != 10 || st.ChainBreaks != 0 {
		t.Fatalf("%+v", st)
	}
	got, err := s.Events("front")
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if got[i].Hash != evs[i].Hash {
			t.Fatalf("event %d: %s, want %s", i+1, got[i].Hash, evs[i].Hash)
		}
	}
	// Statuses: one that contradicts event 9, one that goes back.
	s.handle(d.top.Status("front"), d.status(nil, 9, strings.Repeat("3", 64)))
	s.handle(d.top.Status("front"), d.status(nil, 6, evs[5].Hash))
	s.handle(d.top.Status("front"), d.status(nil, 10, evs[9].Hash))
	if st := s.Stats(); st.Rewrites != 4 {
		t.Fatalf("%d rewrites, want 4", st.Rewrites)
	}
	// The heads are in the file.
	path := db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s2, _ := newTestSite(t, func(o *Options) { o.DB = openDB(t, path) })
	if h, ok := s2.Heads("front"); !ok || h.Seq != 10 || h.Hash != evs[9].Hash || VerifyHead(h, site, "front", d.id.Public().SignKey) != nil {
		t.Fatalf("head after a restart %+v", h)
	}
	if s2.Contiguous("front") != 10 {
		t.Fatalf("contiguous %d after a restart", s2.Contiguous("front"))
	}
	s2.handle(d.top.Status("front"), d.status(nil, 7, evs[6].Hash))
	if st := s2.Stats(); st.Rewrites != 1 {
		t.Fatalf("a status going back after a restart: %d rewrites", st.Rewrites)
	}
}

// A key rotation is signed by the current key, published retained in the
// key chain, and everything after is signed by the next key, old deltas
// included when they are sent again.
func TestRotateKey(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, nil, "front")
	d := ds[0]
	ctx := context.Background()
	if _, err := s.Publish(ctx, ucard(1, "h1", "front")); err != nil {
		t.Fatal(err)
	}
	d.apply(rec.take(d.top.DoorACL("front")))
	next := newSigner(t, "site-2")
	if err := s.RotateKey(ctx, next, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s.Signer() != next {
		t.Fatal("still signing with the old key")
	}
	third := newSigner(t, "site-3")
	if err := s.RotateKey(ctx, third, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	chains := rec.take(d.top.Keys())
	if len(chains) != 2 {
		t.Fatalf("%d key chains", len(chains))
	}
	kc, err := mqtt.DecodeKeyChain(chains[1], site)
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.Rotations) != 2 {
		t.Fatalf("%d rotations", len(kc.Rotations))
	}
	for i, link := range kc.Rotations {
		m, kid, err := d.v.Open(link, mqtt.KindKeyRotation)
		if err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
		if ok, err := d.v.Rotate(m.(*mqtt.KeyRotation), kid); !ok || err != nil {
			t.Fatalf("rotation %d: %v %v", i+1, ok, err)
		}
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	hb := rec.take(d.top.Heartbeat("front"))
	if m, kid, err := d.v.Open(hb[0]); err != nil || kid != "site-3" || m.Head().Seq != 1 || m.(*mqtt.Heartbeat).Door != "front" {
		t.Fatalf("heartbeat %v %s %v", m, kid, err)
	}
	old, err := s.Deltas("front", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, kid, err := d.v.Open(old[0]); err != nil || kid != "site-3" {
		t.Fatalf("old delta sent again: %s %v", kid, err)
	}
}

// The chain keeps the last mqtt.MaxRotations rotations.
func TestKeyChainBounded(t *testing.T) {
	s, rec := newTestSite(t, nil)
	ctx := context.Background()
	for i := range mqtt.MaxRotations + 2 {
		if err := s.RotateKey(ctx, newSigner(t, fmt.Sprintf("site-%d", i+2)), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	chains := rec.take(mqtt.TopicsFor(site).Keys())
	kc, err := mqtt.DecodeKeyChain(chains[len(chains)-1], site)
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.Rotations) != mqtt.MaxRotations {
		t.Fatalf("%d rotations", len(kc.Rotations))
	}
	var first struct {
		Payload mqtt.KeyRotation `json:"payload"`
	}
	if err := json.Unmarshal(kc.Rotations[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Payload.Seq != 3 {
		t.Fatalf("oldest rotation kept is %d, want 3", first.Payload.Seq)
	}
}

// Heartbeats go to approved doors only, each with its own view seq.
func TestHeartbeatPerDoor(t *testing.T) {
	s, rec, ds := newSiteWithDoors(t, nil, "front", "back")
	ctx := context.Background()
	for range 3 {
		if _, err := s.Commit(ucard(1, "h1", "front"), urevoke(1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(ucard(2, "h2", "back")); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		hb := rec.take(d.top.Heartbeat(d.name))
		if len(hb) != 1 {
			t.Fatalf("%d heartbeats for %s", len(hb), d.name)
		}
		m, _, err := d.v.Open(hb[0])
		if err != nil {
			t.Fatal(err)
		}
		if seq, _ := s.Head(d.name); m.Head().Seq != seq || seq != 1 {
			t.Fatalf("heartbeat of %s at %d, view at %d", d.name, m.Head().Seq, seq)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.msgs) != 0 {
		t.Fatalf("also sent %v", slices.Collect(func(yield func(string) bool) {
			for _, m := range rec.msgs {
				if !yield(m.topic) {
					return
				}
			}
		}))
	}
}
