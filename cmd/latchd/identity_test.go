package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
)

// The door makes its identity at the first start and keeps it; a lost or
// swapped identity file is refused, never replaced silently; -new-identity
// replaces it on purpose and keeps the old one aside.
func TestDoorIdentity(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)

	first, err := doorIdentity(dir, st, log)
	if err != nil {
		t.Fatal(err)
	}
	fp := first.Public().Fingerprint()
	again, err := doorIdentity(dir, st, log)
	if err != nil || again.Public().Fingerprint() != fp {
		t.Fatalf("second start: %v %v", again, err)
	}

	path := filepath.Join(dir, mqtt.IdentityFile)
	keep, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := doorIdentity(dir, st, log); !errors.Is(err, errIdentity) || !strings.Contains(err.Error(), fp) {
		t.Fatalf("identity file lost: %v, want a refusal naming %s", err, fp)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a lost identity was replaced")
	}
	other := t.TempDir()
	if _, err := mqtt.CreateIdentity(other); err != nil {
		t.Fatal(err)
	}
	swapped, _ := os.ReadFile(filepath.Join(other, mqtt.IdentityFile))
	if err := os.WriteFile(path, swapped, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := doorIdentity(dir, st, log); !errors.Is(err, errIdentity) || !strings.Contains(err.Error(), "approved with "+fp) {
		t.Fatalf("another identity: %v", err)
	}
	if err := os.WriteFile(path, keep, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := doorIdentity(dir, st, log); err != nil {
		t.Fatalf("restored from a backup: %v", err)
	}

	var out bytes.Buffer
	if err := newIdentity(dir, st, time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".old-20261203T100000Z"); err != nil {
		t.Fatalf("old identity not kept: %v", err)
	}
	renewed, err := doorIdentity(dir, st, log)
	if err != nil || renewed.Public().Fingerprint() == fp || !strings.Contains(out.String(), renewed.Public().Fingerprint()) {
		t.Fatalf("after -new-identity: %v %v\n%s", renewed, err, out.String())
	}
}

// latchd -show-identity prints what the door announces; the simulator's
// status shows the same fingerprint.
func TestSimShowIdentity(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"-sim", "-data", dir, "-show-identity"}, strings.NewReader(""), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no identity yet") {
		t.Fatalf("before the first start: exit %d, %s", code, errOut.String())
	}
	sim := startSimIn(t, dir)
	sim.send("status")
	m := sim.out.next("status", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "status ")
	})
	fp := field(m["msg"].(string), "identity")
	if fp == "" {
		t.Fatalf("status without identity: %v", m)
	}
	sim.quit()
	out.Reset()
	if code := run(t.Context(), []string{"-sim", "-data", dir, "-show-identity"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), "fingerprint "+fp) {
		t.Fatalf("-show-identity: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}

// -rotate-identity makes the next identity beside the current one; the
// promotion records it and replaces the file; a start between the two
// (a power cut in the middle) finishes the rename instead of refusing the
// identity.
func TestRotateIdentity(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	if err := rotateIdentity(dir, &bytes.Buffer{}); err == nil {
		t.Fatal("rotated without an identity")
	}
	cur, err := doorIdentity(dir, st, log)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rotateIdentity(dir, &out); err != nil {
		t.Fatal(err)
	}
	next, err := nextIdentity(dir)
	if err != nil || next == nil {
		t.Fatalf("next identity: %v %v", next, err)
	}
	nfp := next.Public().Fingerprint()
	if !strings.Contains(out.String(), nfp) || !strings.Contains(out.String(), cur.Public().Fingerprint()) {
		t.Fatalf("-rotate-identity printed\n%s", out.String())
	}
	if err := rotateIdentity(dir, &out); err == nil {
		t.Fatal("a second next identity replaced the first")
	}
	// Still the current one until the site approves the next.
	if id, err := doorIdentity(dir, st, log); err != nil || id.Public().Fingerprint() != cur.Public().Fingerprint() {
		t.Fatalf("before the promotion: %v", err)
	}
	// Cut between recording the next fingerprint and the rename.
	if err := st.PutState(identityKey, []byte(nfp)); err != nil {
		t.Fatal(err)
	}
	id, err := doorIdentity(dir, st, log)
	if err != nil || id.Public().Fingerprint() != nfp {
		t.Fatalf("start after a cut rotation: %v", err)
	}
	if n, err := nextIdentity(dir); n != nil || err != nil {
		t.Fatalf("next identity left over: %v %v", n, err)
	}
	// The whole promotion, as the client calls it.
	if err := rotateIdentity(dir, &out); err != nil {
		t.Fatal(err)
	}
	third, _ := nextIdentity(dir)
	if err := promoter(dir, st, log)(third); err != nil {
		t.Fatal(err)
	}
	if id, err := doorIdentity(dir, st, log); err != nil || id.Public().Fingerprint() != third.Public().Fingerprint() {
		t.Fatalf("after the promotion: %v", err)
	}
}
