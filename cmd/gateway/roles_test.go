package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuideServicesFormOneCluster starts the guide's three programs
// (scheduler, session-manager, gateway) as built binaries. Ports and
// directories are moved off their defaults so the test cannot collide with a
// running system; node ids stay the role names. The three must elect one
// leader and each serve the API.
func TestGuideServicesFormOneCluster(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("docker is required (the docker driver needs a daemon to start): %v", err)
		}
		t.Skip("no docker daemon")
	}
	dir := t.TempDir()
	roles := []string{"scheduler", "session-manager", "gateway"}
	bins := map[string]string{}
	for _, r := range roles {
		bins[r] = filepath.Join(dir, "bin", r)
		build := exec.Command("go", "build", "-o", bins[r], "../"+r)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", r, err, out)
		}
	}
	agent := filepath.Join(dir, "bin", "sandbox-agent")
	build := exec.Command("go", "build", "-o", agent, "../sandbox-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}

	api, raft := map[string]string{}, map[string]string{}
	var peers []string
	for _, r := range roles {
		api[r], raft[r] = freeAddr(t), freeAddr(t)
		peers = append(peers, r+"="+raft[r])
	}
	cluster := fmt.Sprintf("roles-%d", time.Now().UnixNano()%1e9)
	for _, r := range roles {
		cmd := exec.Command(bins[r])
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LISTEN_ADDR="+api[r], "OPS_ADDR=", "RAFT_ADDR="+raft[r],
			"PEERS="+strings.Join(peers, ","), "DATA_DIR="+filepath.Join(dir, r), "SANDBOX_STATE_DIR="+filepath.Join(dir, "sb"),
			"SANDBOX_AGENT_BIN="+agent, "CLUSTER_NAME="+cluster, "POOL_MIN_SIZE=0")
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s logs:\n%s", r, logs.String())
			}
		})
	}

	leaders := map[string]bool{}
	for _, r := range roles {
		h := waitHealth(t, "http://"+api[r])
		if h["node_id"] != r {
			t.Errorf("%s reports node_id %v", r, h["node_id"])
		}
		leaders[fmt.Sprint(h["leader"])] = true
	}
	if len(leaders) != 1 {
		t.Fatalf("the three services see different leaders: %v", leaders)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealth polls /health until the node knows a leader (30 s at most).
func waitHealth(t *testing.T, base string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var h map[string]any
		if resp, err := http.Get(base + "/health"); err == nil {
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h["leader"] != nil && h["leader"] != "" {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no leader after 30 s (last health %v)", base, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
