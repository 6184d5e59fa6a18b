package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bigAllowlist returns the path of a closed database with n cards (uidOf),
// their holders and a revocation of every tenth card, written in one
// transaction.
func bigAllowlist(t testing.TB, n int) string {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "latch.db"), testOptions())
	mustDo(t, err)
	sn := Snapshot{Seq: 1}
	for i := range n {
		holder := fmt.Sprintf("h%05d", i)
		sn.Cards = append(sn.Cards, Card{UID: uidOf(i), HolderID: holder, HolderName: "Person", Doors: []string{"front"}})
		sn.Holders = append(sn.Holders, Holder{ID: holder, Name: "Person"})
		if i%10 == 9 {
			sn.Revocations = append(sn.Revocations, Revocation{UID: uidOf(i), Reason: "lost"})
		}
	}
	mustDo(t, s.ApplySnapshot(sn))
	mustDo(t, s.Close())
	return s.Path()
}

// rootPage returns the page size of the file at path and the root page of
// its bucket name.
func rootPage(t testing.TB, path string, name []byte) (pageSize int, root uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	mustDo(t, err)
	defer db.Close()
	mustDo(t, db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket(name).Root())
		return nil
	}))
	return db.Info().PageSize, root
}

// editPage rewrites page id of the file at path with edit.
func editPage(t testing.TB, path string, pageSize int, id uint64, edit func(page []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	mustDo(t, err)
	edit(b[int(id)*pageSize : (int(id)+1)*pageSize])
	mustDo(t, os.WriteFile(path, b, 0o600))
}

// makeCycle makes element 1 of the branch page at the root of the cards
// bucket point back to that page, and returns the key of the element: a
// lookup of that card loops through the page for ever.
func makeCycle(t testing.TB, path string) []byte {
	t.Helper()
	pageSize, root := rootPage(t, path, bucketCards)
	var key []byte
	editPage(t, path, pageSize, root, func(page []byte) {
		if pageFlags(page) != boltBranchPage || pageCount(page) < 3 {
			t.Fatalf("the cards bucket's root page %d is not a branch page of 3 or more elements", root)
		}
		k, _ := branchElem(page, 1)
		key = bytes.Clone(k)
		binary.NativeEndian.PutUint64(page[boltPageHeader+boltElemSize+8:], root)
	})
	return key
}

// unguardedChild is the child process of TestGuardCyclicBranchPage: it
// looks the card up in the file with the guard off, which bbolt cannot
// survive, and reports the decision if it does.
func unguardedChild() int {
	s, err := Open(os.Getenv("LATCH_STORE_TEST_PATH"), &Options{PINParams: fastPIN, SkipCheck: true})
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	s.pagesOK.Store(true) // as if the background check had passed
	debug.SetMaxStack(16 << 20)
	uid, _ := os.ReadFile(os.Getenv("LATCH_STORE_TEST_PATH") + ".uid")
	d, err := s.Decide(cardReq(uid, ModeCardOnly, testEpoch))
	fmt.Printf("decided %+v, %v\n", d, err)
	return 0
}

// TestGuardCyclicBranchPage puts a cycle in the cards bucket: a branch
// element that leads back to its own page. Without the guard, bbolt's
// lookup recurses until the stack overflows, which kills the process (a
// child process shows it). With the guard, Decide denies with ErrCorrupt
// and the store reports the fault; the background check and the full
// check find the cycle too.
func TestGuardCyclicBranchPage(t *testing.T) {
	path := bigAllowlist(t, 3000)
	uid := makeCycle(t, path)

	mustDo(t, os.WriteFile(path+".uid", uid, 0o600))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=unguarded", "LATCH_STORE_TEST_PATH="+path)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stack overflow") {
		t.Fatalf("without the guard the lookup did not overflow the stack (%v):\n%.2000s", err, out)
	}

	for _, opts := range []*Options{{PINParams: fastPIN, SkipCheck: true}, held(make(chan struct{}))} {
		s, err := Open(path, opts)
		mustDo(t, err)
		d, err := s.Decide(cardReq(uid, ModeCardOnly, testEpoch))
		if !errors.Is(err, ErrCorrupt) || d.Outcome != Denied || !strings.Contains(err.Error(), "deeper than") {
			t.Errorf("Decide through a cycle: %+v, %v; want Denied and ErrCorrupt", d, err)
		}
		select {
		case <-s.Faulted():
		default:
			t.Error("the cycle Decide met is not the store's fault")
		}
		// Another card, on a sound path, is denied too: the file is damaged.
		if d, err := s.Decide(cardReq(uidOf(0), ModeCardOnly, testEpoch)); !errors.Is(err, ErrCorrupt) || d.Outcome != Denied {
			t.Errorf("Decide after the fault: %+v, %v; want Denied and ErrCorrupt", d, err)
		}
		if err := s.Check(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Check: %v, want ErrCorrupt", err)
		}
		mustDo(t, s.Close())
	}
	if err := findsDamage(t, path, testOptions()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "page structure") {
		t.Errorf("background check: %v, want ErrCorrupt about the page structure", err)
	}
	// The allowlist's other reads and writes (a delta from the site, say)
	// wait for the page check and then refuse: bbolt would follow the
	// cycle there too, and this process would not survive it.
	s, err := Open(path, testOptions())
	mustDo(t, err)
	if err := s.PutCard(Card{UID: uid, HolderID: "x", Doors: []string{"*"}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("PutCard through a cycle: %v, want ErrCorrupt", err)
	}
	if err := s.ApplyDelta(Delta{Seq: 99, Ops: []Op{{Kind: OpRevokeCard, UID: uid}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ApplyDelta through a cycle: %v, want ErrCorrupt", err)
	}
	if _, err := s.Card(uid); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Card through a cycle: %v, want ErrCorrupt", err)
	}
	mustDo(t, s.Close())
	if _, err := Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open with the full check: %v, want ErrCorrupt", err)
	}
}

// TestGuardDamagedLeaf points an element of a cards leaf past the end of
// its page: Decide on a card in that leaf denies with ErrCorrupt before
// the background check, which finds it too.
func TestGuardDamagedLeaf(t *testing.T) {
	path := bigAllowlist(t, 3000)
	pageSize, root := rootPage(t, path, bucketCards)
	b, err := os.ReadFile(path)
	mustDo(t, err)
	_, leaf := branchElem(b[int(root)*pageSize:], 1)
	var uid []byte
	editPage(t, path, pageSize, leaf, func(page []byte) {
		_, k, _ := leafElem(page, 0)
		uid = bytes.Clone(k)
		binary.NativeEndian.PutUint32(page[boltPageHeader+3*boltElemSize+4:], uint32(pageSize)) // element 3's position
	})
	release := make(chan struct{})
	s, err := Open(path, held(release))
	mustDo(t, err)
	d, err := s.Decide(cardReq(uid, ModeCardOnly, testEpoch))
	if !errors.Is(err, ErrCorrupt) || d.Outcome != Denied || !strings.Contains(err.Error(), "points past the end of the page") {
		t.Errorf("Decide in a damaged leaf: %+v, %v; want Denied and ErrCorrupt", d, err)
	}
	close(release)
	mustDo(t, s.Close())
	if err := findsDamage(t, path, testOptions()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "points past the end of the page") {
		t.Errorf("background check: %v, want ErrCorrupt about the element", err)
	}
}

// swapLeafElems swaps elements i and j of a leaf page: each points at the
// other's key and value, which stay where they are.
func swapLeafElems(page []byte, i, j int) {
	ne := binary.NativeEndian
	ei, ej := page[boltPageHeader+i*boltElemSize:], page[boltPageHeader+j*boltElemSize:]
	ai := boltPageHeader + i*boltElemSize + int(ne.Uint32(ei[4:]))
	aj := boltPageHeader + j*boltElemSize + int(ne.Uint32(ej[4:]))
	var fi, fj [boltElemSize]byte
	copy(fi[:], ei)
	copy(fj[:], ej)
	copy(ei, fj[:])
	copy(ej, fi[:])
	ne.PutUint32(ei[4:], uint32(aj-(boltPageHeader+i*boltElemSize)))
	ne.PutUint32(ej[4:], uint32(ai-(boltPageHeader+j*boltElemSize)))
}

// TestBackgroundCheckKeyOrder swaps two revocations in their leaf page:
// every record is intact, but out of order a lookup can miss one. The
// background check finds it, as the full check does.
func TestBackgroundCheckKeyOrder(t *testing.T) {
	path := bigAllowlist(t, 3000)
	pageSize, root := rootPage(t, path, bucketRevokedCards)
	b, err := os.ReadFile(path)
	mustDo(t, err)
	leaf := root
	if pageFlags(b[int(root)*pageSize:]) == boltBranchPage {
		_, leaf = branchElem(b[int(root)*pageSize:], 0)
	}
	editPage(t, path, pageSize, leaf, func(page []byte) { swapLeafElems(page, 2, 5) })
	if err := findsDamage(t, path, testOptions()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "is not after key") {
		t.Errorf("background check: %v, want ErrCorrupt about key order", err)
	}
	if _, err := Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open with the full check: %v, want ErrCorrupt", err)
	}
}

