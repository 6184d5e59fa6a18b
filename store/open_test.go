package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	s := openTest(t, nil)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), ".latch.db.new-*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
	st, err := s.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if st.AppliedSeq != 0 || st.SnapshotHash != HashSnapshot(Snapshot{}) {
		t.Errorf("new store sync state %+v, want seq 0 and the empty snapshot hash", st)
	}
}

func TestOpenTightensFileMode(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.Close())
	mustDo(t, os.Chmod(s.Path(), 0o644))
	s = openTestAt(t, s.Path(), nil)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after Open, want 0600", fi.Mode().Perm())
	}
}

func TestOpenLockedInProcess(t *testing.T) {
	s := openTest(t, nil)
	_, err := Open(s.Path(), &Options{LockTimeout: 50 * time.Millisecond, PINParams: fastPIN})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "another latchd") {
		t.Errorf("error %q should name the file and say another latchd holds it", err)
	}
}

// lockChild is the child process of TestOpenLockedByAnotherProcess: it
// opens the file with the default options and prints the error.
func lockChild() int {
	s, err := Open(os.Getenv("LATCH_STORE_TEST_PATH"), &Options{PINParams: fastPIN})
	if err == nil {
		s.Close()
		fmt.Println("opened")
		return 1
	}
	fmt.Printf("locked=%v err=%v\n", errors.Is(err, ErrLocked), err)
	return 0
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	s := openTest(t, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=lock", "LATCH_STORE_TEST_PATH="+s.Path())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "locked=true") || !strings.Contains(got, s.Path()) ||
		!strings.Contains(got, "another latchd holds this file") || !strings.Contains(got, "after 1s") {
		t.Errorf("child output %q: want ErrLocked naming the file, another latchd and the 1s timeout", got)
	}
}

func TestOpenRefusesZeroLength(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	mustDo(t, os.WriteFile(path, nil, 0o600))
	_, err := Open(path, testOptions())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "zero length") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of an empty file: %v, want ErrCorrupt naming the file and saying zero length", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Errorf("Open wrote %d bytes into the damaged file", fi.Size())
	}
}

// populated returns the path of a closed database with cards, holders,
// revocations and audit entries.
func populated(t testing.TB, cards, events int) string {
	t.Helper()
	s := openTest(t, nil)
	for i := range cards {
		mustDo(t, s.PutCard(Card{UID: uidOf(i), HolderID: fmt.Sprintf("h%d", i%50), HolderName: "Person", Doors: []string{"front"}}))
	}
	for i := range 20 {
		mustDo(t, s.PutHolder(Holder{ID: fmt.Sprintf("h%d", i), Name: fmt.Sprintf("Holder %d", i)}))
		mustDo(t, s.Revoke(Revocation{UID: uidOf(10000 + i), Reason: "lost"}))
	}
	var evs []Event
	for i := range events {
		evs = append(evs, Event{Time: testEpoch.Add(time.Duration(i) * time.Second), Door: "front", Type: TypeAccess, Reason: ReasonGranted, UID: fmt.Sprintf("%X", uidOf(i))})
	}
	if len(evs) > 0 {
		if _, err := s.AppendMany(evs); err != nil {
			t.Fatal(err)
		}
	}
	mustDo(t, s.Close())
	return s.Path()
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, os.WriteFile(dst, b, 0o600))
}

// highWater cuts a closed database file down to the pages in use: bbolt
// grows files in large steps, and the tail beyond the high-water mark
// holds nothing.
func highWater(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	mustDo(t, err)
	defer f.Close()
	buf := make([]byte, 8192)
	_, err = io.ReadFull(f, buf)
	mustDo(t, err)
	m0, err0 := parseBoltMeta(buf[:4096])
	m1, err1 := parseBoltMeta(buf[4096:])
	if err0 != nil || err1 != nil {
		t.Fatalf("meta pages: %v, %v", err0, err1)
	}
	hw := int64(max(m0.pgid, m1.pgid)) * int64(m0.pageSize)
	mustDo(t, os.Truncate(path, hw))
	return hw
}

