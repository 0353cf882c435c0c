package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Issue 11: a sandbox survives its own abuse. Each test abuses one sandbox,
// then checks that the same sandbox, its agent and a neighbour still work.
// The sizes make the abuse exceed the memory limit the user asked for, so
// the tests fail if tmpfs pages or a greedy process can take the agent down.

// abuseResources is small enough that every abuse below crosses a limit:
// the disk is larger than the memory, as users ask for.
var abuseResources = fsm.Resources{MemoryMB: 128, DiskMB: 256, CPUCount: 0.5}

// stillWorks fails the test unless s answers an exec, its agent reports
// healthy and its container still runs.
func stillWorks(t *testing.T, d *Driver, s *sandbox, what string) {
	t.Helper()
	if res := s.sh(t, "echo alive"); res.ExitCode != 0 || res.Stdout != "alive\n" {
		t.Errorf("%s: exec afterwards = %+v, want alive", what, res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.Health(ctx); err != nil {
		t.Errorf("%s: agent health afterwards: %v", what, err)
	}
	if st := containerState(t, d, s.id); !st.Running || st.OOMKilled {
		t.Errorf("%s: container afterwards: running %t, oom killed %t, exit %d", what, st.Running, st.OOMKilled, st.ExitCode)
	}
}

// TestAbuseDiskFull: filling /workspace, /tmp and /dev/shm to their sizes
// answers ENOSPC; nothing is OOM-killed, and the files stay readable.
func TestAbuseDiskFull(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	neighbour := newSandbox(t, d, placement.Spec{Resources: abuseResources})

	tests := []struct{ name, path string }{
		{"workspace", "/workspace/fill"},
		{"tmp", "/tmp/fill"},
		{"shm", "/dev/shm/fill"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.exec(t, agent.ExecRequest{Shell: "dd if=/dev/zero of=" + tt.path + " bs=1M", Timeout: time.Minute})
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, "No space left on device") {
				t.Fatalf("dd until %s is full: exit %d, stderr %q; want No space left on device", tt.path, res.ExitCode, res.Stderr)
			}
			t.Logf("%s full: %s", tt.path, lastLine(res.Stderr))
			stillWorks(t, d, s, tt.name+" full")
		})
	}
	// Everything full at once is the worst case for the memory limit.
	// Read back whole: not ls -l, whose statx(AT_NO_AUTOMOUNT) gVisor's
	// runsc 0.0~20221219 answers with EINVAL on every file.
	if res := s.sh(t, "for f in /workspace/fill /tmp/fill /dev/shm/fill; do wc -c < $f; done"); res.ExitCode != 0 ||
		strings.Fields(res.Stdout)[0] != "268435456" || len(strings.Fields(res.Stdout)) != 3 {
		t.Errorf("the filled files: %+v, want all three readable, the workspace's 268435456 bytes", res)
	}
	stillWorks(t, d, s, "all full")
	stillWorks(t, d, neighbour, "neighbour")
	if res := s.sh(t, "rm /workspace/fill /tmp/fill /dev/shm/fill && echo x > /workspace/after && cat /workspace/after"); res.Stdout != "x\n" {
		t.Errorf("write after freeing space: %+v", res)
	}
}

// memoryHog grows by 16 MiB at a time and touches every page, the way real
// programs run out of memory (not one impossible allocation).
const memoryHog = `
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
`

// TestAbuseMemoryBomb: the process that exhausts memory is killed, not the
// agent; also with a full disk, when the tmpfs pages leave the least room.
func TestAbuseMemoryBomb(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	tests := []struct {
		name  string
		setup string
		req   agent.ExecRequest
	}{
		{"python warm", "", agent.ExecRequest{Language: "python", Code: memoryHog}},
		{"python cold", "", agent.ExecRequest{Argv: []string{"python3", "-u", "-c", memoryHog}}},
		{"shell child", "", agent.ExecRequest{Shell: "python3 -c '" + memoryHog + "'; echo survived $?"}},
		{"with a full disk", "dd if=/dev/zero of=/workspace/fill bs=1M 2>/dev/null; true", agent.ExecRequest{Language: "python", Code: memoryHog}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != "" {
				s.sh(t, tt.setup)
				defer s.sh(t, "rm -f /workspace/fill")
			}
			tt.req.Timeout = time.Minute
			res := s.exec(t, tt.req)
			if res.TimedOut || (res.ExitCode == 0 && !strings.Contains(res.Stdout, "survived 137")) {
				t.Fatalf("memory hog: %+v; want it killed", res)
			}
			t.Logf("memory hog: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, lastLine(res.Stderr))
			stillWorks(t, d, s, tt.name)
		})
	}
}

// slowHog grows by 4 MiB at a time, reporting its size, slowly enough
// that the agent's memory guard, not the cgroup limit, stops it.
const slowHog = `
import sys, time
chunks = []
while True:
    chunks.append(bytearray(4 << 20))
    print(len(chunks) * 4, flush=True)
    time.sleep(0.02)
`

// TestAbuseMemoryLimitAsSet: the container's limit leaves room for the
// disks, yet a process is stopped near the memory the user asked for, not
// at that limit: it never gets the disk's room as memory.
func TestAbuseMemoryLimitAsSet(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	res := s.exec(t, agent.ExecRequest{Language: "python", Code: slowHog, Timeout: time.Minute})
	reached, _ := strconv.Atoi(lastLine(res.Stdout))
	t.Logf("slow hog: exit %d, reached %d MiB of a %d MiB memory limit (cgroup limit %d MiB)", res.ExitCode, reached, abuseResources.MemoryMB, d.memoryLimitMB(abuseResources))
	if res.ExitCode != 137 || res.TimedOut {
		t.Fatalf("slow hog: exit %d, timed out %t; want killed (137)", res.ExitCode, res.TimedOut)
	}
	// Half the disk is far more than what the guard's polling lets through
	// at 200 MiB/s, and far less than the cgroup limit would allow.
	if max := abuseResources.MemoryMB + abuseResources.DiskMB/2; int64(reached) >= max {
		t.Errorf("the hog reached %d MiB, want it stopped below %d MiB (memory %d MiB)", reached, max, abuseResources.MemoryMB)
	}
	stillWorks(t, d, s, "slow hog")
}

