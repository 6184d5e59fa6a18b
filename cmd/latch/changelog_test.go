package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/mqtt/brokertest"
	"github.com/latchdoor/latch/store/site"
)

// mutatingRoutes is every route of the API (apiRoutes) of a method that
// changes something.
func mutatingRoutes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, p := range apiRoutes(t) {
		if method, _, _ := strings.Cut(p, " "); slices.Contains([]string{"POST", "PUT", "PATCH", "DELETE"}, method) {
			out = append(out, p)
		}
	}
	if len(out) < 15 {
		t.Fatalf("found only %d mutating routes: %v", len(out), out)
	}
	return out
}

// The PIN and password the tests set; neither may reach the change log.
const (
	logPIN      = "739164825301"
	logPassword = "a change log passphrase"
)

// Every mutating route of the API, exercised against the real service on
// a broker, makes exactly one entry with the record before and after; a
// route added without its case here fails.
func TestChangeLogCoversEveryMutatingRoute(t *testing.T) {
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Skip(err)
	}
	b := brokertest.Start(t, brokertest.Config{})
	s := initSite(t)
	s.provision(t, "front", true)
	lab := s.provision(t, "lab", false)
	sv := s.start(t, serveOptions{broker: &brokerOptions{url: b.URL(), heartbeat: time.Second}})
	eventually(t, "the site connected", func() bool { return sv.site.Stats().Connected })
	cl := newClient(&env{getenv: func(string) string { return "" }}, s.sock)

	// kind: "change" (one entry, before and/or after), "sent" (an entry
	// before sending and its outcome), "note" (an entry referring to
	// another).
	type step struct {
		pattern, method, path string
		body                  any
		kind                  string
		before, after         bool // the values are not null
	}
	steps := []step{
		{"POST /v1/holders", "POST", "/v1/holders", holderAddReq{ID: "alice", Name: "Alice"}, "change", false, true},
		{"POST /v1/cards", "POST", "/v1/cards", cardAddReq{UID: "04A1B2C3", Holder: "alice", Doors: []string{"front"}}, "change", false, true},
		{"PATCH /v1/cards/{uid}", "PATCH", "/v1/cards/04A1B2C3", map[string]any{"doors": []string{"front", "back"}}, "change", true, true},
		{"POST /v1/cards/{uid}/pin", "POST", "/v1/cards/04A1B2C3/pin", pinSetReq{Holder: "alice", PIN: logPIN}, "change", true, true},
		{"POST /v1/revoke", "POST", "/v1/revoke", revokeReq{UID: "04A1B2C3", Reason: "lost"}, "change", true, true},
		{"POST /v1/reinstate", "POST", "/v1/reinstate", revokeReq{UID: "04A1B2C3"}, "change", true, true},
		{"POST /v1/cards/{uid}/replace", "POST", "/v1/cards/04A1B2C3/replace", replaceReq{NewUID: "04D1E2F3", Reason: "lost"}, "change", true, true},
		{"DELETE /v1/cards/{uid}", "DELETE", "/v1/cards/04D1E2F3", nil, "change", true, false},
		{"DELETE /v1/cards/{uid}", "DELETE", "/v1/cards/04A1B2C3", nil, "change", true, false},
		{"DELETE /v1/holders/{id}", "DELETE", "/v1/holders/alice", nil, "change", true, false},
		{"POST /v1/doors/{id}/approve", "POST", "/v1/doors/lab/approve", approveReq{Fingerprint: lab.Public().Fingerprint()}, "change", true, true},
		{"PUT /v1/doors/{id}/groups", "PUT", "/v1/doors/front/groups", groupsReq{Groups: []string{"staff"}}, "change", true, true},
		{"POST /v1/doors/{id}/unlock", "POST", "/v1/doors/front/unlock", unlockReq{DurationMS: 3000}, "sent", false, false},
		{"POST /v1/doors/{id}/lockdown", "POST", "/v1/doors/front/lockdown", map[string]bool{"on": true}, "sent", false, false},
		{"POST /v1/keys/rotate", "POST", "/v1/keys/rotate", rotateReq{}, "sent", true, true},
		{"DELETE /v1/doors/{id}/approval", "DELETE", "/v1/doors/lab/approval", nil, "change", true, true},
		{"POST /v1/users", "POST", "/v1/users", userAddReq{Name: "ada", Role: "admin", Password: logPassword}, "change", false, true},
		{"POST /v1/users", "POST", "/v1/users", userAddReq{Name: "otto", Role: "operator", Password: logPassword}, "change", false, true},
		{"PUT /v1/users/{name}/password", "PUT", "/v1/users/otto/password", passwordReq{Password: logPassword + "!"}, "change", true, true},
		{"PUT /v1/users/{name}/role", "PUT", "/v1/users/otto/role", roleReq{Role: "auditor"}, "change", true, true},
		{"DELETE /v1/users/{name}", "DELETE", "/v1/users/otto", nil, "change", true, false},
		{"POST /v1/holders", "POST", "/v1/holders", holderAddReq{ID: "rita"}, "change", false, true},
		{"POST /v1/cards", "POST", "/v1/cards", cardAddReq{UID: "04B0B0B0", Holder: "rita", Doors: []string{"staff"}}, "change", false, true},
		{"POST /v1/reviews", "POST", "/v1/reviews", reviewStartReq{Group: "staff", Owner: "ada"}, "change", false, true},
		{"POST /v1/reviews/{id}/decisions", "POST", "/v1/reviews/1/decisions", decideReq{Holder: "rita", Decision: "remove", Comment: "left"}, "change", true, true},
		{"POST /v1/reviews/{id}/complete", "POST", "/v1/reviews/1/complete", nil, "change", true, true},
		{"POST /v1/audit/changes/{seq}/notes", "POST", "/v1/audit/changes/1/notes", noteReq{Text: "checked against the ticket"}, "note", false, false},
		{"POST /v1/tokens", "POST", "/v1/tokens", tokenReq{Name: "okta", Role: "admin"}, "change", false, true},
		{"DELETE /v1/tokens/{name}", "DELETE", "/v1/tokens/okta", nil, "change", true, true},
		{"POST /scim/v2/Users", "POST", "/scim/v2/Users", scimUser{UserName: "dora", Name: &scimName{Formatted: "Dora"}}, "change", false, true},
		{"PUT /scim/v2/Users/{id}", "PUT", "/scim/v2/Users/dora", scimUser{UserName: "dora", DisplayName: "Dora D"}, "change", true, true},
		{"PATCH /scim/v2/Users/{id}", "PATCH", "/scim/v2/Users/dora", json.RawMessage(`{"Operations":[{"op":"replace","path":"active","value":false}]}`), "change", true, true},
		{"DELETE /scim/v2/Users/{id}", "DELETE", "/scim/v2/Users/dora", nil, "change", true, true},
		{"POST /scim/v2/Groups", "POST", "/scim/v2/Groups", scimGroup{DisplayName: "annex"}, "change", false, true},
		{"PUT /scim/v2/Groups/{id}", "PUT", "/scim/v2/Groups/annex", scimGroup{DisplayName: "annex", Members: []scimMember{{Value: "rita"}}}, "change", true, true},
		{"PATCH /scim/v2/Groups/{id}", "PATCH", "/scim/v2/Groups/annex", json.RawMessage(`{"Operations":[{"op":"remove","path":"members[value eq \"rita\"]"}]}`), "change", true, true},
		{"DELETE /scim/v2/Groups/{id}", "DELETE", "/scim/v2/Groups/annex", nil, "change", true, false},
		{"POST /v1/import", "POST", "/v1/import", rawBody{"text/csv", []byte("holder_id,holder_name,card_uid,doors,valid_from,valid_until,flags\ncarol,Carol,04C0C0C0,front,,,\n")}, "change", false, false},
		{"POST /v1/visitors", "POST", "/v1/visitors", visitorAddReq{Holder: "vic", Host: "ada", From: time.Now(), Until: time.Now().Add(time.Hour), Doors: []string{"front"}, UID: "04E0E0E0"}, "change", false, true},
		{"POST /v1/visitors/{holder}/end", "POST", "/v1/visitors/vic/end", nil, "change", true, true},
		{"POST /v1/notify/rules", "POST", "/v1/notify/rules", notifyRuleReq{Name: "night", Events: []string{"granted"}, Hours: "20:00-06:00", Channel: "mqtt"}, "change", false, true},
		{"POST /v1/notify/rules/{name}/disable", "POST", "/v1/notify/rules/night/disable", nil, "change", true, true},
		{"POST /v1/notify/rules/{name}/enable", "POST", "/v1/notify/rules/night/enable", nil, "change", true, true},
		{"DELETE /v1/notify/rules/{name}", "DELETE", "/v1/notify/rules/night", nil, "change", true, false},
		{"POST /v1/alarms/{id}/ack", "POST", "/v1/alarms/1/ack", nil, "change", true, true},
		{"POST /v1/alarms/{id}/assign", "POST", "/v1/alarms/1/assign", alarmReq{Account: "ada"}, "change", true, true},
		{"POST /v1/alarms/{id}/notes", "POST", "/v1/alarms/1/notes", alarmReq{Text: "on my way"}, "change", true, true},
		{"POST /v1/alarms/{id}/snooze", "POST", "/v1/alarms/1/snooze", snoozeReq{ForS: new(int64(900)), Text: "contractor on site"}, "change", true, true},
		{"POST /v1/alarms/{id}/resolve", "POST", "/v1/alarms/1/resolve", nil, "change", true, true},
	}
	raiseAlarm(t, sv.db, "front")
	var pinHash string
	done := map[string]bool{}
	for _, st := range steps {
		before, _, err := sv.db.Changes(site.ChangeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.call(context.Background(), st.method, st.path, st.body); err != nil {
			t.Fatalf("%s %s: %v", st.method, st.path, err)
		}
		if st.pattern == "POST /v1/cards/{uid}/pin" {
			c, err := sv.db.Card([]byte{0x04, 0xA1, 0xB2, 0xC3})
			if err != nil || c.PINHash == "" {
				t.Fatalf("no PIN hash after pin set: %v", err)
			}
			pinHash = c.PINHash
		}
		all, _, err := sv.db.Changes(site.ChangeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		added := all[len(before):]
		var primary []site.ChangeEntry
		for _, e := range added {
			if e.Ref == 0 || st.kind == "note" {
				primary = append(primary, e)
			}
		}
		if len(primary) != 1 {
			t.Errorf("%s: %d entries, want 1: %+v", st.path, len(primary), added)
			continue
		}
		e := primary[0]
		if e.Op != changeOps[st.pattern] || e.From != "socket" || e.Who == "" || e.Time.IsZero() {
			t.Errorf("%s: entry %+v", st.path, e)
		}
		switch st.kind {
		case "change":
			if e.Result != "ok" || len(added) != 1 {
				t.Errorf("%s: result %q, %d entries", st.path, e.Result, len(added))
			}
		case "sent":
			if e.Result != "sending" || len(added) != 2 || added[1].Op != opOutcome || added[1].Ref != e.Seq || added[1].Result != "ok" || string(added[1].After) == "null" {
				t.Errorf("%s: not logged before sending with its outcome: %+v", st.path, added)
			}
		case "note":
			if e.Ref != 1 || e.Detail != "checked against the ticket" {
				t.Errorf("note: %+v", e)
			}
		}
		if got := string(e.Before) != "null"; got != st.before {
			t.Errorf("%s: before %s", st.path, e.Before)
		}
		if got := string(e.After) != "null"; got != st.after && st.kind != "sent" {
			t.Errorf("%s: after %s", st.path, e.After)
		}
		done[st.pattern] = true
	}
	for _, p := range mutatingRoutes(t) {
		if changeOps[p] == "" {
			t.Errorf("route %s has no operation name in changeOps", p)
		}
		if !done[p] {
			t.Errorf("route %s is not exercised by the change-log test", p)
		}
	}

	// What the PIN set logged: that the card has one, no more.
	es, _, _ := sv.db.Changes(site.ChangeFilter{Target: "card 04A1B2C3"})
	if i := slices.IndexFunc(es, func(e site.ChangeEntry) bool { return e.Op == "pin set" }); i < 0 ||
		!strings.Contains(string(es[i].Before), `"pin_set":false`) || !strings.Contains(string(es[i].After), `"pin_set":true`) {
		t.Errorf("pin set entry: %+v", es)
	}
	// A refused change is one entry too, marked so.
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/holders", `{"id":"bob"}`, "ok"},
		{"POST", "/v1/holders", `{"id":"bob"}`, "refused (409)"},
		{"POST", "/v1/holders", `{"id":"eve","pin":"1234"}`, "refused (400)"},
		{"DELETE", "/v1/cards/0BADCAFE", ``, "refused (404)"},
	} {
		before, _, _ := sv.db.Changes(site.ChangeFilter{})
		var in any
		if c.body != "" {
			in = json.RawMessage(c.body)
		}
		_, _ = cl.call(context.Background(), c.method, c.path, in)
		all, _, _ := sv.db.Changes(site.ChangeFilter{})
		if added := all[len(before):]; len(added) != 1 || !strings.HasPrefix(added[0].Result, c.want) || added[0].Op == "" {
			t.Errorf("%s %s %s: %+v, want one entry %q", c.method, c.path, c.body, added, c.want)
		}
	}
	if v, err := sv.db.VerifyChanges(); err != nil || v.Bad != 0 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	sv.stop(t)

	// Neither the PIN, nor its hash, nor a password or its hash is in the
	// change log's bytes.
	raw := rawBucket(t, s.db, "changes")
	for _, secret := range []string{logPIN, pinHash, pinHash[strings.LastIndex(pinHash, "$")+1:], logPassword, "$argon2id$"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the change log holds %q", secret)
		}
	}
}

