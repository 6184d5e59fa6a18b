// Package brokertest runs a real mosquitto broker for tests, on a free
// loopback port with a generated configuration (password file, ACL file,
// optionally TLS with a CA and certificates generated in the test), and a
// TCP proxy that can cut, stall or black-hole the link between a client and
// the broker.
//
// A test that needs mosquitto fails, with a message saying how to install
// it, when it is missing: mosquitto 2.x (Debian: apt-get install
// mosquitto); hack/test.sh installs it.
package brokertest

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long mosquitto may take to start listening.
const startTimeout = 20 * time.Second

// Config describes a broker.
type Config struct {
	// Users are the accounts of the password file (user → password). With
	// none, anonymous clients are allowed.
	Users map[string]string
	// ACL is the content of the ACL file (mosquitto's acl_file syntax);
	// empty means no ACL: every client may read and write everything.
	ACL string
	// MaxQueued is max_queued_messages per client session: 0 keeps
	// mosquitto's default (1000); negative means unlimited.
	MaxQueued int
	// Persistence keeps sessions and queued messages on disk across a
	// restart: saved on every change, or every Autosave when it is set
	// (and when mosquitto stops), as a production broker is configured.
	Persistence bool
	// Autosave is the interval between saves of a persistent broker
	// (whole seconds); 0 saves on every change.
	Autosave time.Duration
	// TLS makes the listener TLS-only with certificates from a generated
	// PKI; clients must present a certificate signed by its CA.
	TLS bool
	// NoDelay sets set_tcp_nodelay: mosquitto then sends each packet at
	// once instead of letting Nagle's algorithm hold small ones back (up
	// to ~40 ms against a delayed ACK). Recommended for doors.
	NoDelay bool
	// Extra lines appended to the configuration.
	Extra string
}

// Broker is a running mosquitto.
type Broker struct {
	t    testing.TB
	cfg  Config
	dir  string
	conf string
	port int
	// PKI is the generated CA and server certificate (TLS brokers only).
	PKI *PKI

	mu    sync.Mutex
	cmd   *exec.Cmd
	exit  chan struct{}
	lines []string // recent log lines, printed if the test fails
}

// Mosquitto returns the path of the mosquitto binary, or an error that
// says how to install it.
func Mosquitto() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("mosquitto not found in PATH or /usr/sbin: install mosquitto 2.x (Debian/Ubuntu: sudo apt-get install mosquitto; or run ./hack/test.sh as root, which installs it)")
}

// Start starts a broker and stops it (by PID) when the test ends.
func Start(t testing.TB, cfg Config) *Broker {
	t.Helper()
	bin, err := Mosquitto()
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, cfg: cfg, dir: t.TempDir()}
	if cfg.TLS {
		b.PKI = NewPKI(t)
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			b.mu.Lock()
			t.Logf("mosquitto log (last %d lines):\n%s", len(b.lines), strings.Join(b.lines, "\n"))
			b.mu.Unlock()
		}
	})
	// freePort's port may be taken by another process before mosquitto
	// binds it: try another one, a few times.
	const attempts = 5
	var last error
	for range attempts {
		b.port, err = freePort()
		if err != nil {
			t.Fatal(err)
		}
		if err = b.writeConfig(); err != nil {
			t.Fatal(err)
		}
		last = b.start(bin)
		if last == nil {
			return b
		}
		if !errors.Is(last, errAddrInUse) {
			break
		}
	}
	t.Fatalf("brokertest: mosquitto did not start: %v", last)
	return nil
}

