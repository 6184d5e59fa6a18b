package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// troubleshootingDoc is the page whose quoted messages must stay true to
// the code.
const troubleshootingDoc = "../../docs/troubleshooting.md"

// quotedMessage is a message the page quotes: a line that is a quote of
// one code span, "> `...`".
var quotedMessage = regexp.MustCompile("^> (`+)(.+?)(`+)$")

// placeholder is a part of a quoted message that varies, such as <path>
// or <...>.
var placeholder = regexp.MustCompile(`<[^<>]*>`)

// minPiece is the shortest fixed part of a message the test looks for;
// shorter ones (a quote, a comma) say nothing.
const minPiece = 4

// TestTroubleshootingMessages checks that every message quoted in
// docs/troubleshooting.md still occurs in the code: each fixed part of it,
// between its placeholders and the ": " that joins a wrapped error to its
// context, must be in a string literal of the repository's Go sources.
func TestTroubleshootingMessages(t *testing.T) {
	doc, err := os.ReadFile(troubleshootingDoc)
	if err != nil {
		t.Fatal(err)
	}
	literals := goStringLiterals(t, "../..")
	n := 0
	for i, line := range strings.Split(string(doc), "\n") {
		m := quotedMessage.FindStringSubmatch(line)
		if m == nil || m[1] != m[3] {
			continue
		}
		n++
		for _, piece := range messagePieces(m[2]) {
			if !containsAny(literals, piece) {
				t.Errorf("%s:%d: %q is in no string literal of the Go sources (message %q)", troubleshootingDoc, i+1, piece, m[2])
			}
		}
	}
	if n < 20 {
		t.Fatalf("%s quotes %d messages as \"> `...`\" lines; the test expects the page's messages in that form", troubleshootingDoc, n)
	}
}

// messagePieces splits a quoted message into the fixed parts the code
// must hold: between placeholders, split at ": ", trimmed of spaces and
// quotes (a %q verb prints them), and at least minPiece bytes long.
func messagePieces(msg string) []string {
	var out []string
	for _, part := range placeholder.Split(msg, -1) {
		for _, p := range strings.Split(part, ": ") {
			p = strings.Trim(p, " \"")
			if len(p) >= minPiece {
				out = append(out, p)
			}
		}
	}
	return out
}

// goStringLiterals returns the values of the string literals in the Go
// files under root, test files, testdata and hidden directories left out.
func goStringLiterals(t *testing.T, root string) []string {
	t.Helper()
	var lits []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					lits = append(lits, s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lits) == 0 {
		t.Fatalf("no string literals under %s", root)
	}
	return lits
}

// containsAny reports whether one of lits contains s.
func containsAny(lits []string, s string) bool {
	for _, l := range lits {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
