package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The decoders below read bytes from the database file, which may be
// damaged; they must refuse bad input with an error, never panic, and
// accept only the one encoding they would write themselves.

func FuzzCardRecord(f *testing.F) {
	c := sampleCard(f)
	f.Add(cardBody(&c))
	f.Add(cardBody(&Card{UID: uidBob, HolderID: "b"}))
	f.Add([]byte{})
	f.Add([]byte{4, 1, 2, 3, 4, 0, 1, 'x', 0, 0, 0, 0, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeCardBody(body)
		if err != nil {
			return
		}
		if err := checkCard(&c); err != nil {
			t.Fatalf("decoded card fails validation: %v", err)
		}
		if again := cardBody(&c); !bytes.Equal(again, body) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", body, again)
		}
		names := testNames{}
		for _, name := range []string{"", c.HolderName} {
			rec := storeCard(t, &c, name, names)
			holders := holderMap{}
			if name != "" {
				h, err := encodeHolder(&Holder{ID: c.HolderID, Name: name})
				if err != nil {
					t.Fatal(err)
				}
				holders[c.HolderID] = h
			}
			got, err := decodeCard(c.UID, rec, cardRefs{holders: holders, names: names})
			if err != nil {
				t.Fatalf("stored record does not decode: %v", err)
			}
			if !bytes.Equal(cardBody(&got), body) {
				t.Fatalf("stored record decodes to another card")
			}
		}
	})
}

// FuzzStoredCard feeds bytes to the decoder of stored card records (with
// a valid checksum, so that the layout decoder is what is tested): it
// refuses them or returns a card that passes checkCard and stores back to
// the same bytes.
func FuzzStoredCard(f *testing.F) {
	c := sampleCard(f)
	names := testNames{}
	rec := storeCard(f, &c, "", names)
	f.Add(rec[1 : len(rec)-4])
	f.Add([]byte{0, 1, 'a', 0, 0})
	f.Add([]byte{0x88, 1, 'a', 1, 1, 2, 3})
	f.Fuzz(func(t *testing.T, body []byte) {
		e := encoder{b: append([]byte{cardVersion}, body...)}
		rec := e.sealedFor(uidAda)
		h, _ := encodeHolder(&Holder{ID: "a", Name: "A"})
		got, err := decodeCard(uidAda, rec, cardRefs{holders: holderMap{"a": h}, names: names})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		name := ""
		if body[0]&recHolderName != 0 {
			name = "A"
		}
		again, err := encodeCard(&got, name, names.ids(got.Doors))
		if err != nil || !bytes.Equal(again, rec) {
			t.Fatalf("stored again differs (%v):\n in %x\nout %x", err, rec, again)
		}
	})
}

func FuzzHolderRecord(f *testing.F) {
	h, _ := HashPIN([]byte("9753"), nil, fastPIN)
	f.Add(holderBody(&Holder{ID: "ada", Name: "Ada", DuressPINHash: h}))
	f.Add(holderBody(&Holder{ID: "b"}))
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := decodeHolderBody(body)
		if err != nil {
			return
		}
		if again := holderBody(&h); !bytes.Equal(again, body) {
			t.Fatalf("re-encoding differs: %x vs %x", body, again)
		}
	})
}

func FuzzRevocationRecord(f *testing.F) {
	f.Add(false, revocationBody(&Revocation{UID: uidAda, Reason: "lost"}))
	f.Add(true, revocationBody(&Revocation{HolderID: "eve", Reason: "left"}))
	f.Add(true, []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, byHolder bool, body []byte) {
		r, err := decodeRevocationBody(body, byHolder)
		if err != nil {
			return
		}
		if again := revocationBody(&r); !bytes.Equal(again, body) {
			t.Fatalf("re-encoding differs: %x vs %x", body, again)
		}
	})
}

func FuzzEventRecord(f *testing.F) {
	e := normalizeEvent(ev(3))
	rec := eventCanonical(&e, 7, [32]byte{1})
	f.Add(append(bytes.Clone(rec), make([]byte, 32)...))
	e2 := Event{}
	rec2 := eventCanonical(&e2, 1, [32]byte{})
	f.Add(rehash(append(rec2, make([]byte, 32)...)))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, rec []byte) {
		se, err := decodeEvent(rec)
		seq, prev, hash, hashOK, scanErr := scanEvent(rec)
		if (err == nil) != (scanErr == nil) {
			t.Fatalf("decodeEvent says %v, scanEvent says %v", err, scanErr)
		}
		if err != nil {
			return
		}
		if seq != se.Seq || prev != se.prev || hash != se.hash || hashOK != se.hashOK {
			t.Fatal("scanEvent and decodeEvent disagree")
		}
		again := eventCanonical(&se.Event, se.Seq, se.prev)
		again = append(again, se.hash[:]...)
		if !bytes.Equal(again, rec) {
			t.Fatalf("re-encoding differs: %x vs %x", rec, again)
		}
		if se.hashOK != bytes.Equal(rehash(rec), rec) {
			t.Fatal("hashOK disagrees with the hash")
		}
	})
}

func FuzzPHC(f *testing.F) {
	h, _ := HashPIN([]byte("4829"), nil, fastPIN)
	f.Add(h)
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.String() != s {
			t.Fatalf("parse/format round trip: %q -> %q", s, h.String())
		}
		if err := h.params.check(); err != nil {
			t.Fatalf("accepted parameters fail the check: %v", err)
		}
	})
}

