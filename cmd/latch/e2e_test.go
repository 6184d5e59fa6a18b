package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store/site"
)

// hangGuard bounds how long the end-to-end test waits for something to
// happen: it turns a hang into a failure and says nothing about speed.
const hangGuard = 60 * time.Second

var (
	latchdOnce sync.Once
	latchdPath string
	latchdErr  error
)

// TestMain removes the daemon buildLatchd built, once the tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if latchdPath != "" {
		os.RemoveAll(filepath.Dir(latchdPath))
	}
	os.Exit(code)
}

// buildLatchd builds the door daemon once per test binary.
func buildLatchd(t testing.TB) string {
	t.Helper()
	latchdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latchd-e2e-")
		if err != nil {
			latchdErr = err
			return
		}
		latchdPath = filepath.Join(dir, "latchd")
		out, err := exec.Command("go", "build", "-o", latchdPath, "github.com/latchdoor/latch/cmd/latchd").CombinedOutput()
		if err != nil {
			latchdErr = fmt.Errorf("go build latchd: %v\n%s", err, out)
		}
	})
	if latchdErr != nil {
		t.Fatal(latchdErr)
	}
	return latchdPath
}

// simDoor is `latchd -sim -join` in its own process: the real daemon on
// emulated hardware, a door of the site under test.
type simDoor struct {
	t       testing.TB
	name    string
	bin     string
	join    string
	data    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	lines   chan map[string]any
	pending []map[string]any
	errFile string   // the process's standard error
	extra   []string // more flags of latchd's, such as -config
}

// startDoor starts the door name of the site in the join file, with its
// data directory (kept across restarts) under dir.
func startDoor(t testing.TB, bin, join, dir, name string) *simDoor {
	t.Helper()
	d := &simDoor{t: t, name: name, bin: bin, join: join, data: filepath.Join(dir, name)}
	d.start()
	t.Cleanup(d.kill)
	return d
}

func (d *simDoor) start() {
	d.t.Helper()
	d.cmd = exec.Command(d.bin, append([]string{"-sim", "-join", d.join, "-door", d.name, "-data", d.data, "-log-format", "json"}, d.extra...)...)
	d.errFile = d.data + ".stderr"
	f, err := os.OpenFile(d.errFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	d.cmd.Stderr = f
	if d.in, err = d.cmd.StdinPipe(); err != nil {
		d.t.Fatal(err)
	}
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.lines, d.pending = make(chan map[string]any, 4096), nil
	go func(lines chan<- map[string]any) {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"type": "bad-json", "text": sc.Text()}
			}
			lines <- m
		}
		close(lines)
	}(d.lines)
}

// stderrText is what the door wrote on standard error so far.
func (d *simDoor) stderrText() string {
	b, _ := os.ReadFile(d.errFile)
	return string(b)
}

// kill ends the process if it still runs.
func (d *simDoor) kill() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
	}
}

// quit types quit and waits for a clean exit.
func (d *simDoor) quit() {
	d.t.Helper()
	d.send("quit")
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Fatalf("door %s: %v; stderr: %s", d.name, err, d.stderrText())
		}
	case <-time.After(hangGuard):
		d.t.Fatalf("door %s did not stop on quit", d.name)
	}
}

func (d *simDoor) send(line string) {
	d.t.Helper()
	if _, err := io.WriteString(d.in, line+"\n"); err != nil {
		d.t.Fatalf("door %s: send %q: %v (stderr: %s)", d.name, line, err, d.stderrText())
	}
}

// next returns the first line not taken yet that matches.
func (d *simDoor) next(what string, match func(map[string]any) bool) map[string]any {
	d.t.Helper()
	for i, m := range d.pending {
		if match(m) {
			d.pending = append(d.pending[:i], d.pending[i+1:]...)
			return m
		}
	}
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		select {
		case m, ok := <-d.lines:
			if !ok {
				d.t.Fatalf("door %s: output ended while waiting for %s; stderr: %s", d.name, what, d.stderrText())
			}
			if match(m) {
				return m
			}
			d.pending = append(d.pending, m)
		case <-guard.C:
			var seen []string
			for _, m := range d.pending[max(0, len(d.pending)-8):] {
				b, _ := json.Marshal(m)
				seen = append(seen, string(b))
			}
			d.t.Fatalf("door %s: no %s; its last lines:\n%s", d.name, what, strings.Join(seen, "\n"))
		}
	}
}

