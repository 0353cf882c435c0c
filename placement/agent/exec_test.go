package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExec(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(a.workdir, "data.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bigCode := strings.Repeat("x = 1\n", 20000) + "print('big', x)"
	tests := []struct {
		name       string
		req        ExecRequest
		wantExit   int
		wantStdout string
		wantStderr string // substring
	}{
		{"argv", ExecRequest{Argv: []string{"echo", "hello", "world"}}, 0, "hello world\n", ""},
		{"argv absolute", ExecRequest{Argv: []string{"/bin/echo", "abs"}}, 0, "abs\n", ""},
		{"shell exit code", ExecRequest{Shell: "echo out; echo err >&2; exit 3"}, 3, "out\n", "err"},
		{"stdin", ExecRequest{Argv: []string{"cat"}, Stdin: []byte("from stdin")}, 0, "from stdin", ""},
		{"env over base", ExecRequest{Shell: `echo "$FOO $LANG"`, Env: map[string]string{"FOO": "bar"}}, 0, "bar C.UTF-8\n", ""},
		{"home is workdir", ExecRequest{Shell: `echo "$HOME"`}, 0, a.workdir + "\n", ""},
		{"cwd default", ExecRequest{Argv: []string{"pwd"}}, 0, a.workdir + "\n", ""},
		{"cwd", ExecRequest{Argv: []string{"pwd"}, Cwd: other}, 0, other + "\n", ""},
		{"missing binary", ExecRequest{Argv: []string{"no-such-binary-xyz"}}, 127, "", "no-such-binary-xyz: command not found"},
		{"missing absolute binary", ExecRequest{Argv: []string{"/no/such/bin"}}, 127, "", "/no/such/bin: command not found"},
		{"not executable", ExecRequest{Argv: []string{"./data.txt"}}, 126, "", "permission denied"},
		{"killed by signal", ExecRequest{Shell: "kill -9 $$"}, 137, "", ""},
		{"invalid utf-8 replaced", ExecRequest{Shell: `printf '\377ok'`}, 0, "\uFFFDok", ""},
		{"python", ExecRequest{Code: "import sys\nprint(1 + 1)\nsys.exit(4)", Language: "python"}, 4, "2\n", ""},
		{"python stdin", ExecRequest{Code: "import sys; print(sys.stdin.read().upper())", Language: "python", Stdin: []byte("abc")}, 0, "ABC\n", ""},
		{"python large program via file", ExecRequest{Code: bigCode, Language: "python"}, 0, "big 1\n", ""},
		{"bash", ExecRequest{Code: `echo "${BASH_VERSION:+is bash}"`, Language: "bash"}, 0, "is bash\n", ""},
		{"sh", ExecRequest{Code: "echo $((6 * 7))", Language: "sh"}, 0, "42\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.client.Exec(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.wantExit || res.Stdout != tt.wantStdout || !strings.Contains(res.Stderr, tt.wantStderr) {
				t.Fatalf("got exit %d stdout %q stderr %q; want exit %d stdout %q stderr containing %q",
					res.ExitCode, res.Stdout, res.Stderr, tt.wantExit, tt.wantStdout, tt.wantStderr)
			}
			if res.TimedOut || res.StdoutTruncated || res.StderrTruncated {
				t.Fatalf("unexpected flags: %+v", res)
			}
		})
	}
}

func TestExecRefused(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	noPython := startAgent(t, ServerConfig{Env: map[string]string{"PATH": t.TempDir()}})
	tests := []struct {
		name    string
		client  *Client
		req     ExecRequest
		status  int
		message string
	}{
		{"nothing to run", a.client, ExecRequest{}, 400, "exactly one"},
		{"argv and shell", a.client, ExecRequest{Argv: []string{"true"}, Shell: "true"}, 400, "exactly one"},
		{"language without code", a.client, ExecRequest{Shell: "true", Language: "python"}, 400, "language"},
		{"unknown language", a.client, ExecRequest{Code: "x", Language: "cobol"}, 422, `unknown language "cobol"`},
		{"interpreter missing", noPython.client, ExecRequest{Code: "print(1)", Language: "python"}, 422, "python3 is not installed"},
		{"relative cwd", a.client, ExecRequest{Argv: []string{"true"}, Cwd: "rel"}, 400, "not absolute"},
		{"missing cwd", a.client, ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, 400, "not a directory"},
		{"timeout too long", a.client, ExecRequest{Argv: []string{"true"}, Timeout: 2 * time.Hour}, 422, "timeout"},
		{"negative timeout", a.client, ExecRequest{Argv: []string{"true"}, Timeout: -time.Second}, 422, "timeout"},
		{"output cap too large", a.client, ExecRequest{Argv: []string{"true"}, MaxOutputBytes: 1 << 40}, 422, "max_output_bytes"},
		{"bad env name", a.client, ExecRequest{Argv: []string{"true"}, Env: map[string]string{"A=B": "c"}}, 400, "environment"},
		{"NUL in argv", a.client, ExecRequest{Argv: []string{"echo", "a\x00b"}}, 400, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Exec(ctxT(t), tt.req)
			ae := wantAgentError(t, err, tt.status)
			if !strings.Contains(ae.Message, tt.message) {
				t.Fatalf("message %q does not contain %q", ae.Message, tt.message)
			}
		})
	}
}

