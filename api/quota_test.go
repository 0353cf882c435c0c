package api

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// withQuota gives the test cluster's pool a quota configuration.
func withQuota(q fsm.QuotaConfig) envOption {
	return func(_ *Config, p *fsmPool) { p.Quota = &q }
}

// TestQuotaParallelAcquires fires acquires from many goroutines at one node
// (a real single-node Raft cluster): exactly the quota's worth succeed, the
// user never holds more live sandboxes than the limit at any applied index,
// and every refusal is 429 quota_exceeded with Retry-After.
func TestQuotaParallelAcquires(t *testing.T) {
	const limit, tries = 3, 12
	e := newEnv(t, withQuota(fsm.QuotaConfig{Default: fsm.Quota{MaxSandboxes: limit}}))
	tok := e.token("alice", RoleUser)

	// Check every applied state while the requests run.
	done := make(chan struct{})
	var peak int
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		for {
			ch := e.fsm.Watch()
			peak = max(peak, e.fsm.QuotaUsage("alice", time.Now()).Sandboxes)
			select {
			case <-ch:
			case <-done:
				return
			}
		}
	}()

	results := make([]result, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.call("POST", "/api/v1/sandbox/acquire", tok, nil)
		}()
	}
	wg.Wait()
	close(done)
	watcher.Wait()

	ok := 0
	for _, r := range results {
		switch r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			if r.str("code") != "quota_exceeded" || !strings.Contains(r.str("error"), "sandboxes") {
				t.Errorf("refusal body = %s, want quota_exceeded naming sandboxes", r.raw)
			}
			if got := r.header.Get("Retry-After"); got != "5" {
				t.Errorf("Retry-After = %q, want 5", got)
			}
		default:
			t.Errorf("status %d: %s", r.status, r.raw)
		}
	}
	if ok != limit {
		t.Errorf("%d acquires succeeded, want exactly %d", ok, limit)
	}
	if peak > limit {
		t.Errorf("alice held %d live sandboxes at some index, limit %d", peak, limit)
	}
	if got := sample(e.scrape(t), "quota_rejections_total", map[string]string{"limit": fsm.LimitSandboxes}); got != tries-limit {
		t.Errorf("quota_rejections_total{limit=sandboxes} = %v, want %d", got, tries-limit)
	}
	// Another user is not affected by alice's quota use.
	e.acquire(e.token("bob", RoleUser))
}

// TestQuotaRefusals covers each limit through the API: the status, code,
// limit named and Retry-After.
func TestQuotaRefusals(t *testing.T) {
	tests := []struct {
		name  string
		quota fsm.Quota
		path  string
		body  any
		limit string
		// retry checks Retry-After.
		retry func(seconds int) bool
	}{
		{name: "creates per minute", quota: fsm.Quota{CreatesPerMinute: 2}, path: "/api/v1/sandbox/acquire",
			limit: fsm.LimitCreatesPerMinute, retry: func(s int) bool { return s >= 1 && s <= 60 }},
		{name: "sessions", quota: fsm.Quota{MaxSessions: 2}, path: "/api/v1/sessions", body: map[string]any{},
			limit: fsm.LimitSessions, retry: func(s int) bool { return s == 5 }},
		{name: "cpu", quota: fsm.Quota{MaxCPU: 2.5}, path: "/api/v1/sessions", body: map[string]any{"cpu_count": 1.25},
			limit: fsm.LimitCPU, retry: func(s int) bool { return s == 5 }},
		{name: "memory", quota: fsm.Quota{MaxMemoryMB: 1024}, path: "/api/v1/sandbox/acquire",
			limit: fsm.LimitMemoryMB, retry: func(s int) bool { return s == 5 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withQuota(fsm.QuotaConfig{Default: tc.quota}))
			tok := e.token("alice", RoleUser)
			for i := range 2 {
				r := e.call("POST", tc.path, tok, tc.body)
				if r.status != http.StatusOK && r.status != http.StatusCreated {
					t.Fatalf("create %d under the quota: %d %s", i, r.status, r.raw)
				}
			}
			r := e.call("POST", tc.path, tok, tc.body)
			expect(t, r, http.StatusTooManyRequests, "quota_exceeded")
			if !strings.Contains(r.str("error"), tc.limit) {
				t.Errorf("error %q does not name the limit %s", r.str("error"), tc.limit)
			}
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || !tc.retry(s) {
				t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
			}
		})
	}
}
