package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// These tests run background processes and terminals in real sandboxes
// (containers on the local Docker daemon) through a real sandboxd.

type procView struct {
	PID           int      `json:"pid"`
	Tag           string   `json:"tag"`
	Argv          []string `json:"argv"`
	PTY           bool     `json:"pty"`
	Running       bool     `json:"running"`
	ExitCode      *int     `json:"exit_code"`
	Signal        string   `json:"signal"`
	OutputEnd     int64    `json:"output_end"`
	SurvivesPause bool     `json:"survives_pause"`
}

type procEvent struct {
	Type    string    `json:"type"`
	Data    string    `json:"data"`
	Offset  int64     `json:"offset"`
	End     int64     `json:"end"`
	Process *procView `json:"process"`
}

// startProc starts a background process in sb.
func (c *client) startProc(sb string, body map[string]any) procView {
	c.t.Helper()
	body["sandbox_id"] = sb
	var p procView
	c.do("POST", "/api/v1/processes", body, 200, &p)
	if p.PID <= 0 || !p.Running {
		c.t.Fatalf("start %v: %+v, want a running process", body, p)
	}
	return p
}

func (c *client) procPath(pid int, suffix string) string {
	return fmt.Sprintf("/api/v1/processes/%d%s", pid, suffix)
}

// follow reads a process's output stream from offset until stop says
// enough (or the exit event, or 30 s), then drops the connection as a
// client that goes away would. It returns the text and the last end offset.
func (c *client) follow(sb string, pid int, offset int64, stop func(text string, ev procEvent) bool) (string, int64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s%s?sandbox_id=%s&offset=%d", c.base, c.procPath(pid, "/output"), sb, offset)
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("output stream: %v", err)
	}
	defer resp.Body.Close() // the drop
	if resp.StatusCode != 200 {
		c.t.Fatalf("output stream: status %d", resp.StatusCode)
	}
	var text strings.Builder
	end := offset
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev procEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			c.t.Fatalf("event %q: %v", sc.Text(), err)
		}
		text.WriteString(ev.Data)
		end = ev.End
		if ev.Type == "exit" || stop(text.String(), ev) {
			return text.String(), end
		}
	}
	c.t.Fatalf("output stream ended without the awaited text; got %q (err %v)", text.String(), sc.Err())
	return "", 0
}

func (c *client) until(want string) func(string, procEvent) bool {
	return func(text string, _ procEvent) bool { return strings.Contains(text, want) }
}

func (c *client) waitProc(sb string, pid int) procView {
	c.t.Helper()
	var p procView
	c.do("POST", c.procPath(pid, "/wait"), map[string]any{"sandbox_id": sb, "timeout": 30}, 200, &p)
	if p.Running || p.ExitCode == nil {
		c.t.Fatalf("process %d still running after a 30 s wait: %+v", pid, p)
	}
	return p
}

