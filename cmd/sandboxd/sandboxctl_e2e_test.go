package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the real sandboxctl binary against real sandboxd
// processes on loopback that place real containers.

var (
	sandboxctlOnce sync.Once
	sandboxctlBin  string
	sandboxctlErr  error
)

// buildSandboxctl builds cmd/sandboxctl once per test binary, beside sandboxd.
func buildSandboxctl(t *testing.T) string {
	t.Helper()
	sandboxctlOnce.Do(func() {
		sandboxctlBin = filepath.Join(filepath.Dir(sandboxdBin), "sandboxctl")
		cmd := exec.Command("go", "build", "-o", sandboxctlBin, "../sandboxctl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			sandboxctlErr = fmt.Errorf("build sandboxctl: %v\n%s", err, out)
		}
	})
	if sandboxctlErr != nil {
		t.Fatal(sandboxctlErr)
	}
	return sandboxctlBin
}

// ctl is sandboxctl pointed at one node with one token.
type ctl struct {
	t     *testing.T
	bin   string
	addr  string
	token string
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs sandboxctl with args and returns its exit code and output.
func (c ctl) run(args ...string) ctlResult {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "SANDBOX_ADDR="+c.addr, "SANDBOX_TOKEN="+c.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("sandboxctl %s: %v", strings.Join(args, " "), err)
	}
	return ctlResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs sandboxctl and fails the test unless it exits 0.
func (c ctl) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("sandboxctl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// with returns the same sandboxctl with another token.
func (c ctl) with(token string) ctl { c.token = token; return c }

// at returns the same sandboxctl pointed at another node.
func (c ctl) at(addr string) ctl { c.addr = addr; return c }

// newCtl logs user in through `sandboxctl token` and returns a sandboxctl
// holding that token.
func newCtl(t *testing.T, addr, user, role string) ctl {
	t.Helper()
	c := ctl{t: t, bin: buildSandboxctl(t), addr: addr}
	args := []string{"token", "--user", user}
	if role != "" {
		args = append(args, "--role", role)
	}
	tok := strings.TrimSpace(c.ok(args...))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("sandboxctl token printed %q, not a JWT", tok)
	}
	c.token = tok
	return c
}

// tableRows splits an aligned table into header and rows of fields.
func tableRows(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("no table in %q", out)
	}
	for i, l := range lines {
		if i == 0 {
			header = strings.Fields(l)
			continue
		}
		rows = append(rows, strings.Fields(l))
	}
	return header, rows
}

// sandboxIDs lists, with sandboxctl -json, the sandbox ids the caller sees.
func (c ctl) sandboxIDs() []string {
	c.t.Helper()
	var list []sandboxView
	if err := json.Unmarshal([]byte(c.ok("sandboxes", "ls", "-json")), &list); err != nil {
		c.t.Fatalf("sandboxes ls -json: %v", err)
	}
	ids := []string{}
	for _, s := range list {
		ids = append(ids, s.SandboxID)
	}
	slices.Sort(ids)
	return ids
}

