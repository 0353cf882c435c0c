package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.MaxBodyBytes = 4096; c.MaxUploadBytes = 8192 })
	tok := e.token("alice", "")
	sb := e.acquire(tok)
	q := func(p string) string { return "?sandbox_id=" + sb + "&path=" + url.QueryEscape(p) }
	big := strings.Repeat("x", 5000)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed json", "POST", "/api/v1/execute", `{"sandbox_id": `, 400, codeBadRequest},
		{"not an object", "POST", "/api/v1/execute", `[1,2]`, 400, codeBadRequest},
		{"trailing data", "POST", "/api/v1/execute", `{"sandbox_id":"` + sb + `","code":"1"} {}`, 400, codeBadRequest},
		{"wrong-typed timeout", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "timeout": "30"}, 400, codeBadRequest},
		{"fractional timeout", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "timeout": 1.5}, 400, codeBadRequest},
		{"wrong-typed command", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "command": 5}, 400, codeBadRequest},
		{"empty command", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "command": []string{}}, 400, codeBadRequest},
		{"code and command", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "command": "ls"}, 400, codeBadRequest},
		{"neither", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb}, 400, codeBadRequest},
		{"missing sandbox", "POST", "/api/v1/execute", map[string]any{"code": "1"}, 400, codeBadRequest},
		{"unknown sandbox", "POST", "/api/v1/execute", map[string]any{"sandbox_id": "0000000000000000", "code": "1"}, 404, codeNotFound},
		{"timeout zero", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "timeout": 0}, 422, codeUnprocessable},
		{"timeout too long", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "timeout": 301}, 422, codeUnprocessable},
		{"unknown language", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": "1", "language": "cobol"}, 422, codeUnprocessable},
		{"relative cwd", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "command": "ls", "cwd": "tmp"}, 400, codeBadRequest},
		{"oversized body", "POST", "/api/v1/execute", map[string]any{"sandbox_id": sb, "code": big}, 413, codeTooLarge},
		{"oversized upload", "PUT", "/api/v1/files/content" + q(e.path("big")), strings.Repeat("y", 9000), 413, codeTooLarge},
		{"upload under upload limit", "PUT", "/api/v1/files/content" + q(e.path("mid")), big, 200, ""},
		{"relative path", "PUT", "/api/v1/files", map[string]any{"sandbox_id": sb, "path": "workspace/a", "content": ""}, 400, codeBadRequest},
		{"dotdot path", "PUT", "/api/v1/files", map[string]any{"sandbox_id": sb, "path": e.workdir + "/../../etc/x", "content": ""}, 400, codeBadRequest},
		{"dotdot list", "GET", "/api/v1/files" + q(e.workdir+"/.."), nil, 400, codeBadRequest},
		{"dotdot delete", "DELETE", "/api/v1/files" + q("/workspace/../etc/passwd"), nil, 400, codeBadRequest},
		{"dotdot read", "GET", "/api/v1/files/content" + q("/../etc/passwd"), nil, 400, codeBadRequest},
		{"dotdot mkdir", "POST", "/api/v1/files/mkdir", map[string]any{"sandbox_id": sb, "path": "/a/../../b"}, 400, codeBadRequest},
		{"missing path", "GET", "/api/v1/files?sandbox_id=" + sb, nil, 400, codeBadRequest},
		{"missing content", "PUT", "/api/v1/files", map[string]any{"sandbox_id": sb, "path": e.path("a")}, 400, codeBadRequest},
		{"bad base64", "PUT", "/api/v1/files", map[string]any{"sandbox_id": sb, "path": e.path("a"), "content": "!!", "encoding": "base64"}, 400, codeBadRequest},
		{"unknown encoding", "PUT", "/api/v1/files", map[string]any{"sandbox_id": sb, "path": e.path("a"), "content": "", "encoding": "rot13"}, 422, codeUnprocessable},
		{"missing file", "GET", "/api/v1/files/content" + q(e.path("nope")), nil, 404, codeNotFound},
		{"bad recursive", "DELETE", "/api/v1/files" + q(e.path("a")) + "&recursive=maybe", nil, 400, codeBadRequest},
		{"cpu out of range", "POST", "/api/v1/sessions", map[string]any{"cpu_count": 64}, 422, codeUnprocessable},
		{"memory out of range", "POST", "/api/v1/sessions", map[string]any{"memory_mb": 1}, 422, codeUnprocessable},
		{"memory wrong type", "POST", "/api/v1/sessions", map[string]any{"memory_mb": "lots"}, 400, codeBadRequest},
		{"negative idle timeout", "POST", "/api/v1/sessions", map[string]any{"idle_timeout": -1}, 422, codeUnprocessable},
		{"bad image", "POST", "/api/v1/sessions", map[string]any{"image": "a b;rm"}, 422, codeUnprocessable},
		{"unknown session", "POST", "/api/v1/sessions/ffffffffffffffff/pause", nil, 404, codeNotFound},
		{"release missing id", "POST", "/api/v1/sandbox/release", map[string]any{}, 400, codeBadRequest},
		{"release unknown", "POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": "0000000000000000"}, 404, codeNotFound},
		{"long idempotency key", "POST", "/api/v1/sandbox/acquire", nil, 400, codeBadRequest},
		{"unknown route", "GET", "/api/v1/nope", nil, 404, codeNotFound},
		{"wrong method", "PATCH", "/api/v1/sessions", nil, 405, codeBadRequest},
		{"wrong method on execute", "GET", "/api/v1/execute", nil, 405, codeBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.name == "long idempotency key" {
				hdr = []string{"Idempotency-Key", strings.Repeat("k", 129)}
			}
			expect(t, e.call(c.method, c.path, tok, c.body, hdr...), c.status, c.code)
		})
	}
	// Nothing stored was lost: the sandbox still runs code.
	r := e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": sb, "code": "print(7)"})
	expect(t, r, http.StatusOK, "")
	if r.str("stdout") != "7\n" {
		t.Fatalf("execute after bad input = %s", r.raw)
	}
}

func TestPanicIs500JSON(t *testing.T) {
	h := recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := newRecorder()
	req := mustRequest(t, "GET", "/x")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h.ServeHTTP(rec, req.WithContext(context.WithValue(req.Context(), loggerKey{}, quiet)))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"code":"internal"`) {
		t.Fatalf("panic answer = %d %s", rec.Code, rec.Body.String())
	}
}
