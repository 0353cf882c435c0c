package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// cell is the part of a run answer the tests look at.
type cell struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	TimedOut bool   `json:"timed_out"`
	Restart  bool   `json:"restarted"`
	Count    int    `json:"execution_count"`
	Results  []struct {
		Data map[string]string `json:"data"`
		Main bool              `json:"is_main_result"`
	} `json:"results"`
	Error *struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		Traceback string `json:"traceback"`
	} `json:"error"`
}

func (c cell) text() string {
	for _, r := range c.Results {
		if r.Main {
			return r.Data["text/plain"]
		}
	}
	return ""
}

// newContextAPI creates a python context in sandbox sb and returns its id.
func (e *env) newContextAPI(tok, sb string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"sandbox_id": sb}
	for k, v := range extra {
		body[k] = v
	}
	r := e.call("POST", "/api/v1/contexts", tok, body)
	expect(e.t, r, http.StatusCreated, "")
	id := r.str("id")
	if !strings.HasPrefix(id, sb+"-") || r.str("sandbox_id") != sb || r.str("language") != "python" {
		e.t.Fatalf("created context %s", r.raw)
	}
	return id
}

// run runs code in context id and decodes the 200 answer.
func (e *env) run(tok, id, code string, timeout int) cell {
	e.t.Helper()
	body := map[string]any{"code": code}
	if timeout > 0 {
		body["timeout"] = timeout
	}
	r := e.call("POST", "/api/v1/contexts/"+id+"/run", tok, body)
	expect(e.t, r, http.StatusOK, "")
	var c cell
	if err := json.Unmarshal(r.raw, &c); err != nil {
		e.t.Fatalf("decode run answer: %v: %s", err, r.raw)
	}
	return c
}

func TestContextsAPILifecycle(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	sb := e.acquire(tok)
	id := e.newContextAPI(tok, sb, nil)

	// Variables, imports and functions live from one call to the next.
	steps := []struct{ code, wantText, wantStdout string }{
		{"x = 41", "", ""},
		{"import math\ndef inc(v):\n    return v + 1\nprint('defined')", "", "defined\n"},
		{"inc(x) + math.floor(0.5)", "42", ""},
	}
	for i, st := range steps {
		c := e.run(tok, id, st.code, 0)
		if c.Error != nil || c.text() != st.wantText || c.Stdout != st.wantStdout || c.Count != i+1 {
			t.Fatalf("step %d: %+v; want text %q stdout %q", i, c, st.wantText, st.wantStdout)
		}
	}

	r := e.call("GET", "/api/v1/contexts?sandbox_id="+sb, tok, nil)
	expect(t, r, http.StatusOK, "")
	if !bytes.Contains(r.raw, []byte(`"id":"`+id+`"`)) || !bytes.Contains(r.raw, []byte(`"cwd":"`+e.workdir+`"`)) {
		t.Fatalf("list %s lacks %s in %s", r.raw, id, e.workdir)
	}

	// Restart clears the state but keeps the id.
	r = e.call("POST", "/api/v1/contexts/"+id+"/restart", tok, nil)
	expect(t, r, http.StatusOK, "")
	if c := e.run(tok, id, "x", 0); c.Error == nil || c.Error.Name != "NameError" {
		t.Fatalf("after restart: %+v, want NameError", c)
	}

	// Delete: the id is gone for every route.
	expect(t, e.call("DELETE", "/api/v1/contexts/"+id, tok, nil), http.StatusOK, "")
	expect(t, e.call("POST", "/api/v1/contexts/"+id+"/run", tok, map[string]any{"code": "1"}), http.StatusNotFound, codeNotFound)
	expect(t, e.call("POST", "/api/v1/contexts/"+id+"/restart", tok, nil), http.StatusNotFound, codeNotFound)
	expect(t, e.call("DELETE", "/api/v1/contexts/"+id, tok, nil), http.StatusNotFound, codeNotFound)
}