// TestSandboxctlSingleNode drives a user's and an operator's day through
// sandboxctl against one node: status, the sandbox list, exec, events,
// kill, sessions, and the exit codes scripts branch on.
func TestSandboxctlSingleNode(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	admin := newCtl(t, n.api, "root", "admin")
	alice := newCtl(t, n.api, "alice", "")

	// status: this node leads its one-node cluster and says so.
	out := admin.ok("status")
	for _, want := range []string{"node:", "n1", "role:", "leader", "status:", "ok", "applied index:", "pool:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status does not show %q:\n%s", want, out)
		}
	}
	var st struct {
		Health struct {
			NodeID string `json:"node_id"`
			Role   string `json:"role"`
			Leader string `json:"leader"`
			Status string `json:"status"`
		} `json:"health"`
		AppliedIndex uint64 `json:"applied_index"`
		Pool         struct {
			MinSize int `json:"min_size"`
			MaxSize int `json:"max_size"`
		} `json:"pool"`
	}
	if err := json.Unmarshal([]byte(admin.ok("status", "-json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Health.NodeID != "n1" || st.Health.Role != "leader" || st.Health.Leader != "n1" || st.AppliedIndex == 0 ||
		st.Pool.MinSize != 2 || st.Pool.MaxSize != 8 {
		t.Fatalf("status -json %+v: want n1 leading, an applied index, the pool's 2..8", st)
	}
	if got := strings.TrimSpace(admin.ok("leader")); !strings.HasPrefix(got, "n1 ") {
		t.Fatalf("leader printed %q, want n1 and its address", got)
	}

	// No token: 4, with a hint how to get one.
	if r := alice.with("").run("sandboxes", "ls"); r.code != 4 || !strings.Contains(r.stderr, "SANDBOX_TOKEN") {
		t.Fatalf("sandboxes ls without a token: want exit 4 naming SANDBOX_TOKEN; %s", r)
	}
	// A user is not an operator: 4.
	if r := alice.run("members"); r.code != 4 || !strings.Contains(r.stderr, "admin") {
		t.Fatalf("members as a user: want exit 4 (admin role required); %s", r)
	}
	// Usage errors: 2.
	if r := alice.run("sandboxes", "inspect"); r.code != 2 {
		t.Fatalf("sandboxes inspect without an id: want exit 2; %s", r)
	}
	if r := alice.run("exec", "0123456789abcdef"); r.code != 2 {
		t.Fatalf("exec without a command: want exit 2; %s", r)
	}

	hc := n.login(t, "alice", "user")
	hc.waitIdle(t, 60*time.Second)
	var sb sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)

	// sandboxes ls: the acquired sandbox, active, alice's.
	header, rows := tableRows(t, alice.ok("sandboxes", "ls"))
	if !slices.Equal(header[:3], []string{"ID", "STATUS", "OWNER"}) || len(rows) != 1 ||
		rows[0][0] != sb.SandboxID || rows[0][1] != "active" || rows[0][2] != "alice" {
		t.Fatalf("sandboxes ls: want one row %s active alice; header %v rows %v", sb.SandboxID, header, rows)
	}
	if ids := alice.sandboxIDs(); !slices.Equal(ids, []string{sb.SandboxID}) {
		t.Fatalf("sandboxes ls -json: %v, want [%s]", ids, sb.SandboxID)
	}
	// The operator sees the pool too; --state and --owner narrow it.
	_, rows = tableRows(t, admin.ok("sandboxes", "ls", "--state", "active", "--owner", "alice"))
	if len(rows) != 1 || rows[0][0] != sb.SandboxID {
		t.Fatalf("sandboxes ls --state active --owner alice as admin: rows %v, want only %s", rows, sb.SandboxID)
	}
	_, rows = tableRows(t, admin.ok("sandboxes", "ls", "--state", "idle"))
	for _, r := range rows {
		if r[1] != "idle" || r[0] == sb.SandboxID {
			t.Fatalf("sandboxes ls --state idle lists %v", r)
		}
	}

	// inspect; an unknown id and another user's id are both 3.
	if out := alice.ok("sandboxes", "inspect", sb.SandboxID); !strings.Contains(out, "status:") || !strings.Contains(out, "active") {
		t.Fatalf("sandboxes inspect:\n%s", out)
	}
	if r := alice.run("sandboxes", "inspect", "0123456789abcdef"); r.code != 3 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("inspect of an unknown sandbox: want exit 3, not found; %s", r)
	}
	bob := newCtl(t, n.api, "bob", "")
	if r := bob.run("sandboxes", "inspect", sb.SandboxID); r.code != 3 {
		t.Fatalf("inspect of alice's sandbox by bob: want exit 3; %s", r)
	}

	// exec streams the command's output and exits with its code.
	r := alice.run("exec", sb.SandboxID, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
	if r.code != 3 || r.stdout != "hi\n" || r.stderr != "oops\n" {
		t.Fatalf("exec echo hi; exit 3: want stdout hi, stderr oops, exit 3; %s", r)
	}
	if out := alice.ok("exec", sb.SandboxID, "--", "python3", "-c", "print(6*7)"); out != "42\n" {
		t.Fatalf("exec python3: %q", out)
	}
	if r := alice.run("exec", "0123456789abcdef", "--", "true"); r.code != 3 {
		t.Fatalf("exec in an unknown sandbox: want exit 3; %s", r)
	}

	// Sessions.
	var sess sessionView
	hc.do("POST", "/api/v1/sessions", map[string]any{}, 201, &sess)
	_, rows = tableRows(t, alice.ok("sessions", "ls"))
	if len(rows) != 1 || rows[0][0] != sess.SessionID || rows[0][1] != "active" || rows[0][3] != sess.SandboxID {
		t.Fatalf("sessions ls: rows %v, want %s active with sandbox %s", rows, sess.SessionID, sess.SandboxID)
	}

	// kill releases the sandbox; it leaves the list and the events say so.
	if out := alice.ok("sandboxes", "kill", sb.SandboxID); !strings.Contains(out, "terminating") {
		t.Fatalf("sandboxes kill: %q", out)
	}
	eventually(t, "the killed sandbox gone from sandboxes ls", 30*time.Second, func() bool {
		return !slices.Contains(alice.sandboxIDs(), sb.SandboxID)
	})
	if r := alice.run("sandboxes", "kill", sb.SandboxID); r.code != 3 && r.code != 1 {
		t.Fatalf("kill of a released sandbox: want exit 3 (gone) or 1 (conflict); %s", r)
	}

	// events: the operator sees the pool sandbox's whole life in order;
	// alice sees only what happened once it was hers.
	types := func(c ctl, args ...string) []string {
		t.Helper()
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(c.ok(append([]string{"events", "-json", "--sandbox", sb.SandboxID}, args...)...)), "\n") {
			var ev struct {
				ID        string `json:"id"`
				Type      string `json:"type"`
				SandboxID string `json:"sandbox_id"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("events -json line %q: %v", l, err)
			}
			if ev.SandboxID != sb.SandboxID || ev.ID == "" {
				t.Fatalf("events --sandbox %s printed %+v", sb.SandboxID, ev)
			}
			got = append(got, ev.Type)
		}
		return got
	}
	var all []string
	eventually(t, "events up to removed", 30*time.Second, func() bool {
		all = types(admin)
		return slices.Contains(all, "removed")
	})
	if len(all) < 5 || !slices.Equal(all[:5], []string{"created", "placed", "active", "released", "removed"}) {
		t.Fatalf("admin events of %s: %v, want created placed active released removed", sb.SandboxID, all)
	}
	if got := types(alice); !slices.Equal(got[:2], []string{"active", "released"}) || slices.Contains(got, "created") {
		t.Fatalf("alice's events of %s: %v, want active released (the pool's create is nobody's)", sb.SandboxID, got)
	}
	_, rows = tableRows(t, admin.ok("events", "--sandbox", sb.SandboxID, "--type", "created,placed"))
	if len(rows) != 2 || rows[0][2] != "created" || rows[1][2] != "placed" {
		t.Fatalf("events table --type created,placed: %v", rows)
	}
	// --since resumes after an event: the next ones, not the first again.
	first := strings.Fields(strings.Split(admin.ok("events", "--sandbox", sb.SandboxID), "\n")[1])[0]
	_, rows = tableRows(t, admin.ok("events", "--sandbox", sb.SandboxID, "--since", first))
	if len(rows) == 0 || rows[0][2] != "placed" {
		t.Fatalf("events --since %s: %v, want placed first", first, rows)
	}
	// -f follows: a new acquire's activation arrives on the open stream.
	follow := exec.Command(admin.bin, "events", "-f", "-json", "--type", "active")
	follow.Env = append(os.Environ(), "SANDBOX_ADDR="+admin.addr, "SANDBOX_TOKEN="+admin.token)
	var fout syncBuffer
	follow.Stdout, follow.Stderr = &fout, &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	time.Sleep(500 * time.Millisecond) // the stream starts "now"
	hc.waitIdle(t, 60*time.Second)
	var sb2 sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb2)
	eventually(t, "events -f prints the new sandbox's activation", 15*time.Second, func() bool {
		return strings.Contains(fout.String(), `"sandbox_id":"`+sb2.SandboxID+`"`)
	})

	// drain is not built: 501, said plainly, exit 1.
	if r := admin.run("drain", "n1"); r.code != 1 || !strings.Contains(r.stderr, "not implemented") {
		t.Fatalf("drain: want exit 1, not implemented; %s", r)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
