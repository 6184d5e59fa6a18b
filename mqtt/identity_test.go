package mqtt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestIdentityCreateLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadIdentity(dir); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("empty directory: %v, want ErrNoIdentity", err)
	}
	id, err := CreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != int64(identityLen) {
		t.Fatalf("identity file: %v %v", fi, err)
	}
	again, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := id.Public(), again.Public(); !bytes.Equal(a.SignKey, b.SignKey) || !bytes.Equal(a.SealKey, b.SealKey) {
		t.Fatal("loaded identity differs from the one made")
	}
	if _, err := CreateIdentity(dir); err == nil || !strings.Contains(err.Error(), "not replaced") {
		t.Fatalf("second create: %v", err)
	}
	if again2, _ := LoadIdentity(dir); again2.Public().Fingerprint() != id.Public().Fingerprint() {
		t.Fatal("the identity was replaced")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d files, want the identity alone", len(entries))
	}
	msg := []byte("chain head 42")
	if !ed25519.Verify(id.Public().SignKey, msg, again.Sign(msg)) {
		t.Fatal("signature does not verify")
	}
}

func TestIdentityRefusesDamageAndLooseMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := CreateIdentity(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	b, _ := os.ReadFile(path)

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), "lets others read") {
		t.Fatalf("mode 0644: %v", err)
	}
	for name, bad := range map[string][]byte{
		"flipped bit": func() []byte { c := bytes.Clone(b); c[20] ^= 1; return c }(),
		"truncated":   b[:len(b)-1],
		"bad magic":   append([]byte("LATCHIDX"), b[8:]...),
		"empty":       nil,
	} {
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}