// event waits for the door's next audit event with reason.
func (d *simDoor) event(reason string) map[string]any {
	d.t.Helper()
	return d.next("event "+reason, func(m map[string]any) bool { _, ok := m["seq"]; return ok && m["reason"] == reason })
}

// fingerprint is the identity the door announced at start.
func (d *simDoor) fingerprint() string {
	d.t.Helper()
	m := d.next("its fingerprint", func(m map[string]any) bool { _, ok := m["fingerprint"]; return ok })
	return m["fingerprint"].(string)
}

// tapPIN taps uid, keys pin and waits for the decision's reason.
func (d *simDoor) tapPIN(uid, pin, want string) {
	d.t.Helper()
	d.send("tap " + uid)
	if pin != "" {
		d.send("key " + pin + "#")
	}
	if ev := d.event(want); ev["uid"] != uid {
		d.t.Fatalf("door %s: %s for %v, want %s", d.name, want, ev["uid"], uid)
	}
	d.send("remove")
}

// eventually polls cond until it holds; it fails after hangGuard.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// doorList is latch door list --json.
func (s *testSite) doorList(t testing.TB) map[string]doorView {
	t.Helper()
	var ds []doorView
	if err := json.Unmarshal([]byte(s.ok(t, "", "door", "list", "--json")), &ds); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]doorView)
	for _, d := range ds {
		out[d.ID] = d
	}
	return out
}

// current waits until latch door list shows each door online with its
// latest view applied.
func (s *testSite) current(t testing.TB, doors ...string) {
	t.Helper()
	eventually(t, "doors "+strings.Join(doors, ", ")+" current", func() bool {
		ds := s.doorList(t)
		for _, d := range doors {
			if v := ds[d]; !v.Online || !v.Current {
				return false
			}
		}
		return true
	})
}

// collected waits until the site has stored every event the door has
// (its status's head seq), contiguously, and the door's outbox is empty.
func collected(t testing.TB, db *site.DB, door string) uint64 {
	t.Helper()
	var head uint64
	eventually(t, "door "+door+"'s events collected", func() bool {
		d, err := db.Door(door)
		if err != nil {
			return false
		}
		var st struct {
			HeadSeq uint64 `json:"head_seq"`
			Outbox  int    `json:"outbox"`
		}
		if json.Unmarshal(d.Status, &st) != nil {
			return false
		}
		c, err := db.Contiguous(door)
		head = st.HeadSeq
		return err == nil && st.Outbox == 0 && head > 0 && c == head
	})
	return head
}

