package api

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestGuideFlow walks the user guide: token → session → execute code and
// command → files → pause → execute refused → resume → execute → delete.
func TestGuideFlow(t *testing.T) {
	e := newEnv(t)
	r := e.call("GET", "/health", "", nil)
	expect(t, r, http.StatusOK, "")
	if r.str("service") != "gateway" || r.str("status") != "ok" || r.str("role") != "leader" || r.str("node_id") != "n1" {
		t.Fatalf("health = %s", r.raw)
	}

	r = e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "my-user", "role": "user"})
	expect(t, r, http.StatusOK, "")
	if r.str("token_type") != "Bearer" || r.str("expires_in") != "900" || r.str("refresh_token") == "" {
		t.Fatalf("token answer = %s", r.raw)
	}
	tok := r.str("access_token")

	r = e.call("POST", "/api/v1/sessions", tok, map[string]any{"image": testImage, "cpu_count": 2, "memory_mb": 2048})
	expect(t, r, http.StatusCreated, "")
	sid, sbid := r.str("session_id"), r.str("sandbox_id")
	if r.str("status") != "active" || r.str("sandbox_status") != "active" || r.str("user_id") != "my-user" ||
		r.body["cpu_count"] != 2.0 || r.body["memory_mb"] != 2048.0 || len(sid) != 16 || len(sbid) != 16 {
		t.Fatalf("session = %s", r.raw)
	}

	r = e.call("GET", "/api/v1/sessions", tok, nil)
	expect(t, r, http.StatusOK, "")
	if list, _ := r.body["sessions"].([]any); len(list) != 1 {
		t.Fatalf("sessions = %s, want one", r.raw)
	}
	expect(t, e.call("GET", "/api/v1/sessions/"+sid, tok, nil), http.StatusOK, "")

	steps := []struct {
		name       string
		body       map[string]any
		wantExit   float64
		wantStdout string
		wantStderr string
	}{
		{"python code", map[string]any{"code": `print("Hello!")`, "language": "python", "timeout": 30}, 0, "Hello!\n", ""},
		{"command array", map[string]any{"command": []string{"ls", "-la", e.workdir}}, 0, "", ""},
		{"command string", map[string]any{"command": "echo out; echo err >&2; exit 3"}, 3, "out\n", "err\n"},
		{"bash code", map[string]any{"code": "echo $((6*7))", "language": "bash"}, 0, "42\n", ""},
		{"stdin", map[string]any{"command": []string{"cat"}, "stdin": "piped"}, 0, "piped", ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.body["sandbox_id"] = sbid
			r := e.call("POST", "/api/v1/execute", tok, s.body)
			expect(t, r, http.StatusOK, "")
			if r.body["exit_code"] != s.wantExit || r.body["timed_out"] != false {
				t.Fatalf("execute = %s", r.raw)
			}
			if s.wantStdout != "" && r.str("stdout") != s.wantStdout {
				t.Errorf("stdout = %q, want %q", r.str("stdout"), s.wantStdout)
			}
			if s.wantStderr != "" && r.str("stderr") != s.wantStderr {
				t.Errorf("stderr = %q, want %q", r.str("stderr"), s.wantStderr)
			}
		})
	}

	// Files: write, list, read, delete.
	file := e.path("test.py")
	r = e.call("PUT", "/api/v1/files", tok, map[string]any{"sandbox_id": sbid, "path": file, "content": `print("test")`})
	expect(t, r, http.StatusOK, "")
	if r.body["size"] != 13.0 || r.str("path") != file {
		t.Fatalf("write = %s", r.raw)
	}
	q := "?sandbox_id=" + sbid + "&path=" + url.QueryEscape(e.workdir)
	r = e.call("GET", "/api/v1/files"+q, tok, nil)
	expect(t, r, http.StatusOK, "")
	if !listed(r, "test.py") {
		t.Fatalf("list = %s, want test.py", r.raw)
	}
	r = e.call("GET", "/api/v1/files/content?sandbox_id="+sbid+"&path="+url.QueryEscape(file), tok, nil)
	expect(t, r, http.StatusOK, "")
	if string(r.raw) != `print("test")` {
		t.Fatalf("content = %q", r.raw)
	}
	r = e.call("DELETE", "/api/v1/files?sandbox_id="+sbid+"&path="+url.QueryEscape(file), tok, nil)
	expect(t, r, http.StatusOK, "")
	if r.body["deleted"] != true {
		t.Fatalf("delete = %s", r.raw)
	}
	if r = e.call("GET", "/api/v1/files"+q, tok, nil); listed(r, "test.py") {
		t.Fatalf("list after delete = %s", r.raw)
	}

	// Pause: execution is refused with 409 until resume.
	r = e.call("POST", "/api/v1/sessions/"+sid+"/pause", tok, nil)
	expect(t, r, http.StatusOK, "")
	if r.str("status") != "paused" || r.str("sandbox_status") != "paused" {
		t.Fatalf("pause = %s", r.raw)
	}
	r = e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sbid, "code": "print(1)"})
	expect(t, r, http.StatusConflict, codeConflict)
	if !strings.Contains(r.str("error"), "paused") {
		t.Errorf("paused error = %q, want it to say paused", r.str("error"))
	}
	r = e.call("POST", "/api/v1/sessions/"+sid+"/resume", tok, nil)
	expect(t, r, http.StatusOK, "")
	// Answered only once the sandbox runs again, never while it resumes.
	if r.str("status") != "active" || r.str("sandbox_status") != "active" {
		t.Fatalf("resume = %s", r.raw)
	}
	r = e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sbid, "code": "print(2)"})
	expect(t, r, http.StatusOK, "")
	if r.str("stdout") != "2\n" {
		t.Fatalf("execute after resume = %s", r.raw)
	}

	r = e.call("DELETE", "/api/v1/sessions/"+sid, tok, nil)
	expect(t, r, http.StatusOK, "")
	if r.str("status") != "deleted" {
		t.Fatalf("delete session = %s", r.raw)
	}
	r = e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sbid, "code": "print(3)"})
	if r.status != http.StatusConflict && r.status != http.StatusNotFound {
		t.Fatalf("execute on deleted session's sandbox: %d %s, want 409 or 404", r.status, r.raw)
	}
	r = e.call("POST", "/api/v1/sessions/"+sid+"/resume", tok, nil)
	expect(t, r, http.StatusConflict, codeConflict)
	r = e.call("GET", "/api/v1/sessions", tok, nil)
	if list, _ := r.body["sessions"].([]any); len(list) != 0 {
		t.Fatalf("sessions after delete = %s, want none", r.raw)
	}
}

