package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/devbroker"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// A simulated door joins a site that runs elsewhere (here, in the test):
// it announces its identity, gets nothing until the admin approves it,
// then gets the site's allowlist by its sync, decides on it, and the
// site collects its events.
func TestSimJoinsSite(t *testing.T) {
	b, err := devbroker.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	db, err := sitestore.Open(filepath.Join(t.TempDir(), "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := mqtt.NewSigner("hq-1", key)
	if err != nil {
		t.Fatal(err)
	}
	site, err := mqttsite.New(mqttsite.Options{DB: db, Broker: b.URL(), Site: "hq", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- site.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		db.Close()
	})

	jf := filepath.Join(t.TempDir(), "join.json")
	j, err := json.Marshal(joinFile{Broker: b.URL(), Site: "hq", TrustedKeys: map[string]string{"hq-1": base64.StdEncoding.EncodeToString(pub)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jf, j, 0o600); err != nil {
		t.Fatal(err)
	}
	sim := startSimArgs(t, "-sim", "-data", t.TempDir(), "-log-format", "json", "-join", jf, "-door", "lab")
	line := sim.out.next("the identity line", func(m map[string]any) bool { _, ok := m["fingerprint"]; return ok })
	fp, _ := line["fingerprint"].(string)
	if line["door"] != "lab" || fp == "" || !strings.Contains(line["msg"].(string), "latch door approve lab") {
		t.Fatalf("identity line %v, want door lab, its fingerprint and the approve hint", line)
	}
	// Not approved: no allowlist, and the site's commands are the site's.
	if st := sim.status("the door", func(string) bool { return true }); field(st, "acl_seq") != "0" {
		t.Fatalf("status %q before approval, want acl_seq=0", st)
	}
	sim.send("unlock 3")
	msg := sim.out.next("an error line", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "error:")
	})["msg"].(string)
	if !strings.Contains(msg, "latch door unlock lab --for 3s") {
		t.Errorf("unlock: %q, want the site's command to use", msg)
	}

	waitSite(t, site, "the door's identity pending", func() bool { return site.Stats().Pending["lab"] == fp })
	if err := site.Approve("lab", fp); err != nil {
		t.Fatal(err)
	}
	uid := []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}
	hash, err := store.HashPIN([]byte("2468"), uid, store.DefaultPINParams)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Publish(ctx,
		store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "carol", Name: "Carol"}},
		store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: uid, HolderID: "carol", PINHash: hash, Doors: []string{"lab"}}},
	); err != nil {
		t.Fatal(err)
	}
	applied := func(what string) {
		t.Helper()
		seq, _ := site.Head("lab")
		sim.status(what, func(s string) bool { return field(s, "acl_seq") == strconv.FormatUint(seq, 10) })
	}
	applied("the card applied")
	sim.send("tap 04112233445566")
	sim.send("key 2468#")
	if ev := sim.out.event("granted"); ev["uid"] != "04112233445566" || ev["holder"] != "carol" || ev["door"] != "lab" {
		t.Fatalf("event %v, want carol's grant at lab", ev)
	}
	sim.send("remove")

	if _, err := site.Publish(ctx, store.Op{Kind: store.OpRevokeCard, UID: uid, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	applied("the revocation applied")
	sim.send("tap 04112233445566")
	last := sim.out.event("revoked")
	sim.send("remove")
	seq := uint64(last["seq"].(float64))
	// The events the door sent before it was approved were refused: the
	// door sends them again when no acknowledgement comes (mqtt's
	// AckTimeout), and the site then has them all and acknowledges them.
	waitSite(t, site, "the door's events collected", func() bool { return site.Contiguous("lab") >= seq })
	sim.status("an empty outbox", func(s string) bool { return field(s, "outbox") == "0" })
	evs, err := site.Events("lab")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range evs {
		reasons = append(reasons, string(e.Reason))
	}
	if got := strings.Join(reasons, " "); !strings.Contains(got, "granted") || !strings.Contains(got, "revoked") {
		t.Errorf("the site collected %s, want the grant and the refusal", got)
	}
	sim.quit()
}

// waitSite waits until cond holds, woken by the site's updates; hangGuard
// bounds it.
func waitSite(t *testing.T, s *mqttsite.Site, what string, cond func() bool) {
	t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	if err := waitFor(context.Background(), guard.C, s.Updated, cond); err != nil {
		t.Fatalf("no %s: %v; site stats %+v", what, err, s.Stats())
	}
}

func TestParseJoinFile(t *testing.T) {
	key := testSiteKey()
	good := `{"broker": "tcp://127.0.0.1:1883", "site": "demo", "trusted_keys": {"demo-1": "` + key + `"}, "username": "", "password": ""}`
	j, err := parseJoinFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := &joinFile{Broker: "tcp://127.0.0.1:1883", Site: "demo", TrustedKeys: map[string]string{"demo-1": key}}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("parsed %+v, want %+v", j, want)
	}
	for _, tc := range []struct{ in, err string }{
		{`{"broker": "ssl://broker.example:8883", "site": "hq", "trusted_keys": {"k": "` + key + `"}, "username": "door-lab", "password": "s3cret"}`, ""},
		{``, "not a join file"},
		{`[]`, "not a join file"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "` + key + `"}} {}`, "data after the JSON object"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "` + key + `"}} x`, "data after the JSON object"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "` + key + `"}, "door": "lab"}`, `unknown field "door"`},
		{`{"site": "hq", "trusted_keys": {"k": "` + key + `"}}`, "broker: missing"},
		{`{"broker": "mqtts://127.0.0.1:8883", "site": "hq", "trusted_keys": {"k": "` + key + `"}}`, `scheme "mqtts", want tcp:// or ssl://`},
		{`{"broker": "tcp://127.0.0.1", "site": "hq", "trusted_keys": {"k": "` + key + `"}}`, "want scheme://host:port"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "", "trusted_keys": {"k": "` + key + `"}}`, `site "": want`},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq"}`, "trusted_keys: the site's public key is missing"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "AAAA"}}`, "trusted_keys: mqtt: trusted key k"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "` + key + `"}, "password": "x"}`, "password: set without username"},
		{`{"broker": "tcp://127.0.0.1:1883", "site": "hq", "trusted_keys": {"k": "` + key + `"}, "username": "` + strings.Repeat("u", maxJoinFile) + `"}`, "over 65536 bytes"},
	} {
		_, err := parseJoinFile([]byte(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseJoinFile(%.80q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseJoinFile(%.80q) error %v, want containing %q", tc.in, err, tc.err)
		}
	}
}

func FuzzParseJoinFile(f *testing.F) {
	key := testSiteKey()
	for _, s := range []string{
		`{"broker": "tcp://127.0.0.1:1883", "site": "demo", "trusted_keys": {"demo-1": "` + key + `"}, "username": "", "password": ""}`,
		`{"broker": "ssl://h:8883", "site": "hq", "trusted_keys": {"a": "` + key + `", "b": "` + key + `"}, "username": "u", "password": "p"}`,
		`{"broker": "tcp://[::1]:1883", "site": "x", "trusted_keys": {"k": "AAAA"}}`,
		`{"site": 1}`, `null`, "{\"broker\": \"tcp://\x00:1\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := parseJoinFile(b)
		if err != nil {
			if j != nil {
				t.Fatal("a join file returned with an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("an error of more than one line: %q", err)
			}
			return
		}
		u, _, err := parseBrokerURL(j.Broker)
		if err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl") {
			t.Fatalf("accepted broker %q (%v)", j.Broker, err)
		}
		if mqtt.CheckID("site", j.Site) != nil || len(j.TrustedKeys) == 0 || (j.Password != "" && j.Username == "") {
			t.Fatalf("accepted %+v", j)
		}
		if _, err := mqtt.ParsePublicKeys(j.TrustedKeys); err != nil {
			t.Fatalf("accepted keys %v: %v", j.TrustedKeys, err)
		}
		// What was accepted, written out again, reads the same.
		again, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		j2, err := parseJoinFile(again)
		if err != nil || !reflect.DeepEqual(j, j2) {
			t.Fatalf("%s read again: %+v, %v; want %+v", again, j2, err, j)
		}
	})
}

