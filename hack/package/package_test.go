package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPackages builds both packages and reads them back with Go alone: the
// ar members, the control fields, conffiles, the maintainer scripts (and
// what postinst runs, against stub commands), every file's path, mode and
// owner, and that latchd is a static ELF for the package's architecture.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds latchd twice")
	}
	const root = "../.."
	out := t.TempDir()
	paths, err := Build(Options{Root: root, Out: out, Version: "1.2.3+gittest", Arches: []string{"armhf", "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]elf.Machine{"armhf": elf.EM_ARM, "arm64": elf.EM_AARCH64}
	if len(paths) != len(want) {
		t.Fatalf("built %q, want one package per architecture", paths)
	}
	for _, p := range paths {
		arch := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "latch-door_1.2.3+gittest_"), ".deb")
		machine, ok := want[arch]
		if !ok {
			t.Fatalf("package %s: want latch-door_1.2.3+gittest_{armhf,arm64}.deb", filepath.Base(p))
		}
		t.Run(arch, func(t *testing.T) { checkDeb(t, root, p, arch, machine) })
	}
}

// entry is one file of a tar member of the package.
type entry struct {
	mode         int64
	uname, gname string
	dir          bool
	body         []byte
}

func checkDeb(t *testing.T, root, path, arch string, machine elf.Machine) {
	members := readAr(t, path)
	var names []string
	for _, m := range members {
		names = append(names, m.name)
	}
	if !slices.Equal(names, []string{"debian-binary", "control.tar.gz", "data.tar.gz"}) {
		t.Fatalf("ar members %q, want debian-binary, control.tar.gz, data.tar.gz", names)
	}
	if got := string(members[0].body); got != "2.0\n" {
		t.Errorf("debian-binary %q, want 2.0", got)
	}
	control := readTarGz(t, members[1].body, true)
	data := readTarGz(t, members[2].body, false)

	// control
	fields := parseControl(t, control["control"].body)
	for k, v := range map[string]string{
		"Package":      "latch-door",
		"Version":      "1.2.3+gittest",
		"Architecture": arch,
		"Depends":      "adduser",
		"Maintainer":   "latch <latch@localhost>",
	} {
		if fields[k] != v {
			t.Errorf("control %s: %q, want %q", k, fields[k], v)
		}
	}
	for _, k := range []string{"Recommends", "Suggests", "Homepage", "Pre-Depends"} {
		if v, ok := fields[k]; ok {
			t.Errorf("control has %s: %q, want none", k, v)
		}
	}
	if !strings.HasPrefix(fields["Description"], "latch door controller") {
		t.Errorf("control Description %q", fields["Description"])
	}
	if got := strings.Fields(string(control["conffiles"].body)); !slices.Equal(got, []string{"/etc/latch/latchd.toml"}) {
		t.Errorf("conffiles %q, want /etc/latch/latchd.toml", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		e, ok := control[s]
		if !ok {
			t.Errorf("control.tar has no %s", s)
			continue
		}
		if e.mode != 0o755 {
			t.Errorf("%s: mode %o, want 755", s, e.mode)
		}
		if repo := readFile(t, root, "packaging/deb/"+s); !bytes.Equal(e.body, repo) {
			t.Errorf("%s differs from packaging/deb/%s", s, s)
		}
		f := filepath.Join(t.TempDir(), s)
		if err := os.WriteFile(f, e.body, 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, b)
		}
	}
	checkScripts(t, control)

	// data
	type file struct {
		mode         int64
		uname, gname string
		repo         string // the repository's file it must equal
	}
	files := map[string]file{
		"./usr/bin/latchd":                     {0o755, "root", "root", ""},
		"./lib/systemd/system/latchd.service":  {0o644, "root", "root", "packaging/systemd/latchd.service"},
		"./etc/latch/latchd.toml":              {0o640, "root", "latch", "docs/latchd.example.toml"},
		"./usr/share/doc/latch-door/README.md": {0o644, "root", "root", "README.md"},
		"./usr/share/doc/latch-door/config.md": {0o644, "root", "root", "docs/config.md"},
	}
	for name, e := range data {
		if e.dir {
			if e.mode != 0o755 || e.uname != "root" || e.gname != "root" {
				t.Errorf("%s: directory %o %s:%s, want 755 root:root", name, e.mode, e.uname, e.gname)
			}
			continue
		}
		f, ok := files[name]
		if !ok {
			t.Errorf("unexpected file %s", name)
			continue
		}
		if e.mode != f.mode || e.uname != f.uname || e.gname != f.gname {
			t.Errorf("%s: %o %s:%s, want %o %s:%s", name, e.mode, e.uname, e.gname, f.mode, f.uname, f.gname)
		}
		if f.repo != "" && !bytes.Equal(e.body, readFile(t, root, f.repo)) {
			t.Errorf("%s differs from the repository's %s", name, f.repo)
		}
	}
	for name := range files {
		if _, ok := data[name]; !ok {
			t.Errorf("no %s in the package", name)
		}
	}
	if _, ok := data["./etc/latch/"]; !ok {
		t.Error("no ./etc/latch/ directory entry")
	}

	// latchd
	if e, ok := data["./usr/bin/latchd"]; ok {
		f, err := elf.NewFile(bytes.NewReader(e.body))
		if err != nil {
			t.Fatalf("latchd: %v", err)
		}
		if f.Machine != machine {
			t.Errorf("latchd: machine %v, want %v", f.Machine, machine)
		}
		if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
			t.Errorf("latchd: OS ABI %v", f.OSABI)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("latchd has an interpreter: built with cgo")
			}
		}
	}

	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		for _, flag := range []string{"--info", "--contents"} {
			if b, err := exec.Command("dpkg-deb", flag, path).CombinedOutput(); err != nil {
				t.Errorf("dpkg-deb %s: %v\n%s", flag, err, b)
			}
		}
	}
}