func listed(r result, name string) bool {
	files, _ := r.body["files"].([]any)
	for _, f := range files {
		if m, _ := f.(map[string]any); m["name"] == name {
			return true
		}
	}
	return false
}

// TestAcquireExecuteRelease walks the sandbox flow and the extras the SDK
// uses: streaming, timeouts, mkdir, archives, get, list and stats.
func TestAcquireExecuteRelease(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "")
	r := e.call("POST", "/api/v1/sandbox/acquire", tok, nil)
	expect(t, r, http.StatusOK, "")
	id := r.str("sandbox_id")
	if r.str("status") != "active" || r.str("container_id") != "c-"+id || r.str("user_id") != "alice" {
		t.Fatalf("acquire = %s", r.raw)
	}
	if _, ok := r.body["ip"]; !ok {
		t.Fatalf("acquire answer lacks ip: %s", r.raw)
	}

	t.Run("timeout", func(t *testing.T) {
		r := e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id,
			"code": "import time; time.sleep(30)", "timeout": 1})
		expect(t, r, http.StatusOK, "")
		if r.body["timed_out"] != true {
			t.Fatalf("execute past timeout = %s, want timed_out", r.raw)
		}
	})

	t.Run("stream", func(t *testing.T) {
		r := e.call("POST", "/api/v1/execute/stream", tok, map[string]any{"sandbox_id": id,
			"command": "echo one; echo two >&2; exit 4"})
		expect(t, r, http.StatusOK, "")
		if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("content type = %q", ct)
		}
		var stdout, stderr string
		var last map[string]any
		sc := bufio.NewScanner(bytes.NewReader(r.raw))
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			switch ev["type"] {
			case "stdout":
				stdout += ev["data"].(string)
			case "stderr":
				stderr += ev["data"].(string)
			}
			last = ev
		}
		if stdout != "one\n" || stderr != "two\n" || last["type"] != "result" || last["exit_code"] != 4.0 {
			t.Fatalf("stream = %s", r.raw)
		}
	})

	t.Run("mkdir and archives", func(t *testing.T) {
		dir := e.path("proj")
		r := e.call("POST", "/api/v1/files/mkdir", tok, map[string]any{"sandbox_id": id, "path": dir})
		expect(t, r, http.StatusOK, "")
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range []string{"a.txt", "b/c.txt"} {
			_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
			_, _ = tw.Write([]byte("hi"))
		}
		_ = tw.Close()
		q := "?sandbox_id=" + id + "&path=" + url.QueryEscape(dir)
		r = e.call("PUT", "/api/v1/files/archive"+q, tok, buf.Bytes())
		expect(t, r, http.StatusOK, "")
		if r.body["files"] != 2.0 {
			t.Fatalf("upload = %s", r.raw)
		}
		r = e.call("GET", "/api/v1/files/archive"+q, tok, nil)
		expect(t, r, http.StatusOK, "")
		tr := tar.NewReader(bytes.NewReader(r.raw))
		names := map[string]bool{}
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			names[strings.TrimPrefix(h.Name, "./")] = true
		}
		if !names["a.txt"] || !names["b/c.txt"] {
			t.Fatalf("download entries = %v", names)
		}
		r = e.call("PUT", "/api/v1/files/content?sandbox_id="+id+"&path="+url.QueryEscape(e.path("raw.bin")), tok, []byte{0, 1, 2, 255})
		expect(t, r, http.StatusOK, "")
		if r.body["size"] != 4.0 {
			t.Fatalf("raw upload = %s", r.raw)
		}
	})

	r = e.call("GET", "/api/v1/sandbox/"+id, tok, nil)
	expect(t, r, http.StatusOK, "")
	r = e.call("GET", "/api/v1/sandboxes", tok, nil)
	if list, _ := r.body["sandboxes"].([]any); len(list) != 1 {
		t.Fatalf("sandboxes = %s", r.raw)
	}
	r = e.call("GET", "/api/v1/sandbox/stats", tok, nil)
	expect(t, r, http.StatusOK, "")
	if r.body["active"] != 1.0 || r.body["max_size"] != 20.0 || r.str("image") != testImage {
		t.Fatalf("stats = %s", r.raw)
	}

	r = e.call("POST", "/api/v1/sandbox/release", tok, map[string]string{"sandbox_id": id})
	expect(t, r, http.StatusOK, "")
	if r.str("sandbox_id") != id || r.str("status") != "terminating" {
		t.Fatalf("release = %s", r.raw)
	}
	r = e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "code": "print(1)"})
	if r.status != http.StatusConflict && r.status != http.StatusNotFound {
		t.Fatalf("execute after release: %d %s", r.status, r.raw)
	}
}
