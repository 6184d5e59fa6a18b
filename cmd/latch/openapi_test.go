package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/latchdoor/latch/store/site"
)

// apiRoutes reads every route the API registers from the package's
// source: each HandleFunc pattern under /v1/ or /scim/.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				// A pattern built at run time: no API route may be one.
				ast.Inspect(call.Args[0], func(n ast.Node) bool {
					if l, ok := n.(*ast.BasicLit); ok && (strings.Contains(l.Value, "/v1/") || strings.Contains(l.Value, "/scim/")) {
						t.Errorf("%s: an API route whose pattern is not a string literal: the OpenAPI check cannot see it", fset.Position(call.Pos()))
					}
					return true
				})
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			if _, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, "/v1/") || strings.HasPrefix(path, "/scim/") {
				out = append(out, p)
			}
			return true
		})
	}
	return out
}

// docs/openapi.json describes the API: every route the API's mux
// registers is in it, every operation in it is a route of the mux, and
// each says the role the console's role table asks for it.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Summary   string                      `json:"summary"`
			Role      string                      `json:"x-latch-role"`
			Responses map[string]any              `json:"responses"`
			Params    []struct{ Name, In string } `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q: want 3.x", doc.OpenAPI)
	}
	mux := (&api{}).mux()
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			pattern := strings.ToUpper(method) + " " + path
			documented[pattern] = true
			// The mux routes a request of the documented path to that
			// very pattern.
			req, _ := http.NewRequest(strings.ToUpper(method), "http://latch"+strings.NewReplacer("{", "", "}", "").Replace(path), nil)
			if _, got := mux.Handler(req); got != pattern {
				t.Errorf("docs/openapi.json has %s, which the API routes to %q", pattern, got)
			}
			if op.Summary == "" || len(op.Responses) == 0 {
				t.Errorf("%s: no summary or no responses", pattern)
			}
			want := apiNeed(pattern)
			if strings.HasPrefix(path, "/scim/") {
				want = site.RoleAdmin
			}
			if op.Role != string(want) {
				t.Errorf("%s: x-latch-role %q, the role table says %q", pattern, op.Role, want)
			}
			for _, name := range pathParams(path) {
				if !slices.ContainsFunc(op.Params, func(p struct{ Name, In string }) bool { return p.Name == name && p.In == "path" }) {
					t.Errorf("%s: path parameter %s is not described", pattern, name)
				}
			}
		}
	}
	routes := apiRoutes(t)
	if len(routes) < 40 {
		t.Fatalf("found only %d routes in the source", len(routes))
	}
	for _, p := range routes {
		if !documented[p] {
			t.Errorf("route %s is not in docs/openapi.json", p)
		}
	}
	if len(documented) != len(routes) {
		t.Errorf("docs/openapi.json has %d operations, the API %d routes", len(documented), len(routes))
	}
}

// pathParams names a path's {parameters}.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.Trim(seg, "{}$"))
		}
	}
	return out
}