func TestOpenRefusesTruncated(t *testing.T) {
	src := populated(t, 300, 300)
	size := highWater(t, src)
	path := filepath.Join(t.TempDir(), "latch.db")
	for _, cut := range []int64{100, 4096, 8192 + 17, size / 2, size - 4096, size - 1} {
		copyFile(t, src, path)
		mustDo(t, os.Truncate(path, cut))
		_, err := Open(path, testOptions())
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open of a file cut to %d of %d bytes: %v, want ErrCorrupt", cut, size, err)
			continue
		}
		if cut > 8192 && !strings.Contains(err.Error(), "truncated") {
			t.Errorf("cut to %d: error %q should say the file is truncated", cut, err)
		}
	}
}

func TestOpenRefusesNotBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	junk := bytes.Repeat([]byte("not a database "), 2000)
	mustDo(t, os.WriteFile(path, junk, 0o600))
	if _, err := Open(path, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a text file: %v, want ErrCorrupt", err)
	}
}

func TestOpenRefusesForeignBoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("something"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	_, err := Open(path, testOptions())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a latch database") {
		t.Fatalf("Open of another program's bbolt file: %v", err)
	}
}

// findsDamage opens a damaged file as a door does and returns what found
// the damage: Open itself, or the background check (the store's fault
// once the check has ended). A store that opens is closed.
func findsDamage(t testing.TB, path string, opts *Options) error {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		return err
	}
	defer func() { mustDo(t, s.Close()) }()
	<-s.CheckDone()
	return s.Fault()
}

// held returns Options whose background check waits for release (closed
// by the caller) before its first chunk, so that what runs before it runs
// on pages no one has checked.
func held(release <-chan struct{}) *Options {
	return &Options{PINParams: fastPIN, CheckPause: func(stop <-chan struct{}) {
		select {
		case <-release:
		case <-stop:
		}
	}}
}

// damagedPageRequests are the requests TestOpenDamagedPages makes before
// the background check has run: cards of the populated file, an unknown
// card and a revoked one.
func damagedPageRequests() []Request {
	var reqs []Request
	for _, uid := range [][]byte{uidOf(0), uidOf(57), uidOf(199), uidOf(398), uidOf(5000), uidOf(10003)} {
		reqs = append(reqs, cardReq(uid, ModeCardOnly, testEpoch))
	}
	return reqs
}