// FuzzSmallRecords covers the sealed small records: the first byte picks
// the decoder, the rest is the body.
func FuzzSmallRecords(f *testing.F) {
	f.Add(byte(0), encodeLockout(lockoutRec{Fails: 3, Until: testEpoch})[1:])
	f.Add(byte(1), encodeTimes([]time.Time{testEpoch})[1:])
	f.Add(byte(2), encodeCommand(commandRec{Seq: 1, Expires: testEpoch})[1:])
	f.Add(byte(3), encodePoint(chainPoint{Seq: 9})[1:])
	f.Add(byte(4), encodeU64(5)[1:])
	f.Add(byte(5), encodeTime(testEpoch)[1:])
	f.Add(byte(6), encodeBool(true)[1:])
	f.Fuzz(func(t *testing.T, kind byte, tail []byte) {
		if len(tail) < 4 {
			return
		}
		rec := seal(smallVersion, tail[:len(tail)-4]) // valid checksum, fuzzed body
		var again []byte
		var err error
		switch kind % 7 {
		case 0:
			var l lockoutRec
			if l, err = decodeLockout(rec); err == nil {
				again = encodeLockout(l)
			}
		case 1:
			var ts []time.Time
			if ts, err = decodeTimes(rec); err == nil {
				again = encodeTimes(ts)
			}
		case 2:
			var c commandRec
			if c, err = decodeCommand(rec); err == nil {
				again = encodeCommand(c)
			}
		case 3:
			var p chainPoint
			if p, err = decodePoint(rec); err == nil {
				again = encodePoint(p)
			}
		case 4:
			var v uint64
			if v, err = decodeU64(rec); err == nil {
				again = encodeU64(v)
			}
		case 5:
			var tm time.Time
			if tm, err = decodeTime(rec); err == nil {
				again = encodeTime(tm)
			}
		case 6:
			var b bool
			if b, err = decodeBool(rec); err == nil {
				again = encodeBool(b)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(again, rec) {
			t.Fatalf("kind %d: re-encoding differs: %x vs %x", kind%7, rec, again)
		}
	})
}

func FuzzBoltMeta(f *testing.F) {
	src := populated(f, 3, 3)
	b, err := os.ReadFile(src)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b[:boltPageHeader+boltMetaLen])
	f.Add(b[4096 : 4096+boltPageHeader+boltMetaLen])
	f.Fuzz(func(t *testing.T, page []byte) {
		m, err := parseBoltMeta(page)
		if err != nil {
			return
		}
		if m.root >= m.pgid || m.pageSize < boltMinPageSize {
			t.Fatalf("accepted an inconsistent meta page: %+v", m)
		}
	})
}

// onlyLeaks reports whether the problems Check found are all pages that
// are neither in use nor free: space bbolt will not use again, which only
// a walk of the whole file at once finds, as Check does; the background
// check does not.
func onlyLeaks(err error) bool {
	_, problems, ok := strings.Cut(err.Error(), "bbolt check: ")
	if !ok {
		return false
	}
	for line := range strings.Lines(problems) {
		if !strings.HasSuffix(strings.TrimSpace(line), ": unreachable unfreed") {
			return false
		}
	}
	return true
}

// FuzzOpen opens damaged copies of a real database file: patch is written
// over the file at offset at (wrapping), and the file is cut to cut bytes
// when cut is not zero. Nothing may panic or crash: Open returns a store
// or an error; Decide on the store, before its background check runs,
// answers or fails with ErrCorrupt; the background check then finds the
// damage, or the store passes the full check and answers reads without
// error.
func FuzzOpen(f *testing.F) {
	src := populated(f, 20, 20)
	highWater(f, src)
	base, err := os.ReadFile(src)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(0), []byte{}, uint32(0))
	f.Add(uint32(3*4096+100), []byte{0xFF, 0xFF}, uint32(0))
	f.Add(uint32(4*4096+8), []byte{0x01, 0x00}, uint32(0))
	f.Add(uint32(0), []byte{}, uint32(6*4096))
	f.Add(uint32(5*4096+40), []byte{0, 0, 0, 0, 0, 0, 0, 0}, uint32(0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, at uint32, patch []byte, cut uint32) {
		file := bytes.Clone(base)
		for i, b := range patch {
			file[(int(at)+i)%len(file)] = b
		}
		if cut != 0 {
			file = file[:int(cut)%len(file)]
		}
		path := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		s, err := Open(path, held(release))
		if err != nil {
			close(release)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open refused a damaged file without ErrCorrupt: %v", err)
			}
			return
		}
		defer s.Close()
		for _, uid := range [][]byte{uidOf(1), uidOf(19), uidOf(10001), uidOf(777)} {
			if d, err := s.Decide(cardReq(uid, ModeCardOnly, testEpoch)); err != nil && (!errors.Is(err, ErrCorrupt) || d.Outcome != Denied) {
				t.Fatalf("Decide before the background check: %+v, %v; want an answer or Denied and ErrCorrupt", d, err)
			}
		}
		close(release)
		<-s.CheckDone()
		if err := s.Fault(); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("fault without ErrCorrupt: %v", err)
			}
			return
		}
		if err := s.Check(); err != nil && !onlyLeaks(err) {
			t.Fatalf("the background check passed a file Check refuses: %v", err)
		}
		if _, err := s.Snapshot(); err != nil {
			t.Fatalf("the background check passed a file with an unreadable allowlist: %v", err)
		}
		if _, err := s.EventsAfter(0, maxPage); err != nil {
			t.Fatalf("the background check passed a file with unreadable audit entries: %v", err)
		}
		if _, err := s.Decide(cardReq(uidOf(1), ModeCardOnly, testEpoch)); err != nil {
			t.Fatalf("Decide on a checked file: %v", err)
		}
	})
}