// The whole system on one machine: a real mosquitto, latch serve, and two
// doors running latchd on emulated hardware. An admin approves both,
// enrols a card by tapping it, sets its PIN, and both doors grant it;
// revokes it with --wait, and both refuse it; one door is offline through
// 1,000 changes (the broker keeps 100 messages for it) and converges
// exactly when it is back; the other is offline through a key rotation
// and follows it. Every door event is collected once, and the chains
// verify.
func TestSiteEndToEnd(t *testing.T) {
	s, sv, front, back := startE2E(t)

	// Enrolment by a tap at the front door; a PIN; both doors grant.
	const uid, pin = "04A1B2C3D4E5F6", "8461"
	s.ok(t, "", "holder", "add", "alice", "--name", "Alice Example")
	enrolled := make(chan error, 1)
	go func() {
		code, _, errs := s.cli(t, "", "enroll", "--door", "front", "--holder", "alice", "--doors", "staff", "--yes")
		if code != 0 {
			enrolled <- fmt.Errorf("enroll: exit %d: %s", code, errs)
		}
		close(enrolled)
	}()
	for done := false; !done; {
		front.tapPIN(uid, "", "unknown_card")
		select {
		case err := <-enrolled:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-time.After(time.Second):
		}
	}
	s.ok(t, pin+"\n", "pin", "set", "alice", "--uid", uid)
	s.current(t, "front", "back")
	front.tapPIN(uid, pin, "granted")
	back.tapPIN(uid, pin, "granted")

	// Revoke with --wait: it returns once both doors applied it.
	out := s.ok(t, "", "revoke", "--uid", uid, "--reason", "lost on the train", "--wait")
	if !strings.Contains(out, "2 of 2 doors applied it") {
		t.Fatalf("revoke --wait:\n%s", out)
	}
	ds := s.doorList(t)
	for _, d := range []string{"front", "back"} {
		if v := ds[d]; !v.Current || v.AppliedSeq != v.ViewSeq {
			t.Fatalf("door list after revoke --wait: %+v", v)
		}
	}
	front.tapPIN(uid, "", "revoked")
	back.tapPIN(uid, "", "revoked")

	// back is offline through 1,000 changes; front follows them live.
	back.quit()
	for n := range 1000 {
		s.ok(t, "", "card", "add", fmt.Sprintf("%08X", 0x05000000+n), "--holder", "alice", "--doors", "staff")
	}
	back.start()
	s.current(t, "front", "back")
	for _, d := range []string{"front", "back"} {
		dr, err := sv.db.Door(d)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Hash string `json:"snapshot_hash"`
		}
		if err := json.Unmarshal(dr.Status, &st); err != nil {
			t.Fatal(err)
		}
		if seq, hash := sv.site.Head(d); dr.AppliedSeq != seq || st.Hash != hash {
			t.Fatalf("door %s at %d %s, its view at %d %s", d, dr.AppliedSeq, st.Hash, seq, hash)
		}
	}
	back.tapPIN("05000007", "", "pin_required")

	// front is offline through a key rotation; it learns the new key
	// from the retained chain the old key signed.
	front.quit()
	out = s.ok(t, "", "keys", "rotate")
	if !strings.Contains(out, "hq-2 replaces hq-1") {
		t.Fatalf("keys rotate:\n%s", out)
	}
	s.ok(t, "", "revoke", "--uid", "05000007", "--reason", "left")
	front.start()
	s.current(t, "front", "back")
	front.tapPIN("05000007", "", "revoked")
	back.tapPIN("05000007", "", "revoked")
	if k, err := loadSiteKey(s.key); err != nil || k.Kid != "hq-2" {
		t.Fatalf("key file after rotation: %+v %v", k, err)
	}

	// Every event collected once, chains whole.
	for _, d := range []string{"front", "back"} {
		head := collected(t, sv.db, d)
		evs, err := sv.db.EventsOf(d, 0, 0)
		if err != nil || uint64(len(evs)) != head {
			t.Fatalf("door %s: %d events stored, head %d: %v", d, len(evs), head, err)
		}
	}
	// (Events a door sent before its approval were refused, Unattributed,
	// and sent again after it.)
	if st := sv.site.Stats(); st.Conflicts != 0 || st.Rewrites != 0 || st.ChainBreaks != 0 {
		t.Fatalf("collector: %+v", st)
	}
	// Two doors' chains and the site's change log.
	if out := s.ok(t, "", "audit", "verify"); strings.Count(out, " ok ") != 3 || !strings.Contains(out, "change log  ok") {
		t.Fatalf("audit verify:\n%s", out)
	}
	// Only what went wrong is a finding: nothing did.
	if out := s.ok(t, "", "audit", "findings"); !strings.Contains(out, "no findings") {
		t.Fatalf("audit findings:\n%s", out)
	}

	// Tampering planted in the site database is named: an edited, a
	// deleted and a reordered event.
	backup := filepath.Join(t.TempDir(), "site.db")
	s.ok(t, "", "backup", backup)
	front.quit()
	back.quit()
	sv.stop(t)
	for _, tc := range []struct {
		name   string
		tamper func(b *bolt.Bucket, k func(uint64) []byte)
		want   string
	}{
		{"edited", func(b *bolt.Bucket, k func(uint64) []byte) { editRecord(t, b, k(3)) }, "seq 3"},
		{"deleted", func(b *bolt.Bucket, k func(uint64) []byte) {
			if err := b.Delete(k(4)); err != nil {
				t.Fatal(err)
			}
		}, "seq 4"},
		{"reordered", func(b *bolt.Bucket, k func(uint64) []byte) {
			v5, v6 := append([]byte(nil), b.Get(k(5))...), append([]byte(nil), b.Get(k(6))...)
			if err := b.Put(k(5), v6); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(k(6), v5); err != nil {
				t.Fatal(err)
			}
		}, "seq 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyFile(t, backup, s.db)
			db, err := bolt.Open(s.db, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			key := func(seq uint64) []byte {
				return binary.BigEndian.AppendUint64(append([]byte{byte(len("back"))}, "back"...), seq)
			}
			if err := db.Update(func(tx *bolt.Tx) error { tc.tamper(tx.Bucket([]byte("events")), key); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			sv := s.start(t, serveOptions{})
			defer sv.stop(t)
			code, _, errs := s.cli(t, "", "audit", "verify")
			if code != 1 {
				t.Fatalf("audit verify of a chain %s: exit %d", tc.name, code)
			}
			oneLine(t, errs, "door back: the stored chain is bad at "+tc.want)
		})
	}
}

// startE2E starts a real mosquitto, latch serve on it, and the doors front
// and back (latchd -sim -join), approved by their fingerprints and in the
// group staff, with their views applied.
func startE2E(t testing.TB) (*testSite, *served, *simDoor, *simDoor) {
	t.Helper()
	return startE2EWith(t, serveOptions{})
}

// startE2EWith is startE2E with o's options for latch serve (its broker
// is the test's).
func startE2EWith(t testing.TB, o serveOptions) (*testSite, *served, *simDoor, *simDoor) {
	t.Helper()
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Skip(err)
	}
	bin := buildLatchd(t)
	b := brokertest.Start(t, brokertest.Config{MaxQueued: 100, NoDelay: true})
	s := initSite(t)
	o.broker = &brokerOptions{url: b.URL(), heartbeat: time.Second}
	sv := s.start(t, o)
	t.Cleanup(func() { sv.stop(t) })
	key, err := loadSiteKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	join := filepath.Join(s.dir, "join.json")
	jb, _ := json.Marshal(joinFile{Broker: b.URL(), Site: key.Site, TrustedKeys: map[string]string{key.Kid: key.publicBase64()}})
	if err := os.WriteFile(join, jb, 0o600); err != nil {
		t.Fatal(err)
	}
	doors := t.TempDir()
	front := startDoor(t, bin, join, doors, "front")
	back := startDoor(t, bin, join, doors, "back")

	// Approval by the fingerprint each door shows, then the doors' groups.
	for _, d := range []*simDoor{front, back} {
		fp := d.fingerprint()
		eventually(t, "door "+d.name+" announced", func() bool { return s.doorList(t)[d.name].Pending == fp })
		s.ok(t, "", "door", "approve", d.name, "--fingerprint", fp)
		s.ok(t, "", "door", "groups", d.name, "staff")
	}
	s.current(t, "front", "back")
	return s, sv, front, back
}