// TestExecKillsProcessGroup checks that nothing a command starts outlives
// it: neither on timeout nor after a normal exit.
func TestExecKillsProcessGroup(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	tests := []struct {
		name         string
		shell        string
		timeout      time.Duration
		wantTimedOut bool
		wantExit     int
	}{
		{"timeout", "sleep 300 & echo $!; sleep 300", 300 * time.Millisecond, true, 137},
		{"timeout with trapped TERM", "trap '' TERM; sleep 300 & echo $!; wait", 300 * time.Millisecond, true, 137},
		{"normal exit leaves a background child", "sleep 300 & echo $!", 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.client.Exec(ctxT(t), ExecRequest{Shell: tt.shell, Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if res.TimedOut != tt.wantTimedOut || res.ExitCode != tt.wantExit {
				t.Fatalf("timed_out %v exit %d, want %v %d (%+v)", res.TimedOut, res.ExitCode, tt.wantTimedOut, tt.wantExit, res)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(res.Stdout))
			if err != nil {
				t.Fatalf("stdout %q: want the background pid", res.Stdout)
			}
			waitGone(t, pid)
		})
	}
}

func TestExecOutputCapped(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	tests := []struct {
		name          string
		req           ExecRequest
		wantOut       int
		wantErr       int
		truncOut      bool
		truncErr      bool
		wantExit      int
		wantOutPrefix string
	}{
		{"default 1 MiB cap", ExecRequest{Shell: "head -c 3000000 /dev/zero | tr '\\0' a"}, 1 << 20, 0, true, false, 0, "aaaa"},
		{"request cap on stderr", ExecRequest{Shell: "head -c 100000 /dev/zero | tr '\\0' b >&2; echo done", MaxOutputBytes: 1000}, 5, 1000, false, true, 0, "done\n"},
		{"under the cap", ExecRequest{Shell: "head -c 5000 /dev/zero | tr '\\0' c"}, 5000, 0, false, false, 0, "ccc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.client.Exec(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Stdout) != tt.wantOut || len(res.Stderr) != tt.wantErr ||
				res.StdoutTruncated != tt.truncOut || res.StderrTruncated != tt.truncErr || res.ExitCode != tt.wantExit {
				t.Fatalf("stdout %d bytes (truncated %v), stderr %d (truncated %v), exit %d; want %d (%v), %d (%v), exit %d",
					len(res.Stdout), res.StdoutTruncated, len(res.Stderr), res.StderrTruncated, res.ExitCode,
					tt.wantOut, tt.truncOut, tt.wantErr, tt.truncErr, tt.wantExit)
			}
			if !strings.HasPrefix(res.Stdout, tt.wantOutPrefix) {
				t.Fatalf("stdout starts %q, want %q", res.Stdout[:min(len(res.Stdout), 10)], tt.wantOutPrefix)
			}
		})
	}
}

// TestExecStream proves output is streamed: the command waits for a file
// that the test creates only after it has received the first event, so the
// exec can finish only if that event arrived while the process was running.
func TestExecStream(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	gate := filepath.Join(a.workdir, "go-on")
	var events []Event
	res, err := a.client.ExecStream(ctxT(t), ExecRequest{
		Shell:   fmt.Sprintf(`echo one; echo warn >&2; while [ ! -e %s ]; do sleep 0.01; done; echo two`, gate),
		Timeout: 30 * time.Second,
	}, func(ev Event) error {
		events = append(events, ev)
		if ev.Type == EventStdout && strings.Contains(ev.Data, "one") {
			return os.WriteFile(gate, nil, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.TimedOut || res.ExitCode != 0 || res.Stdout != "one\ntwo\n" || res.Stderr != "warn\n" {
		t.Fatalf("result %+v", res)
	}
	var stdout, stderr string
	for _, ev := range events {
		switch ev.Type {
		case EventStdout:
			stdout += ev.Data
		case EventStderr:
			stderr += ev.Data
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if stdout != "one\ntwo\n" || stderr != "warn\n" {
		t.Fatalf("streamed stdout %q stderr %q", stdout, stderr)
	}
}

func TestExecStreamMissingBinary(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	var stderr string
	res, err := a.client.ExecStream(ctxT(t), ExecRequest{Argv: []string{"no-such-binary-xyz"}}, func(ev Event) error {
		stderr += ev.Data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 127 || !strings.Contains(stderr, "command not found") {
		t.Fatalf("result %+v, streamed stderr %q", res, stderr)
	}
	_, err = a.client.ExecStream(ctxT(t), ExecRequest{Code: "x", Language: "cobol"}, nil)
	wantAgentError(t, err, 422)
}

// TestExecStreamDisconnectKills: a client that goes away takes the process
// group with it.
func TestExecStreamDisconnectKills(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	errStop := errors.New("stop")
	var pid int
	_, err := a.client.ExecStream(ctxT(t), ExecRequest{Shell: "echo $$; sleep 300", Timeout: 10 * time.Minute}, func(ev Event) error {
		p, perr := strconv.Atoi(strings.TrimSpace(ev.Data))
		if perr != nil {
			return perr
		}
		pid = p
		return errStop
	})
	if !errors.Is(err, errStop) || pid == 0 {
		t.Fatalf("err = %v, pid %d", err, pid)
	}
	waitGone(t, pid)
}

// TestExecContextCancel: Exec honours its context and the process dies.
func TestExecContextCancel(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	pidFile := filepath.Join(a.workdir, "pid")
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := a.client.Exec(ctx, ExecRequest{Shell: "echo $$ > " + pidFile + "; sleep 300", Timeout: 10 * time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}
