package api

import (
	"net/http"
	"net/url"
	"testing"
)

// TestOtherUsersResourcesAre404 checks that every id-taking endpoint answers
// another user's session or sandbox exactly like an unknown id, and that an
// admin can see and act on them.
func TestOtherUsersResourcesAre404(t *testing.T) {
	e := newEnv(t)
	alice, bob, admin := e.token("alice", "user"), e.token("bob", "user"), e.token("root", "admin")

	r := e.call("POST", "/api/v1/sessions", alice, map[string]any{})
	expect(t, r, http.StatusCreated, "")
	sid, sbid := r.str("session_id"), r.str("sandbox_id")
	own := e.acquire(alice)
	file := url.QueryEscape(e.path("x.txt"))
	expect(t, e.call("PUT", "/api/v1/files", alice, map[string]any{"sandbox_id": own, "path": e.path("x.txt"), "content": "x"}), 200, "")

	type req struct {
		method, path string
		body         any
	}
	forID := func(sid, sbid string) []req {
		q := "?sandbox_id=" + sbid + "&path=" + file
		return []req{
			{"GET", "/api/v1/sessions/" + sid, nil},
			{"POST", "/api/v1/sessions/" + sid + "/pause", nil},
			{"POST", "/api/v1/sessions/" + sid + "/resume", nil},
			{"DELETE", "/api/v1/sessions/" + sid, nil},
			{"GET", "/api/v1/sandbox/" + sbid, nil},
			{"POST", "/api/v1/sandbox/release", map[string]string{"sandbox_id": sbid}},
			{"POST", "/api/v1/execute", map[string]any{"sandbox_id": sbid, "code": "print(1)"}},
			{"POST", "/api/v1/execute/stream", map[string]any{"sandbox_id": sbid, "code": "print(1)"}},
			{"PUT", "/api/v1/files", map[string]any{"sandbox_id": sbid, "path": e.path("y.txt"), "content": "y"}},
			{"GET", "/api/v1/files" + q, nil},
			{"DELETE", "/api/v1/files" + q, nil},
			{"GET", "/api/v1/files/content" + q, nil},
			{"PUT", "/api/v1/files/content" + q, "raw"},
			{"POST", "/api/v1/files/mkdir", map[string]any{"sandbox_id": sbid, "path": e.path("d")}},
			{"GET", "/api/v1/files/archive" + q, nil},
			{"PUT", "/api/v1/files/archive" + q, "tar"},
			{"GET", "/api/v1/files/stat" + q, nil},
			{"GET", "/api/v1/files/exists" + q, nil},
			{"POST", "/api/v1/files/rename", map[string]any{"sandbox_id": sbid, "from": e.path("x.txt"), "to": e.path("z.txt")}},
			{"GET", "/api/v1/files/watch?sandbox_id=" + sbid + "&path=" + url.QueryEscape(e.workdir), nil},
		}
	}
	unknown := forID("ffffffffffffffff", "eeeeeeeeeeeeeeee")
	for i, rq := range forID(sid, own) {
		if i < 4 {
			rq = forID(sid, sbid)[i]
		}
		t.Run(rq.method+" "+rq.path, func(t *testing.T) {
			r := e.call(rq.method, rq.path, bob, rq.body)
			expect(t, r, http.StatusNotFound, codeNotFound)
			u := e.call(unknown[i].method, unknown[i].path, bob, unknown[i].body)
			expect(t, u, http.StatusNotFound, codeNotFound)
		})
	}

	// Bob's lists do not show Alice's things; the admin's do.
	for _, c := range []struct {
		tok  string
		want int
	}{{bob, 0}, {alice, 1}, {admin, 1}} {
		r := e.call("GET", "/api/v1/sessions", c.tok, nil)
		if l, _ := r.body["sessions"].([]any); len(l) != c.want {
			t.Errorf("sessions listed = %d, want %d: %s", len(l), c.want, r.raw)
		}
	}
	r = e.call("GET", "/api/v1/sandboxes", bob, nil)
	if l, _ := r.body["sandboxes"].([]any); len(l) != 0 {
		t.Errorf("bob sees sandboxes: %s", r.raw)
	}
	r = e.call("GET", "/api/v1/sandboxes", admin, nil)
	if l, _ := r.body["sandboxes"].([]any); len(l) != 2 {
		t.Errorf("admin sees %d sandboxes, want 2: %s", len(l), r.raw)
	}
	// Alice's things are intact after Bob's attempts, and the admin may act.
	expect(t, e.call("GET", "/api/v1/sessions/"+sid, alice, nil), http.StatusOK, "")
	r = e.call("POST", "/api/v1/execute", admin, map[string]any{"sandbox_id": own, "command": []string{"cat", e.path("x.txt")}})
	expect(t, r, http.StatusOK, "")
	if r.str("stdout") != "x" {
		t.Errorf("admin execute = %s", r.raw)
	}
	expect(t, e.call("DELETE", "/api/v1/sessions/"+sid, admin, nil), http.StatusOK, "")
}
