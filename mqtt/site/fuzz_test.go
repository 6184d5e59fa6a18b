package site

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchdoor/latch/mqtt"
	sitestore "github.com/latchdoor/latch/store/site"
)

// FuzzSiteHandle hands the site any message on any topic under the doors'
// root, as the broker would, for a site with one approved door (front)
// whose messages seed the corpus, with another door (back) that announces
// itself but is never approved. After each message, what the store loop
// and the sync loop would do is done too. Whatever comes, the site does
// not panic; stores no event and holds no head unless the approved door's
// key signed it; answers and acknowledges only what that key signed;
// counts each message on a door topic once as exactly one thing; and
// never moves a door's view seq back.
func FuzzSiteHandle(f *testing.F) {
	// Fixed identities: a message found failing replays from testdata.
	fid := fixedIdentity(f, 0x51)
	s, _ := newTestSite(f, func(o *Options) {
		o.DB = openDB(f, filepath.Join(f.TempDir(), "site.db"))
		pub := fid.Public()
		if err := Provision(o.DB, "front", &pub, nil); err != nil {
			f.Fatal(err)
		}
	})
	door := func(name string, id *mqtt.Identity) *testDoor {
		return &testDoor{t: f, name: name, id: id, st: openStore(f), v: newVerifier(f, name, id, s.Signer()), top: mqtt.TopicsFor(site)}
	}
	front, back := door("front", fid), door("back", fixedIdentity(f, 0x53))
	var published []string // topics published on while handling the current message
	s.sink = func(topic string, _ []byte, _ bool) error {
		published = append(published, topic)
		return nil
	}
	if _, err := s.Commit(ucard(1, "h1", "front"), ucard(2, "h2", "front", "back")); err != nil {
		f.Fatal(err)
	}
	for _, seed := range handleSeeds(f, front, back, fixedIdentity(f, 0x55)) {
		f.Add(seed.suffix, seed.payload)
	}
	top := mqtt.TopicsFor(site)
	f.Fuzz(func(t *testing.T, suffix string, payload []byte) {
		topic := top.Root + "door/" + suffix
		door, kind := doorTopic(top, topic)
		before := observe(t, s, door)
		signed := signedByApproved(s, kind, door, payload)
		published = nil

		s.handle(topic, payload)
		deliver(t, s, front)   // the store loop
		for len(s.syncs) > 0 { // the sync loop
			if err := s.answer(context.Background(), <-s.syncs); err != nil {
				t.Errorf("answer: %v", err)
			}
		}

		after := observe(t, s, door)
		if !signed {
			if after.stored != before.stored || after.events != before.events || after.contig != before.contig {
				t.Errorf("a message the door's key did not sign stored events: %d stored (was %d), %d in the database (was %d), contiguous %d (was %d)",
					after.stored, before.stored, after.events, before.events, after.contig, before.contig)
			}
			if after.head != before.head || after.dbHead != before.dbHead {
				t.Errorf("a message the door's key did not sign moved its head: %+v (was %+v), in the database %+v (was %+v)",
					after.head, before.head, after.dbHead, before.dbHead)
			}
			if len(published) > 0 {
				t.Errorf("a message the door's key did not sign was answered on %q", published)
			}
		}
		if why := countedOnce(kind, door, before, after); why != "" {
			t.Errorf("%s message on %q: %s\nbefore %+v\nafter  %+v", kind, topic, why, before.st, after.st)
		}
		if after.viewSeq < before.viewSeq {
			t.Errorf("front's view went back from %d to %d", before.viewSeq, after.viewSeq)
		}
	})
}

// doorTopic returns the door and the kind (events, sync or status) of a
// topic the site subscribes to, or "" for another topic.
func doorTopic(top mqtt.Topics, topic string) (door, kind string) {
	for _, k := range []string{"events", "sync", "status"} {
		if d := top.DoorOf(topic, k); d != "" {
			return d, k
		}
	}
	return "", ""
}

