package api

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPILiveFlow drives a real node through nearly every operation,
// error paths included, and checks every request and every answer against
// api/openapi.json (contractClient). It ends by listing any documented
// operation the flow did not reach.
func TestOpenAPILiveFlow(t *testing.T) {
	e := newEnv(t)
	ops := httptest.NewServer(e.srv.OpsHandler())
	t.Cleanup(ops.Close)
	cc := newContractClient(t, e.http.Client(), e.http.URL, ops.URL)
	api := e.http.URL

	// System and tokens.
	cc.do(contractCall{op: "getHealth", method: "GET", url: api + "/health", status: 200})
	cc.do(contractCall{op: "getMetrics", method: "GET", url: api + "/metrics", status: 200})
	cc.do(contractCall{op: "getOpenAPI", method: "GET", url: api + "/api/v1/openapi.json", status: 200})
	for _, c := range []struct {
		op, path string
	}{{"getHealth", "/health"}, {"getPoolStats", "/api/v1/sandbox/stats"}, {"getCluster", "/api/v1/cluster"}, {"getOpenAPI", "/api/v1/openapi.json"}} {
		// The operator listener serves stats without a token; the document
		// states the gateway's rule (bearer), so it calls this request invalid.
		cc.do(contractCall{op: c.op, method: "GET", url: ops.URL + c.path, status: 200, invalid: c.op == "getPoolStats"})
	}
	r := cc.do(contractCall{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: map[string]string{"user_id": "alice", "role": "user"}, status: 200})
	tok, refresh := r.str("access_token"), r.str("refresh_token")
	r = cc.do(contractCall{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: map[string]string{"user_id": "root", "role": "admin"}, status: 200})
	admin := r.str("access_token")
	r = cc.do(contractCall{op: "refreshToken", method: "POST", url: api + "/api/v1/auth/refresh", body: map[string]string{"refresh_token": refresh}, status: 200})
	refresh = r.str("refresh_token")

	errs := []contractCall{
		{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: map[string]any{"user_id": 5}, status: 400, invalid: true},
		{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: []byte(`{"user_id":`), ctype: "application/json", status: 400, invalid: true},
		{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: map[string]any{"user_id": "no spaces please"}, status: 422},
		{op: "getQuota", method: "GET", url: api + "/api/v1/quota", status: 401, invalid: true},
		{op: "getQuota", method: "GET", url: api + "/api/v1/quota", token: "not-a-jwt", status: 401},
		{op: "acquireSandbox", method: "POST", url: api + "/api/v1/sandbox/acquire", token: tok, body: map[string]any{"cpu_count": 99}, status: 422, invalid: true},
		{op: "getSandbox", method: "GET", url: api + "/api/v1/sandbox/0000000000000000", token: tok, status: 404},
		{op: "getSession", method: "GET", url: api + "/api/v1/sessions/0000000000000000", token: tok, status: 404},
		{op: "listSandboxes", method: "GET", url: api + "/api/v1/sandboxes?limit=0", token: tok, status: 422, invalid: true},
		{op: "listSandboxes", method: "GET", url: api + "/api/v1/sandboxes", token: tok, headers: []string{"X-Cloud-Sandbox-Index", "x"}, status: 400, invalid: true},
		{op: "streamEvents", method: "GET", url: api + "/api/v1/events", token: tok, headers: []string{"Last-Event-ID", "yesterday"}, status: 400, invalid: true},
		{op: "putEgressGrant", method: "PUT", url: api + "/api/v1/egress/grants/user:alice", token: tok, body: map[string]any{"allow": []string{}}, status: 403},
	}
	for _, c := range errs {
		cc.do(c)
	}

	// A sandbox with every option, then reads, lists and lifecycle.
	r = cc.do(contractCall{op: "acquireSandbox", method: "POST", url: api + "/api/v1/sandbox/acquire", token: tok,
		headers: []string{"Idempotency-Key", "oapi-flow-1"}, status: 200,
		body: map[string]any{"template": testImage, "cpu_count": 1, "memory_mb": 512, "disk_mb": 256, "timeout": 3600,
			"idle_timeout": 600, "metadata": map[string]string{"project": "oapi"}, "env": map[string]string{"FLOW": "1"}}})
	sb := r.str("sandbox_id")
	if r.str("status") != "active" || r.body["disk_mb"] != 256.0 {
		t.Fatalf("acquire = %s", r.raw)
	}
	idx := r.header.Get("X-Cloud-Sandbox-Index")
	cc.do(contractCall{op: "getSandbox", method: "GET", url: api + "/api/v1/sandbox/" + sb, token: tok, headers: []string{"X-Cloud-Sandbox-Index", idx}, status: 200})
	q := url.Values{"state": {"active"}, "image": {testImage}, "metadata.project": {"oapi"}, "limit": {"10"}, "created_after": {"2000-01-01T00:00:00Z"}}
	r = cc.do(contractCall{op: "listSandboxes", method: "GET", url: api + "/api/v1/sandboxes?" + q.Encode(), token: tok, status: 200})
	if list, _ := r.body["sandboxes"].([]any); len(list) != 1 {
		t.Fatalf("filtered list = %s, want the one sandbox", r.raw)
	}
	cc.do(contractCall{op: "getPoolStats", method: "GET", url: api + "/api/v1/sandbox/stats", token: tok, status: 200})
	cc.do(contractCall{op: "setSandboxTimeout", method: "POST", url: api + "/api/v1/sandbox/" + sb + "/timeout", token: tok, body: map[string]any{"timeout": 7200}, status: 200})

	// Execute, plain and streamed.
	ex := api + "/api/v1/execute"
	for _, c := range []contractCall{
		{body: map[string]any{"sandbox_id": sb, "code": "import os; print(os.environ['FLOW'])", "language": "python", "timeout": 30}, status: 200},
		{body: map[string]any{"sandbox_id": sb, "command": []string{"ls", e.workdir}}, status: 200},
		{body: map[string]any{"sandbox_id": sb, "command": "echo out; echo err >&2; exit 3", "cwd": e.workdir, "stdin": "x"}, status: 200},
		{body: map[string]any{"sandbox_id": sb, "code": "1", "command": "true"}, status: 400, invalid: true},
		{body: map[string]any{"sandbox_id": sb, "code": "1", "language": "cobol"}, status: 422, invalid: true},
	} {
		c.op, c.method, c.url, c.token = "execute", "POST", ex, tok
		cc.do(c)
	}
	r = cc.do(contractCall{op: "executeStream", method: "POST", url: ex + "/stream", token: tok, status: 200,
		body: map[string]any{"sandbox_id": sb, "command": "echo one; echo two >&2"}})
	if !strings.Contains(string(r.raw), `"type":"result"`) {
		t.Fatalf("stream = %s, want a result line", r.raw)
	}

	// Files.
	file := e.path("oapi.txt")
	fq := func(path string, extra ...string) string {
		v := url.Values{"sandbox_id": {sb}, "path": {path}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return "?" + v.Encode()
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	_ = tw.WriteHeader(&tar.Header{Name: "t/a.txt", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.Close()
	files := api + "/api/v1/files"
	for _, c := range []contractCall{
		{op: "writeFile", method: "PUT", url: files, body: map[string]any{"sandbox_id": sb, "path": file, "content": "aGVsbG8=", "encoding": "base64"}, status: 200},
		{op: "listFiles", method: "GET", url: files + fq(e.workdir, "depth", "2", "limit", "100"), status: 200},
		{op: "statFile", method: "GET", url: files + "/stat" + fq(file), status: 200},
		{op: "fileExists", method: "GET", url: files + "/exists" + fq(file), status: 200},
		{op: "fileExists", method: "GET", url: files + "/exists" + fq(e.path("nope")), status: 200},
		{op: "writeFileContent", method: "PUT", url: files + "/content" + fq(file), body: []byte("raw bytes"), ctype: "application/octet-stream", status: 200},
		{op: "readFileContent", method: "GET", url: files + "/content" + fq(file), status: 200},
		{op: "readFileContent", method: "GET", url: files + "/content" + fq(e.path("nope")), status: 404},
		{op: "makeDirectory", method: "POST", url: files + "/mkdir", body: map[string]any{"sandbox_id": sb, "path": e.path("d/e")}, status: 200},
		{op: "renameFile", method: "POST", url: files + "/rename", body: map[string]any{"sandbox_id": sb, "from": file, "to": e.path("d/moved.txt")}, status: 200},
		{op: "uploadArchive", method: "PUT", url: files + "/archive" + fq(e.workdir), body: tarball.Bytes(), ctype: "application/x-tar", status: 200},
		{op: "downloadArchive", method: "GET", url: files + "/archive" + fq(e.path("t")), status: 200},
		{op: "watchFiles", method: "GET", url: files + "/watch" + fq(e.workdir, "recursive", "true"), status: 200, firstLine: true},
		{op: "deleteFile", method: "DELETE", url: files + fq(e.path("d"), "recursive", "true"), status: 200},
		{op: "listFiles", method: "GET", url: files + fq("workspace"), status: 400, invalid: true},
	} {
		c.token = tok
		cc.do(c)
	}

	// The lifecycle of the acquired sandbox: pause refuses execute (409).
	lc := api + "/api/v1/sandbox/" + sb
	cc.do(contractCall{op: "pauseSandbox", method: "POST", url: lc + "/pause", token: tok, status: 200})
	cc.do(contractCall{op: "execute", method: "POST", url: ex, token: tok, body: map[string]any{"sandbox_id": sb, "code": "1"}, status: 409})
	cc.do(contractCall{op: "resumeSandbox", method: "POST", url: lc + "/resume", token: tok, status: 200})
	cc.do(contractCall{op: "connectSandbox", method: "POST", url: lc + "/connect", token: tok, status: 200})

	// Background processes: a cat fed through stdin, a sleeper signalled,
	// a terminal resized (all bounded: waits of at most 10 s).
	pr := api + "/api/v1/processes"
	r = cc.do(contractCall{op: "startProcess", method: "POST", url: pr, token: tok, status: 200,
		body: map[string]any{"sandbox_id": sb, "command": []string{"cat"}, "stdin": true, "tag": "echo", "env": map[string]string{"K": "V"}, "cwd": e.workdir}})
	cat := fmt.Sprintf("%s/%d", pr, int(r.body["pid"].(float64)))
	r = cc.do(contractCall{op: "startProcess", method: "POST", url: pr, token: tok, status: 200, body: map[string]any{"sandbox_id": sb, "command": "sleep 300", "timeout": 60}})
	sleeper := fmt.Sprintf("%s/%d", pr, int(r.body["pid"].(float64)))
	r = cc.do(contractCall{op: "startProcess", method: "POST", url: pr, token: tok, status: 200,
		body: map[string]any{"sandbox_id": sb, "command": []string{"sleep", "300"}, "pty": map[string]int{"rows": 24, "cols": 80}}})
	term := fmt.Sprintf("%s/%d", pr, int(r.body["pid"].(float64)))
	sbq := "?sandbox_id=" + sb
	for _, c := range []contractCall{
		{op: "startProcess", method: "POST", url: pr, body: map[string]any{"sandbox_id": sb}, status: 400, invalid: true},
		{op: "startProcess", method: "POST", url: pr, body: map[string]any{"sandbox_id": sb, "command": "true", "pty": map[string]int{"rows": 0, "cols": 80}}, status: 422, invalid: true},
		{op: "listProcesses", method: "GET", url: pr + sbq, status: 200},
		{op: "getProcess", method: "GET", url: cat + sbq, status: 200},
		{op: "getProcess", method: "GET", url: pr + "/999999" + sbq, status: 404},
		{op: "writeProcessStdin", method: "POST", url: cat + "/stdin", body: map[string]any{"sandbox_id": sb, "data": "hi there"}, status: 204},
		{op: "writeProcessStdin", method: "POST", url: cat + "/stdin", body: map[string]any{"sandbox_id": sb, "close": true}, status: 204},
		{op: "waitProcess", method: "POST", url: cat + "/wait", body: map[string]any{"sandbox_id": sb, "timeout": 10}, status: 200},
		{op: "streamProcessOutput", method: "GET", url: cat + "/output" + sbq + "&offset=0&follow=false", status: 200},
		{op: "writeProcessStdin", method: "POST", url: cat + "/stdin", body: map[string]any{"sandbox_id": sb, "data": "late"}, status: 409},
		{op: "resizeProcess", method: "POST", url: term + "/resize", body: map[string]any{"sandbox_id": sb, "rows": 40, "cols": 120}, status: 204},
		{op: "resizeProcess", method: "POST", url: sleeper + "/resize", body: map[string]any{"sandbox_id": sb, "rows": 40, "cols": 120}, status: 409},
		{op: "signalProcess", method: "POST", url: term + "/signal", body: map[string]any{"sandbox_id": sb}, status: 204},
		{op: "signalProcess", method: "POST", url: sleeper + "/signal", body: map[string]any{"sandbox_id": sb, "signal": "SIGTERM"}, status: 204},
		{op: "waitProcess", method: "POST", url: sleeper + "/wait", body: map[string]any{"sandbox_id": sb, "timeout": 10}, status: 200},
		{op: "signalProcess", method: "POST", url: sleeper + "/signal", body: map[string]any{"sandbox_id": sb, "signal": "SIGTERM"}, status: 409},
		{op: "waitProcess", method: "POST", url: term + "/wait", body: map[string]any{"sandbox_id": sb, "timeout": 10}, status: 200},
	} {
		c.token = tok
		r = cc.do(c)
		if c.op == "streamProcessOutput" && !strings.Contains(string(r.raw), `"type":"exit"`) {
			t.Fatalf("output = %s, want an exit line", r.raw)
		}
	}

	// Code contexts: create, list, run (plain and streamed), restart, delete.
	cx := api + "/api/v1/contexts"
	r = cc.do(contractCall{op: "createContext", method: "POST", url: cx, token: tok, status: 201,
		body: map[string]any{"sandbox_id": sb, "language": "python", "cwd": e.workdir, "env": map[string]string{"K": "V"}}})
	ctxURL := cx + "/" + r.str("id")
	for _, c := range []contractCall{
		{op: "createContext", method: "POST", url: cx, body: map[string]any{"sandbox_id": sb, "language": "cobol"}, status: 422, invalid: true},
		{op: "listContexts", method: "GET", url: cx + sbq, status: 200},
		{op: "runContext", method: "POST", url: ctxURL + "/run", body: map[string]any{"code": "x = 1\nx + 1", "timeout": 30}, status: 200},
		{op: "runContext", method: "POST", url: ctxURL + "/run", body: map[string]any{"code": "1/0"}, status: 200},
		{op: "runContext", method: "POST", url: ctxURL + "/run", body: map[string]any{"timeout": 30}, status: 400, invalid: true},
		{op: "runContextStream", method: "POST", url: ctxURL + "/run/stream", body: map[string]any{"code": "print('hi')\nx"}, status: 200},
		{op: "restartContext", method: "POST", url: ctxURL + "/restart", status: 200},
		{op: "deleteContext", method: "DELETE", url: ctxURL, status: 200},
		{op: "deleteContext", method: "DELETE", url: ctxURL, status: 404},
		{op: "restartContext", method: "POST", url: cx + "/nope/restart", status: 404},
	} {
		c.token = tok
		r = cc.do(c)
		if c.op == "runContextStream" && !strings.Contains(string(r.raw), `"type":"result"`) {
			t.Fatalf("context stream = %s, want a result line", r.raw)
		}
	}

	// Sessions.
	r = cc.do(contractCall{op: "createSession", method: "POST", url: api + "/api/v1/sessions", token: tok, headers: []string{"Idempotency-Key", "oapi-flow-2"},
		body: map[string]any{"image": testImage, "cpu_count": 1, "memory_mb": 512, "idle_timeout": 600}, status: 201})
	se := api + "/api/v1/sessions/" + r.str("session_id")
	for _, c := range []contractCall{
		{op: "listSessions", method: "GET", url: api + "/api/v1/sessions?state=active&limit=5", status: 200},
		{op: "getSession", method: "GET", url: se, status: 200},
		{op: "pauseSession", method: "POST", url: se + "/pause", status: 200},
		{op: "resumeSession", method: "POST", url: se + "/resume", status: 200},
		{op: "deleteSession", method: "DELETE", url: se, headers: []string{"Idempotency-Key", "oapi-flow-3"}, status: 200},
		{op: "resumeSession", method: "POST", url: se + "/resume", status: 409},
	} {
		c.token = tok
		cc.do(c)
	}

	// Quota, egress (admin grants), events.
	grant := api + "/api/v1/egress/grants/user:alice"
	for _, c := range []contractCall{
		{op: "getQuota", method: "GET", url: api + "/api/v1/quota", token: tok, status: 200},
		{op: "getMyEgress", method: "GET", url: api + "/api/v1/egress", token: tok, status: 200},
		{op: "putEgressGrant", method: "PUT", url: grant, token: admin, body: map[string]any{"allow": []string{"203.0.113.0/24"}}, status: 200},
		{op: "putEgressGrant", method: "PUT", url: grant, token: admin, body: map[string]any{"allow": []string{"not a host!"}}, status: 422},
		{op: "listEgressGrants", method: "GET", url: api + "/api/v1/egress/grants", token: admin, status: 200},
		{op: "getMyEgress", method: "GET", url: api + "/api/v1/egress", token: tok, status: 200},
		{op: "deleteEgressGrant", method: "DELETE", url: grant, token: admin, status: 204},
		{op: "deleteEgressGrant", method: "DELETE", url: grant, token: admin, status: 404},
		{op: "streamEvents", method: "GET", url: api + "/api/v1/events?after=0&follow=false&type=created,placed,active,paused,resumed", token: tok, status: 200},
		{op: "releaseSandbox", method: "POST", url: api + "/api/v1/sandbox/release", token: tok, body: map[string]any{"sandbox_id": sb}, headers: []string{"Idempotency-Key", "oapi-flow-4"}, status: 200},
		{op: "revokeTokens", method: "POST", url: api + "/api/v1/auth/revoke", token: tok, body: map[string]any{"refresh_token": refresh}, status: 204},
		{op: "revokeTokens", method: "POST", url: api + "/api/v1/auth/revoke", token: tok, body: map[string]any{}, status: 400, invalid: true},
	} {
		cc.do(c)
	}

	// The caller's webhook, pointed at a loopback receiver (development
	// mode allows private addresses).
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	wh := api + "/api/v1/webhook"
	r = cc.do(contractCall{op: "createToken", method: "POST", url: api + "/api/v1/auth/token", body: map[string]string{"user_id": "bob", "role": "user"}, status: 200})
	tok2 := r.str("access_token") // alice revoked hers above
	for _, c := range []contractCall{
		{op: "getWebhook", method: "GET", url: wh, status: 404},
		{op: "putWebhook", method: "PUT", url: wh, body: map[string]any{"url": hook.URL + "/hook"}, status: 200},
		{op: "putWebhook", method: "PUT", url: wh, body: map[string]any{"url": hook.URL + "/hook", "secret": "0123456789abcdef0123"}, status: 200},
		{op: "putWebhook", method: "PUT", url: wh, body: map[string]any{"url": "ftp://example.com/"}, status: 422},
		{op: "putWebhook", method: "PUT", url: wh, body: map[string]any{}, status: 422, invalid: true},
		{op: "getWebhook", method: "GET", url: wh, status: 200},
		{op: "deleteWebhook", method: "DELETE", url: wh, status: 204},
		{op: "deleteWebhook", method: "DELETE", url: wh, status: 404},
	} {
		c.token = tok2
		cc.do(c)
	}

	// Admin: members, a snapshot saved and restored as it is, and drain,
	// which this Docker-less server cannot do (no Drainer: 501).
	adm := api + "/api/v1/admin"
	cc.do(contractCall{op: "adminListMembers", method: "GET", url: adm + "/members", token: tok2, status: 403})
	cc.do(contractCall{op: "adminListMembers", method: "GET", url: adm + "/members", token: admin, status: 200})
	r = cc.do(contractCall{op: "adminSaveSnapshot", method: "GET", url: adm + "/snapshot", token: admin, status: 200})
	snap := r.raw
	cc.do(contractCall{op: "adminRestoreSnapshot", method: "POST", url: adm + "/snapshot/restore", token: admin, body: snap, ctype: "application/json", status: 200})
	cc.do(contractCall{op: "adminRestoreSnapshot", method: "POST", url: adm + "/snapshot/restore", token: admin, body: []byte(`{"version":"no"}`), ctype: "application/json", status: 400})
	cc.do(contractCall{op: "adminDrainNode", method: "POST", url: adm + "/nodes/worker-1/drain", token: admin, status: 501})
	cc.do(contractCall{op: "adminUndrainNode", method: "DELETE", url: adm + "/nodes/worker-1/drain", token: admin, status: 501})

	var missed []string
	for _, d := range documentedOps(cc.doc) {
		if !d.pending && !cc.seen[d.id] {
			missed = append(missed, d.id)
		}
	}
	slices.Sort(missed)
	if len(missed) > 0 {
		t.Errorf("the flow reached no request of these documented operations: %v", missed)
	}
}