// BenchmarkRevokeApplied measures, on loopback, the time from an admin's
// revocation (the API call) to its application at both doors (the later
// of the two doors' acl_applied events, by their clocks, which are this
// machine's): the median and the 99th percentile. Each iteration revokes
// a card and reinstates it; only the revocation is timed.
func BenchmarkRevokeApplied(b *testing.B) {
	s, _, front, back := startE2E(b)
	s.ok(b, "", "holder", "add", "alice")
	s.ok(b, "", "card", "add", "04A1B2C3D4E5F6", "--holder", "alice", "--doors", "staff")
	s.current(b, "front", "back")
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	ctx := b.Context()
	applied := func(d *simDoor) time.Time {
		ev := d.event("acl_applied")
		at, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
		if err != nil {
			b.Fatal(err)
		}
		return at
	}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := cl.call(ctx, "POST", "/v1/revoke", revokeReq{UID: "04A1B2C3D4E5F6", Reason: "lost"}); err != nil {
			b.Fatal(err)
		}
		f, k := applied(front), applied(back)
		lat = append(lat, max(f.Sub(t0), k.Sub(t0)))
		b.StopTimer()
		if _, err := cl.call(ctx, "POST", "/v1/reinstate", revokeReq{UID: "04A1B2C3D4E5F6"}); err != nil {
			b.Fatal(err)
		}
		applied(front)
		applied(back)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
}

// editRecord changes one byte of a stored event's detail-free body (its
// type string) and seals it again with a valid checksum, as someone with
// the file would: the record reads, but its hash no longer matches.
func editRecord(t testing.TB, b *bolt.Bucket, k []byte) {
	t.Helper()
	v := append([]byte(nil), b.Get(k)...)
	if len(v) < 40 {
		t.Fatalf("no event at %x", k)
	}
	body := v[:len(v)-4]
	i := strings.Index(string(body), "access")
	if i < 0 {
		i = strings.Index(string(body), "sync")
	}
	if i < 0 {
		t.Fatalf("no type in the record %x", body)
	}
	body[i] ^= 0x20 // upper-case its first letter
	sum := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	v = binary.BigEndian.AppendUint32(body, sum)
	if err := b.Put(k, v); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
