package docker

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// TestHardening checks, from inside a default sandbox, what hostile code
// would meet: who it is, what it may write, what network it has.
func TestHardening(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: fsm.Resources{DiskMB: 16}})

	t.Run("identity", func(t *testing.T) {
		res := s.sh(t, "id -u; id -g; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status")
		want := map[string]string{"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
			"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"}
		if GVisor(testRuntime) {
			// gVisor's /proc/self/status (runsc 0.0~20221219) has no CapAmb
			// or NoNewPrivs line: what it lists is checked, and
			// no-new-privileges is the container's (TestContainerSpec).
			delete(want, "CapAmb")
			delete(want, "NoNewPrivs")
		}
		lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
		if len(lines) < 2 || lines[0] != "1000" || lines[1] != "1000" {
			t.Fatalf("uid/gid = %q, want 1000 1000", lines)
		}
		for _, l := range lines[2:] {
			k, v, _ := strings.Cut(l, ":")
			if w, ok := want[k]; ok && strings.TrimSpace(v) != w {
				t.Errorf("%s = %s, want %s", k, strings.TrimSpace(v), w)
			}
			delete(want, k)
		}
		if len(want) != 0 {
			t.Errorf("missing from /proc/self/status: %v", want)
		}
	})

	t.Run("writes", func(t *testing.T) {
		tests := []struct {
			path string
			ok   bool
		}{
			{"/workspace/f", true},
			{"/tmp/f", true},
			{"/f", false},
			{"/etc/f", false},
			{"/usr/f", false},
			{"/usr/bin/python3", false},
			{"/var/f", false},
			{"/.sandbox/agent", false},
			{"/run/sandbox/f", false},
		}
		for _, tt := range tests {
			res := s.sh(t, "echo x > "+tt.path)
			if ok := res.ExitCode == 0; ok != tt.ok {
				t.Errorf("write %s: exit %d (%s), want success %t", tt.path, res.ExitCode, strings.TrimSpace(res.Stderr), tt.ok)
			}
		}
	})

	t.Run("no docker socket", func(t *testing.T) {
		res := s.sh(t, "for f in /var/run/docker.sock /run/docker.sock; do [ -e $f ] && echo $f; done; true")
		if res.Stdout != "" {
			t.Errorf("a Docker socket is visible: %q", res.Stdout)
		}
	})

	t.Run("workspace size", func(t *testing.T) {
		res := s.sh(t, "head -c 20000000 /dev/zero > /workspace/big")
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "No space left") {
			t.Errorf("20 MB into a 16 MB workspace: exit %d, stderr %q; want no space left", res.ExitCode, res.Stderr)
		}
		s.sh(t, "rm -f /workspace/big")
	})

	t.Run("loopback only", func(t *testing.T) {
		res := s.sh(t, "ls /sys/class/net; echo ---; tail -n +3 /proc/net/dev | cut -d: -f1")
		sysfs, procfs, _ := strings.Cut(res.Stdout, "---")
		// gVisor's sysfs lists no network devices at all, not even lo;
		// /proc/net/dev is its network stack's view, as under runc.
		if f := strings.Fields(sysfs); GVisor(testRuntime) && len(f) != 0 {
			t.Errorf("/sys/class/net under gVisor = %q, want none", f)
		} else if !GVisor(testRuntime) && (len(f) != 1 || f[0] != "lo") {
			t.Errorf("/sys/class/net = %q, want [lo]", f)
		}
		if f := strings.Fields(procfs); len(f) != 1 || f[0] != "lo" {
			t.Errorf("/proc/net/dev interfaces = %q, want [lo]", f)
		}
	})
}

// TestMemoryBomb: a process allocating far past the memory limit is killed,
// and the sandbox keeps answering.
func TestMemoryBomb(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: fsm.Resources{MemoryMB: 128}})
	res := s.exec(t, agent.ExecRequest{Argv: []string{"python3", "-c", "s = 'x' * (1 << 30); print(len(s))"}, Timeout: time.Minute})
	if res.ExitCode == 0 || strings.Contains(res.Stdout, "1073741824") {
		t.Fatalf("1 GiB in a 128 MiB sandbox: exit %d, stdout %q; want killed", res.ExitCode, res.Stdout)
	}
	t.Logf("memory bomb: exit %d, stderr %q", res.ExitCode, strings.TrimSpace(res.Stderr))
	if after := s.sh(t, "echo alive"); after.Stdout != "alive\n" {
		t.Errorf("after the bomb: %+v, want the sandbox to answer", after)
	}
	if st := containerState(t, d, s.id); !st.Running {
		t.Errorf("container state after the bomb: %+v, want running", st)
	}
}

// forkBomb forks without end in every process, retrying when fork fails,
// so only the pids limit and the exec timeout stop it.
const forkBomb = `
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
`

// TestForkBomb: a fork bomb stops at the pids limit; meanwhile the host and
// another sandbox keep working, and afterwards the bombed sandbox recovers.
func TestForkBomb(t *testing.T) {
	d := newDriver(t, nil)
	bombed := newSandbox(t, d, placement.Spec{})
	other := newSandbox(t, d, placement.Spec{})

	var wg sync.WaitGroup
	var bomb *agent.ExecResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		bomb, err = bombed.client.Exec(ctx, agent.ExecRequest{Language: "python", Code: forkBomb, Timeout: 8 * time.Second, MaxOutputBytes: 4096})
		if err != nil {
			t.Errorf("fork bomb exec: %v", err)
		}
	}()

	// Wait until the bomb fills the pids limit, then show the rest still works.
	eventually(t, 30*time.Second, "fork bomb reaches the pids limit", func() error {
		n := pids(t, d, bombed.p.ContainerID)
		if n < d.cfg.PidsLimit-8 {
			return fmt.Errorf("%d pids", n)
		}
		return nil
	})
	if res := other.sh(t, "echo other"); res.Stdout != "other\n" {
		t.Errorf("other sandbox during the bomb: %+v", res)
	}
	if out, err := exec.Command("/bin/sh", "-c", "echo host").Output(); err != nil || string(out) != "host\n" {
		t.Errorf("host fork+exec during the bomb: %q, %v", out, err)
	}
	if n := pids(t, d, bombed.p.ContainerID); n > d.cfg.PidsLimit {
		t.Errorf("bombed sandbox has %d pids, over the limit %d", n, d.cfg.PidsLimit)
	}
	wg.Wait()
	if bomb != nil && !bomb.TimedOut {
		t.Errorf("fork bomb result %+v, want timed out", bomb)
	}
	eventually(t, 30*time.Second, "bombed sandbox answers again", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := bombed.client.Exec(ctx, agent.ExecRequest{Shell: "echo back"})
		if err != nil {
			return err
		}
		if res.Stdout != "back\n" {
			return fmt.Errorf("exec: %+v", res)
		}
		return nil
	})
}

// pids is how many processes the container's cgroup holds.
func pids(t *testing.T, d *Driver, id string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.docker.ContainerStatsOneShot(ctx, id)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer st.Body.Close()
	var v container.StatsResponse
	if err := decodeJSON(st.Body, &v); err != nil {
		t.Fatalf("stats: %v", err)
	}
	return int64(v.PidsStats.Current)
}