// TestOpenDamagedPages overwrites every page of a populated file in turn
// with random bytes or zeros, or flips a bit in it. Nothing may panic or
// crash. Open refuses the file with ErrCorrupt, or accepts it; then,
// before the background check runs, Decide answers each card as it did
// before the damage or denies it with ErrCorrupt; then the background
// check finds the damage (a fault wrapping ErrCorrupt), or the page was
// not in use and the store's contents are exactly what they were, and the
// full check passes. With the full check at Open, the file is refused or
// its contents are intact.
func TestOpenDamagedPages(t *testing.T) {
	src := populated(t, 400, 400)
	s0, err := Open(src, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want, err := s0.Snapshot()
	mustDo(t, err)
	wantEvents, err := s0.EventsAfter(0, 10000)
	mustDo(t, err)
	reqs := damagedPageRequests()
	var wantDecisions []Decision
	for _, req := range reqs {
		wantDecisions = append(wantDecisions, decide(t, s0, req))
	}
	mustDo(t, s0.Close())

	highWater(t, src)
	orig, err := os.ReadFile(src)
	mustDo(t, err)
	const page = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	var atOpen, byDecide, inBackground, intact, fullRefused int
	path := filepath.Join(t.TempDir(), "latch.db")
	intactContents := func(s *Store) error {
		got, err := s.Snapshot()
		gotEvents, err2 := s.EventsAfter(0, 10000)
		r, err3 := s.Verify()
		if err != nil || err2 != nil || err3 != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotEvents, wantEvents) || !r.OK {
			return fmt.Errorf("contents changed (snapshot err %v, events err %v, verify %+v %v)", err, err2, r, err3)
		}
		return nil
	}
	for p := 2; p*page < len(orig); p++ {
		for _, fill := range []string{"random", "zeros", "flip"} {
			b := bytes.Clone(orig)
			pg := b[p*page : (p+1)*page]
			switch fill {
			case "random":
				for i := range pg {
					pg[i] = byte(rng.Uint32())
				}
			case "zeros":
				clear(pg)
			case "flip":
				pg[16+rng.IntN(page-16)] ^= 1 << rng.IntN(8)
			}
			mustDo(t, os.WriteFile(path, b, 0o600))
			release := make(chan struct{})
			s, err := Open(path, held(release))
			if err != nil {
				close(release)
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("page %d %s: Open: %v, want ErrCorrupt", p, fill, err)
				}
				atOpen++
			} else {
				denied := false
				for i, req := range reqs {
					d, err := s.Decide(req)
					switch {
					case err != nil && (!errors.Is(err, ErrCorrupt) || d.Outcome != Denied):
						t.Errorf("page %d %s: Decide(%X) before the background check: %+v, %v; want Denied and ErrCorrupt", p, fill, req.UID, d, err)
					case err != nil:
						denied = true
					case !reflect.DeepEqual(d, wantDecisions[i]):
						t.Errorf("page %d %s: Decide(%X) before the background check: %+v, want %+v", p, fill, req.UID, d, wantDecisions[i])
					}
				}
				close(release)
				<-s.CheckDone()
				switch fault := s.Fault(); {
				case fault != nil && !errors.Is(fault, ErrCorrupt):
					t.Errorf("page %d %s: fault %v, want ErrCorrupt", p, fill, fault)
				case fault != nil && denied:
					byDecide++
				case fault != nil:
					inBackground++
					if err := s.Check(); !errors.Is(err, ErrCorrupt) {
						t.Errorf("page %d %s: the background check found %v, Check %v", p, fill, fault, err)
					}
				case denied:
					t.Errorf("page %d %s: Decide failed, but the background check found nothing", p, fill)
				default:
					if err := intactContents(s); err != nil {
						t.Errorf("page %d %s: the background check passed a damaged file: %v", p, fill, err)
					} else if err := s.Check(); err != nil {
						t.Errorf("page %d %s: the background check passed a file Check refuses: %v", p, fill, err)
					}
					intact++
				}
				mustDo(t, s.Close())
			}

			s, err = Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("page %d %s: Open with the full check: %v, want ErrCorrupt", p, fill, err)
				}
				fullRefused++
				continue
			}
			if err := intactContents(s); err != nil {
				t.Errorf("page %d %s: Open with the full check accepted a damaged file: %v", p, fill, err)
			}
			mustDo(t, s.Close())
		}
	}
	t.Logf("%d damaged copies refused at Open, %d denied by Decide before the background check, %d found by the background check, %d accepted with intact contents (damage on free pages); %d refused by the full check at Open",
		atOpen, byDecide, inBackground, intact, fullRefused)
	if atOpen == 0 || byDecide == 0 || inBackground == 0 {
		t.Error("some of the ways of finding damage found none")
	}
	if fullRefused != atOpen+byDecide+inBackground {
		t.Errorf("the full check at Open refused %d copies, the cheap checks, guarded lookups and background check %d", fullRefused, atOpen+byDecide+inBackground)
	}
}

func TestOpenUsesOtherMetaAfterTornMetaWrite(t *testing.T) {
	src := populated(t, 10, 10)
	b, err := os.ReadFile(src)
	mustDo(t, err)
	m0, err0 := parseBoltMeta(b[:4096])
	m1, err1 := parseBoltMeta(b[4096:8192])
	if err0 != nil || err1 != nil {
		t.Fatalf("meta pages: %v, %v", err0, err1)
	}
	newer := 0
	if m1.txid > m0.txid {
		newer = 1
	}
	// Tear the newest meta page: its transaction never completed, so the
	// one before it is the last committed state.
	b[newer*4096+40] ^= 0xFF
	mustDo(t, os.WriteFile(src, b, 0o600))
	s := openTestAt(t, src, nil)
	if _, err := s.Card(uidOf(1)); err != nil {
		t.Errorf("card after falling back to the older meta page: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.Close())
	rawUpdate(t, s.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, encodeU64(schemaVersion+1))
	})
	_, err := Open(s.Path(), testOptions())
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open: %v, want ErrSchemaTooNew", err)
	}
	rawUpdate(t, s.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, encodeU64(schemaVersion))
	})
}

