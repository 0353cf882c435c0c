package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func TestQuotaEndpoint(t *testing.T) {
	e := newEnv(t, withQuota(fsm.QuotaConfig{
		Default: fsm.Quota{MaxSandboxes: 5, CreatesPerMinute: 10},
		Users:   map[string]fsm.Quota{"bob": {MaxSessions: 1, MaxCPU: 4, MaxMemoryMB: 4096}},
	}))
	alice := e.token("alice", RoleUser)
	e.acquire(alice)
	expect(t, e.call("POST", "/api/v1/sessions", alice, map[string]any{"cpu_count": 2, "memory_mb": 1024}), http.StatusCreated, "")

	tests := []struct {
		name, tok, want string
	}{
		{"default quota with usage", alice,
			`{"user":"alice","limits":{"sandboxes":5,"sessions":0,"cpu":0,"memory_mb":0,"creates_per_minute":10},` +
				`"usage":{"sandboxes":2,"sessions":1,"cpu":3,"memory_mb":1536,"creates_last_minute":2}}`},
		{"override, nothing used", e.token("bob", RoleUser),
			`{"user":"bob","limits":{"sandboxes":0,"sessions":1,"cpu":4,"memory_mb":4096,"creates_per_minute":0},` +
				`"usage":{"sandboxes":0,"sessions":0,"cpu":0,"memory_mb":0,"creates_last_minute":0}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call("GET", "/api/v1/quota", tc.tok, nil)
			expect(t, r, http.StatusOK, "")
			if got := strings.TrimSpace(string(r.raw)); got != tc.want {
				t.Errorf("GET /api/v1/quota =\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
	expect(t, e.call("GET", "/api/v1/quota", "", nil), http.StatusUnauthorized, "unauthorized")
}
