package api

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestSandboxOptionsReadBackOnAnotherNode: an acquire with metadata, env,
// limits and timeouts, read back through another node; the env reaches
// every process and a request's own env wins.
func TestSandboxOptionsReadBackOnAnotherNode(t *testing.T) {
	e := newEnv(t)
	urls := e.joinNodes(2)
	other := nodeEnv(e, urls[2])
	tok := e.token("alice", RoleUser)
	r := e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{
		"template": testImage, "cpu_count": 2, "memory_mb": 1024, "timeout": 600, "idle_timeout": 120,
		"metadata": map[string]string{"team": "ml", "run": "42"}, "env": map[string]string{"GREETING": "hello", "B": "sandbox"},
	})
	expect(t, r, http.StatusOK, "")
	id := r.str("sandbox_id")
	g := other.call("GET", "/api/v1/sandbox/"+id, tok, nil, headerIndex, r.header.Get(headerIndex))
	expect(t, g, http.StatusOK, "")
	md, _ := g.body["metadata"].(map[string]any)
	if md["team"] != "ml" || md["run"] != "42" || g.body["cpu_count"] != 2.0 || g.body["memory_mb"] != 1024.0 ||
		g.body["idle_timeout"] != 120.0 || g.str("expires_at") == "" {
		t.Fatalf("sandbox read on another node: %s", g.raw)
	}
	if keys := fmt.Sprint(g.body["env_keys"]); keys != "[B GREETING]" {
		t.Errorf("env_keys %s, want [B GREETING] (names only)", keys)
	}
	x := other.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id,
		"command": "echo $GREETING $B", "env": map[string]string{"B": "request"}})
	expect(t, x, http.StatusOK, "")
	if got := x.str("stdout"); got != "hello request\n" {
		t.Errorf("stdout %q, want the sandbox's env with the request's on top", got)
	}

	// Every transition through one node, read back through another with
	// the write's index.
	second := nodeEnv(e, urls[1])
	steps := []struct {
		name, path string
		body       any
		via, read  *env
		status     string
		check      func(result) bool
	}{
		{"set_timeout", "/timeout", map[string]any{"timeout": 3600}, second, other, "active",
			func(g result) bool { return g.str("expires_at") != r.str("expires_at") }},
		{"pause", "/pause", nil, other, second, "paused", nil},
		{"connect resumes", "/connect", nil, second, other, "active", nil},
		{"pause again", "/pause", nil, e, other, "paused", nil},
		{"resume", "/resume", nil, other, e, "active", nil},
	}
	for _, st := range steps {
		w := st.via.call("POST", "/api/v1/sandbox/"+id+st.path, tok, st.body)
		expect(t, w, http.StatusOK, "")
		g := st.read.call("GET", "/api/v1/sandbox/"+id, tok, nil, headerIndex, w.header.Get(headerIndex))
		expect(t, g, http.StatusOK, "")
		if g.str("status") != st.status || (st.check != nil && !st.check(g)) {
			t.Errorf("%s: read on another node: %s", st.name, g.raw)
		}
	}
}

func TestSandboxOptionsAreValidated(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", RoleUser)
	many := map[string]string{}
	for i := 0; i <= maxMetadataKeys; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"image and template differ", map[string]any{"image": testImage, "template": "other:1"}, http.StatusBadRequest},
		{"metadata key", map[string]any{"metadata": map[string]string{"bad key": "v"}}, http.StatusUnprocessableEntity},
		{"too many metadata keys", map[string]any{"metadata": many}, http.StatusUnprocessableEntity},
		{"env name", map[string]any{"env": map[string]string{"1X": "v"}}, http.StatusUnprocessableEntity},
		{"disk too small", map[string]any{"disk_mb": 1}, http.StatusUnprocessableEntity},
		{"timeout 0 where the server caps lifetimes", map[string]any{"timeout": 0}, http.StatusUnprocessableEntity},
		{"timeout over the cap", map[string]any{"timeout": 10 * 365 * 86400}, http.StatusUnprocessableEntity},
		{"negative idle timeout", map[string]any{"idle_timeout": -1}, http.StatusUnprocessableEntity},
	}
	before := len(e.fsm.Sandboxes())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, e.call("POST", "/api/v1/sandbox/acquire", tok, tc.body), tc.status, "")
		})
	}
	if n := len(e.fsm.Sandboxes()); n != before {
		t.Errorf("refused acquires left %d sandboxes", n-before)
	}
}

