package api

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	cases := []struct {
		name, path string
		body       any
		idField    string
		status     int
	}{
		{"acquire", "/api/v1/sandbox/acquire", nil, "sandbox_id", http.StatusOK},
		{"session create", "/api/v1/sessions", map[string]any{"cpu_count": 1}, "session_id", http.StatusCreated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.fsm.Sandboxes())
			// Concurrent retries of one request, as after a client timeout.
			ids := make([]string, 3)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := e.call("POST", c.path, tok, c.body, "Idempotency-Key", "key-"+c.name)
					if r.status == c.status {
						ids[i] = r.str(c.idField)
					}
				}()
			}
			wg.Wait()
			if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
				t.Fatalf("retries returned %q, want one id", ids)
			}
			if n := len(e.fsm.Sandboxes()) - before; n != 1 {
				t.Fatalf("%d sandboxes created, want 1", n)
			}
			// Another user with the same key gets their own.
			r := e.call("POST", c.path, e.token("bob", ""), c.body, "Idempotency-Key", "key-"+c.name)
			expect(t, r, c.status, "")
			if r.str(c.idField) == ids[0] {
				t.Fatalf("bob got alice's %s", c.idField)
			}
		})
	}
}

func TestPlacementOutcomes(t *testing.T) {
	e := newEnv(t, func(c *Config, p *fsmPool) { c.ReadyTimeout = 300 * time.Millisecond; p.MaxSize = 3 })
	tok := e.token("alice", "")

	r := e.call("POST", "/api/v1/sessions", tok, map[string]any{"image": failImage})
	expect(t, r, http.StatusServiceUnavailable, codeUnavailable)
	// An allowed image that cannot start answers with the driver's reason.
	if !strings.Contains(r.str("error"), "not found") || r.header.Get("Retry-After") == "" {
		t.Errorf("placement failure = %s (Retry-After %q), want the reason and Retry-After", r.raw, r.header.Get("Retry-After"))
	}
	if l := e.call("GET", "/api/v1/sessions", tok, nil).body["sessions"].([]any); len(l) != 0 {
		t.Errorf("failed session still listed: %v", l)
	}
	r = e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": failImage})
	expect(t, r, http.StatusServiceUnavailable, codeUnavailable)

	r = e.call("POST", "/api/v1/sessions", tok, map[string]any{"image": stuckImage})
	expect(t, r, http.StatusCreated, "")
	if r.str("sandbox_status") != "pending" {
		t.Errorf("slow session = %s, want sandbox_status pending", r.raw)
	}
	r = e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": stuckImage})
	expect(t, r, http.StatusServiceUnavailable, codeUnavailable)

	// The pool holds 3 live sandboxes: fill it, then one more is refused.
	e.acquire(tok)
	e.acquire(tok)
	r = e.call("POST", "/api/v1/sandbox/acquire", tok, nil)
	expect(t, r, http.StatusServiceUnavailable, codePoolExhausted)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("pool exhausted without Retry-After")
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.RateLimitRPS = 0.01; c.RateLimitBurst = 3 })
	tok := e.token("alice", "")
	for i := 0; i < 3; i++ {
		expect(t, e.call("GET", "/api/v1/sessions", tok, nil), http.StatusOK, "")
	}
	r := e.call("GET", "/api/v1/sessions", tok, nil)
	expect(t, r, http.StatusTooManyRequests, codeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After")
	}
	// Buckets are per user: bob is not slowed by alice.
	expect(t, e.call("GET", "/api/v1/sessions", e.token("bob", ""), nil), http.StatusOK, "")
}

func TestOpsHandler(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	e.acquire(tok)
	ops := httptestServer(t, e.srv.OpsHandler())
	cases := []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/sandbox/stats", 200, `"active":1`},
		{"/health", 200, `"service":"gateway"`},
		{"/metrics", 200, "sandboxes_active 1"},
		{"/api/v1/cluster", 200, `"role":"leader"`},
		{"/api/v1/sessions", 404, `"code":"not_found"`}, // never user data
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			status, body := get(t, ops+c.path)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("GET %s = %d %s, want %d containing %q", c.path, status, body, c.status, c.want)
			}
		})
	}
}

// TestActivityIsRecorded checks that using a sandbox records activity in the
// replicated state (what idle timeouts read), off the request path.
func TestActivityIsRecorded(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	id := e.acquire(tok)
	sb, err := e.fsm.Sandbox(id)
	if err != nil {
		t.Fatal(err)
	}
	first := sb.LastActiveAt
	expect(t, e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "command": "true"}), http.StatusOK, "")
	e.waitFor(t, "activity recorded", func() bool {
		s, err := e.fsm.Sandbox(id)
		return err == nil && s.LastActiveAt.After(first)
	})
}

// A sandbox lost while starting is replaced within the same request, and a
// client that retries with the same Idempotency-Key gets the replacement,
// never a third sandbox.
func TestLostPlacementIsReplaced(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	cases := []struct {
		name, path, idField string
		status              int
	}{
		{"acquire", "/api/v1/sandbox/acquire", "sandbox_id", http.StatusOK},
		{"session", "/api/v1/sessions", "session_id", http.StatusCreated},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call("POST", c.path, tok, map[string]any{"image": flakyImage}, "Idempotency-Key", "lost-"+c.name)
			expect(t, r, c.status, "")
			first := r.str(c.idField)
			again := e.call("POST", c.path, tok, map[string]any{"image": flakyImage}, "Idempotency-Key", "lost-"+c.name)
			expect(t, again, c.status, "")
			if got := again.str(c.idField); got != first {
				t.Fatalf("retry with the same key answered %s %s, first answer %s", c.idField, got, first)
			}
			// One live sandbox per case so far: the lost one was given back.
			live := 0
			for _, sb := range e.fsm.SandboxesByOwner("alice") {
				if sb.Image == flakyImage && sb.Live() {
					live++
				}
			}
			if live != i+1 {
				t.Fatalf("%d live sandboxes after %d requests that each lost one placement, want %d", live, i+1, i+1)
			}
		})
	}
}