func TestContextsAPIResultsAndErrors(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	id := e.newContextAPI(tok, e.acquire(tok), nil)
	e.run(tok, id, "class Table:\n    def _repr_html_(self):\n        return '<table></table>'\n    def __repr__(self):\n        return 'Table()'", 0)

	c := e.run(tok, id, "Table()", 0)
	if len(c.Results) != 1 || c.Results[0].Data["text/plain"] != "Table()" || c.Results[0].Data["text/html"] != "<table></table>" {
		t.Errorf("html result: %+v", c.Results)
	}
	c = e.run(tok, id, "print('about to fail')\n{}['missing']", 0)
	if c.Error == nil || c.Error.Name != "KeyError" || c.Error.Value != "'missing'" || c.Stdout != "about to fail\n" ||
		!strings.Contains(c.Error.Traceback, "{}['missing']") || !strings.Contains(c.Error.Traceback, "KeyError: 'missing'") {
		t.Errorf("exception: %+v (error %+v)", c, c.Error)
	}
	if c.Stderr != "" {
		t.Errorf("the exception also went to stderr: %q", c.Stderr)
	}
}

func TestContextsAPITimeoutKeepsContext(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	id := e.newContextAPI(tok, e.acquire(tok), nil)
	e.run(tok, id, "data = [1, 2, 3]", 0)
	c := e.run(tok, id, "import time\nwhile True:\n    time.sleep(0.05)", 1)
	if !c.TimedOut || c.Error == nil || c.Error.Name != "KeyboardInterrupt" || c.Restart {
		t.Fatalf("timed out cell: %+v (error %+v)", c, c.Error)
	}
	if c := e.run(tok, id, "sum(data)", 0); c.text() != "6" || c.Restart {
		t.Fatalf("after the timeout: %+v, want the data defined before it", c)
	}
}

func TestContextsAPIIndependent(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	sb := e.acquire(tok)
	a := e.newContextAPI(tok, sb, map[string]any{"env": map[string]string{"NAME": "a"}})
	b := e.newContextAPI(tok, sb, map[string]any{"env": map[string]string{"NAME": "b"}, "cwd": "/tmp"})
	e.run(tok, a, "v = 'from a'", 0)
	if c := e.run(tok, b, "v", 0); c.Error == nil || c.Error.Name != "NameError" {
		t.Fatalf("context b sees a's variable: %+v", c)
	}
	probe := "import os\n(os.environ['NAME'], os.getcwd())"
	if got := e.run(tok, a, probe, 0).text(); got != "('a', '"+e.workdir+"')" {
		t.Errorf("context a: %s", got)
	}
	if got := e.run(tok, b, probe, 0).text(); got != "('b', '/tmp')" {
		t.Errorf("context b: %s", got)
	}
}

func TestContextsAPIRefused(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.token("alice", ""), e.token("bob", "")
	sb := e.acquire(alice)
	id := e.newContextAPI(alice, sb, nil)
	tests := []struct {
		name, method, path, tok string
		body                    any
		status                  int
		code                    string
	}{
		{"create without sandbox", "POST", "/api/v1/contexts", alice, map[string]any{}, 400, codeBadRequest},
		{"create other language", "POST", "/api/v1/contexts", alice, map[string]any{"sandbox_id": sb, "language": "ruby"}, 422, codeUnprocessable},
		{"create with relative cwd", "POST", "/api/v1/contexts", alice, map[string]any{"sandbox_id": sb, "cwd": "rel"}, 400, codeBadRequest},
		{"create in another user's sandbox", "POST", "/api/v1/contexts", bob, map[string]any{"sandbox_id": sb}, 404, codeNotFound},
		{"list without sandbox", "GET", "/api/v1/contexts", alice, nil, 400, codeBadRequest},
		{"list another user's", "GET", "/api/v1/contexts?sandbox_id=" + sb, bob, nil, 404, codeNotFound},
		{"run another user's", "POST", "/api/v1/contexts/" + id + "/run", bob, map[string]any{"code": "1"}, 404, codeNotFound},
		{"delete another user's", "DELETE", "/api/v1/contexts/" + id, bob, nil, 404, codeNotFound},
		{"run without code", "POST", "/api/v1/contexts/" + id + "/run", alice, map[string]any{}, 400, codeBadRequest},
		{"run with timeout 0", "POST", "/api/v1/contexts/" + id + "/run", alice, map[string]any{"code": "1", "timeout": 0}, 422, codeUnprocessable},
		{"malformed id", "POST", "/api/v1/contexts/not-an-id/run", alice, map[string]any{"code": "1"}, 404, codeNotFound},
		{"unknown id", "POST", "/api/v1/contexts/" + sb + "-00000000/run", alice, map[string]any{"code": "1"}, 404, codeNotFound},
		{"no token", "POST", "/api/v1/contexts/" + id + "/run", "", map[string]any{"code": "1"}, 401, codeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.call(tt.method, tt.path, tt.tok, tt.body), tt.status, tt.code)
		})
	}
	// None of that harmed the context.
	if c := e.run(alice, id, "1 + 1", 0); c.text() != "2" {
		t.Fatalf("context after the refusals: %+v", c)
	}
}