// signedByApproved reports whether payload, of kind on door's topic, is a
// message that door's approved key signed: an event of the door, a sync
// request, or a status announcing the approved identity with a signed
// head.
func signedByApproved(s *Site, kind, door string, payload []byte) bool {
	id, ok := s.Approved(door)
	if !ok {
		return false
	}
	switch kind {
	case "events":
		m, err := mqtt.DecodeEvent(payload, site, door)
		return err == nil && (m.Event.Door == "" || m.Event.Door == door) && m.VerifySig(id.SignKey) == nil
	case "sync":
		r, err := mqtt.DecodeSyncRequest(payload, site, door)
		return err == nil && r.VerifySig(id.SignKey) == nil
	case "status":
		st, err := mqtt.DecodeStatus(payload, site, door)
		return err == nil && st.Fingerprint == id.Fingerprint() && st.HeadSig != "" && st.VerifyHead(id.SignKey) == nil
	}
	return false
}

// observed is what the site holds of a door, and its counters.
type observed struct {
	st      Stats
	status  *mqtt.Status         // the door's last status
	stored  int                  // Stats.EventsStored
	events  int                  // the door's events in the database
	contig  uint64               // its contiguous seq
	head    sitestore.SignedHead // its latest head held
	dbHead  sitestore.SignedHead // its latest head in the database
	viewSeq uint64               // front's view seq
}

func observe(t *testing.T, s *Site, door string) observed {
	t.Helper()
	o := observed{st: s.Stats()}
	o.stored = o.st.EventsStored
	o.viewSeq, _ = s.Head("front")
	if door == "" {
		return o
	}
	o.status = o.st.LastStatus[door]
	evs, err := s.Events(door)
	if err != nil {
		t.Fatal(err)
	}
	o.events = len(evs)
	o.contig = s.Contiguous(door)
	o.head, _ = s.Heads(door)
	if o.dbHead, err = s.db.LatestHead(door); err != nil && !errors.Is(err, sitestore.ErrNotFound) {
		t.Fatal(err)
	}
	return o
}

// countedOnce checks that a message of kind counted once as one thing
// (and says how not): nothing at all on a topic the site does not read.
func countedOnce(kind, door string, before, after observed) string {
	a, b := after.st, before.st
	d := func(f func(st Stats) int) int { return f(a) - f(b) }
	refused := d(func(st Stats) int { return st.Malformed }) + d(func(st Stats) int { return st.WrongDoor })
	switch kind {
	case "":
		if refused != 0 || a.EventsReceived != b.EventsReceived || a.Unattributed != b.Unattributed ||
			a.SyncRequests != b.SyncRequests || a.SyncRefused != b.SyncRefused || len(a.LastStatus) != len(b.LastStatus) {
			return "a topic the site does not read changed its counts"
		}
	case "events":
		received := d(func(st Stats) int { return st.EventsReceived })
		unattributed := d(func(st Stats) int { return st.Unattributed })
		switch received {
		case 0:
			if refused+unattributed != 1 {
				return "not counted once as received, malformed, of the wrong door or unattributed"
			}
		case 1:
			// Received, then stored, a duplicate, a rewrite (a conflict
			// is one too) or invalid (counted as malformed).
			outcome := d(func(st Stats) int { return st.EventsStored }) + d(func(st Stats) int { return st.Duplicates }) +
				d(func(st Stats) int { return st.Rewrites }) + d(func(st Stats) int { return st.Malformed })
			if outcome != 1 || unattributed != 0 || a.WrongDoor != b.WrongDoor {
				return "received, but not counted once as stored, duplicate, rewrite or invalid"
			}
		default:
			return "received more than once"
		}
	case "sync":
		if refused+d(func(st Stats) int { return st.SyncRequests })+d(func(st Stats) int { return st.SyncRefused }) != 1 {
			return "not counted once as a request, refused, malformed or of the wrong door"
		}
	case "status":
		seen := after.status != before.status
		if seen == (refused == 1) || refused > 1 {
			return "not counted once as seen, malformed or of the wrong door"
		}
	}
	return ""
}

// handleSeed is a message of the corpus: a topic suffix after the doors'
// root and a payload.
type handleSeed struct {
	suffix  string
	payload []byte
}