// checkScripts runs postinst configure and postrm purge against stub
// commands that only log their arguments (PATH holds nothing else), and
// checks what the scripts say about starting the service and the data.
func checkScripts(t *testing.T, control map[string]entry) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	log := filepath.Join(dir, "log")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	stub := func(name, body string) {
		s := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >>%s\n%s\n", name, strconv.Quote(log), body)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"adduser", "addgroup", "deluser", "delgroup", "mkdir", "chown", "chmod", "rm", "systemctl", "deb-systemd-helper"} {
		stub(name, "exit 0")
	}
	stub("stat", "echo root")
	run := func(script string, getent string, args ...string) []string {
		t.Helper()
		stub("getent", getent)
		if err := os.WriteFile(log, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, script)
		if err := os.WriteFile(f, control[script].body, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", append([]string{f}, args...)...)
		cmd.Env = []string{"PATH=" + bin}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, b)
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}

	// A first install on a Pi with spi and gpio groups but no i2c group,
	// and no latch user or group yet.
	calls := run("postinst", `case "$1 $2" in "group spi"|"group gpio") exit 0;; esac; exit 2`, "configure", "")
	for _, want := range []string{
		"adduser --system --quiet --group --home /var/lib/latch --no-create-home latch",
		"adduser --quiet latch spi",
		"adduser --quiet latch gpio",
		"mkdir -p /var/lib/latch",
		"chown -R latch:latch /var/lib/latch",
		"chmod 0700 /var/lib/latch",
		"deb-systemd-helper enable latchd.service",
	} {
		if !slices.Contains(calls, want) {
			t.Errorf("postinst configure: no %q in\n%s", want, strings.Join(calls, "\n"))
		}
	}
	for _, c := range calls {
		if strings.HasPrefix(c, "adduser") && strings.Contains(c, "i2c") {
			t.Errorf("postinst configure: %q, but there is no i2c group", c)
		}
		if startsService(c) {
			t.Errorf("postinst configure starts the service: %q", c)
		}
	}
	// An upgrade, with the user there: no user made, a running door
	// restarted but none started.
	calls = run("postinst", `exit 0`, "configure", "1.0.0")
	for _, c := range calls {
		if strings.HasPrefix(c, "adduser --system") || startsService(c) {
			t.Errorf("postinst upgrade: %q", c)
		}
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		for _, line := range strings.Split(string(control[s].body), "\n") {
			if startsService(line) {
				t.Errorf("%s starts the service: %q", s, strings.TrimSpace(line))
			}
		}
	}
	if prerm := string(control["prerm"].body); !strings.Contains(prerm, `"$1" = remove`) || !strings.Contains(prerm, "stop latchd.service") {
		t.Error("prerm does not stop latchd.service on remove")
	}

	// A purge keeps the data directory.
	calls = run("postrm", `exit 0`, "purge")
	if !slices.Contains(calls, "deluser --system --quiet latch") {
		t.Errorf("postrm purge: no deluser in\n%s", strings.Join(calls, "\n"))
	}
	for _, c := range calls {
		if strings.HasPrefix(c, "rm ") && strings.Contains(c, "/var/lib/latch") {
			t.Errorf("postrm purge removes the data: %q", c)
		}
	}
	if postrm := string(control["postrm"].body); !strings.Contains(postrm, "kept /var/lib/latch") {
		t.Error("postrm does not say that it kept /var/lib/latch")
	}
	calls = run("postrm", `exit 0`, "remove")
	for _, c := range calls {
		if strings.HasPrefix(c, "deluser") || strings.HasPrefix(c, "delgroup") {
			t.Errorf("postrm remove: %q (only a purge removes the user)", c)
		}
	}
}