func TestContextsAPIStream(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	id := e.newContextAPI(tok, e.acquire(tok), nil)
	r := e.call("POST", "/api/v1/contexts/"+id+"/run/stream", tok, map[string]any{"code": "print('a', flush=True)\nimport sys\nprint('b', file=sys.stderr)\n'done'"})
	expect(t, r, http.StatusOK, "")
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	var types []string
	var last cell
	sc := bufio.NewScanner(bytes.NewReader(r.raw))
	for sc.Scan() {
		var ev struct {
			Type string `json:"type"`
			Data string `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		types = append(types, ev.Type+":"+ev.Data)
		if ev.Type == "result" {
			if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
				t.Fatal(err)
			}
		}
	}
	// stdout and stderr are two pipes: their relative order is not kept.
	sort.Strings(types[:max(len(types)-1, 0)])
	if strings.Join(types, "|") != "stderr:b\n|stdout:a\n|result:" || last.text() != "'done'" || last.Stdout != "a\n" {
		t.Fatalf("events %q, result %+v", types, last)
	}
}

func TestContextsAPIBash(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	r := e.call("POST", "/api/v1/contexts", tok, map[string]any{"sandbox_id": e.acquire(tok), "language": "bash"})
	expect(t, r, http.StatusCreated, "")
	id := r.str("id")
	if r.str("language") != "bash" {
		t.Fatalf("created %s", r.raw)
	}
	e.run(tok, id, "COUNT=2; double() { echo $((COUNT * 2)); }", 0)
	if c := e.run(tok, id, "double", 0); c.Stdout != "4\n" || c.Error != nil {
		t.Fatalf("second cell: %+v", c)
	}
	if c := e.run(tok, id, "exit_with() { return $1; }; exit_with 3", 0); c.Error == nil || c.Error.Name != "ExitStatus" || c.Error.Value != "exit status 3" {
		t.Fatalf("non-zero status: %+v", c.Error)
	}
}

func TestContextsAPILimit(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	sb := e.acquire(tok)
	for i := 0; i < agent.MaxContexts; i++ {
		e.newContextAPI(tok, sb, nil)
	}
	r := e.call("POST", "/api/v1/contexts", tok, map[string]any{"sandbox_id": sb})
	expect(t, r, http.StatusConflict, codeConflict)
	if !strings.Contains(r.str("error"), "16 code contexts") {
		t.Fatalf("error %q does not say the bound", r.str("error"))
	}
	// Deleting one makes room again.
	var list struct {
		Contexts []struct {
			ID string `json:"id"`
		} `json:"contexts"`
	}
	r = e.call("GET", "/api/v1/contexts?sandbox_id="+sb, tok, nil)
	if err := json.Unmarshal(r.raw, &list); err != nil || len(list.Contexts) != agent.MaxContexts {
		t.Fatalf("list: %v %s", err, r.raw)
	}
	expect(t, e.call("DELETE", "/api/v1/contexts/"+list.Contexts[0].ID, tok, nil), http.StatusOK, "")
	e.newContextAPI(tok, sb, nil)
}
