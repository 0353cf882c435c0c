package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serveBounded points e at a server built by HTTPServer, so the config's
// read, write and idle timeouts apply as in sandboxd.
func (e *env) serveBounded() {
	e.t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = e.srv.HTTPServer("")
	hs.Start()
	e.t.Cleanup(hs.Close)
	e.http = hs
}

func TestHTTPServerBounds(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) {
		c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = 11*time.Second, 12*time.Second, 13*time.Second
	})
	for name, hs := range map[string]*http.Server{"public": e.srv.HTTPServer(":1"), "ops": e.srv.OpsHTTPServer(":2")} {
		if hs.ReadHeaderTimeout == 0 || hs.ReadTimeout != 11*time.Second || hs.WriteTimeout != 12*time.Second || hs.IdleTimeout != 13*time.Second {
			t.Errorf("%s: header %s read %s write %s idle %s", name, hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout, hs.IdleTimeout)
		}
	}
	// Unset, the write bound is derived from how long a request may wait
	// for a sandbox, so that wait is never cut short.
	for _, c := range []struct{ ready, want time.Duration }{{60 * time.Second, 2 * time.Minute}, {5 * time.Minute, 5*time.Minute + deadlineMargin}} {
		cfg := Config{ReadyTimeout: c.ready}.withDefaults()
		if cfg.WriteTimeout != c.want {
			t.Errorf("ready %s: write timeout %s, want %s", c.ready, cfg.WriteTimeout, c.want)
		}
	}
}

// TestStreamOutlivesWriteTimeout: a streaming exec that runs longer than
// the server's WriteTimeout still delivers every line and its result, because
// the route moves its own deadline to the exec's bound.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.WriteTimeout = 200 * time.Millisecond })
	e.serveBounded()
	tok := e.token("alice", "user")
	id := e.acquire(tok)
	for _, path := range []string{"/api/v1/execute/stream", "/api/v1/execute"} {
		r := e.call("POST", path, tok, map[string]any{"sandbox_id": id, "command": "echo before; sleep 1; echo after"})
		if r.status != http.StatusOK || !strings.Contains(string(r.raw), "before") || !strings.Contains(string(r.raw), "after") ||
			!strings.Contains(string(r.raw), `"exit_code":0`) {
			t.Errorf("%s past WriteTimeout: %d %s", path, r.status, r.raw)
		}
	}
}

// TestStreamCapPerUser: with MAX_STREAMS_PER_USER=1 a user's second
// concurrent stream is 429 with Retry-After; another user is not affected,
// and the slot comes back when the stream ends.
func TestStreamCapPerUser(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.MaxStreamsPerUser = 1 })
	alice, bob := e.token("alice", "user"), e.token("bob", "user")
	aliceSB, bobSB := e.acquire(alice), e.acquire(bob)

	// Alice's first stream stays open for the two seconds of its sleep.
	body, _ := json.Marshal(map[string]any{"sandbox_id": aliceSB, "command": "echo open; sleep 2"})
	req, _ := http.NewRequest("POST", e.http.URL+"/api/v1/execute/stream", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("first stream: %v", err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if resp.StatusCode != http.StatusOK || !lines.Scan() || !strings.Contains(lines.Text(), "open") {
		t.Fatalf("first stream: %d %q", resp.StatusCode, lines.Text())
	}

	quick := func(sb string) map[string]any { return map[string]any{"sandbox_id": sb, "command": "true"} }
	r := e.call("POST", "/api/v1/execute/stream", alice, quick(aliceSB))
	expect(t, r, http.StatusTooManyRequests, codeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	expect(t, e.call("GET", "/api/v1/files/archive?sandbox_id="+aliceSB+"&path=/workspace", alice, nil), http.StatusTooManyRequests, codeRateLimited)
	// Non-streaming calls and other users are not capped.
	expect(t, e.call("POST", "/api/v1/execute", alice, quick(aliceSB)), http.StatusOK, "")
	expect(t, e.call("POST", "/api/v1/execute/stream", bob, quick(bobSB)), http.StatusOK, "")

	for lines.Scan() { // the first stream runs to its end
	}
	resp.Body.Close()
	expect(t, e.call("POST", "/api/v1/execute/stream", alice, quick(aliceSB)), http.StatusOK, "")
}
