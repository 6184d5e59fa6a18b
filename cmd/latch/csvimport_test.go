package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

const holdersHeader = "holder_id,holder_name,card_uid,doors,valid_from,valid_until,flags\n"

// bigCSV is n holders, each with a card but every tenth, with a mix of
// doors, validity and flags.
func bigCSV(n int) string {
	var b strings.Builder
	b.WriteString(holdersHeader)
	for i := range n {
		id := fmt.Sprintf("h%05d", i)
		name := fmt.Sprintf("Holder %d", i)
		if i == 3 {
			name = "=cmd|' /C calc'!A0" // a spreadsheet formula, kept as text
		}
		if i%10 == 9 {
			fmt.Fprintf(&b, "%s,%s,,,,,\n", id, csvSafe(name))
			continue
		}
		doors := []string{"front", "front back", "staff", "*"}[i%4]
		from, until, flags := "", "", ""
		if i%3 == 0 {
			from = "2026-01-01"
		}
		if i%5 == 0 {
			until = "2027-06-30T17:00:00Z"
		}
		if i%7 == 0 {
			flags = "card_only extended_unlock"
		}
		fmt.Fprintf(&b, "%s,%q,%08X,%s,%s,%s,%s\n", id, csvSafe(name), 0x0A000000+i, doors, from, until, flags)
	}
	return b.String()
}

func writeFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func aclSeq(t testing.TB, db *site.DB) uint64 {
	t.Helper()
	seq, err := db.ACLSeq()
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// Importing 10,000 holders with cards: the dry run shows the diff and
// changes nothing; the import is one change; the export imports back to
// no change; --sync removes what the file leaves out; a malformed line is
// reported with its line and column and nothing is applied.
func TestImportExportCSV(t *testing.T) {
	s := initSite(t)
	db := s.serve(t)
	dir := t.TempDir()
	const n = 10000
	file := writeFile(t, dir, "holders.csv", bigCSV(n))

	start := time.Now()
	out := s.ok(t, "", "import", file, "--dry-run")
	t.Logf("dry run of %d holders: %v", n, time.Since(start))
	if got := strings.Count(out, "\n+ holder "); got != n-1 || !strings.HasPrefix(out, "+ holder h00000") {
		t.Errorf("dry run lists %d holders to add", got+1)
	}
	if got := strings.Count(out, "\n+ card "); got != n-n/10 {
		t.Errorf("dry run lists %d cards to add, want %d", got, n-n/10)
	}
	if !strings.Contains(out, "would change holders: 10000 to add, 0 to change, 0 to remove; cards: 9000 to add") {
		t.Errorf("dry run summary: %q", out[strings.LastIndex(out[:len(out)-1], "\n")+1:])
	}
	if seq := aclSeq(t, db); seq != 0 {
		t.Fatalf("a dry run committed change %d", seq)
	}
	if hs, _ := db.ListHolders("", 0); len(hs) != 0 {
		t.Fatalf("a dry run added %d holders", len(hs))
	}

	start = time.Now()
	out = s.ok(t, "", "import", file)
	t.Logf("import of %d holders and %d cards (dry run, then one commit): %v", n, n-n/10, time.Since(start))
	if !strings.HasSuffix(out, "imported as change 1\n") {
		t.Errorf("import: %q", out[max(0, len(out)-200):])
	}
	if seq := aclSeq(t, db); seq != 1 {
		t.Fatalf("the import is change %d, want 1: one change", seq)
	}
	c, err := db.Card([]byte{0x0A, 0, 0, 0})
	if err != nil || c.HolderID != "h00000" || !c.ValidFrom.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!c.ValidUntil.Equal(time.Date(2027, 6, 30, 17, 0, 0, 0, time.UTC)) || !c.Flags.CardOnly || !c.Flags.ExtendedUnlock {
		t.Fatalf("card 0A000000: %+v, %v", c, err)
	}
	if h, _ := db.Holder("h00003"); h.Name != "=cmd|' /C calc'!A0" {
		t.Errorf("a formula-like name came in as %q", h.Name)
	}
	es, _, _ := db.Changes(site.ChangeFilter{Target: "holders and cards"})
	// latch import --dry-run, then latch import: a dry run and the import.
	if len(es) != 3 || !strings.HasPrefix(es[1].Detail, "dry run: ") || es[2].Result != "ok" || es[2].Op != "import" ||
		!strings.HasPrefix(es[2].Detail, "holders: 10000 to add") {
		t.Errorf("change log of the import: %+v", es)
	}

	// The export imports back to no change; a PIN hash stays out of it
	// and stays on its card.
	s.ok(t, "4826\n", "pin", "set", "h00001", "--uid", "0A000001")
	seq := aclSeq(t, db)
	exp := filepath.Join(dir, "export.csv")
	s.ok(t, "", "export", "--csv", "--out", exp)
	raw, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("argon2")) || !bytes.HasPrefix(raw, []byte(holdersHeader)) {
		t.Fatalf("export: a PIN hash, or no header: %.200s", raw)
	}
	out = s.ok(t, "", "import", exp)
	if !strings.HasSuffix(out, "would change holders: 0 to add, 0 to change, 0 to remove; cards: 0 to add, 0 to change, 0 to remove\n") {
		t.Errorf("re-import of the export: %q", out)
	}
	if got := aclSeq(t, db); got != seq {
		t.Fatalf("re-importing the export committed change %d", got)
	}
	if c, _ := db.Card([]byte{0x0A, 0, 0, 1}); c.PINHash == "" {
		t.Errorf("the PIN hash went")
	}

	// Changes and --sync: a name, a card's doors, two rows left out.
	lines := strings.Split(string(raw), "\n")
	lines[1] = strings.Replace(lines[1], "Holder 0", "Holder Zero", 1)
	lines[2] = strings.Replace(lines[2], "front back", "back", 1)
	lines = append(lines[:5], lines[7:]...) // h00004, h00005
	edited := writeFile(t, dir, "edited.csv", strings.Join(lines, "\n"))
	out = s.ok(t, "", "import", edited, "--sync", "--dry-run")
	for _, want := range []string{"~ holder h00000 name", "~ card 0A000001 doors", "- card 0A000004", "- holder h00005",
		"would change holders: 0 to add, 1 to change, 2 to remove; cards: 0 to add, 1 to change, 2 to remove"} {
		if !strings.Contains(out, want) {
			t.Errorf("sync dry run lacks %q: %s", want, out)
		}
	}
	s.ok(t, "", "import", edited, "--sync")
	if _, err := db.Holder("h00005"); err == nil {
		t.Errorf("--sync kept h00005")
	}
	if got := aclSeq(t, db); got != seq+1 {
		t.Errorf("the sync import is change %d, want %d", got, seq+1)
	}

	// Malformed lines: each reported with its line and column, nothing
	// applied.
	seq = aclSeq(t, db)
	bad := writeFile(t, dir, "bad.csv", holdersHeader+
		"new1,New One,04010203,front,,,\n"+
		"new2,New Two,0401XY,front,,,\n"+
		"h00000,Holder Zero,0A000001,front,,,\n"+
		"new3,New Three,04010205,front,2026-13-01,,\n"+
		"new4,New Four,04010206,front,,,fly\n"+
		"new5,\"New \"Five,04010207,front,,,\n")
	code, out, errs := s.cli(t, "", "import", bad)
	if code == 0 {
		t.Fatalf("a bad file imported: %s", out)
	}
	for _, want := range []string{
		"line 3, column 3 (card_uid): \"0401XY\" is not a UID",
		"line 5, column 5 (valid_from): \"2026-13-01\"",
		"line 6, column 7 (flags): unknown flag \"fly\"",
		"line 7: at character 11: extraneous or missing \" in quoted-field",
		"4 lines refused; nothing imported",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lack %q: %s", want, errs)
		}
	}
	if got := aclSeq(t, db); got != seq {
		t.Fatalf("a file with bad lines committed change %d", got)
	}
	// A card listed under another holder than its own.
	bad = writeFile(t, dir, "moved.csv", holdersHeader+"h00000,Holder Zero,0A000002,front,,,\n")
	if code, _, errs := s.cli(t, "", "import", bad); code == 0 || !strings.Contains(errs, "line 2, column 3 (card_uid): card 0A000002 belongs to holder \"h00002\"") {
		t.Errorf("a moved card: %d %s", code, errs)
	}
	// The header.
	bad = writeFile(t, dir, "header.csv", "holder_id,name,card_uid\n")
	if code, _, errs := s.cli(t, "", "import", bad); code == 0 || !strings.Contains(errs, "line 1, column 2 (name): unknown column") {
		t.Errorf("a bad header: %d %s", code, errs)
	}
}

