package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// joinNodes adds n followers to e's single-node cluster, each with its own
// FSM and API server, and returns the base URLs of all nodes' APIs (e's
// first). Writes sent to a follower are forwarded to the leader by cluster.
func (e *env) joinNodes(n int) []string {
	e.t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	urls := []string{e.http.URL}
	for i := range n {
		f := fsm.New()
		node, err := cluster.Open(cluster.Config{ID: fmt.Sprintf("n%d", i+2), DataDir: e.t.TempDir(),
			BindAddr: "127.0.0.1:0", Join: []string{e.node.Addr()}, Logger: quiet}, f)
		if err != nil {
			e.t.Fatalf("open follower: %v", err)
		}
		e.t.Cleanup(func() { _ = node.Close() })
		if e.onNode != nil {
			e.onNode(node, f)
		}
		reg := prometheus.NewRegistry()
		srv, err := New(e.cfg, Deps{Cluster: node, State: f, Registry: reg, Gatherer: reg})
		if err != nil {
			e.t.Fatalf("api.New: %v", err)
		}
		hs := httptest.NewServer(srv.Handler())
		e.t.Cleanup(func() { hs.Close(); _ = srv.Close() })
		urls = append(urls, hs.URL)
		// Wait until the follower has caught up with the pool configuration.
		want := e.fsm.AppliedIndex()
		deadline := time.After(10 * time.Second)
		for {
			ch := f.Watch()
			if f.AppliedIndex() >= want {
				break
			}
			select {
			case <-ch:
			case <-deadline:
				e.t.Fatalf("follower %d did not catch up to index %d", i+2, want)
			}
		}
	}
	return urls
}

// TestQuotaParallelAcquiresAcrossNodes: a three-node in-process cluster;
// acquires for one user go in parallel to all three nodes. The FSM decides
// on the leader's log order, so exactly the limit succeed in total.
func TestQuotaParallelAcquiresAcrossNodes(t *testing.T) {
	const limit, perNode = 4, 5
	e := newEnv(t, withQuota(fsm.QuotaConfig{Default: fsm.Quota{MaxSandboxes: limit}}))
	urls := e.joinNodes(2)
	tok := e.token("alice", RoleUser)

	type answer struct {
		status     int
		retryAfter string
	}
	answers := make(chan answer, len(urls)*perNode)
	var wg sync.WaitGroup
	for _, url := range urls {
		for range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", url+"/api/v1/sandbox/acquire", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("acquire via %s: %v", url, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After")}
			}()
		}
	}
	wg.Wait()
	close(answers)
	ok := 0
	for a := range answers {
		switch {
		case a.status == http.StatusOK:
			ok++
		case a.status == http.StatusTooManyRequests && a.retryAfter == "5":
		default:
			t.Errorf("answer %d with Retry-After %q, want 200 or 429 with 5", a.status, a.retryAfter)
		}
	}
	if ok != limit {
		t.Errorf("%d acquires succeeded across 3 nodes, want exactly %d", ok, limit)
	}
	if got := e.fsm.QuotaUsage("alice", time.Now()).Sandboxes; got != limit {
		t.Errorf("alice holds %d live sandboxes, want %d", got, limit)
	}
}
