package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unitFile is the systemd unit the package installs.
var unitFile = filepath.Join("..", "..", "packaging", "systemd", "latchd.service")

// TestSystemdUnit checks the unit latchd is run by: the notify protocol and
// watchdog it speaks, restarts, its own user with the device groups, and
// the hardening; with systemd-analyze on the machine, also its exposure
// (at most 3.0 of 10; --threshold counts in tenths).
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Type":            "notify",
		"WatchdogSec":     "30s",
		"Restart":         "always",
		"User":            "latch",
		"ExecStart":       "/usr/bin/latchd -config /etc/latch/latchd.toml",
		"ProtectSystem":   "strict",
		"ReadWritePaths":  "/var/lib/latch",
		"StateDirectory":  "latch",
		"NoNewPrivileges": "yes",
		"PrivateTmp":      "yes",
		"ProtectHome":     "yes",
		"DevicePolicy":    "closed",
	}
	for k, v := range want {
		if !slices.Contains(unit[k], v) {
			t.Errorf("%s=%v, want %s", k, unit[k], v)
		}
	}
	groups := strings.Fields(strings.Join(unit["SupplementaryGroups"], " "))
	for _, g := range []string{"spi", "gpio"} {
		if !slices.Contains(groups, g) {
			t.Errorf("SupplementaryGroups %v lacks %s", groups, g)
		}
	}
	if path, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(path, "security", "--offline=yes", "--threshold=30", unitFile).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: %v\n%s", err, out)
		}
		if i := strings.Index(string(out), "Overall exposure level"); i >= 0 {
			t.Log(strings.TrimSpace(string(out[i:])))
		}
	}
}