// The CSV reader never panics, and every row it accepts writes back to a
// row it reads the same.
func FuzzParseHoldersCSV(f *testing.F) {
	f.Add([]byte(bigCSV(4)))
	f.Add([]byte(holdersHeader + "a,'=b,04A1B2C3D4E5F6,front back,2026-01-01,2026-02-01T00:00:00.5Z,lockdown_override\n"))
	f.Add([]byte("\uFEFF" + holdersHeader + "a,b,,,,,\n\"x"))
	f.Add([]byte("flags,doors,card_uid,valid_until,valid_from,holder_name,holder_id\ncard_only,*,04:a1:b2:c3,,,n,i\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, errs := parseHoldersCSV(bytes.NewReader(b))
		if rows != nil && errs != nil {
			t.Fatalf("rows %v and errors %v", rows, errs)
		}
		for _, e := range errs {
			if e.Line < 0 || e.Error == "" {
				t.Fatalf("error without a line or a message: %+v", e)
			}
		}
		for _, r := range rows {
			var buf bytes.Buffer
			var cs []store.Card
			if r.card != nil {
				if n := len(r.card.UID); n != 4 && n != 7 && n != 10 {
					t.Fatalf("row with a %d-byte UID", n)
				}
				cs = []store.Card{*r.card}
			}
			if err := writeHoldersCSV(&buf, []store.Holder{r.holder}, func(string) ([]store.Card, error) { return cs, nil }); err != nil {
				continue // a door with a space: refused on export
			}
			back, errs := parseHoldersCSV(&buf)
			if errs != nil || len(back) != 1 {
				t.Fatalf("row %+v wrote %q, read back %v", r, buf.String(), errs)
			}
			back[0].line, r.line = 0, 0
			if !reflect.DeepEqual(back[0], r) {
				t.Fatalf("row %+v read back as %+v", r, back[0])
			}
		}
	})
}
