package main

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
)

// TestNomadResumeOnAnotherControlNode pauses a sandbox through a
// three-node control plane on a real Nomad, kills the leader that paused it,
// and resumes it through another node: the workspace comes back from
// S3-compatible storage (gofakes3, a maintained S3 implementation, served
// on loopback by the test), not from the dead node's disk.
func TestNomadResumeOnAnotherControlNode(t *testing.T) {
	nomad := startNomad(t)
	s3 := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(s3.Close)
	cluster := uniqueCluster(t)
	nodes := startPeers(t, 3, cluster, map[string]string{
		"PLACEMENT_DRIVER":   "nomad",
		"NOMAD_ADDR":         nomad.addr,
		"SANDBOX_AGENT_PATH": agentBin,
		"MINIO_ENDPOINT":     strings.TrimPrefix(s3.URL, "http://"),
		"MINIO_ACCESS_KEY":   "e2e",
		"MINIO_SECRET_KEY":   "e2e-secret",
		"MINIO_BUCKET":       "cs-e2e",
		"POOL_MIN_SIZE":      "1",
		"POOL_MAX_SIZE":      "4",
		"SANDBOX_CPU_COUNT":  "0.25",
	})
	prefix := "cs-" + cluster + "-"
	leader := leaderOf(t, nodes)
	alice := leader.login(t, "alice", "user")

	var s sessionView
	alice.do("POST", "/api/v1/sessions", map[string]any{}, 201, &s)
	alice.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": s.SandboxID, "path": "/workspace/notes/keep.txt", "content": "kept across control nodes"}, 200, nil)
	var before sandboxView
	alice.do("GET", "/api/v1/sandbox/"+s.SandboxID, nil, 200, &before)
	certBefore := checkAgentTLS(t, nomad, prefix+s.SandboxID, before.ContainerID, nodes...)
	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/pause", nil, 200, &s)
	eventually(t, "the paused sandbox's job stopped", time.Minute, func() bool {
		return !slices.Contains(nomad.jobs(prefix), prefix+s.SandboxID)
	})

	leader.kill()
	var rest []*node
	for _, nd := range nodes {
		if nd != leader {
			rest = append(rest, nd)
		}
	}
	next := leaderOf(t, rest)
	if next == leader {
		t.Fatal("the killed node is still leader")
	}
	bob := rest[0].login(t, "alice", "user") // same user, another node
	start := time.Now()
	bob.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 200, &s)
	var r execResult
	bob.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": []string{"cat", "/workspace/notes/keep.txt"}}, 200, &r)
	if r.Stdout != "kept across control nodes" {
		t.Fatalf("after resume on another control node: %+v", r)
	}
	t.Logf("resume on node %s after leader %s was killed → first exec: %s", next.id, leader.id, time.Since(start).Round(time.Millisecond))
	// The node that resumed it recorded https pinned to the new
	// allocation's own certificate; the exec above reached it through
	// rest[0] with the placement as Raft replicated it.
	var after sandboxView
	bob.do("GET", "/api/v1/sandbox/"+s.SandboxID, nil, 200, &after)
	if checkAgentTLS(t, nomad, prefix+s.SandboxID, after.ContainerID, rest...) == certBefore {
		t.Errorf("the resumed allocation serves the paused one's certificate; want a new key")
	}
	bob.do("DELETE", "/api/v1/sessions/"+s.SessionID, nil, 200, nil)
	eventually(t, "job purged after delete", time.Minute, func() bool {
		return !slices.Contains(nomad.jobs(prefix), prefix+s.SandboxID)
	})
}
