package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// outputEvents parses an NDJSON output answer.
func outputEvents(t *testing.T, r result) []map[string]any {
	t.Helper()
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("output: status %d type %q: %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	var evs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(r.raw))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestProcessesFlow walks a background process through the API: start with
// stdin and a tag, list, write, close, wait, read the output and its exit.
func TestProcessesFlow(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "user")
	id := e.acquire(tok)

	r := e.call("POST", "/api/v1/processes", tok, map[string]any{"sandbox_id": id, "command": []string{"cat"}, "stdin": true, "tag": "echo"})
	expect(t, r, http.StatusOK, "")
	pid := int(r.body["pid"].(float64))
	if r.body["running"] != true || r.body["tag"] != "echo" || r.body["survives_pause"] != true || r.str("sandbox_id") != id {
		t.Fatalf("start answered %s", r.raw)
	}
	base := fmt.Sprintf("/api/v1/processes/%d", pid)

	r = e.call("GET", "/api/v1/processes?sandbox_id="+id, tok, nil)
	expect(t, r, http.StatusOK, "")
	procs, _ := r.body["processes"].([]any)
	if len(procs) != 1 || procs[0].(map[string]any)["tag"] != "echo" {
		t.Fatalf("list: %s", r.raw)
	}
	expect(t, e.call("POST", base+"/stdin", tok, map[string]any{"sandbox_id": id, "data": "hi there"}), http.StatusNoContent, "")
	expect(t, e.call("POST", base+"/stdin", tok, map[string]any{"sandbox_id": id, "close": true}), http.StatusNoContent, "")
	r = e.call("POST", base+"/wait", tok, map[string]any{"sandbox_id": id, "timeout": 10})
	expect(t, r, http.StatusOK, "")
	if r.body["running"] != false || r.body["exit_code"] != float64(0) {
		t.Fatalf("wait: %s", r.raw)
	}
	evs := outputEvents(t, e.call("GET", base+"/output?sandbox_id="+id+"&offset=3", tok, nil))
	if len(evs) != 2 || evs[0]["type"] != "stdout" || evs[0]["data"] != "there" || evs[0]["offset"] != float64(3) ||
		evs[0]["end"] != float64(8) || evs[1]["type"] != "exit" {
		t.Fatalf("output from offset 3: %v", evs)
	}

	// A signal ends a process; wait reports it.
	r = e.call("POST", "/api/v1/processes", tok, map[string]any{"sandbox_id": id, "command": "sleep 300"})
	expect(t, r, http.StatusOK, "")
	sleeper := fmt.Sprintf("/api/v1/processes/%d", int(r.body["pid"].(float64)))
	expect(t, e.call("POST", sleeper+"/signal", tok, map[string]any{"sandbox_id": id, "signal": "SIGTERM"}), http.StatusNoContent, "")
	r = e.call("POST", sleeper+"/wait", tok, map[string]any{"sandbox_id": id, "timeout": 10})
	if r.body["exit_code"] != float64(143) || r.body["signal"] != "SIGTERM" {
		t.Fatalf("wait after SIGTERM: %s", r.raw)
	}
	expect(t, e.call("POST", sleeper+"/signal", tok, map[string]any{"sandbox_id": id, "signal": "SIGTERM"}), http.StatusConflict, codeConflict)
}

func TestProcessesRefused(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.token("alice", "user"), e.token("bob", "user")
	id := e.acquire(alice)
	r := e.call("POST", "/api/v1/processes", alice, map[string]any{"sandbox_id": id, "command": []string{"sleep", "300"}})
	expect(t, r, http.StatusOK, "")
	pid := int(r.body["pid"].(float64))
	t.Cleanup(func() {
		e.call("POST", fmt.Sprintf("/api/v1/processes/%d/signal", pid), alice, map[string]any{"sandbox_id": id, "signal": "KILL"})
	})
	p := fmt.Sprintf("/api/v1/processes/%d", pid)
	tests := []struct {
		name, method, path string
		tok                string
		body               any
		status             int
		code               string
	}{
		{"no command", "POST", "/api/v1/processes", alice, map[string]any{"sandbox_id": id}, 400, codeBadRequest},
		{"no sandbox", "POST", "/api/v1/processes", alice, map[string]any{"command": "true"}, 400, codeBadRequest},
		{"pty too small", "POST", "/api/v1/processes", alice, map[string]any{"sandbox_id": id, "pty": map[string]int{"rows": 0, "cols": 80}}, 422, codeUnprocessable},
		{"negative timeout", "POST", "/api/v1/processes", alice, map[string]any{"sandbox_id": id, "command": "true", "timeout": -1}, 422, codeUnprocessable},
		{"missing binary", "POST", "/api/v1/processes", alice, map[string]any{"sandbox_id": id, "command": []string{"no-such-binary-xyz"}}, 422, codeUnprocessable},
		{"pid not a number", "GET", "/api/v1/processes/abc?sandbox_id=" + id, alice, nil, 400, codeBadRequest},
		{"unknown pid", "GET", "/api/v1/processes/999999?sandbox_id=" + id, alice, nil, 404, codeNotFound},
		{"stdin chunk too large", "POST", p + "/stdin", alice, map[string]any{"sandbox_id": id, "data": strings.Repeat("x", 64<<10+1)}, 413, codeTooLarge},
		{"stdin not asked for", "POST", p + "/stdin", alice, map[string]any{"sandbox_id": id, "data": "x"}, 409, codeConflict},
		{"resize without a pty", "POST", p + "/resize", alice, map[string]any{"sandbox_id": id, "rows": 10, "cols": 10}, 409, codeConflict},
		{"bad offset", "GET", p + "/output?sandbox_id=" + id + "&offset=-1", alice, nil, 400, codeBadRequest},
		{"wait too long", "POST", p + "/wait", alice, map[string]any{"sandbox_id": id, "timeout": 100000}, 422, codeUnprocessable},
		// Another user's sandbox is unknown to bob, on every route.
		{"list of another's", "GET", "/api/v1/processes?sandbox_id=" + id, bob, nil, 404, codeNotFound},
		{"start in another's", "POST", "/api/v1/processes", bob, map[string]any{"sandbox_id": id, "command": "true"}, 404, codeNotFound},
		{"get another's", "GET", p + "?sandbox_id=" + id, bob, nil, 404, codeNotFound},
		{"output of another's", "GET", p + "/output?sandbox_id=" + id, bob, nil, 404, codeNotFound},
		{"stdin to another's", "POST", p + "/stdin", bob, map[string]any{"sandbox_id": id, "data": "x"}, 404, codeNotFound},
		{"signal another's", "POST", p + "/signal", bob, map[string]any{"sandbox_id": id, "signal": "KILL"}, 404, codeNotFound},
		{"resize another's", "POST", p + "/resize", bob, map[string]any{"sandbox_id": id, "rows": 5, "cols": 5}, 404, codeNotFound},
		{"wait for another's", "POST", p + "/wait", bob, map[string]any{"sandbox_id": id, "timeout": 1}, 404, codeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.call(tt.method, tt.path, tt.tok, tt.body), tt.status, tt.code)
		})
	}
	// bob's attempts left alice's process running.
	r = e.call("GET", p+"?sandbox_id="+id, alice, nil)
	if r.body["running"] != true {
		t.Fatalf("alice's process after bob's attempts: %s", r.raw)
	}
}

// TestSurvivesPause: the field a client reads to learn whether a pause ends
// its processes follows the sandbox's driver.
func TestSurvivesPause(t *testing.T) {
	tests := []struct {
		driver string
		want   bool
	}{
		{"docker", true}, // a pause freezes the container
		{"nomad", false}, // a pause archives /workspace and stops the allocation
		{"", true},       // not placed yet: the local default, Docker
	}
	for _, tt := range tests {
		sb := &fsm.Sandbox{ID: "0123456789abcdef", Placement: fsm.Placement{Driver: tt.driver}}
		if got := viewProcess(sb, agent.ProcessInfo{PID: 1}); got.SurvivesPause != tt.want || got.Argv == nil {
			t.Errorf("driver %q: survives_pause %v, want %v (argv %v)", tt.driver, got.SurvivesPause, tt.want, got.Argv)
		}
	}
}
