// Command package builds latch-door, the Debian package of the door service
// latchd, for the Raspberry Pi: armhf (from a GOARM=6 build, which runs on
// every Pi) and arm64. hack/package.sh runs it.
//
//	go run ./hack/package [-version V] [-out DIR] [-arch armhf,arm64]
//
// It runs from the repository's root (the module's directory).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Name is the package's name.
const Name = "latch-door"

// target is one Debian architecture and the Go build that makes it.
type target struct {
	deb, goarch, goarm, nfpmArch string
}

var targets = map[string]target{
	"armhf": {deb: "armhf", goarch: "arm", goarm: "6", nfpmArch: "arm6"},
	"arm64": {deb: "arm64", goarch: "arm64", nfpmArch: "arm64"},
}

// Options says what to build.
type Options struct {
	Root    string   // the repository's root
	Out     string   // where the .deb files go
	Version string   // the package version, semver ("0.0.0+gitabc1234")
	Arches  []string // Debian architectures: armhf, arm64
}

func main() {
	var o Options
	var arches string
	flag.StringVar(&o.Version, "version", "0.0.0", "package version (semver)")
	flag.StringVar(&o.Out, "out", "bin/packages", "output directory")
	flag.StringVar(&o.Root, "root", ".", "the repository's root")
	flag.StringVar(&arches, "arch", "armhf,arm64", "Debian architectures, comma-separated")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "package: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	o.Arches = strings.Split(arches, ",")
	paths, err := Build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "package: %v\n", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "package: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%d bytes\n", p, fi.Size())
	}
}

// Build builds one package per architecture in o.Out and returns their paths.
func Build(o Options) ([]string, error) {
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "latchd")); err != nil {
		return nil, fmt.Errorf("-root %s: not latch's repository: %w", o.Root, err)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "latch-package-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	var paths []string
	for _, a := range o.Arches {
		t, ok := targets[a]
		if !ok {
			return nil, fmt.Errorf("unknown architecture %q (armhf, arm64)", a)
		}
		bin := filepath.Join(work, t.deb, "latchd")
		if err := goBuild(root, t, bin); err != nil {
			return nil, err
		}
		p, err := writeDeb(root, o, t, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.deb, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// goBuild builds latchd for t without cgo. latchd takes its version from
// the build info (debug.ReadBuildInfo), so there is nothing to set with
// -ldflags.
func goBuild(root string, t target, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/latchd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.goarch, "GOARM="+t.goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build latchd for %s: %v\n%s", t.deb, err, b)
	}
	return nil
}

// packageInfo is the package's metadata and contents for t, with latchd from bin.
func packageInfo(root, version string, t target, bin string) *nfpm.Info {
	src := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	file := func(from, to string, mode os.FileMode) *files.Content {
		return &files.Content{Source: from, Destination: to, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	info := &nfpm.Info{
		Name:       Name,
		Arch:       t.nfpmArch,
		Platform:   "linux",
		Version:    version,
		Section:    "misc",
		Priority:   "optional",
		Maintainer: "latch <latch@localhost>",
		Description: "latch door controller (latchd)\n" +
			"latchd runs one door of a latch site on a Raspberry Pi: a PN532 card\n" +
			"reader, a keypad, the lock's relay and the door contact, deciding from\n" +
			"its own copy of the allowlist, signed and sealed by the site over MQTT.\n" +
			"It runs as the latch user under systemd; edit /etc/latch/latchd.toml,\n" +
			"then start latchd.service.",
		Overridables: nfpm.Overridables{
			Depends: []string{"adduser"},
			Contents: files.Contents{
				file(bin, "/usr/bin/latchd", 0o755),
				// Owned by root like the rest of /etc; only the file is the
				// latch group's.
				{Destination: "/etc/latch", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				file(src("packaging/systemd/latchd.service"), "/lib/systemd/system/latchd.service", 0o644),
				{
					Source:      src("docs/latchd.example.toml"),
					Destination: "/etc/latch/latchd.toml",
					Type:        files.TypeConfigNoReplace,
					FileInfo:    &files.ContentFileInfo{Mode: 0o640, Owner: "root", Group: "latch"},
				},
				file(src("README.md"), "/usr/share/doc/"+Name+"/README.md", 0o644),
				file(src("docs/config.md"), "/usr/share/doc/"+Name+"/config.md", 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: src("packaging/deb/postinst"),
				PreRemove:   src("packaging/deb/prerm"),
				PostRemove:  src("packaging/deb/postrm"),
			},
		},
	}
	return nfpm.WithDefaults(info)
}

// writeDeb writes t's package into o.Out and returns its path.
func writeDeb(root string, o Options, t target, bin string) (string, error) {
	info := packageInfo(root, o.Version, t, bin)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	pkg := deb.Default
	path := filepath.Join(o.Out, pkg.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}
