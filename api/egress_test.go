package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestEgressGrants: network is refused until an admin grants it, to the
// user or to the user's role; the grant is replicated state any node reads.
func TestEgressGrants(t *testing.T) {
	e := newEnv(t)
	root := e.token("root", RoleAdmin)
	alice := e.token("alice", RoleUser)
	bob := e.token("bob", RoleUser)

	r := e.call("POST", "/api/v1/sessions", alice, map[string]any{"network": true})
	expect(t, r, http.StatusForbidden, codeForbidden)
	if !strings.Contains(r.str("error"), "PUT /api/v1/egress/grants/user:alice") {
		t.Errorf("refusal does not say how to get a grant: %s", r.raw)
	}
	expect(t, e.call("POST", "/api/v1/sandbox/acquire", alice, map[string]any{"network": true}), http.StatusForbidden, codeForbidden)
	if got := e.call("GET", "/api/v1/egress", alice, nil); strings.TrimSpace(string(got.raw)) != `{"granted":false}` {
		t.Errorf("GET /egress before a grant = %s", got.raw)
	}

	// Only an admin grants, and every entry is checked.
	expect(t, e.call("PUT", "/api/v1/egress/grants/user:alice", alice, map[string]any{"allow": []string{}}), http.StatusForbidden, codeForbidden)
	for _, bad := range []struct{ subject, entry string }{
		{"user:alice", "169.254.169.254"},
		{"user:alice", "10.0.0.1/8"},
		{"user:alice", "not a host"},
		{"group:x", "203.0.113.0/24"},
		{"alice", "203.0.113.0/24"},
	} {
		r := e.call("PUT", "/api/v1/egress/grants/"+bad.subject, root, map[string]any{"allow": []string{bad.entry}})
		expect(t, r, http.StatusUnprocessableEntity, codeUnprocessable)
	}
	expect(t, e.call("GET", "/api/v1/egress/grants", root, nil), http.StatusOK, "")
	if g := e.call("GET", "/api/v1/egress/grants", root, nil); strings.TrimSpace(string(g.raw)) != `{"grants":[]}` {
		t.Errorf("a refused grant was stored: %s", g.raw)
	}

	r = e.call("PUT", "/api/v1/egress/grants/user:alice", root, map[string]any{"allow": []string{"203.0.113.0/24", "PyPI.org"}})
	expect(t, r, http.StatusOK, "")
	r = e.call("GET", "/api/v1/egress", alice, nil)
	if g, _ := r.body["grant"].(map[string]any); r.body["granted"] != true || g["subject"] != "user:alice" ||
		strings.Join(toStrings(g["allow"]), ",") != "203.0.113.0/24,pypi.org" || g["by"] != "root" {
		t.Errorf("GET /egress after the grant = %s", r.raw)
	}
	expect(t, e.call("POST", "/api/v1/sessions", bob, map[string]any{"network": true}), http.StatusForbidden, codeForbidden)
	r = e.call("POST", "/api/v1/sessions", alice, map[string]any{"network": true})
	expect(t, r, http.StatusCreated, "")
	if strings.Join(toStrings(r.body["egress_allow"]), ",") != "203.0.113.0/24,pypi.org" || r.body["network"] != true {
		t.Errorf("session with egress = %s, want the grant's allow-list", r.raw)
	}

	// A role grant reaches every user of the role.
	expect(t, e.call("PUT", "/api/v1/egress/grants/role:user", root, map[string]any{}), http.StatusOK, "")
	if r := e.call("GET", "/api/v1/egress", bob, nil); r.body["granted"] != true {
		t.Errorf("bob after the role grant: %s", r.raw)
	}

	expect(t, e.call("DELETE", "/api/v1/egress/grants/role:user", root, nil), http.StatusNoContent, "")
	expect(t, e.call("DELETE", "/api/v1/egress/grants/role:user", root, nil), http.StatusNotFound, codeNotFound)
	expect(t, e.call("DELETE", "/api/v1/egress/grants/user:alice", bob, nil), http.StatusForbidden, codeForbidden)
	if r := e.call("GET", "/api/v1/egress", bob, nil); r.body["granted"] != false {
		t.Errorf("bob after the role grant was removed: %s", r.raw)
	}
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
