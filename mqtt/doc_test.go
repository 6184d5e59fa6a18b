package mqtt

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/latchdoor/latch/store"
)

// The examples in docs/mqtt.md are real messages, made by docExamples with
// the fixed keys below and written into the page by
//
//	go test ./mqtt -run TestDocExamples -update-doc-examples
//
// which replaces the ```json block after each <!-- example: NAME -->
// marker. TestDocExamples checks every ```json block of the page, whether
// generated or not.
var updateDocExamples = flag.Bool("update-doc-examples", false, "rewrite the examples of docs/mqtt.md before checking them")

// The example keys. Their private halves are published in docs/mqtt.md:
// they must never be trusted by a real door or site.
var (
	docSiteSeed     = bytes.Repeat([]byte{0x01}, ed25519.SeedSize) // kid site-2026
	docNextSeed     = bytes.Repeat([]byte{0x02}, ed25519.SeedSize) // kid site-2027
	docDoorSignSeed = bytes.Repeat([]byte{0x03}, ed25519.SeedSize) // the example door's Ed25519 seed
	docDoorSealKey  = bytes.Repeat([]byte{0x04}, 32)               // its X25519 private key
)

// docSitePub is the public key of site-2026 as the page states it.
const docSitePub = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

const (
	docSite = "hq"
	docDoor = "front"
)

// The card UIDs of the examples: none may appear outside a sealed body,
// and the hex form only in an audit event, which names the card presented.
var docUIDs = [][]byte{
	{0x04, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6}, // Ada Park's card
	{0x04, 0x5E, 0x11, 0xA2, 0x3B, 0x7C, 0x80}, // Ben Okafor's card, enrolled by the delta
	{0x04, 0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01}, // a lost card
	{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}, // a stolen card, revoked by the delta
}