// TestBackgroundCheckFindsDamage damages records in ways no checksum
// shows: the background check finds each, as the full check does.
func TestBackgroundCheckFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(tx *bolt.Tx) error
		says   string
	}{
		{"state sum", func(tx *bolt.Tx) error {
			var sum sum256
			sum[0] = 1
			return tx.Bucket(bucketSync).Put(keyStateSum, encodeBytes(sum.bytes()))
		}, "state sum does not match"},
		{"a card gone", func(tx *bolt.Tx) error {
			mustDo(t, tx.Bucket(bucketHolderCards).Delete(holderCardKey("h00007", uidOf(7))))
			return tx.Bucket(bucketCards).Delete(uidOf(7))
		}, "state sum does not match"},
		{"an index entry missing", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketHolderCards).Delete(holderCardKey("h00007", uidOf(7)))
		}, fmt.Sprintf("card %X is missing from the holder index", uidOf(7))},
		{"an index entry too many", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketHolderCards).Put(holderCardKey("h00007", uidOf(9999)), nil)
		}, "the holder index has 301 entries for 300 cards"},
		{"a lockout record", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLockout).Put(uidOf(3), []byte("not a record"))
		}, "lockout"},
		{"an audit entry in the middle", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			rec := bytes.Clone(b.Get(be64(3)))
			rec[20] ^= 1
			return b.Put(be64(3), rec)
		}, "audit chain broken at entry 3"},
		{"outbox cursor", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAuditMeta).Put(keyAcked, encodeU64(1000))
		}, "outbox cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := bigAllowlist(t, 300)
			func() {
				s, err := Open(path, testOptions())
				mustDo(t, err)
				defer s.Close()
				for i := range 10 {
					_, err := s.Append(Event{Time: testEpoch.Add(time.Duration(i) * time.Second), Door: "front", Type: TypeAccess, Reason: ReasonGranted})
					mustDo(t, err)
				}
			}()
			rawUpdate(t, path, tc.damage)
			full := func() error {
				s, err := Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true})
				if err == nil {
					s.Close()
				}
				return err
			}()
			if !errors.Is(full, ErrCorrupt) || !strings.Contains(full.Error(), tc.says) {
				t.Errorf("Open with the full check: %v, want ErrCorrupt saying %q", full, tc.says)
			}
			if err := findsDamage(t, path, &Options{PINParams: fastPIN, checkPages: 3, checkRecords: 7}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("background check: %v, want ErrCorrupt saying %q", err, tc.says)
			}
		})
	}
}

