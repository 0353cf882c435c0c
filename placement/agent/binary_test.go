package agent

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sandboxUID = 1000

// buildAgent builds cmd/sandbox-agent the way the Docker driver ships it.
func buildAgent(t *testing.T, out string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/sandbox-agent")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
}

// TestBinary builds the agent, checks that it is static, and runs it as a
// separate process (as the sandbox user when the test runs as root, and as a
// child subreaper, the nearest thing to PID 1 outside a container).
func TestBinary(t *testing.T) {
	dir, err := os.MkdirTemp("", "sab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "agent")
	buildAgent(t, bin)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("sandbox-agent has an ELF interpreter: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("sandbox-agent links %v", libs)
	}
	f.Close()

	workdir := filepath.Join(dir, "ws")
	if err := os.Mkdir(workdir, 0o755); err != nil {
		t.Fatal(err)
	}
	asSandboxUser := os.Getuid() == 0
	if asSandboxUser {
		for _, p := range []string{dir, workdir} {
			if err := os.Chown(p, sandboxUID, sandboxUID); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "-listen", "unix://"+sock, "-workdir", workdir, "-subreaper", "-log-level", "debug")
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SANDBOX_AGENT_SECRET=not-for-children"}
	cmd.Stderr = &testLogWriter{t: t}
	if asSandboxUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID}}
	}
	exited := startUntilCleanup(t, cmd)

	c := NewClient("unix://"+sock, "not-for-children")
	defer c.Close()
	ctx := ctxT(t)
	deadline := time.Now().Add(15 * time.Second)
	var h *Health
	for {
		if h, err = c.Health(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy within 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h.PID != cmd.Process.Pid {
		t.Fatalf("health pid %d, want %d", h.PID, cmd.Process.Pid)
	}

	wantUID := strconv.Itoa(os.Getuid())
	if asSandboxUser {
		wantUID = strconv.Itoa(sandboxUID)
	}
	tests := []struct {
		name       string
		req        ExecRequest
		wantExit   int
		wantStdout string
	}{
		{"echo", ExecRequest{Argv: []string{"echo", "hi"}}, 0, "hi\n"},
		{"exit status through the reaper", ExecRequest{Shell: "exit 3"}, 3, ""},
		{"runs as the agent's user", ExecRequest{Argv: []string{"id", "-u"}}, 0, wantUID + "\n"},
		{"secret not passed on", ExecRequest{Shell: `echo "[$SANDBOX_AGENT_SECRET]"`}, 0, "[]\n"},
		{"python", ExecRequest{Code: "print(6*7)", Language: "python"}, 0, "42\n"},
		{"python forked by the zygote as the agent's user", ExecRequest{Code: "import os; print(os.getppid() != " + strconv.Itoa(cmd.Process.Pid) + ", os.getuid())", Language: "python"}, 0, "True " + wantUID + "\n"},
		{"python without the secret", ExecRequest{Code: "import os; print(os.environ.get('SANDBOX_AGENT_SECRET'))", Language: "python"}, 0, "None\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Exec(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.wantExit || res.Stdout != tt.wantStdout {
				t.Fatalf("exit %d stdout %q stderr %q; want %d %q", res.ExitCode, res.Stdout, res.Stderr, tt.wantExit, tt.wantStdout)
			}
		})
	}

	t.Run("orphans are reaped", func(t *testing.T) {
		// The subshell exits at once; its sleep is orphaned to the agent,
		// killed with the group, and must not stay a zombie. The warm
		// python server is the one child the agent keeps.
		res, err := c.Exec(ctx, ExecRequest{Shell: "(sleep 300 &); echo started"})
		if err != nil || res.Stdout != "started\n" {
			t.Fatalf("exec: %+v %v", res, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids := children(t, cmd.Process.Pid)
			if len(kids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent still has children %v", kids)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	if asSandboxUser {
		t.Run("writes outside the workdir are forbidden", func(t *testing.T) {
			_, err := c.WriteFile(ctx, "/etc/sandbox-evil", strings.NewReader("x"), 0o644)
			wantAgentError(t, err, 403)
		})
	}

	t.Run("SIGTERM stops the agent and its execs", func(t *testing.T) {
		pid := startSleeper(t, context.Background(), c, 300*time.Second)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			if err != nil {
				t.Fatalf("agent exit: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("agent did not exit after SIGTERM")
		}
		waitGone(t, pid)
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket left behind: %v", err)
		}
	})
}

// children lists the live or zombie children of pid but the python zygote.
func children(t *testing.T, pid int) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, kid := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + kid + "/cmdline")
			if !strings.Contains(string(cmdline), zygoteScript) {
				out = append(out, kid)
			}
		}
	}
	return out
}

// testLogWriter sends the agent's logs to the test log.
type testLogWriter struct{ t *testing.T }

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startSleeper starts a background exec that sleeps for d and returns its
// pid once the agent has started it.
func startSleeper(t *testing.T, ctx context.Context, c *Client, d time.Duration) int {
	t.Helper()
	started := make(chan int, 1)
	go func() {
		shell := "echo $$; exec sleep " + strconv.Itoa(int(d.Seconds()))
		_, _ = c.ExecStream(ctx, ExecRequest{Shell: shell, Timeout: 2 * d}, func(ev Event) error {
			if pid, err := strconv.Atoi(strings.TrimSpace(ev.Data)); err == nil {
				started <- pid
			}
			return nil
		})
	}()
	select {
	case pid := <-started:
		return pid
	case <-time.After(15 * time.Second):
		t.Fatal("background exec did not start")
	}
	return 0
}
