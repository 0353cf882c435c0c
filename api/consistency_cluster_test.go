package api

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// nodeEnv is e with its base URL pointed at another node of the cluster, so
// e.call and the helpers speak to that node.
func nodeEnv(e *env, url string) *env {
	c := *e
	c.base = url
	return &c
}

// TestReadYourWritesAcrossNodes: three in-process nodes; a sandbox acquired
// through one follower is read, executed in and released through the other
// follower right away. Half the acquires take a warm pool sandbox (whose
// owner changes in the write), half create one on demand. No answer may be
// 404 or 409, whatever the second follower has applied yet; and a GET that
// sends back the acquire's index (every other iteration) sees the sandbox
// as the acquire answered it, active, never an older state.
func TestReadYourWritesAcrossNodes(t *testing.T) {
	const iterations = 200
	e := newEnv(t, func(c *Config, p *fsmPool) {
		p.MaxSize = 1000
		c.RateLimitRPS, c.RateLimitBurst = 1e6, 1e6
	})
	urls := e.joinNodes(2)
	a, b := nodeEnv(e, urls[1]), nodeEnv(e, urls[2])
	tok := e.token("alice", RoleUser)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	bad := map[int]int{}
	for i := range iterations {
		if i%2 == 0 {
			warmOne(t, ctx, e)
		}
		r := a.call("POST", "/api/v1/sandbox/acquire", tok, nil)
		expect(t, r, http.StatusOK, "")
		id := r.str("sandbox_id")
		idx := r.header.Get(headerIndex)
		if n, err := strconv.ParseUint(idx, 10, 64); err != nil || n == 0 {
			t.Fatalf("acquire answer has %s %q, want an index", headerIndex, idx)
		}
		var g result
		if i%2 == 1 {
			g = b.call("GET", "/api/v1/sandbox/"+id, tok, nil, headerIndex, idx)
		} else {
			g = b.call("GET", "/api/v1/sandbox/"+id, tok, nil)
		}
		switch {
		case g.status != http.StatusOK:
			bad[g.status]++
			t.Errorf("iteration %d: GET on the other node = %d %s", i, g.status, g.raw)
		case i%2 == 1 && g.str("status") != "active":
			t.Errorf("iteration %d: GET on the other node with index %s says %q, want active", i, idx, g.str("status"))
		}
		x := b.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "command": []string{"true"}})
		if x.status == http.StatusNotFound || x.status == http.StatusConflict {
			bad[x.status]++
			t.Errorf("iteration %d: execute on the other node = %d %s", i, x.status, x.raw)
		}
		rel := b.call("POST", "/api/v1/sandbox/release", tok, map[string]string{"sandbox_id": id})
		if rel.status != http.StatusOK {
			bad[rel.status]++
			t.Errorf("iteration %d: release on the other node = %d %s", i, rel.status, rel.raw)
		}
		if t.Failed() && len(bad) > 0 && i > 20 {
			break
		}
	}
	t.Logf("%d iterations; non-2xx answers by status: %v", iterations, bad)
}

// warmOne adds an unowned pool sandbox through the leader and waits until
// the test reconciler has placed it (idle), as the warmer would.
func warmOne(t *testing.T, ctx context.Context, e *env) {
	t.Helper()
	id := newID()
	if _, err := e.node.Apply(ctx, &fsm.SandboxCreate{ID: id, Image: testImage,
		Resources: fsm.Resources{CPUCount: 1, MemoryMB: 512}}); err != nil {
		t.Fatalf("warm a pool sandbox: %v", err)
	}
	waitFSM(t, ctx, e.fsm, "pool sandbox idle", func() bool {
		sb, err := e.fsm.Sandbox(id)
		return err == nil && sb.State == fsm.StateIdle
	})
}
