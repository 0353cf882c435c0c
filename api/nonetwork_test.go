package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestNoNetworkRuntime (issue 15): under a runtime with no network (gVisor),
// acquire and session create with network true are a 422 naming the
// runtime, nothing is created, and sandboxes without network still start.
func TestNoNetworkRuntime(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.NoNetworkRuntime = "runsc" })
	tok := e.token("alice", "user")
	for _, path := range []string{"/api/v1/sandbox/acquire", "/api/v1/sessions"} {
		r := e.call("POST", path, tok, map[string]any{"network": true})
		expect(t, r, http.StatusUnprocessableEntity, codeUnprocessable)
		if !strings.Contains(string(r.raw), `runtime \"runsc\"`) || !strings.Contains(string(r.raw), "no network") {
			t.Errorf("%s with network: %s, want a message naming runtime runsc and no network", path, r.raw)
		}
	}
	if n := len(e.fsm.Sandboxes()); n != 0 {
		t.Errorf("%d sandboxes created for refused requests", n)
	}
	expect(t, e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"network": false}), http.StatusOK, "")
	expect(t, e.call("POST", "/api/v1/sessions", tok, nil), http.StatusCreated, "")
}
