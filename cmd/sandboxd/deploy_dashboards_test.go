package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDashboardMetricsExist scrapes a real sandboxd after it has placed,
// handed out and executed, and checks that every metric a Grafana dashboard
// in deploy/grafana queries is one the code exports.
func TestDashboardMetricsExist(t *testing.T) {
	queried := dashboardMetrics(t)
	if len(queried) < 10 {
		t.Fatalf("dashboards query only %v", queried)
	}

	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "dash", "user")
	// Vector metrics appear only once observed: exercise every area.
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "code": "print(1)", "language": "python"}, 200, nil)
	c.do("POST", "/api/v1/sessions", map[string]any{}, 201, nil)

	exported := scrapeMetricNames(t, n.api+"/metrics")
	var missing []string
	for _, m := range queried {
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("dashboards query metrics sandboxd does not export: %v", missing)
	}
	t.Logf("all %d metrics the dashboards query are exported", len(queried))
}

var (
	promLabels   = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
)

// dashboardMetrics returns every metric name the dashboards' PromQL uses.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana/dashboards: %v", err)
	}
	set := map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range promMetricNames(tg.Expr) {
					set[m] = true
				}
			}
		}
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// promMetricNames strips label matchers, ranges and grouping clauses from
// expr; what is left that is not a function call or a number is a metric.
func promMetricNames(expr string) []string {
	e := promLabels.ReplaceAllString(expr, "")
	e = promRange.ReplaceAllString(e, "")
	e = promGrouping.ReplaceAllString(e, "")
	var out []string
	for _, tok := range promIdent.FindAllString(e, -1) {
		if strings.HasSuffix(tok, "(") {
			continue
		}
		switch tok = strings.TrimSpace(tok); tok {
		case "and", "or", "unless", "bool", "offset":
			continue
		}
		out = append(out, tok)
	}
	return out
}

// scrapeMetricNames returns the sample names a /metrics page exposes.
func scrapeMetricNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		names[name] = true
	}
	if len(names) == 0 {
		t.Fatalf("%s exposed no samples", url)
	}
	return names
}

func TestPromMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`max(sandboxes_total)`, []string{"sandboxes_total"}},
		{`sum by (route) (rate(http_requests_total{status=~"5.."}[5m]))`, []string{"http_requests_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(execution_duration_seconds_bucket[5m])))`, []string{"execution_duration_seconds_bucket"}},
		{`raft_applied_index - on (instance) raft_peers`, []string{"raft_applied_index", "raft_peers"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := promMetricNames(tt.expr)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("promMetricNames(%q) = %v, want %v", tt.expr, got, tt.want)
			}
		})
	}
}
