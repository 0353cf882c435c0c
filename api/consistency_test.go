package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// TestIndexHeader: every API answer says the index of the state it reflects,
// a write's answer at least the write's own index; a request naming an index
// the node has applied is served, a malformed one is refused.
func TestIndexHeader(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", RoleUser)
	r := e.call("POST", "/api/v1/sandbox/acquire", tok, nil)
	expect(t, r, http.StatusOK, "")
	idx, err := strconv.ParseUint(r.header.Get(headerIndex), 10, 64)
	if err != nil || idx == 0 {
		t.Fatalf("acquire: %s = %q, want an index", headerIndex, r.header.Get(headerIndex))
	}
	sb, err := e.fsm.Sandbox(r.str("sandbox_id"))
	if err != nil {
		t.Fatalf("acquired sandbox: %v", err)
	}
	if sb.ModifyIndex > idx {
		t.Errorf("acquire answered index %d, older than the sandbox it shows (modified at %d)", idx, sb.ModifyIndex)
	}
	rel := e.call("POST", "/api/v1/sandbox/release", tok, map[string]string{"sandbox_id": sb.ID})
	expect(t, rel, http.StatusOK, "")
	if got, _ := strconv.ParseUint(rel.header.Get(headerIndex), 10, 64); got <= idx {
		t.Errorf("release answered index %d, want above the acquire's %d", got, idx)
	}
	for _, c := range []struct {
		name   string
		path   string
		hdr    []string
		status int
	}{
		{"header", "/api/v1/sandboxes", []string{headerIndex, strconv.FormatUint(idx, 10)}, http.StatusOK},
		{"query", "/api/v1/sandboxes?index=" + strconv.FormatUint(idx, 10), nil, http.StatusOK},
		{"error answers too", "/api/v1/sandbox/0123456789abcdef", nil, http.StatusNotFound},
		{"malformed", "/api/v1/sandboxes", []string{headerIndex, "-1"}, http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.call("GET", c.path, tok, nil, c.hdr...)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d: %s", r.status, c.status, r.raw)
			}
			if got, err := strconv.ParseUint(r.header.Get(headerIndex), 10, 64); err != nil || got < idx {
				t.Errorf("%s = %q, want at least %d", headerIndex, r.header.Get(headerIndex), idx)
			}
		})
	}
}

// TestIndexWaitBounded: a request naming an index this node never reaches
// is answered 503 with Retry-After once INDEX_WAIT_TIMEOUT has passed; one
// naming the next index is served as soon as that index is applied.
func TestIndexWaitBounded(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.IndexWaitTimeout = 200 * time.Millisecond })
	tok := e.token("alice", RoleUser)
	future := strconv.FormatUint(e.fsm.AppliedIndex()+1_000_000, 10)
	for _, hdr := range [][]string{{headerIndex, future}, nil} {
		path := "/api/v1/sandboxes"
		if hdr == nil {
			path += "?index=" + future
		}
		r := e.call("GET", path, tok, nil, hdr...)
		expect(t, r, http.StatusServiceUnavailable, codeUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
	}

	// The next index: served once a write makes it real.
	next := e.fsm.AppliedIndex() + 1
	done := make(chan result, 1)
	go func() {
		done <- e.call("GET", "/api/v1/sandboxes", tok, nil, headerIndex, strconv.FormatUint(next, 10))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.node.Apply(ctx, &fsm.SandboxTouch{IDs: []string{"0000000000000000"}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	r := <-done
	if r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d: %s", r.status, r.raw)
	}
	// 503 only if the write took longer than the bound; then the index
	// must not have been applied when the answer was made.
	if r.status == http.StatusOK {
		if got, _ := strconv.ParseUint(r.header.Get(headerIndex), 10, 64); got < next {
			t.Errorf("served at index %d before reaching %d", got, next)
		}
	}
}

// gatedCluster holds ConsistentRead until open is closed: the catch-up of
// a restarted node that has not reached its leader yet.
type gatedCluster struct {
	*cluster.Node
	open chan struct{}
}

func (g *gatedCluster) ConsistentRead(ctx context.Context) error {
	select {
	case <-g.open:
		return g.Node.ConsistentRead(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestRestartedNodeServesNothingStale: a follower is stopped, sandboxes are
// acquired meanwhile, and it restarts from its own (stale) log. Until it has
// caught up with the leader its API answers 503 not_ready and /health 503
// "starting" (/metrics stays open); then it lists every sandbox.
func TestRestartedNodeServesNothingStale(t *testing.T) {
	const acquired = 5
	e := newEnv(t)
	e.joinNodes(1) // a third voter keeps a quorum while the follower is down
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	ccfg := cluster.Config{ID: "restarted", DataDir: dir, BindAddr: "127.0.0.1:0", Join: []string{e.node.Addr()}, Logger: quiet}
	first, err := cluster.Open(ccfg, fsm.New())
	if err != nil {
		t.Fatalf("open follower: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.ConsistentRead(ctx); err != nil {
		t.Fatalf("follower catch-up: %v", err)
	}
	addr := first.Addr()
	if err := first.Close(); err != nil {
		t.Fatalf("close follower: %v", err)
	}

	tok := e.token("alice", RoleUser)
	for range acquired {
		e.acquire(tok)
	}

	// Restart at the same address, which the Raft configuration names.
	ccfg.BindAddr, ccfg.Join = addr, nil
	f := fsm.New()
	node, err := cluster.Open(ccfg, f)
	if err != nil {
		t.Fatalf("reopen follower: %v", err)
	}
	t.Cleanup(func() { _ = node.Close() })
	gate := &gatedCluster{Node: node, open: make(chan struct{})}
	cfg := e.cfg
	cfg.IndexWaitTimeout = 50 * time.Millisecond // how long a request waits for readiness
	srv, err := New(cfg, Deps{Cluster: gate, State: f})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })
	n := nodeEnv(e, hs.URL)

	r := n.call("GET", "/api/v1/sandboxes", tok, nil)
	expect(t, r, http.StatusServiceUnavailable, codeNotReady)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("not_ready without Retry-After")
	}
	h := n.call("GET", "/health", "", nil)
	if h.status != http.StatusServiceUnavailable || h.str("status") != "starting" || h.str("service") != "gateway" || h.str("reason") == "" {
		t.Errorf("health while catching up = %d %s, want 503 starting with a reason", h.status, h.raw)
	}
	if m := n.call("GET", "/metrics", "", nil); m.status != http.StatusOK {
		t.Errorf("metrics while catching up = %d", m.status)
	}

	close(gate.open)
	select {
	case <-srv.ready.done:
	case <-ctx.Done():
		t.Fatalf("restarted node never caught up")
	}
	if h := n.call("GET", "/health", "", nil); h.status != http.StatusOK || h.str("status") != "ok" {
		t.Errorf("health once caught up = %d %s", h.status, h.raw)
	}
	r = n.call("GET", "/api/v1/sandboxes", tok, nil)
	expect(t, r, http.StatusOK, "")
	if got := len(r.body["sandboxes"].([]any)); got != acquired {
		t.Errorf("restarted node lists %d sandboxes, want %d", got, acquired)
	}
}