// TestEverySandboxPausesResumesAndTakesANewTimeout: a plain acquired
// sandbox (no session) pauses, refuses exec while paused, resumes by
// connect, and its lifetime moves with set_timeout.
func TestEverySandboxPausesResumesAndTakesANewTimeout(t *testing.T) {
	e := newEnv(t)
	tok, bob := e.token("alice", RoleUser), e.token("bob", RoleUser)
	id := e.acquire(tok)
	run := func() result {
		return e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "command": "echo up"})
	}

	expect(t, e.call("POST", "/api/v1/sandbox/"+id+"/pause", bob, nil), http.StatusNotFound, "not_found")
	p := e.call("POST", "/api/v1/sandbox/"+id+"/pause", tok, nil)
	expect(t, p, http.StatusOK, "")
	if p.str("status") != "paused" {
		t.Fatalf("after pause: %s", p.raw)
	}
	expect(t, run(), http.StatusConflict, "conflict")
	c := e.call("POST", "/api/v1/sandbox/"+id+"/connect", tok, nil)
	expect(t, c, http.StatusOK, "")
	if c.str("status") != "active" {
		t.Fatalf("connect answered %s, want the sandbox running", c.raw)
	}
	expect(t, run(), http.StatusOK, "")
	// Connect to a running sandbox is a plain read.
	expect(t, e.call("POST", "/api/v1/sandbox/"+id+"/connect", tok, nil), http.StatusOK, "")

	before, _ := e.fsm.Sandbox(id)
	st := e.call("POST", "/api/v1/sandbox/"+id+"/timeout", tok, map[string]any{"timeout": 3600})
	expect(t, st, http.StatusOK, "")
	after, _ := e.fsm.Sandbox(id)
	if d := after.ExpiresAt.Sub(before.ExpiresAt.Add(-e.cfg.DefaultLifetime)); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("expires_at moved to %v (was %v), want about an hour from now", after.ExpiresAt, before.ExpiresAt)
	}
	expect(t, e.call("POST", "/api/v1/sandbox/"+id+"/timeout", tok, map[string]any{}), http.StatusBadRequest, "bad_request")
	expect(t, e.call("POST", "/api/v1/sandbox/nope/timeout", tok, map[string]any{"timeout": 60}), http.StatusNotFound, "not_found")
}

// TestListFiltersAndPages: a few hundred sandboxes, paged 37 at a time,
// every one seen once in creation order; filters by metadata, state and
// creation time.
func TestListFiltersAndPages(t *testing.T) {
	const n = 300
	e := newEnv(t, func(c *Config, p *fsmPool) {
		p.MaxSize = 1000
		c.RateLimitRPS, c.RateLimitBurst = 1e6, 1e6
	})
	tok := e.token("alice", RoleUser)
	var ids []string
	for i := 0; i < n; i++ {
		team := "a"
		if i%3 == 0 {
			team = "b"
		}
		r := e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"metadata": map[string]string{"team": team}})
		expect(t, r, http.StatusOK, "")
		ids = append(ids, r.str("sandbox_id"))
	}
	for _, id := range ids[:7] {
		expect(t, e.call("POST", "/api/v1/sandbox/"+id+"/pause", tok, nil), http.StatusOK, "")
	}

	list := func(query string) (got []string, pages int) {
		token := ""
		for {
			q := query
			if token != "" {
				q += "&page_token=" + url.QueryEscape(token)
			}
			r := e.call("GET", "/api/v1/sandboxes?"+q, tok, nil)
			expect(t, r, http.StatusOK, "")
			items, _ := r.body["sandboxes"].([]any)
			for _, it := range items {
				got = append(got, it.(map[string]any)["sandbox_id"].(string))
			}
			pages++
			token = r.str("next_page_token")
			if token == "" || pages > n {
				return got, pages
			}
		}
	}
	all, pages := list("limit=37")
	if len(all) != n || pages != (n+36)/37 {
		t.Fatalf("paged list: %d sandboxes in %d pages, want %d in %d", len(all), pages, n, (n+36)/37)
	}
	for i := range all {
		if all[i] != ids[i] {
			t.Fatalf("item %d is %s, want %s: not in creation order or repeated", i, all[i], ids[i])
		}
	}
	cases := []struct {
		query string
		want  int
	}{
		{"metadata.team=b", n / 3},
		{"metadata.team=b&limit=10", n / 3},
		{"metadata.team=c", 0},
		{"state=paused", 7},
		{"state=paused&metadata.team=b", 3}, // ids 0, 3, 6
		{"created_after=2000-01-01T00:00:00Z", n},
		{"created_before=2000-01-01T00:00:00Z", 0},
	}
	for _, tc := range cases {
		if got, _ := list(tc.query); len(got) != tc.want {
			t.Errorf("%s: %d sandboxes, want %d", tc.query, len(got), tc.want)
		}
	}
	for _, bad := range []struct {
		query  string
		status int
	}{{"limit=0", 422}, {"limit=5000", 422}, {"page_token=garbage", 400}, {"created_after=yesterday", 400}} {
		expect(t, e.call("GET", "/api/v1/sandboxes?"+bad.query, tok, nil), bad.status, "")
	}

	// Sessions page the same way.
	for i := 0; i < 5; i++ {
		expect(t, e.call("POST", "/api/v1/sessions", tok, map[string]any{}), http.StatusCreated, "")
	}
	var sessions int
	token := ""
	for pages := 0; ; pages++ {
		q := "limit=2"
		if token != "" {
			q += "&page_token=" + url.QueryEscape(token)
		}
		r := e.call("GET", "/api/v1/sessions?"+q, tok, nil)
		expect(t, r, http.StatusOK, "")
		items, _ := r.body["sessions"].([]any)
		sessions += len(items)
		if token = r.str("next_page_token"); token == "" {
			if pages != 2 {
				t.Errorf("5 sessions in %d pages of 2, want 3", pages+1)
			}
			break
		}
	}
	if sessions != 5 {
		t.Errorf("sessions listed %d, want 5", sessions)
	}
}