// handleSeeds returns messages of front (approved) and back (not): signed
// events, statuses and sync requests, some signed by other or announcing
// it, and some mangled.
func handleSeeds(t testing.TB, front, back *testDoor, other *mqtt.Identity) []handleSeed {
	t.Helper()
	evs := front.events(4)
	var seeds []handleSeed
	add := func(suffix string, payload []byte) { seeds = append(seeds, handleSeed{suffix, payload}) }
	for _, e := range evs {
		add("front/events", front.eventMsg(e, front.id))
	}
	signed := front.eventMsg(evs[1], front.id)
	add("front/events", front.eventMsg(evs[0], nil))
	add("front/events", front.eventMsg(evs[1], other))
	add("front/events", flipSig(t, signed))
	add("front/events", bytes.Replace(signed, []byte(`"reason":"granted"`), []byte(`"reason":"revoked"`), 1))
	add("front/events", signed[:len(signed)/2])
	add("back/events", signed)
	add("back/events", back.eventMsg(back.events(1)[0], back.id))
	add("front/events/ack", signed)
	add("front/status", front.status(nil, 2, evs[1].Hash))
	add("front/status", front.status(nil, 0, ""))
	add("front/status", front.status(other, 3, evs[2].Hash))
	add("front/status", vouched(t, front, other))
	add("front/status", []byte(`{"v":2,"type":"status","site":"hq","door":"front","online":false,"acl_seq":0,"outbox":0}`))
	add("back/status", back.status(nil, 0, ""))
	add("front/sync", front.request("", 0))
	add("front/sync", front.request(mqtt.WantSnapshot, 4))
	req := mqtt.SyncRequest{V: mqtt.Version, Type: mqtt.KindSync, Site: site, Door: "front", AppliedSeq: 1,
		SnapshotHash: strings.Repeat("0", 64), At: t0, Chunks: &mqtt.ChunkWindow{Seq: 1, Hash: strings.Repeat("a", 64), From: 1, Count: 2}}
	add("front/sync", front.sign(req))
	req.Chunks, req.AppliedSeq = nil, math.MaxUint64-1
	add("front/sync", front.sign(req))
	add("front/sync", flipSig(t, front.request("", 0)))
	add("back/sync", back.request("", 0))
	add("front/acl", signed)
	add("front/events", []byte(`{}`))
	add("front/sync", nil)
	return seeds
}

// flipSig returns a door message whose "sig" has one byte of its
// signature changed.
func flipSig(t testing.TB, msg []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	var sig string
	if err := json.Unmarshal(m["sig"], &sig); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	raw[0] ^= 1
	if m["sig"], err = json.Marshal(base64.StdEncoding.EncodeToString(raw)); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vouched is d's status announcing next as the identity it rotates to,
// vouched for by its own key.
func vouched(t testing.TB, d *testDoor, next *mqtt.Identity) []byte {
	t.Helper()
	var st mqtt.Status
	if err := json.Unmarshal(d.status(nil, 0, ""), &st); err != nil {
		t.Fatal(err)
	}
	p := next.Public()
	st.NextFingerprint = p.Fingerprint()
	st.NextSignKey = base64.StdEncoding.EncodeToString(p.SignKey)
	st.NextSealKey = base64.StdEncoding.EncodeToString(p.SealKey)
	st.NextSig = d.id.Vouch(site, d.name, p)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedIdentity returns the door identity whose Ed25519 seed is 32 bytes
// of b and whose X25519 key is 32 bytes of b+1, read from an identity
// file as a door reads its own.
func fixedIdentity(t testing.TB, b byte) *mqtt.Identity {
	t.Helper()
	f := append([]byte("LATCHID1"), bytes.Repeat([]byte{b}, 32)...)
	f = append(f, bytes.Repeat([]byte{b + 1}, 32)...)
	f = binary.BigEndian.AppendUint32(f, crc32.Checksum(f, crc32.MakeTable(crc32.Castagnoli)))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, mqtt.IdentityFile), f, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := mqtt.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
