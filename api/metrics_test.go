package api

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// scrape reads /metrics as Prometheus would and returns the families.
func (e *env) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	r := e.call("GET", "/metrics", "", nil)
	expect(t, r, http.StatusOK, "")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.raw))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// sample sums the family's samples whose labels include want: counter and
// gauge values, histogram sample counts.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	total := 0.0
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// TestGuideMetricsMove checks that every metric the guide names is exported
// and changes when its event happens.
func TestGuideMetricsMove(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	before := e.scrape(t)

	// A warm pool sandbox (idle), an acquired one (active), an execution,
	// a session (created, then paused).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.node.Apply(ctx, &fsm.SandboxCreate{ID: "aaaaaaaaaaaaaaaa", Image: "other:1"}); err != nil {
		t.Fatalf("create pool sandbox: %v", err)
	}
	sb := e.acquire(tok)
	expect(t, e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sb, "code": "print(1)"}), 200, "")
	expect(t, e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sb, "code": "import time; time.sleep(5)", "timeout": 1}), 200, "")
	r := e.call("POST", "/api/v1/sessions", tok, map[string]any{})
	expect(t, r, http.StatusCreated, "")
	sid := r.str("session_id")
	e.waitFor(t, "pool sandbox idle", func() bool {
		s, err := e.fsm.Sandbox("aaaaaaaaaaaaaaaa")
		return err == nil && s.State == fsm.StateIdle
	})
	mid := e.scrape(t)
	expect(t, e.call("POST", "/api/v1/sessions/"+sid+"/pause", tok, nil), 200, "")
	after := e.scrape(t)

	cases := []struct {
		name   string
		labels map[string]string
		from   map[string]*dto.MetricFamily
		to     map[string]*dto.MetricFamily
		delta  float64
	}{
		{"sandboxes_total", nil, before, mid, 3},
		{"sandboxes_active", nil, before, mid, 2},
		{"sandboxes_idle", nil, before, mid, 1},
		{"executions_total", map[string]string{"language": "python", "status": "ok"}, before, mid, 1},
		{"executions_total", map[string]string{"language": "python", "status": "timeout"}, before, mid, 1},
		{"execution_duration_seconds", map[string]string{"language": "python"}, before, mid, 2},
		{"sessions_total", nil, before, mid, 1},
		{"sessions_active", nil, before, mid, 1},
		{"sessions_active", nil, mid, after, -1},
		{"sessions_created_total", nil, before, mid, 1},
		{"http_requests_total", map[string]string{"method": "POST", "route": "/api/v1/execute", "status": "200"}, before, mid, 2},
		{"http_request_duration_seconds", map[string]string{"method": "POST", "route": "/api/v1/sessions/{session_id}/pause"}, mid, after, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := c.to[c.name]; !ok {
				t.Fatalf("%s not exported", c.name)
			}
			from := max(sample(c.from, c.name, c.labels), 0)
			if got := sample(c.to, c.name, c.labels) - from; got != c.delta {
				t.Fatalf("%s%v moved by %v, want %v", c.name, c.labels, got, c.delta)
			}
		})
	}
	// Routes are patterns, never raw ids.
	for _, m := range after["http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && (bytes.Contains([]byte(l.GetValue()), []byte(sid)) || bytes.Contains([]byte(l.GetValue()), []byte(sb))) {
				t.Fatalf("route label carries an id: %q", l.GetValue())
			}
		}
	}
}

// waitFor polls cond on FSM changes until it holds or 5 s pass.
func (e *env) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		ch := e.fsm.Watch()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