func TestDamagedRecord(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.PutCard(Card{UID: uidOf(1), HolderID: "h1", Doors: []string{"front"}}))
	mustDo(t, s.Close())
	var orig []byte
	rawUpdate(t, s.Path(), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCards)
		orig = bytes.Clone(b.Get(uidOf(1)))
		bad := bytes.Clone(orig)
		bad[len(bad)-6] ^= flagCardOnly // turn on card-only: checksum catches it
		return b.Put(uidOf(1), bad)
	})
	namesCard := func(err error) bool {
		return errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), fmt.Sprintf("card %X", uidOf(1)))
	}
	// The full check at Open refuses the file.
	if _, err := Open(s.Path(), &Options{PINParams: fastPIN, CheckAtOpen: true}); !namesCard(err) {
		t.Fatalf("Open with the full check: %v, want ErrCorrupt naming the card", err)
	}
	// Opened as a door opens it: Decide refuses to use the record before
	// the background check has run; the check then finds it, and from
	// then on Decide denies every card.
	release := make(chan struct{})
	s2, err := Open(s.Path(), held(release))
	mustDo(t, err)
	d, err := s2.Decide(cardReq(uidOf(1), ModeCardOnly, testEpoch))
	if !errors.Is(err, ErrCorrupt) || d.Outcome != Denied {
		t.Errorf("Decide on a damaged record: %+v, %v; want Denied and ErrCorrupt", d, err)
	}
	if s2.Fault() != nil {
		t.Errorf("a damaged record made a fault before the check ran: %v", s2.Fault())
	}
	close(release)
	<-s2.Faulted()
	<-s2.CheckDone()
	if err := s2.Fault(); !namesCard(err) || !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("fault %v: want ErrCorrupt naming the file and the card", err)
	}
	if d, err := s2.Decide(cardReq(uidOf(2), ModeCardOnly, testEpoch)); !errors.Is(err, ErrCorrupt) || d.Outcome != Denied {
		t.Errorf("Decide after the fault: %+v, %v; want Denied and ErrCorrupt", d, err)
	}
	if err := s2.Check(); !namesCard(err) {
		t.Errorf("Check: %v, want ErrCorrupt naming the card", err)
	}
	mustDo(t, s2.Close())
	// With the checks skipped, Decide still refuses to use the record.
	s3, err := Open(s.Path(), &Options{PINParams: fastPIN, SkipCheck: true})
	mustDo(t, err)
	d, err = s3.Decide(cardReq(uidOf(1), ModeCardPIN, testEpoch))
	if !errors.Is(err, ErrCorrupt) || d.Outcome != Denied {
		t.Errorf("Decide on a damaged record: %+v, %v; want Denied and ErrCorrupt", d, err)
	}
	<-s3.CheckDone() // closed: there is no background check
	mustDo(t, s3.Close())
	rawUpdate(t, s.Path(), func(tx *bolt.Tx) error { return tx.Bucket(bucketCards).Put(uidOf(1), orig) })
}

