package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containmentDirs is the file system an agent under test sees: a workspace
// and a temp dir it may write, an outside dir that its uid may write (0777,
// like Nomad's /alloc/data) but Landlock must refuse, and the socket's own
// directory, apart from the others.
type containmentDirs struct {
	ws, tmp, out, sock string
}

const outsideOriginal = "original\n"

// newContainmentDirs makes the directories, owned by uid, and two files
// outside that the agent's processes will try to change.
func newContainmentDirs(t testing.TB, uid int) containmentDirs {
	t.Helper()
	base, err := os.MkdirTemp("", "sal") // short: the socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	d := containmentDirs{
		ws:   filepath.Join(base, "ws"),
		tmp:  filepath.Join(base, "tmp"),
		out:  filepath.Join(base, "out"),
		sock: filepath.Join(base, "s", "agent.sock"),
	}
	for _, p := range []string{d.ws, d.tmp, d.out, filepath.Dir(d.sock)} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d.out, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"existing", "existing2"} {
		p := filepath.Join(d.out, name)
		if err := os.WriteFile(p, []byte(outsideOriginal), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// startAgentBinary runs the built agent as uid on d with extra flags, its
// logs to stderr, waits for its health and kills it when the test ends.
func startAgentBinary(t testing.TB, bin string, uid int, d containmentDirs, stderr io.Writer, flags ...string) (*Client, *Health) {
	t.Helper()
	args := append([]string{"-listen", "unix://" + d.sock, "-workdir", d.ws, "-subreaper"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.Stderr = stderr
	if uid != os.Getuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	exited := startUntilCleanup(t, cmd)
	c := NewClient("unix://"+d.sock, "")
	t.Cleanup(c.Close)
	deadline := time.Now().Add(15 * time.Second)
	for {
		h, err := c.Health(ctxT(t))
		if err == nil {
			if h.PID != cmd.Process.Pid {
				t.Fatalf("health pid %d, want %d (the re-executed agent keeps its pid)", h.PID, cmd.Process.Pid)
			}
			return c, h
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited before it was healthy: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy within 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLandlockBinary runs the real agent binary (the test process itself is
// never restricted) with and without containment, and checks what its
// processes and its file API may write.
func TestLandlockBinary(t *testing.T) {
	abi, err := landlockABI()
	if err != nil {
		t.Skipf("this kernel offers no Landlock (%v): write containment cannot be tested here", err)
	}
	dir, err := os.MkdirTemp("", "salb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agent")
	buildAgent(t, bin)
	uid := os.Getuid()
	if uid == 0 {
		uid = sandboxUID // as in a sandbox; root would pass DAC checks anyway
	}

	for _, run := range []struct {
		mode      string
		contained bool
	}{
		{"auto", true},
		{"on", true},
		{"off", false}, // the control: the outside dir really is writable
	} {
		t.Run("landlock="+run.mode, func(t *testing.T) {
			d := newContainmentDirs(t, uid)
			c, h := startAgentBinary(t, bin, uid, d, &testLogWriter{t: t}, "-landlock", run.mode, "-write-paths", d.ws+","+d.tmp)
			wantABI := 0
			if run.contained {
				wantABI = abi
			}
			if h.WriteContainment != run.contained || h.LandlockABI != wantABI {
				t.Fatalf("health write_containment %t landlock_abi %d, want %t %d", h.WriteContainment, h.LandlockABI, run.contained, wantABI)
			}
			checkExecWrites(t, c, d, run.contained)
			checkFileAPIWrites(t, c, d, run.contained)
			checkOneDomain(t, c, d)
			if run.contained {
				checkOutsideUntouched(t, d)
			}
		})
	}
}

// checkExecWrites runs writes as execs: inside the allowed paths they work;
// outside they fail with "Permission denied" when contained.
func checkExecWrites(t *testing.T, c *Client, d containmentDirs, contained bool) {
	pyOut := `import os; open(os.environ["OUT"] + "/py", "w").write("x")`
	tests := []struct {
		name    string
		req     ExecRequest
		outside bool // refused when contained
	}{
		{"write in the workspace", ExecRequest{Shell: `echo x > "$WS/f" && cat "$WS/f"`}, false},
		{"write in the temp dir", ExecRequest{Shell: `echo x > "$TMPD/f"`}, false},
		{"mkdir, rename and remove in the workspace", ExecRequest{Shell: `mkdir -p "$WS/a/b" && echo y > "$WS/a/b/f" && mv "$WS/a/b/f" "$WS/g" && ln -s g "$WS/l" && mkfifo "$WS/p" && rm -r "$WS/a" "$WS/p" && cat "$WS/l"`}, false},
		{"write to /dev/null", ExecRequest{Shell: `echo x > /dev/null && echo x >/dev/stderr`}, false},
		{"write to a proc tunable", ExecRequest{Shell: `echo 1000 > /proc/self/oom_score_adj`}, false},
		{"python writes in the workspace", ExecRequest{Language: "python", Code: `import os; open(os.environ["WS"] + "/py", "w").write("x")`}, false},
		{"no handoff variable reaches an exec", ExecRequest{Shell: `! env | grep -E '^SANDBOX_AGENT_'`}, false},

		{"create a file outside", ExecRequest{Shell: `echo x > "$OUT/f"`}, true},
		{"write 1 MiB outside", ExecRequest{Shell: `head -c 1048576 /dev/zero > "$OUT/big"`}, true},
		{"append to a file outside", ExecRequest{Shell: `echo x >> "$OUT/existing"`}, true},
		{"truncate a file outside", ExecRequest{Shell: `truncate -s 0 "$OUT/existing"`}, true},
		{"mkdir outside", ExecRequest{Shell: `mkdir "$OUT/d"`}, true},
		{"mkfifo outside", ExecRequest{Shell: `mkfifo "$OUT/fifo"`}, true},
		{"move a file out of the workspace", ExecRequest{Shell: `echo x > "$WS/m" && mv "$WS/m" "$OUT/m"`}, true},
		{"write through a workspace symlink to outside", ExecRequest{Shell: `ln -sfn "$OUT" "$WS/link" && echo x > "$WS/link/f2"`}, true},
		{"remove a file outside", ExecRequest{Shell: `rm "$OUT/existing"`}, true},
		{"python (warm fork server) writes outside", ExecRequest{Language: "python", Code: pyOut}, true},
		{"python started cold writes outside", ExecRequest{Argv: []string{"python3", "-c", pyOut}, Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			env := map[string]string{"WS": d.ws, "OUT": d.out, "TMPD": d.tmp}
			for k, v := range req.Env {
				env[k] = v
			}
			req.Env = env
			res, err := c.Exec(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.outside && contained {
				if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Permission denied") {
					t.Fatalf("exit %d stderr %q: want a failure with Permission denied", res.ExitCode, res.Stderr)
				}
				return
			}
			if res.ExitCode != 0 {
				t.Fatalf("exit %d stdout %q stderr %q, want 0", res.ExitCode, res.Stdout, res.Stderr)
			}
		})
	}
}

// checkFileAPIWrites uses the agent's own file API: it writes in the
// workspace, and outside it answers 403 when contained.
func checkFileAPIWrites(t *testing.T, c *Client, d containmentDirs, contained bool) {
	tarOf := func() *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		_ = tw.WriteHeader(&tar.Header{Name: "sub/f", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("x\n"))
		_ = tw.Close()
		return &b
	}
	ops := []struct {
		name string
		do   func(ctx context.Context, root string) error
	}{
		{"write file", func(ctx context.Context, root string) error {
			_, err := c.WriteFile(ctx, filepath.Join(root, "api"), strings.NewReader("x"), 0o644)
			return err
		}},
		{"mkdir", func(ctx context.Context, root string) error { return c.Mkdir(ctx, filepath.Join(root, "apidir/a")) }},
		{"upload tar", func(ctx context.Context, root string) error {
			_, err := c.Upload(ctx, filepath.Join(root, "up"), tarOf())
			return err
		}},
		{"extract tar into the existing dir", func(ctx context.Context, root string) error {
			_, err := c.Upload(ctx, root, tarOf())
			return err
		}},
	}
	for _, op := range ops {
		t.Run("file API: "+op.name+" in the workspace", func(t *testing.T) {
			if err := op.do(ctxT(t), d.ws); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("file API: "+op.name+" outside", func(t *testing.T) {
			err := op.do(ctxT(t), d.out)
			if !contained {
				if err != nil {
					t.Fatalf("uncontained: %v", err)
				}
				return
			}
			wantAgentError(t, err, 403)
		})
	}
	t.Run("file API: delete in the workspace", func(t *testing.T) {
		if err := c.Delete(ctxT(t), filepath.Join(d.ws, "api"), false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("file API: delete outside", func(t *testing.T) {
		err := c.Delete(ctxT(t), filepath.Join(d.out, "existing2"), false)
		if !contained {
			if err != nil {
				t.Fatalf("uncontained: %v", err)
			}
			return
		}
		wantAgentError(t, err, 403)
	})
}

// checkOneDomain: processes started by different execs (so from different
// agent threads) can inspect each other through /proc, as without Landlock.
// Per-thread domains would refuse it at random; see landlock_reexec.go.
func checkOneDomain(t *testing.T, c *Client, d containmentDirs) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	pid := startSleeper(t, ctx, c, 60*time.Second)
	for i := range 16 {
		res, err := c.Exec(ctxT(t), ExecRequest{Shell: "readlink /proc/" + strconv.Itoa(pid) + "/cwd"})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != d.ws {
			t.Fatalf("try %d: readlink /proc/%d/cwd from another exec: exit %d stdout %q stderr %q, want %s",
				i, pid, res.ExitCode, res.Stdout, res.Stderr, d.ws)
		}
	}
}

// checkOutsideUntouched: nothing was created, changed or removed outside.
func checkOutsideUntouched(t *testing.T, d containmentDirs) {
	entries, err := os.ReadDir(d.out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "existing,existing2" {
		t.Errorf("outside dir holds %v, want only the two files the test made", names)
	}
	for _, name := range []string{"existing", "existing2"} {
		b, err := os.ReadFile(filepath.Join(d.out, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if string(b) != outsideOriginal {
			t.Errorf("%s outside now holds %q, want %q", name, b, outsideOriginal)
		}
	}
}

// TestLandlockFlagRefused: a bad -landlock value stops the agent at once.
func TestLandlockFlagRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "salf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "agent")
	buildAgent(t, bin)
	out, err := exec.Command(bin, "-listen", "unix://"+filepath.Join(dir, "a.sock"), "-landlock", "maybe").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-landlock") {
		t.Fatalf("agent -landlock maybe: %v, output %q; want exit 2 naming -landlock", err, out)
	}
}
