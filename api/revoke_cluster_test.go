package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// clusterNode is one of several in-process control nodes sharing a Raft
// cluster: its FSM and its API over httptest. No sandboxes are placed.
type clusterNode struct {
	fsm  *fsm.FSM
	node *cluster.Node
	api  *env // only t and http are set: for call
}

// startAPICluster starts size control nodes (n0 bootstraps, the others join)
// each serving the API with the same secret, and returns once every FSM has
// applied the pool configuration.
func startAPICluster(t *testing.T, size int) []*clusterNode {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := make([]*clusterNode, size)
	for i := range size {
		f := fsm.New()
		cfg := cluster.Config{ID: fmt.Sprintf("n%d", i), DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Logger: quiet}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{nodes[0].node.Addr()}
		}
		n, err := cluster.Open(cfg, f)
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		if i == 0 {
			if err := n.WaitForLeader(ctx); err != nil {
				t.Fatalf("wait for leader: %v", err)
			}
		}
		apiCfg := DefaultConfig()
		apiCfg.Logger = quiet
		srv, err := New(apiCfg, Deps{Cluster: n, State: f})
		if err != nil {
			t.Fatalf("api.New: %v", err)
		}
		h := httptest.NewServer(srv.Handler())
		t.Cleanup(func() { h.Close(); _ = srv.Close() })
		nodes[i] = &clusterNode{fsm: f, node: n, api: &env{t: t, http: h}}
	}
	if _, err := nodes[0].node.Apply(ctx, &fsm.SetPool{Pool: fsm.PoolConfig{MaxSize: 1, Image: testImage,
		Resources: fsm.Resources{CPUCount: 1, MemoryMB: 512}}}); err != nil {
		t.Fatalf("set pool: %v", err)
	}
	for i, n := range nodes {
		waitFSM(t, ctx, n.fsm, fmt.Sprintf("node %d applies the pool", i), func() bool { return n.fsm.Pool().MaxSize == 1 })
	}
	return nodes
}

// waitFSM blocks until cond holds on f, re-checking at every apply, or fails
// the test when ctx ends.
func waitFSM(t *testing.T, ctx context.Context, f *fsm.FSM, what string, cond func() bool) {
	t.Helper()
	for {
		ch := f.Watch()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
	}
}

// TestRevokedAccessTokenRefusedOnEveryNode: a token minted on one node and
// revoked through another is refused by all three once each has applied the
// revocation, which is what "within seconds" rests on: one Raft round.
func TestRevokedAccessTokenRefusedOnEveryNode(t *testing.T) {
	nodes := startAPICluster(t, 3)
	call := func(n *clusterNode, method, path, tok string, body any) result {
		return n.api.call(method, path, tok, body)
	}
	r := call(nodes[0], "POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	expect(t, r, http.StatusOK, "")
	tok := r.str("access_token")
	for i, n := range nodes {
		if r := call(n, "GET", "/api/v1/sessions", tok, nil); r.status != http.StatusOK {
			t.Fatalf("node %d before revocation: %d %s", i, r.status, r.raw)
		}
	}
	// Revoked through a follower: the command is forwarded to the leader.
	follower := nodes[1]
	if follower.node.IsLeader() {
		follower = nodes[2]
	}
	expect(t, call(follower, "POST", "/api/v1/auth/revoke", tok, map[string]string{"access_token": tok}), http.StatusNoContent, "")

	jti, _ := claimsOf(t, tok)["jti"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range nodes {
		waitFSM(t, ctx, n.fsm, fmt.Sprintf("node %d applies the revocation", i), func() bool { return n.fsm.TokenRevoked(jti) })
		r := call(n, "GET", "/api/v1/sessions", tok, nil)
		expect(t, r, http.StatusUnauthorized, codeUnauthorized)
	}
}
