package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forkedFromZygote is python that prints whether its parent is not this
// test process, i.e. whether it was forked by the zygote.
const forkedFromZygote = "import os; print(os.getppid() != %d)"

// TestZygoteMatchesCold runs the same requests through the warm fork server
// and through a cold "python3 -c" and wants the same result, field by field.
func TestZygoteMatchesCold(t *testing.T) {
	warm := startAgent(t, ServerConfig{})
	cold := startAgent(t, ServerConfig{DisablePythonZygote: true, Workdir: warm.workdir})
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(warm.workdir, "helper_mod.py"), []byte("VALUE = 'from cwd'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	py := func(code string) ExecRequest { return ExecRequest{Language: "python", Code: code} }
	tests := []struct {
		name string
		req  ExecRequest
	}{
		{"print", py("print(1)")},
		{"exception traceback", py("def f():\n    1/0\nprint('before')\nf()")},
		{"chained exception", py("try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('v') from e")},
		{"syntax error", py("print(")},
		{"sys.exit code", py("import sys; print('x'); sys.exit(3)")},
		{"sys.exit message", py("import sys; sys.exit('bye now')")},
		{"sys.exit None", py("raise SystemExit")},
		{"sys.exit 256 wraps", py("import sys; sys.exit(256)")},
		{"sys.exit -1", py("import sys; sys.exit(-1)")},
		{"os._exit", py("import os, sys; sys.stdout.write('lost? '); os._exit(7)")},
		{"KeyboardInterrupt", py("raise KeyboardInterrupt")},
		{"killed by signal", py("import os; print('a', flush=True); os.kill(os.getpid(), 9)")},
		{"excepthook override", py("import sys\nsys.excepthook = lambda t, v, tb: print('hooked', t.__name__, file=sys.stderr)\nraise OSError('x')")},
		{"stdin", ExecRequest{Language: "python", Code: "import sys; d = sys.stdin.read(); print(d.upper(), sys.stdin.seekable(), sys.stdin.isatty())", Stdin: []byte("abc\ndef")}},
		{"no stdin", py("import sys; print(repr(sys.stdin.read()), sys.stdin.seekable())")},
		{"env replaced", ExecRequest{Language: "python", Code: "import os; print(sorted(os.environ.items()))", Env: map[string]string{"FOO": "bar"}}},
		{"env order", py("import os; print(list(os.environ))")},
		{"cwd default", py("import os; print(os.getcwd())")},
		{"cwd", ExecRequest{Language: "python", Code: "import os; print(os.getcwd())", Cwd: other}},
		{"import from cwd", py("import helper_mod; print(helper_mod.VALUE)")},
		{"main module", py("import sys, __main__\nprint(__name__, sorted(globals()), __doc__, __package__, __spec__, __loader__)\nprint(sys.modules['__main__'] is __main__, __main__.__dict__ is globals(), __annotations__)")},
		{"argv", py("import sys; print(sys.argv, sys.orig_argv, sys.executable)")},
		{"sys.path and flags", py("import sys; print(sys.path, sys.flags, sys.warnoptions)")},
		{"stdio setup", py("import sys\nfor s in (sys.stdin, sys.stdout, sys.stderr):\n    print(s.name, s.mode, s.encoding, s.errors, s.line_buffering, s.write_through, s.buffer.raw.name if hasattr(s.buffer, 'raw') else s.buffer.name, repr(s.newlines))\nprint(sys.stdout is sys.__stdout__, sys.stdin is sys.__stdin__)")},
		{"stream order", py("import sys\nfor i in range(5):\n    print('out', i)\n    print('err', i, file=sys.stderr)")},
		{"process group", py("import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getsid(os.getppid()))")},
		{"signal handlers", py("import signal\nprint([str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM, signal.SIGXFSZ, signal.SIGHUP)])\nprint(signal.pthread_sigmask(signal.SIG_BLOCK, []))")},
		{"atexit and threads finish", py("import atexit, threading, time\natexit.register(lambda: print('atexit ran'))\nthreading.Thread(target=lambda: (time.sleep(0.05), print('thread done'))).start()\nprint('main done')")},
		{"subprocess", py("import subprocess; print(subprocess.run(['sh', '-c', 'echo child $FOO; pwd'], capture_output=True, text=True).stdout)")},
		{"unicode", py("print('héllo ✓ 🐍'); import sys; print(sys.getfilesystemencoding())")},
		{"warnings", py("import warnings; warnings.warn('careful')")},
		{"output capped", ExecRequest{Language: "python", Code: "print('y' * 5000)", MaxOutputBytes: 100}},
		{"timeout kills", ExecRequest{Language: "python", Code: "import time; print('start', flush=True); time.sleep(60)", Timeout: 300 * time.Millisecond}},
		{"argv form", ExecRequest{Argv: []string{"python3", "-c", "import sys; print(sys.orig_argv, sys.executable); 1/0"}}},
		{"argv form with args", ExecRequest{Argv: []string{"python3", "-c", "import sys; print(sys.argv)", "a", "b"}}},
		{"PYTHON env runs cold", ExecRequest{Language: "python", Code: "import sys; print(sys.flags.optimize, sys.dont_write_bytecode)", Env: map[string]string{"PYTHONOPTIMIZE": "1", "PYTHONDONTWRITEBYTECODE": "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := cold.client.Exec(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := warm.client.Exec(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.ExitCode != want.ExitCode || got.Stdout != want.Stdout || got.Stderr != want.Stderr ||
				got.TimedOut != want.TimedOut || got.StdoutTruncated != want.StdoutTruncated || got.StderrTruncated != want.StderrTruncated {
				t.Fatalf("zygote and cold differ\nzygote: exit %d timed_out %v truncated %v/%v\nstdout %q\nstderr %q\ncold:   exit %d timed_out %v truncated %v/%v\nstdout %q\nstderr %q",
					got.ExitCode, got.TimedOut, got.StdoutTruncated, got.StderrTruncated, got.Stdout, got.Stderr,
					want.ExitCode, want.TimedOut, want.StdoutTruncated, want.StderrTruncated, want.Stdout, want.Stderr)
			}
		})
	}
	// The cases above would pass trivially if the warm agent ran cold too.
	res, err := warm.client.Exec(ctxT(t), py(fmt.Sprintf(forkedFromZygote, os.Getpid())))
	if err != nil || res.Stdout != "True\n" {
		t.Fatalf("warm agent did not fork from the zygote: %+v %v", res, err)
	}
	res, err = cold.client.Exec(ctxT(t), py(fmt.Sprintf(forkedFromZygote, os.Getpid())))
	if err != nil || res.Stdout != "False\n" {
		t.Fatalf("cold agent used a zygote: %+v %v", res, err)
	}
}

// TestZygoteIsolation: what one exec leaves in memory is not seen by the
// next, and a timeout kills what the child started in its group.
func TestZygoteIsolation(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	for i, code := range []string{
		"import os, sys; os.leak = 1; sys.modules['leak'] = 1; globals()['g'] = 1; print('set')",
		"import os, sys; print(hasattr(os, 'leak'), 'leak' in sys.modules, 'g' in globals())",
		// Only stdio (and listdir's own fd): no agent socket, no zygote socketpair.
		"import os; print(sorted(os.listdir('/proc/self/fd')))",
	} {
		res, err := a.client.Exec(ctxT(t), ExecRequest{Language: "python", Code: code})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"set\n", "False False False\n", "['0', '1', '2', '3']\n"}[i]; res.Stdout != want || res.ExitCode != 0 {
			t.Fatalf("exec %d: %+v, want stdout %q", i, res, want)
		}
	}
	res, err := a.client.Exec(ctxT(t), ExecRequest{
		Language: "python",
		Code:     "import subprocess, time; p = subprocess.Popen(['sleep', '300']); print(p.pid, flush=True); time.sleep(300)",
		Timeout:  500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != 137 {
		t.Fatalf("timeout: %+v", res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(res.Stdout))
	if err != nil {
		t.Fatalf("stdout %q: want the background pid", res.Stdout)
	}
	waitGone(t, pid)
}

// TestZygoteStream: streamed python output arrives while the code runs
// (the gate file is created only after the first line was received).
func TestZygoteStream(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	gate := filepath.Join(a.workdir, "go-on")
	var stdout string
	res, err := a.client.ExecStream(ctxT(t), ExecRequest{
		Language: "python",
		Code:     fmt.Sprintf("import os, time\nprint('one')\nwhile not os.path.exists(%q):\n    time.sleep(0.01)\nprint('two')\nprint(os.getppid() != %d)", gate, os.Getpid()),
		Timeout:  30 * time.Second,
	}, func(ev Event) error {
		stdout += ev.Data
		if ev.Type == EventStdout && strings.Contains(ev.Data, "one") {
			return os.WriteFile(gate, nil, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Stdout != "one\ntwo\nTrue\n" || stdout != res.Stdout {
		t.Fatalf("result %+v, streamed %q", res, stdout)
	}
}

// TestZygoteFallback: when the server cannot start, or dies, python execs
// still run (cold, or from a restarted server) and give the right answer.
func TestZygoteFallback(t *testing.T) {
	tests := []struct {
		name       string
		script     string // replaces the server script; "" keeps it
		killBefore bool   // kill the running server before the exec
		wantForked bool
	}{
		{"server exits at start", "import sys; sys.exit(3)", false, false},
		{"server never answers", "import time; time.sleep(3600)", false, false},
		{"server killed between execs is restarted", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewServer(ServerConfig{Workdir: t.TempDir()})
			srv.zygote.timeout = 2 * time.Second
			if tt.script != "" {
				srv.zygote.script = tt.script
			}
			a := serveAgent(t, srv)
			code := "import sys; print(sys.argv); " + fmt.Sprintf(forkedFromZygote, os.Getpid())[len("import os; "):]
			code = "import os; " + code
			want := fmt.Sprintf("['-c']\n%v\n", map[bool]string{true: "True", false: "False"}[tt.wantForked])
			if tt.killBefore {
				res, err := a.client.Exec(ctxT(t), ExecRequest{Language: "python", Code: "print(1)"})
				if err != nil || res.Stdout != "1\n" {
					t.Fatalf("first exec: %+v %v", res, err)
				}
				srv.zygote.mu.Lock()
				zpid := srv.zygote.cur.pid
				srv.zygote.mu.Unlock()
				if err := syscall.Kill(zpid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				// The restart is lazy: wait until the agent saw the death.
				deadline := time.Now().Add(10 * time.Second)
				for {
					srv.zygote.mu.Lock()
					cur := srv.zygote.cur
					srv.zygote.mu.Unlock()
					if cur == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("agent did not notice the zygote's death")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			res, err := a.client.Exec(ctxT(t), ExecRequest{Language: "python", Code: code})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != 0 || res.Stdout != want {
				t.Fatalf("got %+v, want stdout %q", res, want)
			}
		})
	}
}

// TestZygoteSiteChange: packages installed after the zygote started (here a
// user site directory that did not exist) are importable at once, as they
// are for a cold python3: the stale server is replaced.
func TestZygoteSiteChange(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	forked := fmt.Sprintf(forkedFromZygote, os.Getpid())
	exec := func(code string) string {
		t.Helper()
		res, err := a.client.Exec(ctxT(t), ExecRequest{Language: "python", Code: code})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 {
			t.Fatalf("exec %q: %+v", code, res)
		}
		return res.Stdout
	}
	if got := exec(forked); got != "True\n" {
		t.Fatalf("first exec not forked: %q", got)
	}
	site := strings.TrimSpace(exec("import site; print(site.getusersitepackages())"))
	if !strings.HasPrefix(site, a.workdir) {
		t.Fatalf("user site %q is not under HOME %q", site, a.workdir)
	}
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "usermod.py"), []byte("NAME = 'usermod'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Run from another directory so the import can only come from site.
	for i := range 2 {
		res, err := a.client.Exec(ctxT(t), ExecRequest{Language: "python", Code: "import usermod; print(usermod.NAME)", Cwd: t.TempDir()})
		if err != nil || res.Stdout != "usermod\n" {
			t.Fatalf("import %d after install: %+v %v", i, res, err)
		}
	}
	if got := exec(forked); got != "True\n" {
		t.Fatalf("exec after the change not forked from a new zygote: %q", got)
	}
}