func TestSealToDoor(t *testing.T) {
	front, _ := NewIdentity()
	back, _ := NewIdentity()
	info := []byte("latch/v2/hq/door/front/acl seq 7")
	ct, err := SealTo(front.Public(), info, []byte("the front door's view"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("view")) {
		t.Fatal("plaintext in the sealed message")
	}
	pt, err := front.Open(info, ct)
	if err != nil || string(pt) != "the front door's view" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := back.Open(info, ct); err == nil {
		t.Error("another door opened it")
	}
	if _, err := front.Open([]byte("latch/v2/hq/door/front/acl seq 8"), ct); err == nil {
		t.Error("opened under other info (a replay under another sequence)")
	}
	ct[len(ct)-1] ^= 1
	if _, err := front.Open(info, ct); err == nil {
		t.Error("opened an altered message")
	}
}

func TestFingerprint(t *testing.T) {
	a, _ := NewIdentity()
	b, _ := NewIdentity()
	fa := a.Public().Fingerprint()
	if !regexp.MustCompile(`^([A-Z2-7]{4}-){7}[A-Z2-7]{4}$`).MatchString(fa) {
		t.Fatalf("fingerprint %q", fa)
	}
	if fa != a.Public().Fingerprint() || fa == b.Public().Fingerprint() {
		t.Fatal("fingerprint not stable or not distinct")
	}
	p := a.Public()
	p.SealKey = b.Public().SealKey
	if p.Fingerprint() == fa {
		t.Fatal("the fingerprint does not cover the sealing key")
	}
	if s := a.Public().String(); !strings.Contains(s, fa) {
		t.Fatalf("String %q lacks the fingerprint", s)
	}
}

func TestPublicIdentityCheck(t *testing.T) {
	good, _ := NewIdentity()
	if err := good.Public().Check("door front"); err != nil {
		t.Fatal(err)
	}
	weakSign := good.Public()
	weakSign.SignKey = make([]byte, 32)
	lowOrder := good.Public()
	lowOrder.SealKey = make([]byte, 32) // the all-zero X25519 point has order 1... (u = 0)
	one := good.Public()
	one.SealKey = append([]byte{1}, make([]byte, 31)...) // u = 1, order 4
	short := good.Public()
	short.SealKey = short.SealKey[:31]
	for name, p := range map[string]PublicIdentity{"small-order signing key": weakSign, "u=0": lowOrder, "u=1": one, "short": short} {
		if err := p.Check("door front"); err == nil || !strings.HasPrefix(err.Error(), "door front") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	id, _ := NewIdentity()
	f.Add(id.marshal())
	f.Add([]byte(identityMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseIdentity(b)
		if err != nil {
			return
		}
		if !bytes.Equal(got.marshal(), b) {
			t.Fatalf("accepted %x, re-encodes to %x", b, got.marshal())
		}
	})
}

// A status announces the door's identity; a decoder refuses one whose
// fingerprint does not match its keys, or whose keys are weak, with or
// without a cache of identities checked before (one that holds the good
// identity, and one so small it forgets it).
func TestStatusIdentity(t *testing.T) {
	id, _ := NewIdentity()
	p := id.Public()
	st := Status{V: Version, Type: KindStatus, Site: "hq", Door: "front", Online: true,
		Fingerprint: p.Fingerprint(), SignKey: b64(p.SignKey), SealKey: b64(p.SealKey)}
	b, err := marshal("status", st)
	if err != nil {
		t.Fatal(err)
	}
	warm, tiny := NewIdentityCache(16), NewIdentityCache(1)
	for _, ids := range []*IdentityCache{nil, warm, warm, tiny} {
		got, err := DecodeStatusWith(b, "hq", "front", ids)
		if err != nil {
			t.Fatal(err)
		}
		if gp, err := got.Identity(); err != nil || gp.Fingerprint() != p.Fingerprint() {
			t.Fatalf("identity %v %v", gp, err)
		}
	}
	other, _ := NewIdentity()
	for name, edit := range map[string]func(*Status){
		"fingerprint of another door": func(s *Status) { s.Fingerprint = other.Public().Fingerprint() },
		"keys of another door":        func(s *Status) { s.SignKey = b64(other.Public().SignKey) },
		"weak signing key":            func(s *Status) { s.SignKey = b64(make([]byte, 32)) },
		"fingerprint alone":           func(s *Status) { s.SignKey, s.SealKey = "", "" },
		"bad base64":                  func(s *Status) { s.SealKey = "!!" },
	} {
		bad := st
		edit(&bad)
		b, err := marshal("status", bad)
		if err != nil {
			t.Fatal(err)
		}
		for _, ids := range []*IdentityCache{nil, warm, tiny} {
			if _, err := DecodeStatusWith(b, "hq", "front", ids); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s (cache %v): %v", name, ids != nil, err)
			}
		}
	}
	// A weak key is never remembered as checked.
	weak := st
	weak.SignKey = b64(make([]byte, 32))
	weak.Fingerprint = (&PublicIdentity{SignKey: make([]byte, 32), SealKey: p.SealKey}).Fingerprint()
	wb, err := marshal("status", weak)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := DecodeStatusWith(wb, "hq", "front", warm); !errors.Is(err, ErrMalformed) {
			t.Errorf("weak key with its own fingerprint: %v", err)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A signed head decodes when it verifies under the announced key, and is
// refused when any part of it was changed.
func TestStatusSignedHead(t *testing.T) {
	id, _ := NewIdentity()
	p := id.Public()
	hash := strings.Repeat("ab", 32)
	msg, err := headMessage("hq", "front", 42, hash)
	if err != nil {
		t.Fatal(err)
	}
	st := Status{V: Version, Type: KindStatus, Site: "hq", Door: "front", Online: true,
		Fingerprint: p.Fingerprint(), SignKey: b64(p.SignKey), SealKey: b64(p.SealKey),
		HeadSeq: 42, HeadHash: hash, HeadSig: b64(id.Sign(msg))}
	b, _ := marshal("status", st)
	got, err := DecodeStatus(b, "hq", "front")
	if err != nil {
		t.Fatal(err)
	}
	if err := got.VerifyHead(p.SignKey); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Status){
		"other seq":     func(s *Status) { s.HeadSeq = 41 },
		"other hash":    func(s *Status) { s.HeadHash = strings.Repeat("cd", 32) },
		"bad hash":      func(s *Status) { s.HeadHash = "zz" },
		"other door":    func(s *Status) { s.Door = "back" },
		"no key":        func(s *Status) { s.Fingerprint, s.SignKey, s.SealKey = "", "", "" },
		"bad signature": func(s *Status) { s.HeadSig = b64(make([]byte, 64)) },
		"bad encoding":  func(s *Status) { s.HeadSig = "!" },
	} {
		bad := st
		edit(&bad)
		b, _ := marshal("status", bad)
		if _, err := DecodeStatus(b, "hq", ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A status announces the next identity only vouched for by the current
// key; a vouch by any other key, or for other keys, is refused.
func TestStatusNextIdentity(t *testing.T) {
	cur, next, other := testIdentity(t), mustIdentity(t), mustIdentity(t)
	status := func(voucher *Identity, np PublicIdentity) []byte {
		p, n := cur.Public(), np
		st := Status{V: Version, Type: KindStatus, Site: "hq", Door: "front", Online: true,
			Fingerprint: p.Fingerprint(), SignKey: base64.StdEncoding.EncodeToString(p.SignKey), SealKey: base64.StdEncoding.EncodeToString(p.SealKey),
			NextFingerprint: n.Fingerprint(), NextSignKey: base64.StdEncoding.EncodeToString(n.SignKey), NextSealKey: base64.StdEncoding.EncodeToString(n.SealKey),
			NextSig: voucher.Vouch("hq", "front", n)}
		b, _ := json.Marshal(st)
		return b
	}
	m, err := DecodeStatus(status(cur, next.Public()), "hq", "front")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := m.NextIdentity(); err != nil || p.Fingerprint() != next.Public().Fingerprint() {
		t.Fatalf("NextIdentity = %v, %v", p, err)
	}
	if _, err := DecodeStatus(status(other, next.Public()), "hq", "front"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("vouched by another key: %v", err)
	}
	// The vouch names the door: the same words for another door do not count.
	b := status(cur, next.Public())
	if _, err := DecodeStatus(bytes.Replace(b, []byte(`"door":"front"`), []byte(`"door":"back"`), 1), "hq", "back"); err == nil {
		t.Fatal("a vouch for door front accepted for door back")
	}
}

func mustIdentity(t *testing.T) *Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
