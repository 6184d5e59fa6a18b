package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for latchd in a child process.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("LATCHD_TEST_ARGS"); ok {
		os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// hangGuard bounds how long a test waits for output before it gives up: it
// only turns a hang into a failure and says nothing about speed.
const hangGuard = 60 * time.Second

// simOut reads latchd -log-format json output line by line.
type simOut struct {
	t       *testing.T
	lines   chan map[string]any
	pending []map[string]any // read but not matched yet, in order
}

func newSimOut(t *testing.T, r io.Reader) *simOut {
	o := &simOut{t: t, lines: make(chan map[string]any, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"type": "bad-json", "text": sc.Text()}
			}
			o.lines <- m
		}
		close(o.lines)
	}()
	return o
}

// next returns the first line not taken yet that matches; lines it passes
// over stay for later calls.
func (o *simOut) next(what string, match func(map[string]any) bool) map[string]any {
	o.t.Helper()
	for i, m := range o.pending {
		if match(m) {
			o.pending = append(o.pending[:i], o.pending[i+1:]...)
			return m
		}
	}
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		select {
		case m, ok := <-o.lines:
			if !ok {
				o.t.Fatalf("output ended while waiting for %s", what)
			}
			if m["type"] == "bad-json" {
				o.t.Fatalf("a line that is not JSON: %q", m["text"])
			}
			if match(m) {
				return m
			}
			o.pending = append(o.pending, m)
		case <-guard.C:
			o.t.Fatalf("no %s in output", what)
		}
	}
}

// event waits for the next audit event with the given reason.
func (o *simOut) event(reason string) map[string]any {
	o.t.Helper()
	return o.next("event "+reason, func(m map[string]any) bool { _, ok := m["seq"]; return ok && m["reason"] == reason })
}

func (o *simOut) relay(state string) map[string]any {
	o.t.Helper()
	return o.next("relay "+state, func(m map[string]any) bool { return m["type"] == "relay" && m["state"] == state })
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSimSession drives latchd -sim through its standard input as a user
// does and checks the JSON events it prints.
func TestSimSession(t *testing.T) {
	sim := startSim(t)
	out, send := sim.out, sim.send
	out.relay("locked")
	// The door starts stale (no signed word from the site yet) and says
	// what it does meanwhile.
	if ev := out.event("acl_stale"); !strings.HasSuffix(ev["detail"].(string), "policy keep-going") {
		t.Fatalf("acl_stale %v does not name the stale policy", ev)
	}

	// The valid demo card with its PIN.
	send("tap 04a1:b2:c3:d4:e5:f6")
	send("key 1234#")
	ev := out.event("granted")
	if ev["reason"] != "granted" || ev["uid"] != "04A1B2C3D4E5F6" || ev["holder"] != "alice" || ev["door"] != "front" || ev["type"] != "access" {
		t.Fatalf("first event %v, want a grant for alice's card", ev)
	}
	for _, k := range []string{"seq", "time", "prev", "hash"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("event has no %q: %v", k, ev)
		}
	}
	out.relay("unlocked")
	send("remove")
	send("open")
	send("close")
	out.relay("locked")

	// The revoked demo card.
	send("tap 04DEADBEEF0001")
	if ev := out.event("revoked"); ev["reason"] != "revoked" || ev["uid"] != "04DEADBEEF0001" {
		t.Fatalf("event %v, want revoked", ev)
	}
	send("remove")

	// A card nobody enrolled.
	send("tap 01020304")
	if ev := out.event("unknown_card"); ev["reason"] != "unknown_card" || ev["uid"] != "01020304" {
		t.Fatalf("event %v, want unknown_card", ev)
	}
	send("remove")

	// A malformed command: one error line, and latchd carries on.
	send("tap 0102")
	out.next("an error line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return m["type"] == "message" && strings.HasPrefix(msg, "error:")
	})

	// The valid card with a wrong PIN.
	send("tap 04A1B2C3D4E5F6")
	send("key 9999#")
	if ev := out.event("bad_pin"); ev["reason"] != "bad_pin" || ev["uid"] != "04A1B2C3D4E5F6" {
		t.Fatalf("event %v, want bad_pin", ev)
	}
	send("remove")

	// The site revokes the valid card: a signed delta over the embedded
	// broker, and the next tap is refused.
	send("revoke 04A1B2C3D4E5F6")
	out.next("the revocation applied, one operation", func(m map[string]any) bool {
		return m["reason"] == "acl_applied" && m["type"] == "sync" && strings.Contains(fmt.Sprint(m["detail"]), ": 1 operation (")
	})
	send("tap 04A1B2C3D4E5F6")
	out.event("revoked")
	send("remove")

	// A signed unlock command releases the door.
	send("unlock 1")
	out.event("command_applied")
	out.relay("unlocked")
	out.relay("locked")

	sim.quit()
}

// The site in the simulator's process collects the door's events and
// acknowledges them: after a grant, the door's outbox drains.
func TestSimEventsAcknowledged(t *testing.T) {
	sim := startSim(t)
	sim.send("tap 04A1B2C3D4E5F6")
	sim.send("key 1234#")
	sim.out.event("granted")
	sim.send("remove")
	sim.status("an empty outbox", func(s string) bool { return field(s, "outbox") == "0" })
	sim.status("the broker connected", func(s string) bool { return field(s, "mqtt") == "connected" && field(s, "mqtt_error") == "" })
	sim.quit()
}

// simRun is latchd -sim run in this process and fed through a pipe.
type simRun struct {
	t      *testing.T
	in     *io.PipeWriter
	out    *simOut
	stderr *lockedBuffer
	done   chan int
}