// writeV1 writes a schema 1 database: the layout before the holder index
// and the allowlist state sum. It is how testdata/v1.db was made.
func writeV1(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if bytes.Equal(name, bucketHolderCards) {
				continue
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		put := func(bucket, k, v []byte) {
			if err == nil {
				err = tx.Bucket(bucket).Put(k, v)
			}
		}
		put(bucketMeta, keySchema, encodeU64(1))
		put(bucketSync, keyApplied, encodeU64(41))
		put(bucketSync, keyLastIssued, encodeTime(time.Date(2025, 11, 3, 8, 0, 0, 0, time.UTC)))
		cards := []Card{
			{UID: []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}, HolderID: "ada", HolderName: "Ada Lovelace", Doors: []string{"front", "lab"},
				PINHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$rTcq4CfZIO2NUc2bOmVnvL7ENPtS9y1QiJk7gLeD+D8"},
			{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, HolderID: "ada", HolderName: "Ada Lovelace", Doors: []string{"*"}, Flags: Flags{CardOnly: true}},
			{UID: []byte{0x04, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}, HolderID: "bob", HolderName: "Bob", Doors: []string{"front"},
				ValidUntil: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
				Schedule:   Schedule{Weekly: [7][]Window{1: {{From: 480, To: 1080}}}, Holidays: []string{"2026-12-25"}}},
		}
		for i := range cards {
			put(bucketCards, cards[i].UID, legacyCard(&cards[i]))
		}
		put(bucketHolders, []byte("ada"), legacyHolder(&Holder{ID: "ada", Name: "Ada Lovelace"}))
		put(bucketRevokedCards, []byte{0x01, 0x02, 0x03, 0x04}, legacyRevocation(&Revocation{UID: []byte{0x01, 0x02, 0x03, 0x04}, Reason: "lost"}))
		put(bucketRevokedHolders, []byte("eve"), legacyRevocation(&Revocation{HolderID: "eve", Reason: "left"}))
		put(bucketLockout, cards[0].UID, encodeLockout(lockoutRec{Fails: 2}))
		var head chainPoint
		for i, r := range []Reason{ReasonGranted, ReasonBadPIN, ReasonDoorForced} {
			e := Event{Time: time.Date(2025, 11, 3, 8, i, 0, 0, time.UTC), Clock: TimeSynced, BootID: "b1", Door: "front", Type: TypeAccess, Reason: r}
			rec := eventCanonical(&e, head.Seq+1, head.Hash)
			h := sha256.Sum256(rec)
			put(bucketAudit, be64(head.Seq+1), append(rec, h[:]...))
			head = chainPoint{Seq: head.Seq + 1, Hash: h}
		}
		put(bucketAuditMeta, keyHead, encodePoint(head))
		put(bucketAuditMeta, keyAcked, encodeU64(1))
		return err
	})
}

func checkMigratedV1(t *testing.T, path string) {
	t.Helper()
	s, err := Open(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s, testOptions())
	if _, err := os.Stat(path + ".schema-1.bak"); err != nil {
		t.Errorf("no backup copy before the migration: %v", err)
	}
	uids, err := s.CardsOf("ada")
	mustDo(t, err)
	if len(uids) != 2 {
		t.Errorf("holder index after migration: ada has %d cards, want 2", len(uids))
	}
	sn, err := s.Snapshot()
	mustDo(t, err)
	st, err := s.SyncState()
	mustDo(t, err)
	if st.AppliedSeq != 41 || st.SnapshotHash != HashSnapshot(sn) {
		t.Errorf("sync state after migration %+v, want seq 41 and hash %s", st, HashSnapshot(sn))
	}
	if len(sn.Cards) != 3 || len(sn.Revocations) != 2 {
		t.Errorf("migrated snapshot has %d cards, %d revocations", len(sn.Cards), len(sn.Revocations))
	}
	d, err := s.Decide(Request{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, Door: "front", Mode: ModeCardPIN, Now: testEpoch, ClockTrusted: true})
	if err != nil || d.Outcome != Granted || d.HolderName != "Ada Lovelace" {
		t.Errorf("Decide after migration: %+v, %v", d, err)
	}
	if r, err := s.Verify(); err != nil || !r.OK || r.Entries != 3 {
		t.Errorf("audit chain after migration: %+v, %v", r, err)
	}
	if n, err := s.OutboxDepth(); err != nil || n != 2 {
		t.Errorf("outbox depth after migration: %d, %v; want 2", n, err)
	}
}

// TestMigrateFromV1File opens the schema 1 file kept in testdata.
func TestMigrateFromV1File(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	copyFile(t, filepath.Join("testdata", "v1.db"), path)
	checkMigratedV1(t, path)
	// The migrated file opens again without migrating.
	s := openTestAt(t, path, nil)
	mustDo(t, s.Close())
}

// TestMigrateFromV1Generated runs the generator of testdata/v1.db and
// migrates its output; with -store.gen-v1 it also rewrites the testdata
// file.
func TestMigrateFromV1Generated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	mustDo(t, writeV1(path))
	if *genV1 {
		copyFile(t, path, filepath.Join("testdata", "v1.db"))
		t.Log("wrote testdata/v1.db")
	}
	checkMigratedV1(t, path)
}

func TestMigrationFailureLeavesFileUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	mustDo(t, writeV1(path))
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCards).Put([]byte{9, 9, 9, 9}, []byte("garbage"))
	})
	before, err := os.ReadFile(path)
	mustDo(t, err)
	_, err = Open(path, testOptions())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "migrate schema 1 to 2") {
		t.Fatalf("Open: %v, want a failed migration", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	mustDo(t, err)
	defer db.Close()
	mustDo(t, db.View(func(tx *bolt.Tx) error {
		v, err := readSchema(tx)
		if v != 1 || tx.Bucket(bucketHolderCards) != nil {
			t.Errorf("after a failed migration: schema %d, holder index present %v", v, tx.Bucket(bucketHolderCards) != nil)
		}
		return err
	}))
	backup, err := os.ReadFile(path + ".schema-1.bak")
	mustDo(t, err)
	if len(backup) == 0 || len(before) == 0 {
		t.Error("empty backup")
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	s := openTest(t, nil)
	mustDo(t, s.Close())
	mustDo(t, s.Close())
	if _, err := s.Append(Event{Reason: ReasonGranted}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Card(uidOf(1)); err == nil {
		t.Error("Card after Close: no error")
	}
}

func TestOptionsValidated(t *testing.T) {
	bad := []Options{
		{LockTimeout: -1},
		{UntrustedClock: 7},
		{ClockSkew: -time.Second},
		{Lockout: LockoutPolicy{Backoff: time.Hour, MaxBackoff: time.Minute}},
		{Retention: Retention{MaxEntries: -1}},
		{PINParams: PINParams{Memory: 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}},
	}
	for i, o := range bad {
		path := filepath.Join(t.TempDir(), "latch.db")
		if _, err := Open(path, &o); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("options %d: Open: %v, want ErrInvalidArgument", i, err)
		}
	}
}

// The schema 2 file in testdata (made by the last build that wrote schema
// 2) and what its allowlist hashes to.
const (
	v2File    = "v2.db"
	v2Applied = 41
	v2Hash    = "1d997c77bdf1637627c720c8af940c5e835e7b280c891a94365f146f0aa2b87f"
)

func checkMigratedV2(t *testing.T, path string, opts *Options) {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s, opts)
	st, err := s.SyncState()
	mustDo(t, err)
	if st.AppliedSeq != v2Applied || st.SnapshotHash != v2Hash {
		t.Errorf("after migration: applied %d, state hash %s; want %d, %s", st.AppliedSeq, st.SnapshotHash, v2Applied, v2Hash)
	}
	sn, err := s.Snapshot()
	mustDo(t, err)
	if got := HashSnapshot(sn); got != v2Hash || len(sn.Cards) != 301 {
		t.Errorf("snapshot after migration: %d cards, hash %s", len(sn.Cards), got)
	}
	deadbeef := []byte{0xDE, 0xAD, 0xBE, 0xEF}
	d, err := s.Decide(Request{UID: deadbeef, Door: "side", Mode: ModeCardPIN, Now: testEpoch, ClockTrusted: true, PIN: []byte("2468")})
	if err != nil || d.Outcome != Granted || d.HolderName != "Person 1" {
		t.Errorf("Decide after migration: %+v, %v", d, err)
	}
	// The bad PIN counted before the migration was reset by the good one;
	// the lockdown of "back" is still there.
	if on, err := s.Lockdown("back"); err != nil || !on {
		t.Errorf("lockdown of back after migration: %v, %v", on, err)
	}
	if d, err := s.Decide(Request{UID: []byte{0x04, 0x50, 0, 17, 0x11, 0x22, 0x33}, Door: "front", Mode: ModeCardOnly, Now: testEpoch, ClockTrusted: true}); err != nil || d.Reason != ReasonRevoked {
		t.Errorf("revoked card after migration: %+v, %v", d, err)
	}
	if r, err := s.Verify(); err != nil || !r.OK || r.Entries != 3 {
		t.Errorf("audit chain after migration: %+v, %v", r, err)
	}
	if _, err := os.Stat(path + ".schema-2.bak"); err != nil {
		t.Errorf("no backup copy before the migration: %v", err)
	}
}

// TestMigrateFromV2File opens the schema 2 file kept in testdata, a few
// records per transaction so that the migration takes many.
func TestMigrateFromV2File(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	copyFile(t, filepath.Join("testdata", v2File), path)
	opts := testOptions()
	opts.migrateBatch = 64
	checkMigratedV2(t, path, opts)
	s := openTestAt(t, path, nil)
	mustDo(t, s.Close())
}

// TestMigrationV2CutShort stops the migration after each of its batches
// in turn, as a crash would: the file is then still a schema 2 file with
// its allowlist intact, and the next Open carries on and ends with the
// same state.
func TestMigrationV2CutShort(t *testing.T) {
	stopped := 0
	for stopAfter := 1; ; stopAfter++ {
		path := filepath.Join(t.TempDir(), "latch.db")
		copyFile(t, filepath.Join("testdata", v2File), path)
		opts := testOptions()
		opts.migrateBatch = 64
		batches := 0
		opts.migrateHook = func() error {
			if batches++; batches == stopAfter {
				return errors.New("cut short")
			}
			return nil
		}
		s, err := Open(path, opts)
		if err == nil {
			// The migration finished before the stop: every batch has
			// been cut short once.
			mustDo(t, s.Close())
			if stopped < 5 {
				t.Fatalf("the migration took only %d batches", stopped)
			}
			return
		}
		stopped++
		if !strings.Contains(err.Error(), "still schema 2") {
			t.Fatalf("stop after batch %d: Open: %v", stopAfter, err)
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		mustDo(t, err)
		mustDo(t, db.View(func(tx *bolt.Tx) error {
			v, err := readSchema(tx)
			if v != 2 || tx.Bucket(bucketMigrate) == nil {
				t.Errorf("stop after batch %d: schema %d, migration bucket %v", stopAfter, v, tx.Bucket(bucketMigrate) != nil)
			}
			return err
		}))
		mustDo(t, db.Close())
		opts.migrateHook = nil
		checkMigratedV2(t, path, opts)
	}
}

// TestMigrationV2RefusesDamage: a damaged schema 2 record stops the
// migration with ErrCorrupt and leaves a schema 2 file.
func TestMigrationV2RefusesDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	copyFile(t, filepath.Join("testdata", v2File), path)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHolders).Put([]byte("p0100"), []byte("garbage"))
	})
	opts := testOptions()
	opts.SkipCheck = true
	_, err := Open(path, opts)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "migrate schema 2 to 3") {
		t.Fatalf("Open: %v, want a refused migration", err)
	}
}