// A simulator's data directory is one site's door: another site's or
// door's is refused, a joined site's is not the demo site's of the same
// name, and a directory the simulator seeded directly before it recorded
// whose it is holds the demo door.
func TestClaimSimDir(t *testing.T) {
	open := func(t *testing.T) *store.Store {
		st, err := store.Open(filepath.Join(t.TempDir(), dbFile), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := open(t)
	for _, c := range []struct {
		joined     bool
		site, door string
		err        string
	}{
		{true, "hq", "lab", ""},
		{true, "hq", "lab", ""},
		{true, "hq", "front", "holds the simulated door of site hq door lab (joined), not of site hq door front (joined)"},
		{false, "hq", "lab", "not of site hq door lab (run here)"},
	} {
		err := claimSimDir(st, "DIR", simOwner(c.joined, c.site, c.door))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("claim %s/%s joined=%t: %v, want %q", c.site, c.door, c.joined, err, c.err)
		}
	}

	st = open(t)
	if err := st.PutState(demoSeedKey, []byte("2026-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	if err := claimSimDir(st, "DIR", simOwner(true, demoSite, demoDoor)); err == nil || !strings.Contains(err.Error(), "holds the simulated door of site demo door front (run here)") {
		t.Errorf("claim of a seeded demo directory by a door that joins: %v", err)
	}
	if err := claimSimDir(st, "DIR", simOwner(false, demoSite, demoDoor)); err != nil {
		t.Errorf("claim of a seeded demo directory by the demo door: %v", err)
	}
}
