package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Start-up failures are one line on standard error naming what is wrong,
// and a non-zero exit.
func TestRunStartupErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("site = \"hq\"\nbogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPin := filepath.Join(dir, "nopin.toml")
	cfg := strings.Replace(goodConfig, `pin = "GPIO17"`, `pin = "GPIO53"`, 1) // a name of the right form no board here has
	cfg = strings.Replace(cfg, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
	if err := os.WriteFile(noPin, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two names of the wrong form: both are reported, each with its line.
	badNames := filepath.Join(dir, "badnames.toml")
	cfg = strings.Replace(goodConfig, `pin = "GPIO17"`, `pin = "GPIO17x"`, 1)
	cfg = strings.Replace(cfg, `spi = "SPI0.0"`, `spi = "SPI9.9"`, 1)
	if err := os.WriteFile(badNames, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lineOf := func(s string) int {
		for i, l := range strings.Split(cfg, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("%q is not in the config", s)
		return 0
	}
	pinLine, spiLine := lineOf(`"GPIO17x"`), lineOf(`"SPI9.9"`)
	joinFiles := map[string]string{
		"notjson":  "broker = tcp://127.0.0.1:1883\n",
		"unknown":  `{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"hq-1": "` + testSiteKey() + `"}, "sites": []}`,
		"badsite":  `{"broker": "tcp://127.0.0.1:1883", "site": "HQ!", "trusted_keys": {"hq-1": "` + testSiteKey() + `"}}`,
		"badkey":   `{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"hq-1": "bm90IGEga2V5"}}`,
		"badurl":   `{"broker": "ws://127.0.0.1:1883", "site": "hq", "trusted_keys": {"hq-1": "` + testSiteKey() + `"}}`,
		"goodjoin": `{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"hq-1": "` + testSiteKey() + `"}}`,
	}
	join := func(name string) string {
		p := filepath.Join(dir, name+".json")
		if c, ok := joinFiles[name]; ok {
			if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	simJoin := func(name string, extra ...string) []string {
		return append([]string{"-sim", "-data", t.TempDir(), "-join", join(name)}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no config", nil, "-config FILE is required", 2},
		{"join and broker address", append(simJoin("goodjoin"), "-broker-addr", "127.0.0.1:0"), "-join and -broker-addr exclude each other", 2},
		{"join without sim", []string{"-join", join("goodjoin")}, "-join is for -sim", 2},
		{"door without join", []string{"-sim", "-door", "lab"}, "-door names the door that -sim -join adds", 2},
		{"join file missing", simJoin("missing"), "-join: open " + join("missing") + ": no such file", 1},
		{"join file not JSON", simJoin("notjson"), "-join " + join("notjson") + ": not a join file", 1},
		{"join file unknown field", simJoin("unknown"), "-join " + join("unknown") + `: not a join file (JSON with broker, site, trusted_keys): json: unknown field "sites"`, 1},
		{"join file bad site", simJoin("badsite"), "-join " + join("badsite") + `: site "HQ!": want`, 1},
		{"join file bad key", simJoin("badkey"), "-join " + join("badkey") + ": trusted_keys: mqtt: trusted key hq-1", 1},
		{"join file bad broker", simJoin("badurl"), "-join " + join("badurl") + `: broker "ws://127.0.0.1:1883": scheme "ws"`, 1},
		{"join bad door", simJoin("goodjoin", "-door", "Front Door"), `-door: door "Front Door": want`, 1},
		{"missing file", []string{"-config", filepath.Join(dir, "missing.toml")}, "missing.toml", 1},
		{"unknown key", []string{"-config", bad}, "unknown key bogus", 1},
		{"check unknown key", []string{"-check-config", "-config", bad}, "bad.toml", 1},
		{"unknown pin", []string{"-config", noPin}, `relay.pin: no pin "GPIO53"`, 1},
		{"bad pin name", []string{"-check-config", "-config", badNames}, fmt.Sprintf(`badnames.toml: line %d: relay.pin "GPIO17x": want a BCM GPIO name`, pinLine), 1},
		{"bad spi name, in the same run", []string{"-check-config", "-config", badNames}, fmt.Sprintf(`badnames.toml: line %d: reader.spi "SPI9.9": want SPI<bus>.<chip select>`, spiLine), 1},
		{"sim previewing a bad config", []string{"-sim", "-data", dir, "-config", bad}, "bad.toml: unknown key bogus", 1},
		{"sim data dir for a door", []string{"-config", bad, "-data", dir}, "-data is for -sim", 2},
		{"sim broker for a door", []string{"-config", bad, "-mqtt", "tcp://127.0.0.1:1883"}, "-mqtt is for -sim", 2},
		{"sim broker address for a door", []string{"-check-config", "-config", bad, "-broker-addr", "127.0.0.1:0"}, "-broker-addr is for -sim", 2},
		{"sim flag without mode", []string{"-mqtt", "tcp://127.0.0.1:1883"}, "-mqtt is for -sim", 2},
		{"check-config for the simulator", []string{"-sim", "-check-config"}, "-check-config checks a -config file", 2},
		{"bad log format", []string{"-sim", "-log-format", "xml"}, `-log-format "xml"`, 2},
		{"stray argument", []string{"-sim", "now"}, `unexpected argument "now"`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runArgs(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("stderr has %d lines, want one: %q", n+1, stderr)
			}
		})
	}
}

func TestRunCheckConfigGood(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "good.toml")
	cfg := strings.Replace(goodConfig, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runArgs(t, "-check-config", "-config", p)
	if code != 0 || !strings.Contains(stdout, "is valid") {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// writePEM writes blocks of the given type to path.
func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles writes a CA, a client certificate it signed with its key, and
// a key of another certificate, into dir.
func tlsFiles(t *testing.T, dir string) (ca, cert, key, otherKey string) {
	t.Helper()
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return k, der
	}
	// Fixed validity: nothing here depends on the clock.
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	caKey, _ := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "latch test CA"},
		NotBefore: from, NotAfter: from.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clKey, clKeyDER := newKey()
	clTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "door-front"},
		NotBefore: from, NotAfter: from.AddDate(10, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	clDER, err := x509.CreateCertificate(rand.Reader, clTmpl, caTmpl, &clKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	_, otherDER := newKey()
	ca, cert, key, otherKey = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "front.pem"), filepath.Join(dir, "front.key"), filepath.Join(dir, "other.key")
	writePEM(t, ca, "CERTIFICATE", caDER)
	writePEM(t, cert, "CERTIFICATE", clDER)
	writePEM(t, key, "PRIVATE KEY", clKeyDER)
	writePEM(t, otherKey, "PRIVATE KEY", otherDER)
	return ca, cert, key, otherKey
}

// -check-config reads what the door reads at start, short of the hardware:
// the data directory, the site keys, the password and the TLS files.
func TestRunCheckConfigFiles(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, otherKey := tlsFiles(t, dir)
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(goodConfig, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
	mqttTable := func(ca, cert, key, pw string) string {
		return fmt.Sprintf("[mqtt]\nbroker = \"ssl://127.0.0.1:8883\"\nca = %q\ncert = %q\nkey = %q\nusername = \"door-front\"\npassword_file = %q\n[mqtt.trusted_keys]\nk1 = %q",
			ca, cert, key, pw, testSiteKey())
	}
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"all good", mqttTable(ca, cert, key, pw), ""},
		{"no data dir", `data_dir = "` + filepath.Join(dir, "nope") + `"`, "data_dir: stat "},
		{"data dir a file", `data_dir = "` + pw + `"`, "not a directory"},
		{"no CA file", mqttTable(filepath.Join(dir, "missing.pem"), cert, key, pw), "mqtt.ca: "},
		{"CA not PEM", mqttTable(pw, cert, key, pw), "mqtt.ca: "},
		{"key of another certificate", mqttTable(ca, cert, otherKey, pw), "mqtt.cert, mqtt.key: "},
		{"no certificate file", mqttTable(ca, filepath.Join(dir, "missing.pem"), key, pw), "mqtt.cert, mqtt.key: "},
		{"no password file", mqttTable(ca, cert, key, filepath.Join(dir, "missing")), "mqtt.password_file: "},
		{"empty password file", mqttTable(ca, cert, key, empty), "mqtt.password_file " + empty + ": empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "latchd.toml")
			if err := os.WriteFile(p, []byte(override(base, tc.edit)), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runArgs(t, "-check-config", "-config", p)
			if tc.want == "" {
				if code != 0 || !strings.Contains(stdout, "is valid") {
					t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
				}
				return
			}
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("code %d stderr %q, want 1 and %q", code, stderr, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("stderr has %d lines, want one: %q", n+1, stderr)
			}
		})
	}
}
