package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// TestExecInSandbox checks exec and files through the agent in a real
// hardened container: what an API user sees of a sandbox.
func TestExecInSandbox(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{})

	t.Run("timeout kills the whole tree", func(t *testing.T) {
		res := s.exec(t, agent.ExecRequest{Shell: "sleep 300 & echo $! > /tmp/bg.pid; wait", Timeout: time.Second})
		if !res.TimedOut || res.ExitCode == 0 {
			t.Fatalf("result %+v, want timed out with a non-zero exit", res)
		}
		eventually(t, 10*time.Second, "background sleep is gone", func() error {
			out := s.sh(t, `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && echo ${p#/proc/}; done; true`)
			if pids := strings.Fields(out.Stdout); len(pids) > 0 {
				return fmt.Errorf("sleep still running as pid %v", pids)
			}
			return nil
		})
	})

	t.Run("large output is capped", func(t *testing.T) {
		res := s.exec(t, agent.ExecRequest{Shell: "head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2", MaxOutputBytes: 65536})
		if len(res.Stdout) != 65536 || !res.StdoutTruncated || res.ExitCode != 0 {
			t.Errorf("stdout %d bytes, truncated %t, exit %d; want 65536, true, 0", len(res.Stdout), res.StdoutTruncated, res.ExitCode)
		}
		if res.Stderr != "done\n" || res.StderrTruncated {
			t.Errorf("stderr %q truncated %t, want done and not truncated", res.Stderr, res.StderrTruncated)
		}
	})

	t.Run("binary file round trip", func(t *testing.T) {
		data := make([]byte, 1<<20)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n, err := s.client.WriteFile(ctx, "/workspace/blob.bin", bytes.NewReader(data), 0o644)
		if err != nil || n != int64(len(data)) {
			t.Fatalf("WriteFile: %d, %v", n, err)
		}
		// The sandbox sees the same bytes...
		sum := sha256.Sum256(data)
		out := s.sh(t, "sha256sum /workspace/blob.bin")
		if got := strings.Fields(out.Stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256 inside = %q, want %x", out.Stdout, sum)
		}
		// ...and reading it back gives them again.
		rc, err := s.client.ReadFile(ctx, "/workspace/blob.bin")
		if err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		back, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("ReadFile: %d bytes (%v), equal %t; want the 1 MiB written", len(back), err, bytes.Equal(back, data))
		}
	})

	t.Run("python", func(t *testing.T) {
		res := s.exec(t, agent.ExecRequest{Language: "python", Code: "import os, sys\nprint(sys.version_info[:2], os.getcwd(), os.environ['HOME'])"})
		if res.ExitCode != 0 || res.Stdout != "(3, 11) /workspace /workspace\n" {
			t.Errorf("python: %+v", res)
		}
	})
}

// TestPauseResume: a paused sandbox's processes stop (a background loop
// writing ticks stops ticking), and resume lets them go on.
func TestPauseResume(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{})
	ctx := context.Background()
	// setsid: the loop outlives the exec that starts it (the agent kills the
	// exec's process group when it ends, so wait until the loop has left it).
	start := s.exec(t, agent.ExecRequest{Timeout: 10 * time.Second, Shell: "setsid sh -c 'while :; do date +%s.%N >> /workspace/ticks; sleep 0.02; done' </dev/null >/dev/null 2>&1 & " +
		"while [ ! -s /workspace/ticks ]; do sleep 0.01; done"})
	if start.ExitCode != 0 {
		t.Fatalf("start loop: %+v", start)
	}
	eventually(t, 10*time.Second, "loop ticks", func() error {
		if n := len(ticks(t, s)); n < 5 {
			return fmt.Errorf("%d ticks", n)
		}
		return nil
	})

	if err := d.Pause(ctx, s.id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	pausedAt := uptime(t)
	if err := d.Pause(ctx, s.id); err != nil {
		t.Errorf("second Pause: %v, want nil", err)
	}
	if inst := findInstance(t, d, s.id); inst == nil || !inst.Paused || !inst.Running {
		t.Errorf("List while paused: %+v, want running and paused", inst)
	}
	// The agent is frozen too: it cannot answer.
	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := s.client.Health(hctx); err == nil {
		t.Errorf("agent answered health while paused")
	}
	cancel()
	time.Sleep(time.Second) // the loop would write ~50 ticks in this time
	resumedAt := uptime(t)
	for i := 0; i < 2; i++ {
		// In place: the recorded endpoint stays valid, so no move is reported.
		if _, moved, err := d.Resume(ctx, s.id); err != nil || moved {
			t.Fatalf("Resume %d: moved %v, err %v; want in place, nil", i+1, moved, err)
		}
	}

	var after []float64
	eventually(t, 10*time.Second, "loop ticks after resume", func() error {
		all := ticks(t, s)
		after = after[:0]
		for _, v := range all {
			if v >= resumedAt {
				after = append(after, v)
			}
		}
		if len(after) < 5 {
			return fmt.Errorf("%d ticks after resume", len(after))
		}
		return nil
	})
	// Allow 10 ms either side for the clock reads around the pause.
	for _, v := range ticks(t, s) {
		if v > pausedAt+0.01 && v < resumedAt-0.01 {
			t.Errorf("tick at %.2f while paused (%.2f .. %.2f)", v, pausedAt, resumedAt)
		}
	}

	// A paused sandbox can be destroyed without resuming it first.
	if err := d.Pause(ctx, s.id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := d.Destroy(ctx, s.id, s.p); err != nil {
		t.Fatalf("Destroy while paused: %v", err)
	}
	if inst := findInstance(t, d, s.id); inst != nil {
		t.Errorf("List after Destroy of a paused sandbox: %+v", inst)
	}
}

// ticks reads the loop's uptime stamps.
func ticks(t *testing.T, s *sandbox) []float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := s.client.ReadFile(ctx, "/workspace/ticks")
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	var out []float64
	for _, f := range strings.Fields(string(b)) {
		if v, err := strconv.ParseFloat(f, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// uptime is the host's wall clock in seconds: the clock the loop's date
// reads under runc and under gVisor alike. (The sandbox's /proc/uptime is
// the host's under runc but the sandbox kernel's own under gVisor.)
func uptime(t *testing.T) float64 {
	t.Helper()
	return float64(time.Now().UnixNano()) / 1e9
}