// docIdentity is the example door's identity.
func docIdentity(t *testing.T) *Identity {
	t.Helper()
	x, err := ecdh.X25519().NewPrivateKey(docDoorSealKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Identity{sign: ed25519.NewKeyFromSeed(docDoorSignSeed), seal: x}
}

func docSigner(t *testing.T, kid string, seed []byte) *Signer {
	t.Helper()
	s, err := NewSigner(kid, ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func docTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// docExamples makes every example of the page, by marker name. The
// story: door front of site hq has view 41 (a one-chunk snapshot); the
// site enrols a card and revokes another (delta 42); the door grants a
// card (event 1207), which the site acknowledges; later, after a resync,
// the door stages a larger snapshot in chunks; then the site rotates its
// key. The state hashes are the ones a real store reports.
func docExamples(t *testing.T) map[string][]byte {
	t.Helper()
	// Deterministic HPKE ephemerals and PIN salts, so that the page only
	// changes when the messages do.
	cryptotest.SetGlobalRandom(t, 2026)

	site := docSigner(t, "site-2026", docSiteSeed)
	next := docSigner(t, "site-2027", docNextSeed)
	id := docIdentity(t)
	pub := id.Public()
	t0 := docTime("2026-03-01T09:30:00Z")
	ada, ben, lost, stolen := docUIDs[0], docUIDs[1], docUIDs[2], docUIDs[3]

	pin := func(p string, uid []byte) string {
		h, err := store.HashPIN([]byte(p), uid, store.DefaultPINParams)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	weekdays := store.Schedule{}
	for d := time.Monday; d <= time.Friday; d++ {
		weekdays.Weekly[d] = []store.Window{{From: 7 * 60, To: 19 * 60}}
	}
	snap41 := store.Snapshot{
		Seq: 41,
		Cards: []store.Card{{
			UID: ada, HolderID: "emp-0017", PINHash: pin("2718", ada), Doors: []string{"front", "lab"},
		}},
		Holders:     []store.Holder{{ID: "emp-0017", Name: "Ada Park"}},
		Revocations: []store.Revocation{{UID: lost, Reason: "reported lost"}},
	}
	ops42 := []store.Op{
		{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "emp-0023", Name: "Ben Okafor"}},
		{Kind: store.OpUpsertCard, Card: &store.Card{
			UID: ben, HolderID: "emp-0023", PINHash: pin("5093", ben), Doors: []string{"front"},
			ValidUntil: docTime("2026-09-01T00:00:00Z"), Schedule: weekdays,
		}},
		{Kind: store.OpRevokeCard, UID: stolen, Reason: "reported stolen"},
	}

	// A door's store gives the state hashes the door reports.
	st, err := store.Open(filepath.Join(t.TempDir(), "latch.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stateHash := func() string {
		ss, err := st.SyncState()
		if err != nil {
			t.Fatal(err)
		}
		return ss.SnapshotHash
	}
	if err := st.ApplySnapshot(snap41); err != nil {
		t.Fatal(err)
	}
	h41 := stateHash()
	if err := st.ApplyDelta(store.Delta{Seq: 42, Ops: ops42}); err != nil {
		t.Fatal(err)
	}
	h42 := stateHash()

	ex := map[string][]byte{}
	must := func(name string, b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		ex[name] = b
	}

	plan, err := PlanSnapshot(snap41, 0)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Hash() != h41 || plan.Chunks() != 1 {
		t.Fatalf("snapshot 41: hash %s in %d chunks, the store says %s", plan.Hash(), plan.Chunks(), h41)
	}
	b, err := site.SealChunk(plan, 0, docSite, docDoor, pub, t0.Add(-time.Hour))
	must("chunk", b, err)
	b, err = site.SealFor(pub, NewDelta(docSite, docDoor, 42, t0, ops42))
	must("delta", b, err)
	b, err = site.Seal(&Heartbeat{Header: Header{Site: docSite, Seq: 42, IssuedAt: t0}, Door: docDoor})
	must("heartbeat", b, err)

	cmd := func(seq uint64, id string, a Action) *Command {
		return &Command{Header: Header{Site: docSite, Seq: seq, IssuedAt: t0}, Door: docDoor, ID: id,
			ExpiresAt: t0.Add(30 * time.Second), Action: a}
	}
	unlock := cmd(311, "9f2c4e7a1b3d5f60", ActionUnlock)
	unlock.DurationMS = 5000
	b, err = site.Seal(unlock)
	must("cmd-unlock", b, err)
	on := true
	lockdown := cmd(312, "9f2c4e7a1b3d5f61", ActionLockdown)
	lockdown.On = &on
	b, err = site.Seal(lockdown)
	must("cmd-lockdown", b, err)
	b, err = site.Seal(cmd(313, "9f2c4e7a1b3d5f62", ActionResync))
	must("cmd-resync", b, err)

	prev := sha256.Sum256([]byte("the entry before event 1207 of the docs/mqtt.md example"))
	e := store.Event{
		Seq: 1207, Time: t0.Add(2 * time.Second), Clock: store.TimeSynced, BootID: "b7e1", Door: docDoor,
		Type: store.TypeAccess, Reason: store.ReasonGranted, UID: fmt.Sprintf("%X", ada),
		Holder: "emp-0017", HolderName: "Ada Park", Prev: hex.EncodeToString(prev[:]),
	}
	if e.Hash, err = store.HashEvent(e); err != nil {
		t.Fatal(err)
	}
	head, err := headMessage(docSite, docDoor, e.Seq, e.Hash)
	if err != nil {
		t.Fatal(err)
	}
	headSig := base64.StdEncoding.EncodeToString(id.Sign(head))
	b, err = json.Marshal(EventMsg{V: Version, Type: KindEvent, Site: docSite, Door: docDoor, Event: e, Sig: headSig})
	must("event", b, err)
	b, err = site.Seal(&EventsAck{Header: Header{Site: docSite, Seq: e.Seq, IssuedAt: t0.Add(3 * time.Second)}, Door: docDoor})
	must("events-ack", b, err)

	b, err = json.Marshal(Status{
		V: Version, Type: KindStatus, Site: docSite, Door: docDoor, Online: true, At: t0.Add(4 * time.Second),
		DoorState: "closed", Reader: "ok", Journal: "ok", ACLSeq: 42, SnapshotHash: h42, Outbox: 0,
		Version: "1.1.0", UptimeS: 86400, Clock: store.TimeSynced, Mode: store.ModeCardPIN, TZ: "Europe/Berlin",
		Fingerprint: pub.Fingerprint(),
		SignKey:     base64.StdEncoding.EncodeToString(pub.SignKey),
		SealKey:     base64.StdEncoding.EncodeToString(pub.SealKey),
		HeadSeq:     e.Seq, HeadHash: e.Hash, HeadSig: headSig,
	})
	must("status", b, err)
	b, err = json.Marshal(Status{V: Version, Type: KindStatus, Site: docSite, Door: docDoor})
	must("status-offline", b, err)

	sync := SyncRequest{V: Version, Type: KindSync, Site: docSite, Door: docDoor,
		AppliedSeq: 41, SnapshotHash: h41, Window: 4, At: t0.Add(-2 * time.Second)}
	sync.Sign(id)
	b, err = json.Marshal(sync)
	must("sync", b, err)

	// Later, after a resync: snapshot 58 of a larger view, in chunks (a
	// small chunk size, to keep the example short), of which the door has
	// staged 0 to 3.
	big := store.Snapshot{Seq: 58}
	for i := range 120 {
		big.Cards = append(big.Cards, store.Card{UID: []byte{0x08, 0x00, 0x10, byte(i)}, HolderID: fmt.Sprintf("vis-%04d", i),
			Doors: []string{"front"}, Flags: store.Flags{CardOnly: true}})
	}
	bigPlan, err := PlanSnapshot(big, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if bigPlan.Chunks() != 11 {
		t.Fatalf("snapshot 58 has %d chunks; the page says 11", bigPlan.Chunks())
	}
	chunks := SyncRequest{V: Version, Type: KindSync, Site: docSite, Door: docDoor,
		AppliedSeq: 42, SnapshotHash: h42, Window: 4, At: docTime("2026-03-01T11:02:10Z"),
		Chunks: &ChunkWindow{Seq: bigPlan.Seq(), Hash: bigPlan.Hash(), From: 4, Count: 4}}
	chunks.Sign(id)
	b, err = json.Marshal(chunks)
	must("sync-chunks", b, err)

	t1 := docTime("2026-03-01T12:00:00Z")
	rot, err := site.Rotation(docSite, 1, next, t1, t1.Add(7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, err = json.Marshal(KeyChain{V: Version, Type: KindKeys, Site: docSite, Rotations: []json.RawMessage{rot}})
	must("keys", b, err)
	return ex
}

var docMarkerRE = regexp.MustCompile("(?m)^<!-- example: ([a-z-]+) -->\n```json\n[^`]*```")

// writeDocExamples replaces the block after each marker of page with the
// example of that name.
func writeDocExamples(t *testing.T, page []byte, ex map[string][]byte) []byte {
	t.Helper()
	used := map[string]bool{}
	out := docMarkerRE.ReplaceAllFunc(page, func(m []byte) []byte {
		name := string(docMarkerRE.FindSubmatch(m)[1])
		b, ok := ex[name]
		if !ok {
			t.Errorf("docs/mqtt.md: marker of an unknown example %q", name)
			return m
		}
		used[name] = true
		return fmt.Appendf(nil, "<!-- example: %s -->\n```json\n%s\n```", name, b)
	})
	for name := range ex {
		if !used[name] {
			t.Errorf("docs/mqtt.md has no marker for the example %q", name)
		}
	}
	return out
}

// TestDocExamples checks every ```json block of docs/mqtt.md: signed
// messages verify under site-2026 for the example door, sealed ones open
// with its identity, a one-chunk snapshot hashes to its hash, the key
// chain's rotations apply, door messages decode and their signatures
// verify with the example door's key; every kind has an example; and no
// example shows a card UID or a PIN hash outside a sealed body.
func TestDocExamples(t *testing.T) {
	path := filepath.Join("..", "docs", "mqtt.md")
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if *updateDocExamples {
		page = writeDocExamples(t, page, docExamples(t))
		if t.Failed() {
			t.FailNow()
		}
		if err := os.WriteFile(path, page, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if pub := base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(docSiteSeed).Public().(ed25519.PublicKey)); pub != docSitePub {
		t.Fatalf("site-2026 from its seed is %s, the page says %s", pub, docSitePub)
	}
	id := docIdentity(t)
	doorKey := id.Public().SignKey
	for _, want := range []string{docSitePub, id.Public().Fingerprint()} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("docs/mqtt.md does not name %s", want)
		}
	}
	keys, err := ParsePublicKeys(map[string]string{"site-2026": docSitePub})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewDoorVerifier(docSite, docDoor, keys, id)
	if err != nil {
		t.Fatal(err)
	}

	seen := map[Kind]int{}
	blocks := strings.Split(string(page), "```json\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("docs/mqtt.md has no ```json block")
	}
	for i, blk := range blocks {
		end := strings.Index(blk, "```")
		if end < 0 {
			t.Fatalf("example %d: unterminated block", i)
		}
		ex := []byte(strings.TrimSpace(blk[:end]))
		name := fmt.Sprintf("example %d (%.60s…)", i, ex)
		var probe struct {
			Type    Kind            `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(ex, &probe); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		k := probe.Type
		switch {
		case probe.Payload != nil:
			m, _, err := v.Open(ex)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if c, ok := m.(*SnapshotChunk); ok && c.Chunks == 1 {
				if got := store.HashSnapshot(c.StorePart()); got != c.Hash {
					t.Fatalf("%s: one-chunk snapshot hashes to %s, says %s", name, got, c.Hash)
				}
			}
			k = m.Kind()
		case k == KindKeys:
			kc, err := DecodeKeyChain(ex, docSite)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			kv, err := NewVerifier(docSite, keys)
			if err != nil {
				t.Fatal(err)
			}
			for j, link := range kc.Rotations {
				m, kid, err := kv.Open(link, KindKeyRotation)
				if err != nil {
					t.Fatalf("%s: rotation %d: %v", name, j, err)
				}
				if ok, err := kv.Rotate(m.(*KeyRotation), kid); !ok || err != nil {
					t.Fatalf("%s: rotation %d does not apply: %v %v", name, j, ok, err)
				}
				seen[KindKeyRotation]++
			}
		case k == KindEvent:
			m, err := DecodeEvent(ex, docSite, docDoor)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := m.VerifySig(doorKey); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := store.VerifyEvents(m.Event.Prev, []store.Event{m.Event}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case k == KindStatus:
			m, err := DecodeStatus(ex, docSite, docDoor)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if m.SignKey != "" {
				p, err := m.Identity()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if p.Fingerprint() != id.Public().Fingerprint() {
					t.Fatalf("%s: identity %s, not the example door's", name, p.Fingerprint())
				}
				if err := m.VerifyHead(doorKey); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
		case k == KindSync:
			m, err := DecodeSyncRequest(ex, docSite, docDoor)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := m.VerifySig(doorKey); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		default:
			t.Fatalf("%s: type %q", name, k)
		}
		seen[k]++

		// What a broker sees: no card UID and no PIN hash in clear. An
		// audit event names the card presented, in hex.
		text := string(ex)
		if strings.Contains(text, "argon2id") {
			t.Errorf("%s: a PIN hash in clear", name)
		}
		for _, uid := range docUIDs {
			// Unpadded, it is also found where it is padded.
			if enc := base64.RawStdEncoding.EncodeToString(uid); strings.Contains(text, enc) {
				t.Errorf("%s: card UID %X in clear (%s)", name, uid, enc)
			}
			if hx := fmt.Sprintf("%X", uid); k != KindEvent && strings.Contains(strings.ToUpper(text), hx) {
				t.Errorf("%s: card UID %X in clear", name, uid)
			}
		}
	}
	kinds := []Kind{KindDelta, KindChunk, KindHeartbeat, KindCommand, KindEventsAck, KindKeyRotation, KindKeys, KindEvent, KindStatus, KindSync}
	for _, k := range kinds {
		if seen[k] == 0 {
			t.Errorf("docs/mqtt.md has no example of %s", k)
		}
	}
	for k := range seen {
		if !slices.Contains(kinds, k) {
			t.Errorf("docs/mqtt.md has an example of %s, which this test does not know", k)
		}
	}
}
