package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// collectOutput reads a process's output from offset until its exit event
// (follow) or the end of what is held, and returns the text, the events and
// the exit event.
func collectOutput(t *testing.T, c *Client, pid int, offset int64, follow bool) (string, []ProcessEvent, *ProcessInfo) {
	t.Helper()
	var out strings.Builder
	var evs []ProcessEvent
	var exit *ProcessInfo
	err := c.ProcessOutput(ctxT(t), pid, offset, follow, func(ev ProcessEvent) error {
		evs = append(evs, ev)
		switch ev.Type {
		case EventStdout, EventStderr, EventPTY:
			out.WriteString(ev.Data)
		case EventExit:
			exit = ev.Process
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), evs, exit
}

// readUntil follows a process's output until it contains want.
func readUntil(t *testing.T, c *Client, pid int, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	var out strings.Builder
	errFound := errors.New("found")
	err := c.ProcessOutput(ctx, pid, 0, true, func(ev ProcessEvent) error {
		out.WriteString(ev.Data)
		if strings.Contains(out.String(), want) {
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) {
		t.Fatalf("output %q never contained %q: %v", out.String(), want, err)
	}
	return out.String()
}

func TestBackgroundProcess(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	tests := []struct {
		name       string
		req        ProcessStartRequest
		act        func(t *testing.T, c *Client, pid int)
		wantOutput string // stdout
		wantExit   int
		wantSignal string
	}{
		{"output and exit code", ProcessStartRequest{Shell: "echo out; echo err >&2; exit 3"}, nil, "out\n", 3, ""},
		{"stdin to cat comes back", ProcessStartRequest{Argv: []string{"cat"}, Stdin: true}, func(t *testing.T, c *Client, pid int) {
			if err := c.SendStdin(ctxT(t), pid, StdinRequest{Data: "hello "}); err != nil {
				t.Fatal(err)
			}
			readUntil(t, c, pid, "hello ")
			if err := c.SendStdin(ctxT(t), pid, StdinRequest{Data: "world", Close: true}); err != nil {
				t.Fatal(err)
			}
		}, "hello world", 0, ""},
		{"signal ends it and is reported", ProcessStartRequest{Shell: "echo ready; sleep 300"}, func(t *testing.T, c *Client, pid int) {
			readUntil(t, c, pid, "ready")
			if err := c.SignalProcess(ctxT(t), pid, "TERM"); err != nil {
				t.Fatal(err)
			}
		}, "ready\n", 143, "SIGTERM"},
		{"timeout kills the group", ProcessStartRequest{Shell: "sleep 300", Timeout: 200 * time.Millisecond}, nil, "", 137, "SIGKILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := a.client.StartProcess(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if info.PID <= 0 || !info.Running {
				t.Fatalf("start answered %+v, want a running process with a pid", info)
			}
			if tt.act != nil {
				tt.act(t, a.client, info.PID)
			}
			done, err := a.client.WaitProcess(ctxT(t), info.PID, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if done.Running || done.ExitCode == nil || *done.ExitCode != tt.wantExit || done.Signal != tt.wantSignal {
				t.Fatalf("wait: %+v (exit %v), want ended with exit %d signal %q", done, done.ExitCode, tt.wantExit, tt.wantSignal)
			}
			// stdout and stderr are two pipes: their order is not kept.
			_, evs, exit := collectOutput(t, a.client, info.PID, 0, true)
			var stdout string
			for _, ev := range evs {
				if ev.Type == EventStdout {
					stdout += ev.Data
				}
			}
			if stdout != tt.wantOutput || exit == nil || *exit.ExitCode != tt.wantExit {
				t.Fatalf("stdout %q exit %+v, want %q and exit %d", stdout, exit, tt.wantOutput, tt.wantExit)
			}
		})
	}
}

// TestBackgroundOutputReconnect: a client that dropped its stream reads on
// from the last offset it saw and gets exactly the rest; an offset that
// fell out of the ring is reported as a gap.
func TestBackgroundOutputReconnect(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	info, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"cat"}, Stdin: true, Tag: "echoer"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(s string) {
		if err := a.client.SendStdin(ctxT(t), info.PID, StdinRequest{Data: s}); err != nil {
			t.Fatal(err)
		}
	}
	send("first\n")
	readUntil(t, a.client, info.PID, "first\n")
	// The client goes away (its context ends mid-stream) after the first line.
	ctx, cancel := context.WithCancel(ctxT(t))
	var seen int64
	_ = a.client.ProcessOutput(ctx, info.PID, 0, true, func(ev ProcessEvent) error {
		seen = ev.End
		cancel()
		return nil
	})
	send("second\n")
	if err := a.client.SendStdin(ctxT(t), info.PID, StdinRequest{Close: true}); err != nil {
		t.Fatal(err)
	}
	rest, _, exit := collectOutput(t, a.client, info.PID, seen, true)
	if seen != int64(len("first\n")) || rest != "second\n" || exit == nil || *exit.ExitCode != 0 {
		t.Fatalf("after reconnecting at %d: %q exit %+v; want offset 6, \"second\\n\", exit 0", seen, rest, exit)
	}
	list, err := a.client.ListProcesses(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Tag != "echoer" || list[0].PID != info.PID || list[0].Running || list[0].OutputEnd != 13 {
		t.Fatalf("list %+v, want the ended echoer with 13 bytes of output", list)
	}

	// Twice the ring: the first half is gone, and the stream says so.
	flood, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Shell: "head -c 2097152 /dev/zero | tr '\\0' x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.WaitProcess(ctxT(t), flood.PID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	out, evs, _ := collectOutput(t, a.client, flood.PID, 0, false)
	if len(evs) == 0 || evs[0].Type != EventGap || evs[0].Offset != 0 || evs[0].End != 1<<20 || len(out) != ProcessRingBytes {
		t.Fatalf("reading a flooded process from 0: first event %+v, %d bytes; want a gap [0, 1 MiB) then the last 1 MiB", evs[0], len(out))
	}
}

// TestPTY: python3 in a terminal answers typed input, and a resize changes
// what stty reports.
func TestPTY(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	// The same prompt for root (tests) and the sandbox user.
	prompt := map[string]string{"PS1": "sh$ "}
	tests := []struct {
		name  string
		req   ProcessStartRequest
		input []string // sent in order, each after the previous want was seen
		wants []string
	}{
		{"python3 answers typed input", ProcessStartRequest{Argv: []string{"python3", "-q", "-i"}, PTY: &PTYSize{Rows: 24, Cols: 80}},
			[]string{"print(6 * 7)\n", "exit()\n"}, []string{">>> ", "42"}},
		{"shell sees its size", ProcessStartRequest{Argv: []string{"sh"}, Env: prompt, PTY: &PTYSize{Rows: 30, Cols: 100}},
			[]string{"stty size\n", "exit\n"}, []string{"sh$ ", "30 100"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := a.client.StartProcess(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !info.PTY {
				t.Fatalf("started %+v, want a pty process", info)
			}
			for i, in := range tt.input {
				readUntil(t, a.client, info.PID, tt.wants[i])
				if err := a.client.SendStdin(ctxT(t), info.PID, StdinRequest{Data: in}); err != nil {
					t.Fatal(err)
				}
			}
			out, _, exit := collectOutput(t, a.client, info.PID, 0, true)
			if exit == nil || *exit.ExitCode != 0 || !strings.Contains(out, tt.wants[len(tt.wants)-1]) {
				t.Fatalf("output %q exit %+v; want %q and exit 0", out, exit, tt.wants[len(tt.wants)-1])
			}
		})
	}

	t.Run("resize changes stty size", func(t *testing.T) {
		info, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"sh"}, Env: prompt, PTY: &PTYSize{Rows: 24, Cols: 80}})
		if err != nil {
			t.Fatal(err)
		}
		readUntil(t, a.client, info.PID, "sh$ ")
		if err := a.client.ResizeProcess(ctxT(t), info.PID, PTYSize{Rows: 50, Cols: 132}); err != nil {
			t.Fatal(err)
		}
		if err := a.client.SendStdin(ctxT(t), info.PID, StdinRequest{Data: "stty size; exit\n"}); err != nil {
			t.Fatal(err)
		}
		out, _, _ := collectOutput(t, a.client, info.PID, 0, true)
		if !strings.Contains(out, "50 132") {
			t.Fatalf("after resize to 50x132 stty printed %q", out)
		}
	})
}

func TestBackgroundProcessRefused(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	piped, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"sleep", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.client.SignalProcess(context.Background(), piped.PID, "KILL") })
	tests := []struct {
		name    string
		call    func() error
		status  int
		message string
	}{
		{"missing binary", func() error {
			_, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"no-such-binary-xyz"}})
			return err
		}, 422, "no-such-binary-xyz"},
		{"pty too large", func() error {
			_, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"sh"}, PTY: &PTYSize{Rows: 5000, Cols: 80}})
			return err
		}, 422, "rows and cols"},
		{"unknown pid", func() error { _, err := a.client.Process(ctxT(t), 999999); return err }, 404, "no background process"},
		{"stdin not asked for", func() error {
			return a.client.SendStdin(ctxT(t), piped.PID, StdinRequest{Data: "x"})
		}, 409, "without stdin"},
		{"stdin chunk too large", func() error {
			return a.client.SendStdin(ctxT(t), piped.PID, StdinRequest{Data: strings.Repeat("x", MaxStdinChunk+1)})
		}, 413, "chunks"},
		{"resize without a pty", func() error {
			return a.client.ResizeProcess(ctxT(t), piped.PID, PTYSize{Rows: 10, Cols: 10})
		}, 409, "no terminal"},
		{"unknown signal", func() error { return a.client.SignalProcess(ctxT(t), piped.PID, "SIGNOPE") }, 422, "unknown signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ae := wantAgentError(t, tt.call(), tt.status)
			if !strings.Contains(ae.Message, tt.message) {
				t.Fatalf("message %q does not contain %q", ae.Message, tt.message)
			}
		})
	}
}

// TestBackgroundProcessLimit: past MaxProcesses running, a start is refused
// with a message that says why; an ended process makes room.
func TestBackgroundProcessLimit(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = a.client.SignalProcess(context.Background(), pid, "KILL")
		}
	})
	// Starts in parallel, a few more than the bound: exactly the bound win.
	var mu sync.Mutex
	var refused []error
	var wg sync.WaitGroup
	for range MaxProcesses + 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"sleep", "300"}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused = append(refused, err)
				return
			}
			pids = append(pids, info.PID)
		}()
	}
	wg.Wait()
	if len(pids) != MaxProcesses || len(refused) != 8 {
		t.Fatalf("%d started, %d refused; want %d and 8", len(pids), len(refused), MaxProcesses)
	}
	ae := wantAgentError(t, refused[0], 409)
	if !strings.Contains(ae.Message, "64 background processes") {
		t.Fatalf("message %q does not name the limit", ae.Message)
	}
	if err := a.client.SignalProcess(ctxT(t), pids[0], "KILL"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.WaitProcess(ctxT(t), pids[0], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"true"}}); err != nil {
		t.Fatalf("start after one ended: %v", err)
	}
}
