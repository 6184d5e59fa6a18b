package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// registeredNames lists the metric names the daemon's registry describes.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	d := &daemon{cfg: &Config{Metrics: MetricsConfig{Listen: "127.0.0.1:0"}}, log: slog.New(slog.DiscardHandler)}
	m := newMetrics(d)
	ch := make(chan *prometheus.Desc)
	go func() {
		m.reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for desc := range ch {
		if s := fq.FindStringSubmatch(desc.String()); s != nil {
			names[s[1]] = true
		}
	}
	return names
}

// The Grafana dashboard in docs/ is JSON whose queries use only metrics
// the daemon registers (a histogram's _bucket, _sum and _count series by
// its name), and it has a variable for the door's instance.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-latchd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-latchd.json: %v", err)
	}
	names := registeredNames(t)
	if !names["latch_decisions_total"] || !names["go_goroutines"] {
		t.Fatalf("registered names %v lack the decisions or the Go collector", names)
	}
	metric := regexp.MustCompile(`\b(latch|go|process)_[a-z0-9_]+`)
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			exprs = append(exprs, tg.Expr)
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s is not narrowed to $instance", p.Title, tg.Expr)
			}
		}
	}
	hasInstance := false
	for _, v := range dash.Templating.List {
		if v.Name == "instance" {
			hasInstance = true
			if q, _ := json.Marshal(v.Query); !metric.Match(q) {
				t.Errorf("the instance variable's query %s names no metric", q)
			} else {
				exprs = append(exprs, string(q))
			}
		}
	}
	if !hasInstance {
		t.Error("no instance variable")
	}
	if len(exprs) < 9 {
		t.Fatalf("%d queries, want a panel for each of decisions, denials, latency, MQTT, outbox, allowlist age, journal, reader and alarms", len(exprs))
	}
	for _, e := range exprs {
		for _, n := range metric.FindAllString(e, -1) {
			base := n
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				if s, ok := strings.CutSuffix(n, suf); ok && names[s] && !names[n] {
					base = s
				}
			}
			if !names[base] {
				t.Errorf("%s: the daemon registers no %s", e, n)
			}
		}
	}
}
