package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// guideMetrics are the names the user guide's Monitoring section promises.
var guideMetrics = []string{
	"sandboxes_total", "sandboxes_active", "sandboxes_idle",
	"executions_total", "execution_duration_seconds",
	"sessions_total", "sessions_active", "sessions_created_total",
	"http_requests_total", "http_request_duration_seconds",
}

// TestMetricsScrape scrapes a live node after some traffic: every metric the
// guide names is there, Raft and pool health are exported, and promtool
// accepts the exposition.
func TestMetricsScrape(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "metrics", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "code": "print(1)"}, 200, nil)
	c.do("POST", "/api/v1/sessions", map[string]any{}, 201, nil)

	body := scrape(t, n.api+"/metrics")
	for _, name := range append(guideMetrics, "raft_is_leader", "raft_apply_duration_seconds", "pool_refill_failures_total") {
		if !hasMetric(body, name) {
			t.Errorf("metric %s missing from /metrics", name)
		}
	}
	if !strings.Contains(body, "\nraft_is_leader 1") {
		t.Errorf("single node does not report raft_is_leader 1")
	}
	if ops := scrape(t, n.ops+"/metrics"); !hasMetric(ops, "sandboxes_total") {
		t.Errorf("operator listener's /metrics lacks sandboxes_total")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is required in CI (Debian package prometheus; .ci/run installs it)")
		}
		t.Skip("promtool not installed")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, tail(string(out), 30))
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hasMetric(body, name string) bool {
	return strings.Contains(body, "\n# TYPE "+name+" ") || strings.HasPrefix(body, "# TYPE "+name+" ")
}