// URL is the broker's URL for clients: tcp:// or ssl://127.0.0.1:port.
func (b *Broker) URL() string {
	if b.cfg.TLS {
		return "ssl://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port is the broker's loopback port.
func (b *Broker) Port() int { return b.port }

// PID is the process id of the running mosquitto, or 0.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Kill stops the broker with SIGKILL and waits for it to exit. Messages
// it had acknowledged but not persisted are lost, as in a power cut.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

// Stop stops the broker with SIGTERM (it saves its persistence file) and
// waits for it to exit. Stopping a stopped broker does nothing.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd, exit := b.cmd, b.exit
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

// Restart starts a stopped or killed broker again on the same port with
// the same configuration (and persistence file, if any).
func (b *Broker) Restart() {
	b.t.Helper()
	bin, err := Mosquitto()
	if err != nil {
		b.t.Fatal(err)
	}
	// Stop and Kill have waited for the old process to exit, which closed
	// its listening socket, and mosquitto binds with SO_REUSEADDR: the port
	// is free unless another process took it meanwhile. That one may be
	// short-lived (a client's ephemeral port), so a few attempts are made,
	// with a short growing pause; any other failure ends them at once.
	const attempts = 6
	pause := 20 * time.Millisecond
	var last error
	for i := range attempts {
		last = b.start(bin)
		if last == nil {
			return
		}
		if !errors.Is(last, errAddrInUse) || i == attempts-1 {
			break
		}
		time.Sleep(pause)
		pause *= 2
	}
	b.t.Fatalf("brokertest: mosquitto did not restart on port %d: %v", b.port, last)
}

// errAddrInUse is the failure of a mosquitto that found its port taken.
var errAddrInUse = errors.New("address already in use")

// start runs mosquitto and waits until it says it is running.
func (b *Broker) start(bin string) error {
	cmd := exec.Command(bin, "-c", b.conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan struct{})
	exit := make(chan struct{})
	logDone := make(chan struct{})
	inUse := false // read after exit is closed
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "Address already in use") {
				inUse = true
			}
			b.mu.Lock()
			b.lines = append(b.lines, line)
			if len(b.lines) > 200 {
				b.lines = b.lines[len(b.lines)-200:]
			}
			b.mu.Unlock()
			if !once && strings.Contains(line, " running") {
				once = true
				close(ready)
			}
		}
	}()
	go func() {
		<-logDone
		_ = cmd.Wait()
		close(exit)
	}()
	select {
	case <-ready:
	case <-exit:
		b.mu.Lock()
		tail := strings.Join(b.lines, "\n")
		b.mu.Unlock()
		if inUse {
			return fmt.Errorf("port %d: %w:\n%s", b.port, errAddrInUse, tail)
		}
		return fmt.Errorf("mosquitto exited while starting:\n%s", tail)
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-exit
		return fmt.Errorf("mosquitto not running after %s", startTimeout)
	}
	b.mu.Lock()
	b.cmd, b.exit = cmd, exit
	b.mu.Unlock()
	return nil
}

// writeConfig writes mosquitto.conf and the files it names.
func (b *Broker) writeConfig() error {
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", b.port)
	c.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages false\n")
	if os.Geteuid() == 0 {
		// Stay root: the generated files are readable by root only.
		c.WriteString("user root\n")
	}
	if b.cfg.NoDelay {
		c.WriteString("set_tcp_nodelay true\n")
	}
	switch {
	case b.cfg.MaxQueued > 0:
		fmt.Fprintf(&c, "max_queued_messages %d\n", b.cfg.MaxQueued)
	case b.cfg.MaxQueued < 0:
		c.WriteString("max_queued_messages 0\n")
	}
	switch {
	case b.cfg.Persistence && b.cfg.Autosave > 0:
		fmt.Fprintf(&c, "persistence true\npersistence_location %s/\nautosave_interval %d\n", b.dir, max(1, int(b.cfg.Autosave/time.Second)))
	case b.cfg.Persistence:
		fmt.Fprintf(&c, "persistence true\npersistence_location %s/\nautosave_interval 1\nautosave_on_changes true\n", b.dir)
	default:
		c.WriteString("persistence false\n")
	}
	if len(b.cfg.Users) > 0 {
		pw := filepath.Join(b.dir, "passwd")
		if err := writePasswords(pw, b.cfg.Users); err != nil {
			return err
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if b.cfg.ACL != "" {
		acl := filepath.Join(b.dir, "acl")
		if err := os.WriteFile(acl, []byte(b.cfg.ACL), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&c, "acl_file %s\n", acl)
	}
	if b.PKI != nil {
		fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\ntls_version tlsv1.2\n",
			b.PKI.CAFile, b.PKI.ServerCert, b.PKI.ServerKey)
	}
	c.WriteString(b.cfg.Extra)
	c.WriteString("\n")
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	return os.WriteFile(b.conf, []byte(c.String()), 0o600)
}

// writePasswords writes a mosquitto 2 password file: PBKDF2-SHA512 with 101
// iterations and a 12-byte salt, as mosquitto_passwd writes it.
func writePasswords(path string, users map[string]string) error {
	var out strings.Builder
	for _, u := range slices.Sorted(maps.Keys(users)) {
		salt := make([]byte, 12)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		hash, err := pbkdf2.Key(sha512.New, users[u], salt, 101, sha512.Size)
		if err != nil {
			return err
		}
		fmt.Fprintf(&out, "%s:$7$101$%s$%s\n", u, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(hash))
	}
	return os.WriteFile(path, []byte(out.String()), 0o600)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("brokertest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
