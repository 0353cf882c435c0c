package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// startAgent runs a real agent on loopback TCP whose workspace (its exec
// directory) holds who.txt = name, and returns its placement.
func startAgent(t *testing.T, name, secret string) fsm.Placement {
	t.Helper()
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "who.txt"), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(agent.ServerConfig{Workdir: ws, TempDir: t.TempDir(), Secret: secret})
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("agent %s: %v", name, err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return fsm.Placement{Driver: "nomad", AgentEndpoint: "http://" + l.Addr().String(), AgentSecret: secret,
		ContainerID: "alloc-" + name}
}

// A sandbox that moves (a Nomad resume on another node) is reached at its
// new placement on the next request: the cache never keeps an old endpoint
// or secret.
func TestAgentCacheFollowsPlacement(t *testing.T) {
	a := startAgent(t, "a", "secret-a")
	b := startAgent(t, "b", "secret-b")
	staleSecret := b
	staleSecret.AgentSecret = "secret-a"

	steps := []struct {
		name      string
		placement fsm.Placement
		want      string // who.txt as read; "" means the read must fail
		sameAs    int    // index of an earlier step whose client must be reused; -1 none
	}{
		{"first placement", a, "a", -1},
		{"unchanged placement reuses the client", a, "a", 0},
		{"moved to another node", b, "b", -1},
		{"endpoint kept, secret changed", staleSecret, "", -1},
		{"secret changed back", b, "b", -1},
	}
	cache := newAgentCache(func(string) bool { return true })
	defer cache.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var clients []sandboxAgent
	for _, st := range steps {
		sb := &fsm.Sandbox{ID: "sb1", State: fsm.StateActive, Placement: st.placement}
		c := cache.get(sb)
		clients = append(clients, c)
		if st.sameAs >= 0 && c != clients[st.sameAs] {
			t.Errorf("%s: a new client for an unchanged placement", st.name)
		}
		if st.sameAs < 0 && len(clients) > 1 && c == clients[len(clients)-2] {
			t.Errorf("%s: the previous client was kept for a changed placement", st.name)
		}
		// Each agent runs in its own workspace: who.txt names the agent reached.
		res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"cat", "who.txt"}})
		if st.want == "" {
			if err == nil {
				t.Errorf("%s: exec succeeded with a stale secret (stdout %q)", st.name, res.Stdout)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: exec: %v", st.name, err)
		}
		if res.Stdout != st.want {
			t.Errorf("%s: reached agent %q, want %q", st.name, res.Stdout, st.want)
		}
	}
}
