package api

import (
	"net/http"
	"testing"
)

// A session that names no size gets the replicated pool's, whatever this
// node's own settings say: every node fills defaults alike.
func TestSessionDefaultsComeFromThePool(t *testing.T) {
	e := newEnv(t, func(c *Config, p *fsmPool) {
		c.DefaultCPUCount, c.DefaultMemoryMB = 1, 512
		p.Resources.CPUCount, p.Resources.MemoryMB = 0.5, 768
	})
	r := e.call("POST", "/api/v1/sessions", e.token("alice", RoleUser), map[string]any{})
	expect(t, r, http.StatusCreated, "")
	if r.body["cpu_count"] != 0.5 || r.body["memory_mb"] != 768.0 {
		t.Errorf("session = %s, want the pool's 0.5 CPU and 768 MB", r.raw)
	}
}