func TestProcessesInSandbox(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	c := n.login(t, "procs", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	id := sb.SandboxID

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a web server in the background answers another exec", func(t *testing.T) {
			c.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": id, "path": "/workspace/site/hello.txt", "content": "hello from the server"}, 200, nil)
			srv := c.startProc(id, map[string]any{"command": []string{"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"},
				"cwd": "/workspace/site", "tag": "web"})
			fetch := `import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000/hello.txt", timeout=5).read().decode())`
			var r execResult
			eventually(t, "the background server to answer", 20*time.Second, func() bool {
				c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": id, "code": fetch}, 200, &r)
				return r.ExitCode == 0
			})
			if r.Stdout != "hello from the server\n" {
				t.Fatalf("fetched %q", r.Stdout)
			}
			// The server logged the request to its stderr.
			if log, _ := c.follow(id, srv.PID, 0, c.until("GET /hello.txt")); !strings.Contains(log, "200") {
				t.Fatalf("server log %q does not show the 200", log)
			}
			c.do("POST", c.procPath(srv.PID, "/signal"), map[string]any{"sandbox_id": id, "signal": "SIGINT"}, 204, nil)
			c.waitProc(id, srv.PID)
		}},
		{"output reconnected from an offset after the client dropped", func(t *testing.T) {
			p := c.startProc(id, map[string]any{"command": "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"})
			first, end := c.follow(id, p.PID, 0, c.until("line1\n"))
			c.waitProc(id, p.PID) // lines 2-5 are written while nobody listens
			rest, _ := c.follow(id, p.PID, end, func(string, procEvent) bool { return false })
			if first+rest != "line1\nline2\nline3\nline4\nline5\n" {
				t.Fatalf("first %q (to offset %d) then %q: lost or repeated output", first, end, rest)
			}
		}},
		{"stdin to cat comes back", func(t *testing.T) {
			p := c.startProc(id, map[string]any{"command": []string{"cat"}, "stdin": true})
			c.do("POST", c.procPath(p.PID, "/stdin"), map[string]any{"sandbox_id": id, "data": "round trip\n", "close": true}, 204, nil)
			out, _ := c.follow(id, p.PID, 0, func(string, procEvent) bool { return false })
			if out != "round trip\n" || *c.waitProc(id, p.PID).ExitCode != 0 {
				t.Fatalf("cat gave back %q", out)
			}
		}},
		{"a signal ends a process and is reported", func(t *testing.T) {
			p := c.startProc(id, map[string]any{"command": []string{"sleep", "600"}})
			c.do("POST", c.procPath(p.PID, "/signal"), map[string]any{"sandbox_id": id, "signal": "SIGTERM"}, 204, nil)
			got := c.waitProc(id, p.PID)
			if *got.ExitCode != 143 || got.Signal != "SIGTERM" {
				t.Fatalf("after SIGTERM: %+v (exit %d)", got, *got.ExitCode)
			}
		}},
		{"python3 in a pty answers typed input", func(t *testing.T) {
			p := c.startProc(id, map[string]any{"command": []string{"python3", "-q", "-i"}, "pty": map[string]int{"rows": 24, "cols": 80}})
			_, end := c.follow(id, p.PID, 0, c.until(">>> "))
			c.do("POST", c.procPath(p.PID, "/stdin"), map[string]any{"sandbox_id": id, "data": "print(6 * 7)\n"}, 204, nil)
			if out, _ := c.follow(id, p.PID, end, c.until("42")); !strings.Contains(out, "42\r\n") {
				t.Fatalf("python in a pty answered %q", out)
			}
			c.do("POST", c.procPath(p.PID, "/stdin"), map[string]any{"sandbox_id": id, "data": "exit()\n"}, 204, nil)
			c.waitProc(id, p.PID)
		}},
		{"resize changes stty size", func(t *testing.T) {
			p := c.startProc(id, map[string]any{"command": []string{"sh"}, "env": map[string]string{"PS1": "sh$ "}, "pty": map[string]int{"rows": 24, "cols": 80}})
			_, end := c.follow(id, p.PID, 0, c.until("sh$ "))
			c.do("POST", c.procPath(p.PID, "/resize"), map[string]any{"sandbox_id": id, "rows": 40, "cols": 120}, 204, nil)
			c.do("POST", c.procPath(p.PID, "/stdin"), map[string]any{"sandbox_id": id, "data": "stty size\n"}, 204, nil)
			if out, _ := c.follow(id, p.PID, end, c.until("40 120")); !strings.Contains(out, "40 120") {
				t.Fatalf("stty size after resize: %q", out)
			}
			c.do("POST", c.procPath(p.PID, "/signal"), map[string]any{"sandbox_id": id, "signal": "KILL"}, 204, nil)
			c.waitProc(id, p.PID)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// TestProcessOutlivesSandboxdRestart: processes live in the sandbox's agent,
// so a control node that crashes and comes back finds them running with
// their output intact.
func TestProcessOutlivesSandboxdRestart(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	c := n.login(t, "survivor", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	p := c.startProc(sb.SandboxID, map[string]any{"command": "echo before; sleep 600", "tag": "survivor"})
	c.follow(sb.SandboxID, p.PID, 0, c.until("before"))

	n.kill()
	n.start()
	c = n.login(t, "survivor", "user")

	var list struct {
		Processes []procView `json:"processes"`
	}
	c.do("GET", "/api/v1/processes?sandbox_id="+sb.SandboxID, nil, 200, &list)
	if len(list.Processes) != 1 || list.Processes[0].PID != p.PID || !list.Processes[0].Running || list.Processes[0].Tag != "survivor" {
		t.Fatalf("after the restart the sandbox lists %+v, want survivor %d running", list.Processes, p.PID)
	}
	if out, _ := c.follow(sb.SandboxID, p.PID, 0, c.until("before")); out != "before\n" {
		t.Fatalf("output after the restart: %q", out)
	}
	c.do("POST", c.procPath(p.PID, "/signal"), map[string]any{"sandbox_id": sb.SandboxID, "signal": "KILL"}, 204, nil)
	if got := c.waitProc(sb.SandboxID, p.PID); *got.ExitCode != 137 {
		t.Fatalf("after SIGKILL: exit %d", *got.ExitCode)
	}
}

// TestProcessSurvivesDockerPause: on Docker a pause freezes the container,
// so a background process is there again after the resume, and the API
// says so.
func TestProcessSurvivesDockerPause(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	c := n.login(t, "pauser", "user")
	var s sessionView
	c.do("POST", "/api/v1/sessions", map[string]any{}, 201, &s)
	p := c.startProc(s.SandboxID, map[string]any{"command": []string{"sleep", "600"}})
	if !p.SurvivesPause {
		t.Fatalf("a Docker sandbox's process says it does not survive a pause: %+v", p)
	}
	c.do("POST", "/api/v1/sessions/"+s.SessionID+"/pause", nil, 200, nil)
	c.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 200, nil)
	var got procView
	c.do("GET", c.procPath(p.PID, "?sandbox_id="+s.SandboxID), nil, 200, &got)
	if !got.Running {
		t.Fatalf("after pause and resume: %+v, want still running", got)
	}
}
