package main

import (
	"testing"
)

// contextRun is the part of a context run answer the e2e test reads.
type contextRun struct {
	Stdout   string `json:"stdout"`
	TimedOut bool   `json:"timed_out"`
	Results  []struct {
		Data map[string]string `json:"data"`
	} `json:"results"`
	Error *struct {
		Name string `json:"name"`
	} `json:"error"`
}

func (r contextRun) text() string {
	if len(r.Results) == 0 {
		return ""
	}
	return r.Results[0].Data["text/plain"]
}

// TestCodeContextsE2E drives code contexts through a live sandboxd on real
// Docker: state kept across cells and across a session's pause and resume
// (Docker freezes the interpreter with the container), a timeout that
// leaves the context usable, and a deleted context that is gone.
func TestCodeContextsE2E(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	alice := n.login(t, "alice", "user")
	var s sessionView
	alice.do("POST", "/api/v1/sessions", map[string]any{}, 201, &s)
	t.Cleanup(func() { alice.call("DELETE", "/api/v1/sessions/"+s.SessionID, nil, nil) })

	var cc struct {
		ID        string `json:"id"`
		SandboxID string `json:"sandbox_id"`
	}
	alice.do("POST", "/api/v1/contexts", map[string]any{"sandbox_id": s.SandboxID}, 201, &cc)
	run := func(code string, timeout int) contextRun {
		t.Helper()
		body := map[string]any{"code": code}
		if timeout > 0 {
			body["timeout"] = timeout
		}
		var r contextRun
		alice.do("POST", "/api/v1/contexts/"+cc.ID+"/run", body, 200, &r)
		return r
	}

	run("total = 0", 0)
	run("def add(v):\n    global total\n    total += v\n    return total", 0)
	if got := run("add(5)", 0).text(); got != "5" {
		t.Fatalf("third cell = %q, want 5", got)
	}

	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/pause", nil, 200, &s)
	alice.do("POST", "/api/v1/contexts/"+cc.ID+"/run", map[string]any{"code": "1"}, 409, nil)
	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 200, &s)
	if got := run("add(1)", 0).text(); got != "6" {
		t.Fatalf("after pause and resume = %q, want 6 (state kept)", got)
	}

	if r := run("import time\nwhile True:\n    time.sleep(0.1)", 1); !r.TimedOut || r.Error == nil || r.Error.Name != "KeyboardInterrupt" {
		t.Fatalf("timed out cell: %+v", r)
	}
	if got := run("total", 0).text(); got != "6" {
		t.Fatalf("after the timeout = %q, want 6", got)
	}

	bob := n.login(t, "bob", "user")
	bob.do("POST", "/api/v1/contexts/"+cc.ID+"/run", map[string]any{"code": "total"}, 404, nil)

	alice.do("DELETE", "/api/v1/contexts/"+cc.ID, nil, 200, nil)
	alice.do("POST", "/api/v1/contexts/"+cc.ID+"/run", map[string]any{"code": "total"}, 404, nil)
}