// TestBackgroundCheckWhileWriting writes between the chunks of the
// background check, small ones, every kind of write a door makes: the
// check passes a sound file however its pages move, and leaves the state
// sum alone when the allowlist changed under it.
func TestBackgroundCheckWhileWriting(t *testing.T) {
	path := bigAllowlist(t, 2000)
	parts, whole := testChunks(9, 3, 50)
	stores := make(chan *Store, 1)
	var s *Store // the hook's own: it runs on the check's goroutine
	chunks := 0
	var hookErr error
	do := func(err error) {
		if err != nil && hookErr == nil {
			hookErr = err
		}
	}
	opts := &Options{PINParams: fastPIN, checkPages: 2, checkRecords: 20, CheckPause: func(stop <-chan struct{}) {
		if s == nil {
			s = <-stores
		}
		chunks++
		n := chunks
		kind := n % 6
		if !s.pagesOK.Load() && (kind == 0 || kind == 1 || kind == 3) {
			// Until the page structure is checked, allowlist reads and
			// writes wait for it (waitPages): here, on the check's own
			// goroutine, they would wait for ever. The door's appends,
			// decisions and lockdown go on.
			kind = 2
		}
		switch kind {
		case 0:
			do(s.PutCard(Card{UID: uidOf(5000 + n), HolderID: "new", Doors: []string{"front"}}))
		case 1:
			do(s.DeleteCard(uidOf(n % 2000)))
		case 2:
			_, err := s.Append(Event{Time: testEpoch, Door: "front", Type: TypeAccess, Reason: ReasonGranted})
			do(err)
		case 3:
			do(s.Revoke(Revocation{UID: uidOf(n % 2000), Reason: "lost"}))
		case 4:
			_, err := s.Decide(cardReq(uidOf(n%2000), ModeCardPIN, testEpoch.Add(time.Duration(n)*time.Second)))
			do(err)
		case 5:
			do(s.SetLockdown("front", n%2 == 0))
		}
		if n == 150 {
			if !s.pagesOK.Load() {
				do(errors.New("the page structure is not checked after 150 chunks"))
				return
			}
			stageAll(t, s, 9, HashSnapshot(whole), parts)
		}
	}}
	st, err := Open(path, opts)
	mustDo(t, err)
	stores <- st
	<-st.CheckDone()
	if hookErr != nil {
		t.Fatalf("a write between chunks: %v", hookErr)
	}
	if chunks < 150 {
		t.Errorf("the check ran in %d chunks; want many", chunks)
	}
	if err := st.Fault(); err != nil {
		t.Errorf("fault on a sound file: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	mustDo(t, st.Close())
}

// TestCloseStopsBackgroundCheck closes a store whose background check is
// waiting between chunks: Close stops it and waits for it.
func TestCloseStopsBackgroundCheck(t *testing.T) {
	path := bigAllowlist(t, 100)
	paused := make(chan struct{}, 1)
	s, err := Open(path, &Options{PINParams: fastPIN, CheckPause: func(stop <-chan struct{}) {
		select {
		case paused <- struct{}{}:
		default:
		}
		<-stop
	}})
	mustDo(t, err)
	<-paused
	mustDo(t, s.Close())
	select {
	case <-s.CheckDone():
	default:
		t.Fatal("Close returned before the background check ended")
	}
	if err := s.Fault(); err != nil {
		t.Errorf("fault: %v", err)
	}
	if s.pagesOK.Load() {
		t.Error("a check stopped before it started says the pages are checked")
	}
}

// TestGuardAllocatesNothing: once warm, a guarded lookup allocates nothing.
func TestGuardAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	path := bigAllowlist(t, 3000)
	s, err := Open(path, &Options{PINParams: fastPIN, SkipCheck: true})
	mustDo(t, err)
	defer s.Close()
	uid := uidOf(1234)
	mustDo(t, s.view(func(tx *bolt.Tx) error {
		n := testing.AllocsPerRun(100, func() {
			for _, name := range [][]byte{bucketCards, bucketHolders, bucketRevokedCards, bucketLockout} {
				if err := s.guardGet(tx, name, uid); err != nil {
					t.Fatal(err)
				}
			}
		})
		if n != 0 {
			t.Errorf("%.1f allocations per guarded lookup", n/4)
		}
		return nil
	}))
}

// TestBackgroundCheckPageInFreelist lists a page of the cards bucket in
// the freelist as well: bbolt would give it to the next writer while it
// holds cards. The background check finds it, as the full check does.
func TestBackgroundCheckPageInFreelist(t *testing.T) {
	path := bigAllowlist(t, 3000)
	pageSize, root := rootPage(t, path, bucketCards)
	b, err := os.ReadFile(path)
	mustDo(t, err)
	m0, err0 := parseBoltMeta(b[:pageSize])
	m1, err1 := parseBoltMeta(b[pageSize : 2*pageSize])
	mustDo(t, errors.Join(err0, err1))
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	if m.freelist == boltNoFreelist {
		t.Fatal("no freelist")
	}
	_, leaf := branchElem(b[int(root)*pageSize:], 2)
	editPage(t, path, pageSize, m.freelist, func(page []byte) {
		ne := binary.NativeEndian
		n := int(ne.Uint16(page[10:]))
		if n == 0xFFFF || boltPageHeader+(n+1)*8 > pageSize || ne.Uint32(page[12:]) != 0 {
			t.Fatalf("freelist page of %d entries", n)
		}
		ids := []uint64{leaf}
		for i := range n {
			ids = append(ids, ne.Uint64(page[boltPageHeader+8*i:]))
		}
		slices.Sort(ids)
		for i, id := range ids {
			ne.PutUint64(page[boltPageHeader+8*i:], id)
		}
		ne.PutUint16(page[10:], uint16(len(ids)))
	})
	if err := findsDamage(t, path, testOptions()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "listed as free") {
		t.Errorf("background check: %v, want ErrCorrupt about a page in use and free", err)
	}
	if _, err := Open(path, &Options{PINParams: fastPIN, CheckAtOpen: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reachable freed") {
		t.Errorf("Open with the full check: %v, want ErrCorrupt", err)
	}
}

// TestBackgroundCheckWhilePruning prunes the audit chain between the
// chunks of the background check, past where the check is in the chain:
// the check goes on from the new checkpoint and passes.
func TestBackgroundCheckWhilePruning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := Open(path, testOptions())
	mustDo(t, err)
	var evs []Event
	for i := range 500 {
		evs = append(evs, Event{Time: testEpoch.Add(time.Duration(i) * time.Second), Door: "front", Type: TypeAccess, Reason: ReasonGranted})
	}
	_, err = s.AppendMany(evs)
	mustDo(t, err)
	mustDo(t, s.Ack(500))
	mustDo(t, s.Close())

	stores := make(chan *Store, 1)
	var st *Store // the hook's own
	pruned := 0
	var hookErr error
	opts := &Options{PINParams: fastPIN, checkRecords: 10, Retention: Retention{MaxEntries: 500}, CheckPause: func(stop <-chan struct{}) {
		if st == nil {
			st = <-stores
		}
		if !st.pagesOK.Load() {
			return
		}
		// Keep the chain shorter at each chunk: past where the check is.
		st.opts.Retention.MaxEntries -= 40
		if st.opts.Retention.MaxEntries < 10 {
			return
		}
		r, err := st.Prune(testEpoch.Add(time.Hour))
		if err != nil && hookErr == nil {
			hookErr = err
		}
		pruned += r.Dropped
	}}
	s, err = Open(path, opts)
	mustDo(t, err)
	stores <- s
	<-s.CheckDone()
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if pruned < 400 {
		t.Errorf("pruned %d entries during the check; want most", pruned)
	}
	if err := s.Fault(); err != nil {
		t.Errorf("fault: %v", err)
	}
	if r, err := s.Verify(); err != nil || !r.OK {
		t.Errorf("Verify: %+v, %v", r, err)
	}
	mustDo(t, s.Close())
}
