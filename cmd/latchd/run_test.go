package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	cfg := strings.Replace(goodConfig, `pin = "GPIO17"`, `pin = "GPIO_NOT_ON_ANY_BOARD"`, 1)
	cfg = strings.Replace(cfg, `data_dir = "/var/lib/latch"`, `data_dir = "`+dir+`"`, 1)
	if err := os.WriteFile(noPin, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no config", nil, "-config FILE is required", 2},
		{"missing file", []string{"-config", filepath.Join(dir, "missing.toml")}, "missing.toml", 1},
		{"unknown key", []string{"-config", bad}, "unknown key bogus", 1},
		{"check unknown key", []string{"-check-config", "-config", bad}, "bad.toml", 1},
		{"unknown pin", []string{"-config", noPin}, `relay.pin: no pin "GPIO_NOT_ON_ANY_BOARD"`, 1},
		{"sim and config", []string{"-sim", "-config", bad}, "exclude each other", 2},
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
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 && tc.code == 1 {
				t.Errorf("stderr has %d lines, want one: %q", n+1, stderr)
			}
		})
	}
}

func TestRunCheckConfigGood(t *testing.T) {
	p := filepath.Join(t.TempDir(), "good.toml")
	if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runArgs(t, "-check-config", "-config", p)
	if code != 0 || !strings.Contains(stdout, "is valid") {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}
