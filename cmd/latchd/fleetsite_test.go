package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fleetSite is `latch serve` in its own process, and the latch CLI that
// drives it.
type fleetSite struct {
	t    testing.TB
	bin  string // the latch binary
	dir  string
	db   string
	key  string
	sock string
	cmd  *exec.Cmd
	exit chan struct{}
}

// latchBinary is -fleet.latch, or latch built from this module for the
// test.
func latchBinary(t testing.TB) string {
	t.Helper()
	if *fleetLatch != "" {
		return *fleetLatch
	}
	bin := filepath.Join(t.TempDir(), "latch")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/latchdoor/latch/cmd/latch").CombinedOutput(); err != nil {
		t.Fatalf("go build latch: %v\n%s", err, out)
	}
	return bin
}

// startFleetSite makes a site with latch init in dir and runs latch serve
// on the broker at url, logged in as "site" with password, until the test
// ends (then it is stopped by its PID).
func startFleetSite(t testing.TB, dir, url, password string) *fleetSite {
	t.Helper()
	s := &fleetSite{t: t, bin: latchBinary(t), dir: dir, db: filepath.Join(dir, "site.db"),
		key: filepath.Join(dir, "site.key"), sock: filepath.Join(dir, "latch.sock")}
	if out, err := exec.Command(s.bin, "init", "--db", s.db, "--key", s.key, "--site", fleetSiteID).CombinedOutput(); err != nil {
		t.Fatalf("latch init: %v\n%s", err, out)
	}
	pw := filepath.Join(dir, "broker-password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "latch-serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(s.bin, "serve", "--db", s.db, "--key", s.key, "--socket", s.sock,
		"--broker", url, "--broker-user", "site", "--broker-password-file", pw, "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exit = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exit) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := s.cli(context.Background(), "", "door", "list"); err == nil {
			return s
		} else if time.Now().After(deadline) {
			t.Fatalf("latch serve not answering: %v\n%s", err, s.log())
		}
		select {
		case <-s.exit:
			t.Fatalf("latch serve exited:\n%s", s.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// log is the tail of latch serve's log.
func (s *fleetSite) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "latch-serve.log"))
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// stop ends latch serve with SIGTERM and waits for it.
func (s *fleetSite) stop() {
	select {
	case <-s.exit:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exit
	}
}

// cli runs one latch command against the site with stdin as its input and
// returns its standard output; an exit other than 0 is an error with its
// standard error.
func (s *fleetSite) cli(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), "LATCH_SOCKET="+s.sock)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("latch %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// fleetKey is the public half of the site key file latch init wrote.
type fleetKey struct{ kid, pub string }

// loadSiteKeyFile reads the key id and the public key of a latch site key
// file (PEM, PKCS #8 Ed25519, with the Latch-Key-Id header).
func loadSiteKeyFile(path string) (fleetKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fleetKey{}, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return fleetKey{}, errors.New("site key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return fleetKey{}, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return fleetKey{}, fmt.Errorf("site key: %T, want Ed25519", k)
	}
	return fleetKey{kid: blk.Headers["Latch-Key-Id"], pub: base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))}, nil
}

// randomSecret is a broker password.
func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// procRSS returns a process's resident set and its peak, in MiB.
func procRSS(pid int) (rss, peak float64) {
	m := procStatus(pid)
	return m["VmRSS:"], m["VmHWM:"]
}

// procStatus returns the memory figures of /proc/PID/status (VmRSS:,
// VmHWM:, RssAnon:, RssFile: …) in MiB.
func procStatus(pid int) map[string]float64 {
	out := make(map[string]float64)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = kb / 1024
		}
	}
	return out
}

// procCPU returns the CPU time a process has used (user and system).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// establishedTo counts the established TCP connections on this machine's
// loopback whose local port is port: a server's accepted connections.
func establishedTo(port int) (int, error) {
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 4 || f[3] != "01" { // TCP_ESTABLISHED
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			p, err := strconv.ParseUint(f[1][i+1:], 16, 16)
			if err == nil && int(p) == port {
				n++
			}
		}
	}
	return n, nil
}