// startsService reports whether a command line starts or restarts a
// stopped service: systemctl start/restart/enable --now and the like.
// try-restart, which only restarts a running one, is not.
func startsService(line string) bool {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "#") {
		return false
	}
	f := strings.Fields(line)
	if !slices.ContainsFunc(f, func(s string) bool {
		return s == "systemctl" || s == "deb-systemd-invoke" || s == "invoke-rc.d" || s == "service"
	}) {
		return false
	}
	for _, w := range f {
		switch w {
		case "start", "restart", "reload-or-restart", "--now":
			return true
		}
	}
	return false
}

type arMember struct {
	name string
	body []byte
}

// readAr reads a .deb's ar archive.
func readAr(t *testing.T, path string) []arMember {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		t.Fatalf("%s: not an ar archive", path)
	}
	b = b[len(magic):]
	var ms []arMember
	for len(b) > 0 {
		if len(b) < 60 || string(b[58:60]) != "`\n" {
			t.Fatalf("%s: bad ar header", path)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(b[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(b[48:58])))
		if err != nil || size < 0 || 60+size > len(b) {
			t.Fatalf("%s: member %q: bad size", path, name)
		}
		ms = append(ms, arMember{name, b[60 : 60+size]})
		b = b[60+size:]
		if size%2 == 1 && len(b) > 0 {
			b = b[1:]
		}
	}
	return ms
}

// readTarGz reads a gzipped tar into its entries by name, without the
// names' "./" prefix if trim.
func readTarGz(t *testing.T, b []byte, trim bool) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	es := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := h.Name
		if trim {
			name = strings.TrimPrefix(name, "./")
		}
		if _, dup := es[name]; dup {
			t.Errorf("tar: %s twice", name)
		}
		es[name] = entry{mode: h.Mode, uname: h.Uname, gname: h.Gname, dir: h.Typeflag == tar.TypeDir, body: body}
	}
	return es
}

// parseControl reads a control file's fields, continuation lines joined.
func parseControl(t *testing.T, b []byte) map[string]string {
	t.Helper()
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("control: bad line %q", line)
		}
		if _, dup := fields[k]; dup {
			t.Errorf("control: %s twice", k)
		}
		fields[k], last = strings.TrimSpace(v), k
	}
	return fields
}

func readFile(t *testing.T, root, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