// rawBucket is every key and value of a bucket of the file, as stored.
func rawBucket(t *testing.T, path, name string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
			out = append(append(out, k...), v...)
			return nil
		})
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("bucket %s: %d bytes, %v", name, len(out), err)
	}
	return out
}

// The console's changes are the API's: one entry each, naming the account
// and the client's address.
func TestChangeLogConsoleOneEntry(t *testing.T) {
	cs := startConsoleSite(t, serveOptions{}, nil)
	cs.addUser(t, "otto", "operator", opPW)
	b := cs.browser(t)
	csrf := b.mustLogin("otto", opPW)
	count := func() int {
		es, _, err := cs.sv.db.Changes(site.ChangeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	n := count()
	if p := b.post("/people", url.Values{"csrf": {csrf}, "id": {"zed"}}); p.code != 303 {
		t.Fatalf("holder add form: %d", p.code)
	}
	if p := b.api("POST", "/api/v1/holders", csrf, `{"id":"yan"}`); p.code != 201 {
		t.Fatalf("holder add by script: %d %s", p.code, p.body)
	}
	if got := count() - n; got != 2 {
		t.Fatalf("%d entries for two changes", got)
	}
	es, _, _ := cs.sv.db.Changes(site.ChangeFilter{Who: "otto"})
	if len(es) != 2 || es[0].Role != "operator" || es[0].From != "console 127.0.0.1" || es[0].Target != "holder zed" || es[1].Target != "holder yan" {
		t.Fatalf("console entries: %+v", es)
	}
	// The page lists them, with the record after; a note is an entry of
	// its own.
	p := b.get("/changelog")
	if p.code != 200 || !strings.Contains(p.body, "holder zed") || !strings.Contains(p.body, "&#34;id&#34;:&#34;zed&#34;") {
		t.Fatalf("change log page: %d\n%s", p.code, p.body)
	}
	if p := b.post(fmt.Sprintf("/changelog/%d/note", es[0].Seq), url.Values{"csrf": {csrf}, "text": {"ticket 42"}}); p.code != 303 {
		t.Fatalf("note form: %d", p.code)
	}
	notes, _, _ := cs.sv.db.Changes(site.ChangeFilter{After: es[1].Seq})
	if len(notes) != 1 || notes[0].Op != "note" || notes[0].Ref != es[0].Seq || notes[0].Detail != "ticket 42" {
		t.Fatalf("note: %+v", notes)
	}
	// And the CLI reads the same log.
	out := cs.ok(t, "", "audit", "changes", "--who", "otto")
	if !strings.Contains(out, "holder zed") || !strings.Contains(out, "note of #") {
		t.Errorf("audit changes:\n%s", out)
	}
	out = cs.ok(t, "", "audit", "changes", "--target", "holder yan", "--csv")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "seq,time,who") {
		t.Errorf("audit changes --csv:\n%s", out)
	}
	cs.ok(t, "", "audit", "note", strconv.FormatUint(es[1].Seq, 10), "reviewed")
	if code, _, errs := cs.cli(t, "", "audit", "note", "999", "x"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("a note on no entry: exit %d %s", code, errs)
	}
}

// reseal writes v (a change-log entry) under k, sealed as the site
// database seals a record, with a valid checksum: only the chain can tell.
func reseal(t testing.TB, b *bolt.Bucket, k []byte, e site.ChangeEntry) {
	t.Helper()
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	v := append([]byte{1}, body...)
	v = binary.BigEndian.AppendUint32(v, crc32.Checksum(v, crc32.MakeTable(crc32.Castagnoli)))
	if err := b.Put(k, v); err != nil {
		t.Fatal(err)
	}
}

// An entry edited, deleted or reordered in the database file is named by
// latch audit verify.
func TestAuditVerifyNamesBadChangeEntries(t *testing.T) {
	s := initSite(t)
	sv := s.start(t, serveOptions{})
	for i := range 6 {
		s.ok(t, "", "holder", "add", fmt.Sprintf("h%d", i))
	}
	if out := s.ok(t, "", "audit", "verify"); !strings.Contains(out, "change log  ok") {
		t.Fatalf("audit verify of a whole log:\n%s", out)
	}
	sv.stop(t)
	key := func(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
	for _, tc := range []struct {
		name string
		seq  uint64
		edit func(b *bolt.Bucket, es map[uint64]site.ChangeEntry)
	}{
		{"edited", 3, func(b *bolt.Bucket, es map[uint64]site.ChangeEntry) {
			e := es[3]
			e.Who = "somebody else"
			reseal(t, b, key(3), e)
		}},
		{"deleted", 2, func(b *bolt.Bucket, _ map[uint64]site.ChangeEntry) { _ = b.Delete(key(2)) }},
		{"reordered", 4, func(b *bolt.Bucket, es map[uint64]site.ChangeEntry) {
			reseal(t, b, key(4), es[5])
			reseal(t, b, key(5), es[4])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &testSite{dir: s.dir, key: s.key, db: filepath.Join(t.TempDir(), "site.db"), sock: filepath.Join(t.TempDir(), "s.sock")}
			copyFile(t, s.db, c.db)
			db, err := bolt.Open(c.db, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("changes"))
				es := map[uint64]site.ChangeEntry{}
				_ = b.ForEach(func(k, v []byte) error {
					var e site.ChangeEntry
					if err := json.Unmarshal(v[1:len(v)-4], &e); err != nil {
						t.Fatal(err)
					}
					es[binary.BigEndian.Uint64(k)] = e
					return nil
				})
				tc.edit(b, es)
				return nil
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			c.serve(t)
			code, out, errs := c.cli(t, "", "audit", "verify")
			want := fmt.Sprintf("change log: the stored chain is bad at seq %d", tc.seq)
			if code != 1 || !strings.Contains(errs, want) || !strings.Contains(out, "BAD") {
				t.Errorf("audit verify: exit %d\n%s%s\nwant %q", code, out, errs, want)
			}
		})
	}
}

// A note's body and a change-log query are outside bytes: either is
// refused or gives a bounded note and a well-formed filter.
func FuzzDecodeNote(f *testing.F) {
	f.Add([]byte(`{"text":"checked"}`), "who=ada&target=card&from=2026-01-01T00:00:00Z&limit=5")
	f.Add([]byte(`{"text":""}`), "after=x")
	f.Add([]byte(`{"text":"a","x":1}`), "limit=0&limit=1")
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		if n, err := decodeNote(body); err == nil && (strings.TrimSpace(n.Text) == "" || len(n.Text) > 2048) {
			t.Fatalf("accepted note %q", n.Text)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		if fl, err := changeFilter(q); err == nil && (fl.Limit < 1 || fl.Limit > maxAuditLimit) {
			t.Fatalf("filter limit %d", fl.Limit)
		}
	})
}

// BenchmarkAuditVerify100kChanges is `latch audit verify` on a site whose
// change log has 100,000 entries (written straight into the file, each
// hashed as the service hashes it).
func BenchmarkAuditVerify100kChanges(b *testing.B) {
	s := initSite(b)
	db, err := bolt.Open(s.db, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	prev := strings.Repeat("0", 64)
	const n = 100000
	for first := 1; first <= n; first += 10000 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket([]byte("changes"))
			for seq := first; seq < first+10000 && seq <= n; seq++ {
				e := site.ChangeEntry{Seq: uint64(seq), Time: time.Unix(1780000000+int64(seq), 0).UTC(), Who: "alice", From: "socket", Op: "card set",
					Target: fmt.Sprintf("card %08X", seq), Result: "ok", Prev: prev,
					Before: json.RawMessage(`{"uid":"04A1B2C3","holder":"alice","doors":["front"],"pin_set":true}`),
					After:  json.RawMessage(`{"uid":"04A1B2C3","holder":"alice","doors":["front","back"],"pin_set":true}`)}
				h, err := site.ChangeHash(&e)
				if err != nil {
					return err
				}
				e.Hash = fmt.Sprintf("%x", h)
				reseal(b, bk, binary.BigEndian.AppendUint64(nil, uint64(seq)), e)
				prev = e.Hash
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	s.serve(b)
	b.ResetTimer()
	for range b.N {
		if out := s.ok(b, "", "audit", "verify"); !strings.Contains(out, "change log  ok     100000") {
			b.Fatalf("audit verify:\n%s", out)
		}
	}
}
