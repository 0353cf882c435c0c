package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

type execResult struct {
	ExitCode   int    `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	DurationMs int64  `json:"duration_ms"`
	TimedOut   bool   `json:"timed_out"`
}

type sandboxView struct {
	SandboxID   string `json:"sandbox_id"`
	ContainerID string `json:"container_id"`
	Status      string `json:"status"`
	IP          string `json:"ip"`
}

type sessionView struct {
	SessionID string  `json:"session_id"`
	Status    string  `json:"status"`
	SandboxID string  `json:"sandbox_id"`
	Image     string  `json:"image"`
	CPUCount  float64 `json:"cpu_count"`
	MemoryMB  int64   `json:"memory_mb"`
}

// TestGuideFlow walks the user guide's curl examples, in order, against a
// real sandboxd with real containers.
func TestGuideFlow(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})

	// curl http://localhost:8080/health
	var health map[string]any
	resp, err := http.Get(n.api + "/health")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["service"] != "gateway" || health["status"] != "ok" {
		t.Fatalf("health %v, want service gateway status ok", health)
	}

	alice := n.login(t, "alice", "user")

	// Sessions: create, list, pause, resume, delete.
	var s sessionView
	alice.do("POST", "/api/v1/sessions", map[string]any{"image": "python:3.11-slim", "cpu_count": 2, "memory_mb": 2048}, 201, &s)
	if s.SessionID == "" || s.Status != "active" || s.SandboxID == "" || s.CPUCount != 2 || s.MemoryMB != 2048 {
		t.Fatalf("created session %+v", s)
	}
	var list struct {
		Sessions []sessionView `json:"sessions"`
	}
	alice.do("GET", "/api/v1/sessions", nil, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].SessionID != s.SessionID {
		t.Fatalf("list sessions %+v, want only %s", list.Sessions, s.SessionID)
	}
	var r execResult
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "code": `print("Hello!")`, "language": "python", "timeout": 30}, 200, &r)
	if r.Stdout != "Hello!\n" || r.ExitCode != 0 || r.TimedOut {
		t.Fatalf("execute code in session sandbox: %+v", r)
	}
	// The session's limits are applied to its sandbox: the cgroup limit
	// holds the session's memory_mb beside the tmpfs disks, whose pages the
	// kernel charges to it (placement/DESIGN.md, "Abuse"), so what is left
	// for processes once the disks are full is exactly memory_mb.
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": "l=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max); " +
		"for k in $(df -k --output=size /workspace /tmp /dev/shm | tail -n +2); do l=$((l - k * 1024)); done; echo $l"}, 200, &r)
	if strings.TrimSpace(r.Stdout) != fmt.Sprint(2048<<20) {
		t.Fatalf("session sandbox memory limit less its tmpfs disks %q (stderr %q), want %d", r.Stdout, r.Stderr, 2048<<20)
	}
	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/pause", nil, 200, &s)
	if s.Status != "paused" {
		t.Fatalf("paused session status %q", s.Status)
	}
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": []string{"true"}}, 409, nil)
	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 200, &s)
	if s.Status != "active" {
		t.Fatalf("resumed session status %q", s.Status)
	}
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": []string{"echo", "back"}}, 200, &r)
	if r.Stdout != "back\n" {
		t.Fatalf("execute after resume: %+v", r)
	}
	alice.do("DELETE", "/api/v1/sessions/"+s.SessionID, nil, 200, &s)
	if s.Status != "deleted" {
		t.Fatalf("deleted session status %q", s.Status)
	}
	alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 409, nil)

	// Sandboxes: acquire, execute, files, release.
	var sb sandboxView
	alice.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	if sb.SandboxID == "" || sb.ContainerID == "" || sb.Status != "active" {
		t.Fatalf("acquired %+v", sb)
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Running}} {{.HostConfig.NetworkMode}} {{.Config.User}}", sb.ContainerID).Output()
	if err != nil || strings.TrimSpace(string(out)) != "true none 1000:1000" {
		t.Fatalf("docker inspect %s: %q %v; want a running, network-less, non-root container", sb.ContainerID, out, err)
	}
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"ls", "-la", "/workspace"}}, 200, &r)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "total") {
		t.Fatalf("ls -la /workspace: %+v", r)
	}

	alice.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": sb.SandboxID, "path": "/workspace/test.py", "content": `print("test")`}, 200, nil)
	var files struct {
		Files []struct {
			Name string `json:"name"`
			Path string `json:"path"`
			Size int64  `json:"size"`
			Type string `json:"type"`
		} `json:"files"`
	}
	alice.do("GET", "/api/v1/files?sandbox_id="+sb.SandboxID+"&path=/workspace", nil, 200, &files)
	if len(files.Files) != 1 || files.Files[0].Name != "test.py" || files.Files[0].Size != int64(len(`print("test")`)) || files.Files[0].Type != "file" {
		t.Fatalf("list files: %+v", files.Files)
	}
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"python3", "/workspace/test.py"}}, 200, &r)
	if r.Stdout != "test\n" {
		t.Fatalf("run written file: %+v", r)
	}
	alice.do("DELETE", "/api/v1/files?sandbox_id="+sb.SandboxID+"&path=/workspace/test.py", nil, 200, nil)
	alice.do("GET", "/api/v1/files?sandbox_id="+sb.SandboxID+"&path=/workspace", nil, 200, &files)
	if len(files.Files) != 0 {
		t.Fatalf("file still listed after delete: %+v", files.Files)
	}

	// Another user cannot see or touch alice's sandbox.
	bob := n.login(t, "bob", "user")
	bob.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"true"}}, 404, nil)
	bob.do("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": sb.SandboxID}, 404, nil)

	var stats map[string]any
	alice.do("GET", "/api/v1/sandbox/stats", nil, 200, &stats)
	if stats["active"] == nil || stats["idle"] == nil || stats["total"] == nil {
		t.Fatalf("stats %v lack active/idle/total", stats)
	}
	// The guide's troubleshooting command: the operator listener, no token.
	resp, err = http.Get(n.ops + "/api/v1/sandbox/stats")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ops stats: %v %v", resp, err)
	}
	resp.Body.Close()

	alice.do("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": sb.SandboxID}, 200, nil)
	eventually(t, "released container removed", 30*time.Second, func() bool {
		return exec.Command("docker", "inspect", sb.ContainerID).Run() != nil
	})
	alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"true"}}, 404, nil)
}

// TestExecTimeoutLeavesNothingBehind runs a command that starts a background
// sleep and outlives its timeout: the whole process tree must be gone.
func TestExecTimeoutLeavesNothingBehind(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "tim", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	var r execResult
	start := time.Now()
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": "sleep 300 & sleep 300", "timeout": 1}, 200, &r)
	if !r.TimedOut {
		t.Fatalf("command outliving its timeout: %+v, want timed_out", r)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("timed-out execute took %v", took)
	}
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"sh", "-c", "ps -eo comm= 2>/dev/null || ls /proc | grep -E '^[0-9]+$' | while read p; do cat /proc/$p/comm 2>/dev/null; done"}}, 200, &r)
	if strings.Contains(r.Stdout, "sleep") {
		t.Fatalf("a sleep survived the timeout; processes:\n%s", r.Stdout)
	}
}

// TestCrashLeavesNoOrphans kills sandboxd with SIGKILL while it holds sandboxes
// and a half-made container, restarts it, and checks that live sandboxes are
// adopted (still usable) and everything else is removed.
func TestCrashLeavesNoOrphans(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	c := n.login(t, "crash", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	c.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": sb.SandboxID, "path": "/workspace/keep.txt", "content": "kept"}, 200, nil)

	n.kill()
	// A container the dead node was creating when it died: labelled for the
	// cluster, unknown to the state.
	orphan := "cs-" + cluster + "-0000000000dead00" // the name a create in progress would have used
	if out, err := exec.Command("docker", "create", "--name", orphan, "--label", "cloud-sandbox.cluster="+cluster,
		"--label", "cloud-sandbox.sandbox=0000000000dead00", "--label", "cloud-sandbox.managed=true",
		"--network", "none", "python:3.11-slim", "sleep", "1").CombinedOutput(); err != nil {
		t.Fatalf("create orphan: %v %s", err, out)
	}
	n.start()

	var r execResult
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"cat", "/workspace/keep.txt"}}, 200, &r)
	if r.Stdout != "kept" {
		t.Fatalf("adopted sandbox lost its file: %+v", r)
	}
	eventually(t, "orphan removed and containers matching state", 30*time.Second, func() bool {
		got := containers(t, cluster)
		var stats map[string]any
		c.do("GET", "/api/v1/sandbox/stats", nil, 200, &stats)
		total, _ := stats["total"].(float64)
		for _, id := range got {
			if id == "0000000000dead00" {
				return false
			}
		}
		return len(got) == int(total)
	})
	ids := containers(t, cluster)
	sort.Strings(ids)
	found := false
	for _, id := range ids {
		found = found || id == sb.SandboxID
	}
	if !found {
		t.Fatalf("acquired sandbox %s not among containers %v after restart", sb.SandboxID, ids)
	}
}