// TestAbuseForkBomb: after a fork bomb that fills the pids limit and is
// stopped by the exec timeout, the agent serves execs again.
func TestAbuseForkBomb(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	neighbour := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	tests := []struct {
		name string
		req  agent.ExecRequest
	}{
		{"shell", agent.ExecRequest{Shell: "b() { b | b & }; b; while :; do :; done", Timeout: 5 * time.Second, MaxOutputBytes: 4096}},
		{"python", agent.ExecRequest{Language: "python", Code: forkBomb, Timeout: 5 * time.Second, MaxOutputBytes: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.exec(t, tt.req)
			if !res.TimedOut {
				t.Errorf("fork bomb: %+v; want timed out", res)
			}
			stillWorks(t, d, s, "after the fork bomb")
			stillWorks(t, d, neighbour, "neighbour")
			// The agent's own threads count too (it keeps a reserve).
			if n := pids(t, d, s.p.ContainerID); n > d.cfg.PidsLimit/4 {
				t.Errorf("%d pids left after the bomb, want only the agent's", n)
			}
		})
	}
}

// TestAbuseOutputFlood: output far beyond the cap is cut at the cap, the
// agent's memory does not follow it, and the sandbox keeps answering.
//
// The output the agent holds for an exec is memory used for the user and
// counts toward the user's memory: the largest cap (64 MiB a stream) needs a
// sandbox with more memory than abuseResources, or the guard kills the
// flooding command (never the agent).
func TestAbuseOutputFlood(t *testing.T) {
	d := newDriver(t, nil)
	res := abuseResources
	res.MemoryMB = 512
	s := newSandbox(t, d, placement.Spec{Resources: res})
	tests := []struct {
		name   string
		req    agent.ExecRequest
		stream bool
	}{
		{"yes", agent.ExecRequest{Shell: "yes | head -c 200000000", MaxOutputBytes: 1 << 20}, false},
		{"zeros to stderr", agent.ExecRequest{Shell: "head -c 200000000 /dev/zero >&2", MaxOutputBytes: 1 << 20}, false},
		{"default cap", agent.ExecRequest{Shell: "yes | head -c 200000000"}, false},
		{"largest cap", agent.ExecRequest{Shell: "yes | head -c 200000000", MaxOutputBytes: 64 << 20}, false},
		// A NUL is six bytes of JSON: the answer is escaped as it is written.
		{"NULs on both streams at the largest cap", agent.ExecRequest{Shell: "head -c 100000000 /dev/zero; head -c 100000000 /dev/zero >&2", MaxOutputBytes: 64 << 20}, false},
		{"streamed", agent.ExecRequest{Shell: "yes | head -c 200000000", MaxOutputBytes: 1 << 20}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Timeout = 2 * time.Minute
			var res *agent.ExecResult
			if tt.stream {
				res = streamExec(t, s, tt.req)
			} else {
				res = s.exec(t, tt.req)
			}
			out, truncated := res.Stdout, res.StdoutTruncated
			if strings.Contains(tt.req.Shell, ">&2") {
				out, truncated = res.Stderr, res.StderrTruncated
			}
			limit := tt.req.MaxOutputBytes
			if limit == 0 {
				limit = 1 << 20 // the agent's default cap
			}
			if int64(len(out)) > limit || !truncated || res.ExitCode != 0 {
				t.Errorf("flood: exit %d, %d bytes kept, truncated %t; want exit 0, at most %d bytes, truncated", res.ExitCode, len(out), truncated, limit)
			}
			stillWorks(t, d, s, tt.name)
			t.Logf("agent peak memory: %s", strings.Join(strings.Fields(s.sh(t, "grep VmHWM /proc/1/status").Stdout), " "))
		})
	}
}

// TestAbuseBusyLoop: processes spinning on every CPU the sandbox has do not
// stop its agent answering, nor a neighbour.
func TestAbuseBusyLoop(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	neighbour := newSandbox(t, d, placement.Spec{Resources: abuseResources})
	var wg sync.WaitGroup
	wg.Add(1)
	var spin *agent.ExecResult
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		spin, err = s.client.Exec(ctx, agent.ExecRequest{Shell: "for i in 1 2 3 4; do (while :; do :; done) & done; wait", Timeout: 10 * time.Second})
		if err != nil {
			t.Errorf("busy loop: %v", err)
		}
	}()
	eventually(t, 30*time.Second, "the loops run", func() error {
		if n := pids(t, d, s.p.ContainerID); n < 5 {
			return fmt.Errorf("%d pids", n)
		}
		return nil
	})
	stillWorks(t, d, s, "during the busy loop")
	stillWorks(t, d, neighbour, "neighbour during the busy loop")
	wg.Wait()
	if spin != nil && !spin.TimedOut {
		t.Errorf("busy loop: %+v; want timed out", spin)
	}
	stillWorks(t, d, s, "after the busy loop")
}

// streamExec runs req through the streaming endpoint and returns its result.
func streamExec(t *testing.T, s *sandbox, req agent.ExecRequest) *agent.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.client.ExecStream(ctx, req, func(agent.Event) error { return nil })
	if err != nil {
		t.Fatalf("stream exec: %v", err)
	}
	return res
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
