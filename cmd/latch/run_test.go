package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// cheapPINs keeps PIN hashing fast in tests; the rules are the same.
var cheapPINs = store.PINParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// latch runs the CLI in-process with stdin and returns its exit code and
// output.
func latch(t testing.TB, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// oneLine fails unless s is exactly one line that contains want.
func oneLine(t testing.TB, s, want string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.Contains(s, want) {
		t.Errorf("stderr = %q, want one line containing %q", s, want)
	}
}

// testSite is a site made by latch init in a temp dir.
type testSite struct {
	dir, db, key, sock string
}

func initSite(t testing.TB) *testSite {
	t.Helper()
	dir := t.TempDir()
	s := &testSite{dir: dir, db: filepath.Join(dir, "site.db"), key: filepath.Join(dir, "site.key"), sock: filepath.Join(dir, "latch.sock")}
	if code, _, errs := latch(t, "", "init", "--db", s.db, "--key", s.key, "--site", "hq"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	return s
}

// serve runs the real service on the site's socket until the test ends.
// It returns the site database the service opened.
func (s *testSite) serve(t testing.TB) *site.DB {
	t.Helper()
	return s.serveWith(t, serveOptions{})
}

// serveWith is serve with the broker and site options of o.
func (s *testSite) serveWith(t testing.TB, o serveOptions) *site.DB {
	t.Helper()
	sv := s.start(t, o)
	t.Cleanup(func() { sv.stop(t) })
	return sv.db
}

// served is a running service.
type served struct {
	db     *site.DB
	site   *mqttsite.Site
	cancel context.CancelFunc
	done   chan error
}

// start runs the real service with o's broker and site options until
// stop.
func (s *testSite) start(t testing.TB, o serveOptions) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	sv := &served{cancel: cancel, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	edit := o.site
	o.db, o.key, o.socket, o.pins, o.ready = s.db, s.key, s.sock, cheapPINs, func() { close(ready) }
	o.site = func(so *mqttsite.Options) {
		sv.db = so.DB
		if edit != nil {
			edit(so)
		}
	}
	o.siteReady = func(ms *mqttsite.Site) { sv.site = ms }
	go func() { sv.done <- serve(ctx, o, log) }()
	select {
	case <-ready:
	case err := <-sv.done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	return sv
}

// stop stops the service and waits for it.
func (sv *served) stop(t testing.TB) {
	t.Helper()
	if sv.cancel == nil {
		return
	}
	sv.cancel()
	sv.cancel = nil
	if err := <-sv.done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// cli runs a client command against the site's socket.
func (s *testSite) cli(t testing.TB, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return latch(t, stdin, append(args, "--socket", s.sock)...)
}

// ok runs a client command that must succeed and returns its output.
func (s *testSite) ok(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := s.cli(t, stdin, args...)
	if code != 0 {
		t.Fatalf("latch %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func TestInit(t *testing.T) {
	s := initSite(t)
	fi, err := os.Stat(s.key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k, err := loadSiteKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	if k.Site != "hq" || k.Kid != "hq-1" {
		t.Errorf("key names site %q kid %q, want hq, hq-1", k.Site, k.Kid)
	}

	// What init prints is what a door's config trusts.
	dir := t.TempDir()
	code, out, errs := latch(t, "", "init", "--db", filepath.Join(dir, "s.db"), "--key", filepath.Join(dir, "s.key"), "--site", "lab", "--kid", "lab-2026")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	var kid, b64 string
	for l := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " = "); ok && !strings.HasPrefix(k, "#") {
			kid, b64 = k, strings.Trim(v, `"`)
		}
	}
	keys, err := mqtt.ParsePublicKeys(map[string]string{kid: b64})
	if err != nil || kid != "lab-2026" || len(keys) != 1 {
		t.Fatalf("printed key %q = %q: %v\n%s", kid, b64, err, out)
	}

	// Nothing is replaced.
	code, _, errs = latch(t, "", "init", "--db", filepath.Join(dir, "new.db"), "--key", filepath.Join(dir, "s.key"), "--site", "lab")
	if code != 1 {
		t.Errorf("init over a key: exit %d, want 1", code)
	}
	oneLine(t, errs, "exists")
	if _, err := os.Stat(filepath.Join(dir, "new.db")); err == nil {
		t.Error("init over a key made a database")
	}
	code, _, errs = latch(t, "", "init", "--db", s.db, "--key", filepath.Join(dir, "other.key"), "--site", "hq")
	if code != 1 {
		t.Errorf("init over a database: exit %d, want 1", code)
	}
	oneLine(t, errs, "exists")
	code, _, errs = latch(t, "", "init", "--db", filepath.Join(dir, "x.db"), "--key", filepath.Join(dir, "x.key"), "--site", "Bad Site")
	if code != 2 {
		t.Errorf("init with a bad site id: exit %d, want 2", code)
	}
	oneLine(t, errs, "site id")
}

// The admin's tour: holders and cards, a PIN refused and set, a
// revocation, the audit log on an empty site, and a backup.
func TestFlow(t *testing.T) {
	s := initSite(t)
	s.serve(t)
	fi, err := os.Stat(s.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}

	s.ok(t, "", "holder", "add", "alice", "--name", "Alice Example")
	s.ok(t, "", "card", "add", "04a1b2c3", "--holder", "alice", "--doors", "front,lab", "--until", "2030-01-01")
	if out := s.ok(t, "", "holder", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "Alice Example") {
		t.Errorf("holder list:\n%s", out)
	}

	// The PIN policy of the door store, checked at the site.
	for _, tc := range []struct{ pin, want string }{
		{"12", "a PIN has 4 to 12 digits"},
		{"B2C3", "only the digits"},
	} {
		code, _, errs := s.cli(t, tc.pin+"\n", "pin", "set", "alice", "--uid", "04A1B2C3")
		if code != 1 {
			t.Errorf("pin %q: exit %d, want 1", tc.pin, code)
		}
		oneLine(t, errs, tc.want)
	}
	// 04A1B2C3 read big-endian is 77705923 in decimal: its last digits
	// are readable by anyone near the card.
	code, _, errs := s.cli(t, "5923\n", "pin", "set", "alice", "--uid", "04A1B2C3")
	if code != 1 {
		t.Errorf("pin of the UID's last digits: exit %d, want 1", code)
	}
	oneLine(t, errs, "part of the card's UID")
	code, _, errs = s.cli(t, "8461\n", "pin", "set", "bob", "--uid", "04A1B2C3")
	if code != 1 {
		t.Errorf("pin for another holder's card: exit %d, want 1", code)
	}
	oneLine(t, errs, `belongs to holder "alice"`)
	if out := s.ok(t, "", "card", "show", "04A1B2C3"); !strings.Contains(out, " no ") {
		t.Errorf("a refused PIN was set:\n%s", out)
	}
	s.ok(t, "8461\n", "pin", "set", "alice", "--uid", "04A1B2C3")
	if out := s.ok(t, "", "card", "show", "04A1B2C3"); !strings.Contains(out, " set ") {
		t.Errorf("card show after pin set:\n%s", out)
	}

	s.ok(t, "", "revoke", "--uid", "04A1B2C3", "--reason", "lost on the train")
	out := s.ok(t, "", "card", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "04A1B2C3") || !strings.Contains(lines[1], "lost on the train") {
		t.Errorf("card list after revoke:\n%s", out)
	}
	// Columns line up.
	if strings.Index(lines[0], "REVOKED") != strings.Index(lines[1], "lost") {
		t.Errorf("card list is not aligned:\n%s", out)
	}
	out = s.ok(t, "", "card", "list", "--json")
	if !strings.Contains(out, `"revoked": "lost on the train"`) || strings.Contains(out, "argon2") {
		t.Errorf("card list --json:\n%s", out)
	}
	code, _, errs = s.cli(t, "", "reinstate", "--holder", "alice")
	if code != 1 {
		t.Errorf("reinstate a holder who is not revoked: exit %d, want 1", code)
	}
	oneLine(t, errs, "not revoked")

	if out := s.ok(t, "", "door", "list"); strings.Count(out, "\n") != 1 {
		t.Errorf("door list on a new site:\n%s", out)
	}
	// No doors: the site's own change log is what there is to verify.
	if out := s.ok(t, "", "audit", "verify"); !strings.Contains(out, "change log  ok") || strings.Count(out, "\n") != 2 {
		t.Errorf("audit verify on a site without doors:\n%s", out)
	}
	if out := s.ok(t, "", "audit", "query", "--holder", "alice", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("audit query on an empty log: %q", out)
	}

	backup := filepath.Join(t.TempDir(), "copy.db")
	s.ok(t, "", "backup", backup)
	code, _, errs = s.cli(t, "", "backup", backup)
	if code != 1 {
		t.Errorf("backup over a file: exit %d, want 1", code)
	}
	oneLine(t, errs, "exists")
	db, err := site.Open(backup, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Error(err)
	}
	c, err := db.Card([]byte{0x04, 0xA1, 0xB2, 0xC3})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := store.VerifyPIN(c.PINHash, []byte("8461")); !ok || err != nil {
		t.Errorf("the backup's card PIN: %v %v", ok, err)
	}
	if r, err := db.Revoked(c.UID); err != nil || r.Reason != "lost on the train" {
		t.Errorf("the backup's revocation: %+v %v", r, err)
	}
	// Every change names the unix user who made it.
	chs, err := db.DeltasAfter(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if len(chs) != 4 {
		t.Errorf("%d changes, want 4 (holder, card, pin, revoke)", len(chs))
	}
	for _, ch := range chs {
		if ch.By != me.Username {
			t.Errorf("change %d by %q, want %q", ch.Seq, ch.By, me.Username)
		}
	}
}

// Bad input: one line on standard error and the right exit code, and
// nothing changed.
func TestBadInput(t *testing.T) {
	s := initSite(t)
	s.serve(t)
	s.ok(t, "", "holder", "add", "alice")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"unknown command", "", []string{"holder", "frobnicate"}, 2, "unknown command"},
		{"unknown flag", "", []string{"holder", "list", "--colour"}, 2, "flag provided but not defined: -colour"},
		{"missing argument", "", []string{"holder", "add"}, 2, "missing ID"},
		{"extra argument", "", []string{"holder", "show", "alice", "bob"}, 2, `unexpected argument "bob"`},
		{"bad UID hex", "", []string{"card", "add", "04XYZ", "--holder", "alice"}, 2, `uid "04XYZ" is not hex`},
		{"UID of a bad length", "", []string{"card", "add", "04A1B2", "--holder", "alice"}, 1, "uid has 3 bytes, want 4, 7 or 10"},
		{"unknown holder", "", []string{"card", "add", "04A1B2C3", "--holder", "bob"}, 1, `holder "bob" does not exist`},
		{"bad date", "", []string{"card", "add", "04A1B2C3", "--holder", "alice", "--from", "tomorrow"}, 2, "--from"},
		{"pin without uid", "1234\n", []string{"pin", "set", "alice"}, 2, "--uid UID is required"},
		{"pin of an unknown card", "8461\n", []string{"pin", "set", "alice", "--uid", "04A1B2C3"}, 1, "card 04A1B2C3 does not exist"},
		{"pin on argv", "", []string{"pin", "set", "alice", "--uid", "04A1B2C3", "8461"}, 2, "unexpected argument"},
		{"no PIN on stdin", "", []string{"pin", "set", "alice", "--uid", "04A1B2C3"}, 1, "no PIN on standard input"},
		{"revoke without reason", "", []string{"revoke", "--holder", "alice"}, 2, "--reason"},
		{"revoke both", "", []string{"revoke", "--holder", "alice", "--uid", "04A1B2C3", "--reason", "x"}, 2, "either"},
		{"revoke unknown card", "", []string{"revoke", "--uid", "04A1B2C3", "--reason", "lost"}, 1, "does not exist"},
		{"holder twice", "", []string{"holder", "add", "alice"}, 1, `holder "alice": exists`},
		{"bad limit", "", []string{"audit", "query", "--limit", "-1"}, 2, "--limit"},
		{"verify unknown door", "", []string{"audit", "verify", "--door", "front"}, 1, `door "front"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := s.cli(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (%s)", code, tc.code, errs)
			}
			oneLine(t, errs, tc.want)
		})
	}
	if out := s.ok(t, "", "card", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("cards after bad input: %s", out)
	}

	// A socket with no service behind it, and no socket at all.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for _, sock := range []string{stale, filepath.Join(t.TempDir(), "none.sock")} {
		code, _, errs := latch(t, "", "holder", "list", "--socket", sock)
		if code != 1 {
			t.Errorf("no service: exit %d, want 1", code)
		}
		oneLine(t, errs, "no latch service on "+sock)
	}
	t.Setenv("LATCH_SOCKET", stale)
	code, _, errs := latch(t, "", "door", "list")
	if code != 1 {
		t.Errorf("no service: exit %d, want 1", code)
	}
	oneLine(t, errs, "no latch service on "+stale)
}

// latch serve through run: a second serve on the same database fails in
// one line, a stale socket is replaced, and a stop is clean.
func TestServeCommand(t *testing.T) {
	s := initSite(t)
	// A stale socket from a service that is gone.
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--db", s.db, "--key", s.key, "--socket", s.sock, "--log-level", "warn"}, strings.NewReader(""), io.Discard, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := s.cli(t, "", "holder", "list"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not answer: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	other := filepath.Join(t.TempDir(), "other.sock")
	code, _, errs := latch(t, "", "serve", "--db", s.db, "--key", s.key, "--socket", other)
	if code != 1 {
		t.Errorf("second serve: exit %d, want 1", code)
	}
	oneLine(t, errs, "is another latch serve running on it?")
	code, _, errs = latch(t, "", "serve", "--db", filepath.Join(t.TempDir(), "none.db"), "--key", s.key, "--socket", other)
	if code != 1 {
		t.Errorf("serve without a database: exit %d, want 1", code)
	}
	oneLine(t, errs, "does not exist; latch init makes one")
	s2 := initSite(t)
	code, _, errs = latch(t, "", "serve", "--db", s2.db, "--key", s2.key, "--socket", s.sock)
	if code != 1 {
		t.Errorf("serve on a live socket: exit %d, want 1", code)
	}
	oneLine(t, errs, "another service answers on it")
	code, _, errs = latch(t, "", "serve", "--db", s.db, "--key", s.key, "--bogus")
	if code != 2 {
		t.Errorf("serve with an unknown flag: exit %d, want 2", code)
	}
	oneLine(t, errs, "bogus")

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve stopped with exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(s.sock); err == nil {
		t.Error("the socket is left after a clean stop")
	}
}

// latch audit verify names the first bad entry of a door's chain.
func TestAuditVerifyNamesFirstBadEntry(t *testing.T) {
	s := initSite(t)
	db, err := site.Open(s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := strings.Repeat("0", 64)
	var evs []store.Event
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for seq := uint64(1); seq <= 3; seq++ {
		e := store.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Minute), Clock: store.TimeSynced, BootID: "b1",
			Door: "front", Type: store.TypeAccess, Reason: store.ReasonGranted, UID: "04A1B2C3", Holder: "alice", Prev: prev}
		if e.Hash, err = store.HashEvent(e); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		evs = append(evs, e)
	}
	if err := db.PutDoor(site.Door{ID: "front"}); err != nil {
		t.Fatal(err)
	}
	// Event 2 never arrives.
	if _, _, _, err := db.AddEvents("front", []store.Event{evs[0], evs[2]}, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s.serve(t)
	code, out, errs := s.cli(t, "", "audit", "verify")
	if code != 1 {
		t.Errorf("audit verify of a broken chain: exit %d, want 1", code)
	}
	oneLine(t, errs, "door front: the stored chain is bad at seq 2")
	if !strings.Contains(out, "BAD") {
		t.Errorf("audit verify:\n%s", out)
	}
	out = s.ok(t, "", "audit", "query", "--holder", "alice", "--door", "front")
	if strings.Count(out, "04A1B2C3") != 2 {
		t.Errorf("audit query:\n%s", out)
	}
	if out := s.ok(t, "", "door", "list"); !strings.Contains(out, "front") {
		t.Errorf("door list:\n%s", out)
	}
}