// startSim runs latchd -sim in a fresh data directory, printing JSON, with
// the extra flags.
func startSim(t *testing.T, extra ...string) *simRun {
	t.Helper()
	return startSimIn(t, t.TempDir(), extra...)
}

// startSimIn is startSim on the data directory dir.
func startSimIn(t *testing.T, dir string, extra ...string) *simRun {
	t.Helper()
	return startSimArgs(t, append([]string{"-sim", "-data", dir, "-log-format", "json", "-broker-addr", "127.0.0.1:0"}, extra...)...)
}

// startSimArgs runs latchd with args in this process, fed through a pipe.
func startSimArgs(t *testing.T, args ...string) *simRun {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &simRun{t: t, in: inW, stderr: &lockedBuffer{}, done: make(chan int, 1)}
	go func() {
		s.done <- run(context.Background(), args, inR, outW, s.stderr)
		outW.Close()
	}()
	t.Cleanup(func() { inW.Close() })
	s.out = newSimOut(t, outR)
	return s
}

// send types one command line.
func (s *simRun) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatalf("send %q: %v (stderr: %s)", line, err, s.stderr.String())
	}
}

// quit types quit and checks that latchd exits cleanly.
func (s *simRun) quit() {
	s.t.Helper()
	s.send("quit")
	select {
	case code := <-s.done:
		if code != 0 {
			s.t.Fatalf("exit code %d; stderr: %s", code, s.stderr.String())
		}
	case <-time.After(hangGuard):
		s.t.Fatal("latchd did not stop on quit")
	}
}

// TestSimKilledDuringUnlock kills latchd with SIGKILL while the relay is
// released and shows that the next start drives the relay locked before
// anything else and reports the interrupted unlock.
func TestSimKilledDuringUnlock(t *testing.T) {
	args := []string{"-sim", "-data", t.TempDir(), "-log-format", "json", "-broker-addr", "127.0.0.1:0"}
	c := startChild(t, args...)
	first := c.out.next("the first line", func(map[string]any) bool { return true })
	if first["type"] != "relay" || first["state"] != "locked" {
		t.Fatalf("first line %v, want the relay locked", first)
	}
	c.send("tap 04A1B2C3D4E5F6")
	c.send("key 1234#")
	c.out.event("granted")
	c.out.relay("unlocked")
	c.kill()

	c = startChild(t, args...)
	first = c.out.next("the first line", func(map[string]any) bool { return true })
	if first["type"] != "relay" || first["state"] != "locked" {
		t.Fatalf("first line after the restart %v, want the relay locked", first)
	}
	ev := c.out.event("unlock_interrupted")
	if ev["type"] != "door" {
		t.Fatalf("event %v, want a door event", ev)
	}
	c.send("quit")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// At -log-level info an audit event is printed once, on standard output,
// and not logged again on standard error.
func TestSimEventsPrintedOnce(t *testing.T) {
	sim := startSim(t, "-log-level", "info")
	sim.send("tap 01020304")
	sim.out.event("unknown_card")
	sim.quit()
	if strings.Contains(sim.stderr.String(), "unknown_card") {
		t.Errorf("the event is logged on standard error too:\n%s", sim.stderr.String())
	}
}

// A line over the input limit is one error line naming it, and the
// simulator goes on with the next command.
func TestSimOverLongLine(t *testing.T) {
	sim := startSim(t)
	sim.out.relay("locked")
	sim.send("status")
	sim.out.next("the status line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "status ")
	})
	sim.send(strings.Repeat("tap 0102", maxSimInputLine/8+1))
	msg := sim.out.next("an error line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return m["type"] == "message" && strings.HasPrefix(msg, "error:")
	})["msg"].(string)
	if want := "error: input line 2: longer than 65536 bytes; skipped"; msg != want {
		t.Errorf("error line %q, want %q", msg, want)
	}
	sim.send("tap 01020304")
	sim.out.event("unknown_card")
	sim.quit()
}

// child is latchd -sim in a child process.
type child struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *simOut
	err *lockedBuffer
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LATCHD_TEST_ARGS="+strings.Join(args, "\x1f"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, in: in, err: &lockedBuffer{}}
	cmd.Stderr = c.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("child stderr: %s", c.err.String())
		}
	})
	c.out = newSimOut(t, outR)
	return c
}

func (c *child) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// status asks for the status line until ok accepts it, and returns it.
func (c *child) status(what string, ok func(string) bool) string {
	c.t.Helper()
	return statusUntil(c.t, c.send, c.out, what, ok)
}

// status asks for the status line until ok accepts it, and returns it.
func (s *simRun) status(what string, ok func(string) bool) string {
	s.t.Helper()
	return statusUntil(s.t, s.send, s.out, what, ok)
}

// statusUntil types status with send until ok accepts the status line
// read from out, and returns it. hangGuard bounds it.
func statusUntil(t *testing.T, send func(string), out *simOut, what string, ok func(string) bool) string {
	t.Helper()
	guard := time.Now().Add(hangGuard)
	for time.Now().Before(guard) {
		send("status")
		m := out.next("status", func(m map[string]any) bool {
			msg, _ := m["msg"].(string)
			return strings.HasPrefix(msg, "status ")
		})
		if s := m["msg"].(string); ok(s) {
			return s
		}
	}
	t.Fatalf("status never showed %s", what)
	return ""
}

// field reads key=value from a status line.
func field(status, key string) string {
	for f := range strings.FieldsSeq(status) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	_ = c.cmd.Wait()
}