// TestMigrationV2RestartsAfterChange: a migration cut short, then the
// schema 2 allowlist changed (by a build that knows only schema 2): the
// next Open starts the migration over and ends with the changed state.
func TestMigrationV2RestartsAfterChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	copyFile(t, filepath.Join("testdata", v2File), path)
	opts := testOptions()
	opts.migrateBatch = 64
	batches := 0
	opts.migrateHook = func() error {
		if batches++; batches == 2 {
			return errors.New("cut short")
		}
		return nil
	}
	if _, err := Open(path, opts); err == nil {
		t.Fatal("the migration was not cut short")
	}
	// Holder p0000 was converted already; rename it in schema 2.
	renamed := Holder{ID: "p0000", Name: "Renamed"}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		old, _, err := decodeLegacyHolder([]byte("p0000"), tx.Bucket(bucketHolders).Get([]byte("p0000")))
		if err != nil {
			return err
		}
		sum, err := readSum(tx)
		if err != nil {
			return err
		}
		sum.sub(entryHash(tagHolder, holderBody(&old)))
		sum.add(entryHash(tagHolder, holderBody(&renamed)))
		if err := tx.Bucket(bucketHolders).Put([]byte("p0000"), legacyHolder(&renamed)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSync).Put(keyStateSum, encodeBytes(sum.bytes())); err != nil {
			return err
		}
		return tx.Bucket(bucketSync).Put(keyApplied, encodeU64(v2Applied+1))
	})
	opts.migrateHook = nil
	s, err := Open(path, opts)
	mustDo(t, err)
	defer checkAndClose(t, s, opts)
	h, err := s.Holder("p0000")
	if err != nil || h.Name != "Renamed" {
		t.Errorf("holder after the migration: %+v, %v; want the new name", h, err)
	}
	sn, err := s.Snapshot()
	mustDo(t, err)
	if st, err := s.SyncState(); err != nil || st.AppliedSeq != v2Applied+1 || st.SnapshotHash != HashSnapshot(sn) {
		t.Errorf("sync state after the migration: %+v, %v", st, err)
	}
}
