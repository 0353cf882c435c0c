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
	// Admin is granted only to ADMIN_USERS; asking is not an error, but
	// sandboxctl says what was granted.
	if r := alice.run("token", "--user", "mallory", "--role", "admin"); r.code != 0 || !strings.Contains(r.stderr, `granted "user"`) {
		t.Fatalf("token --role admin for someone not in ADMIN_USERS: want exit 0 and a warning; %s", r)
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
	if r := alice.run("exec", "--exec-timeout", "1", sb.SandboxID, "--", "sleep", "30"); r.code != 124 || !strings.Contains(r.stderr, "timed out") {
		t.Fatalf("exec of a command past its timeout: want exit 124, timed out; %s", r)
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
	if got := types(alice); len(got) < 2 || !slices.Equal(got[:2], []string{"active", "released"}) || slices.Contains(got, "created") {
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
	// It starts after the newest event kept, so nothing between the two
	// commands is missed (and the test needs no sleep).
	kept := strings.Split(strings.TrimSpace(admin.ok("events", "-json")), "\n")
	var newest struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(kept[len(kept)-1]), &newest); err != nil || newest.ID == "" {
		t.Fatalf("newest event %q: %v", kept[len(kept)-1], err)
	}
	follow := exec.Command(admin.bin, "events", "-f", "-json", "--type", "active", "--since", newest.ID)
	follow.Env = append(os.Environ(), "SANDBOX_ADDR="+admin.addr, "SANDBOX_TOKEN="+admin.token)
	var fout syncBuffer
	follow.Stdout, follow.Stderr = &fout, &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
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

// startLoopbackCluster starts three sandboxd processes on loopback, one
// cluster (PEERS), sharing the host directory of sandbox agent sockets so
// that any node reaches any sandbox, and waits until all three serve.
func startLoopbackCluster(t *testing.T, cluster string) []*node {
	t.Helper()
	sbDir, err := os.MkdirTemp("", "csb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sbDir) })
	t.Cleanup(func() { removeClusterContainers(cluster) })
	var nodes []*node
	var peers []string
	for _, id := range []string{"n1", "n2", "n3"} {
		dir, err := os.MkdirTemp("", "cs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		n := &node{t: t, id: id, dataDir: dir}
		api, ops, raft := freePort(t), freePort(t), freePort(t)
		n.api, n.ops, n.raft = "http://"+api, "http://"+ops, raft
		n.args = []string{"-node-id", id, "-data-dir", dir, "-listen", api, "-ops-listen", ops, "-raft-addr", raft,
			"-cluster-name", cluster, "-agent-bin", agentBin, "-sandbox-dir", sbDir}
		n.env = append(os.Environ(), "POOL_MIN_SIZE=2", "POOL_MAX_SIZE=8", "SANDBOX_IMAGE=python:3.11-slim",
			"SANDBOX_LABELS=cloud-sandbox.test=1", "ADMIN_USERS=ops,root")
		peers = append(peers, id+"="+raft)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.args = append(n.args, "-peers", strings.Join(peers, ","))
		n.logs = &bytes.Buffer{}
		n.cmd = exec.Command(sandboxdBin, n.args...)
		n.cmd.Env = n.env
		n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n.exited = make(chan struct{})
		go func(n *node) { n.cmd.Wait(); close(n.exited) }(n)
		t.Cleanup(n.kill)
	}
	for _, n := range nodes {
		n.waitHealthy()
	}
	if dump := os.Getenv("SANDBOXCTL_TEST_LOGS"); dump != "" {
		t.Cleanup(func() {
			for _, n := range nodes {
				os.WriteFile(filepath.Join(dump, n.id+".log"), n.logs.Bytes(), 0o644)
			}
		})
	}
	return nodes
}

// TestSandboxctlCluster runs the operator's verbs on a three-node cluster:
// members and leader agree from every node, and a snapshot saved on one
// node and restored through a follower brings the saved state back on
// every node, while a bad file is refused and changes nothing.
func TestSandboxctlCluster(t *testing.T) {
	cluster := uniqueCluster(t)
	nodes := startLoopbackCluster(t, cluster)
	admin := newCtl(t, nodes[0].api, "root", "admin")

	// members from every node: three voters, all reachable, one leader,
	// the same one `leader` names.
	var leader string
	for _, n := range nodes {
		c := admin.at(n.api)
		header, rows := tableRows(t, c.ok("members"))
		if !slices.Equal(header, []string{"ID", "ADDRESS", "VOTER", "LEADER", "HEALTH", "LAST", "INDEX"}) || len(rows) != 3 {
			t.Fatalf("members from %s: header %v rows %v, want 3 rows", n.id, header, rows)
		}
		leaders := 0
		for _, r := range rows {
			if r[2] != "yes" || r[4] != "ok" {
				t.Fatalf("members from %s: %v is not a reachable voter", n.id, r)
			}
			if r[3] == "yes" {
				leaders++
				leader = r[0]
			}
		}
		if leaders != 1 {
			t.Fatalf("members from %s: %d leaders in %v", n.id, leaders, rows)
		}
		if got := strings.Fields(c.ok("leader"))[0]; got != leader {
			t.Fatalf("leader from %s says %q, members say %q", n.id, got, leader)
		}
		var st struct {
			Health struct {
				NodeID string `json:"node_id"`
				Role   string `json:"role"`
			} `json:"health"`
		}
		json.Unmarshal([]byte(c.ok("status", "-json")), &st)
		if want := map[bool]string{true: "leader", false: "follower"}[n.id == leader]; st.Health.NodeID != n.id || st.Health.Role != want {
			t.Fatalf("status on %s: %+v, want role %s", n.id, st.Health, want)
		}
	}
	var follower *node
	for _, n := range nodes {
		if n.id != leader {
			follower = n
			break
		}
	}

	// Alice holds one sandbox when the snapshot is saved.
	hc := nodes[0].login(t, "alice", "user")
	alice := newCtl(t, nodes[0].api, "alice", "")
	hc.waitIdle(t, 60*time.Second)
	var kept sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &kept)
	file := filepath.Join(t.TempDir(), "state.json")
	if out := admin.ok("snapshot", "save", file); !strings.Contains(out, "saved") {
		t.Fatalf("snapshot save: %q", out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file %v (%v): want mode 0600, it holds agent secrets", fi.Mode(), err)
	}
	saved := alice.sandboxIDs()
	if !slices.Equal(saved, []string{kept.SandboxID}) {
		t.Fatalf("alice's sandboxes at the save: %v", saved)
	}
	if r := alice.run("snapshot", "save", file+".2"); r.code != 4 {
		t.Fatalf("snapshot save by a user: want exit 4; %s", r)
	}

	// After the save she acquires another one.
	hc.waitIdle(t, 60*time.Second)
	var later sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &later)
	if got := alice.sandboxIDs(); len(got) != 2 {
		t.Fatalf("alice's sandboxes before the restore: %v, want two", got)
	}

	// Bad files: refused with a clear message, the state unchanged.
	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("this is not a snapshot"), 0o600)
	if r := admin.run("snapshot", "restore", garbage); r.code != 1 || !strings.Contains(r.stderr, "not a snapshot") {
		t.Fatalf("restore of a text file: want exit 1, not a snapshot; %s", r)
	}
	wrongVersion := filepath.Join(t.TempDir(), "v99.json")
	os.WriteFile(wrongVersion, []byte(`{"version":99,"applied_index":5,"sandboxes":[]}`), 0o600)
	r := admin.at(follower.api).run("snapshot", "restore", wrongVersion)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing changed") || !strings.Contains(r.stderr, "version 99") {
		t.Fatalf("restore of a version-99 file: want exit 1 naming the version, nothing changed; %s", r)
	}
	if got := alice.sandboxIDs(); !slices.Equal(got, sortedIDs(kept.SandboxID, later.SandboxID)) {
		t.Fatalf("alice's sandboxes after refused restores: %v, want both still there", got)
	}

	// Restore through a follower: every node lists what was saved.
	if out := admin.at(follower.api).ok("snapshot", "restore", file); !strings.Contains(out, "restored") {
		t.Fatalf("snapshot restore: %q", out)
	}
	for _, n := range nodes {
		c := alice.at(n.api)
		eventually(t, "the saved list on "+n.id, 10*time.Second, func() bool {
			return slices.Equal(c.sandboxIDs(), saved)
		})
	}
	// The restored sandbox still runs commands; the one acquired after the
	// save is unknown again.
	if out := alice.ok("exec", kept.SandboxID, "--", "echo", "still here"); out != "still here\n" {
		t.Fatalf("exec in the restored sandbox: %q", out)
	}
	if r := alice.run("sandboxes", "inspect", later.SandboxID); r.code != 3 {
		t.Fatalf("inspect of the sandbox acquired after the save: want exit 3; %s", r)
	}
	// Nor is it back in the pool: it was warm (idle, or still being made)
	// at the save, but alice has used it since, and a used sandbox is never
	// handed to anyone else.
	if slices.Contains(admin.sandboxIDs(), later.SandboxID) {
		t.Fatalf("the sandbox alice used after the save is back in the state after the restore: %v", admin.sandboxIDs())
	}
	// Its container is an orphan of the restored state: the leader's
	// reconciler removes it; the saved sandbox's container stays.
	eventually(t, "the container of the sandbox acquired after the save removed", 30*time.Second, func() bool {
		return !slices.Contains(containers(t, cluster), later.SandboxID)
	})
	if !slices.Contains(containers(t, cluster), kept.SandboxID) {
		t.Fatalf("the restored sandbox's container %s is gone", kept.SandboxID)
	}
	// Writes go on after the restore, on every node.
	hc.waitIdle(t, 60*time.Second)
	var after sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &after)
	for _, n := range nodes {
		c := alice.at(n.api)
		eventually(t, "the new sandbox on "+n.id, 10*time.Second, func() bool {
			return slices.Contains(c.sandboxIDs(), after.SandboxID)
		})
	}

	// A member that dies is still a member, and members says it does not answer.
	follower.kill()
	var other *node
	for _, n := range nodes {
		if n != follower {
			other = n
			break
		}
	}
	_, rows := tableRows(t, admin.at(other.api).ok("members"))
	for _, r := range rows {
		if dead := r[0] == follower.id; dead != (r[4] == "unreachable:") {
			t.Fatalf("members after %s died: %v", follower.id, rows)
		}
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// TestSandboxctlNomadDrain drains the Nomad dev agent's client node with
// sandboxctl: the node turns ineligible in Nomad, its idle pool sandboxes
// are recycled and none is placed there again, the active sandbox keeps
// working, and --undo lets the pool refill.
func TestSandboxctlNomadDrain(t *testing.T) {
	nomad := startNomad(t)
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster, env: map[string]string{
		"PLACEMENT_DRIVER":    "nomad",
		"NOMAD_ADDR":          nomad.addr,
		"SANDBOX_AGENT_PATH":  agentBin,
		"SANDBOX_ARCHIVE_DIR": t.TempDir(),
		"POOL_MIN_SIZE":       "2",
		"POOL_MAX_SIZE":       "4",
		"SANDBOX_CPU_COUNT":   "0.25",
		"NOMAD_PLACE_TIMEOUT": "90s",
	}})
	admin := newCtl(t, n.api, "root", "admin")
	hc := n.login(t, "alice", "user")
	alice := newCtl(t, n.api, "alice", "")

	var nodes []struct{ ID, Name, SchedulingEligibility string }
	if _, err := nomad.get("/v1/nodes", &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("nomad nodes %+v: %v", nodes, err)
	}
	client := nodes[0]
	eligibility := func() string {
		var nd struct{ SchedulingEligibility string }
		if _, err := nomad.get("/v1/node/"+client.ID, &nd); err != nil {
			t.Fatal(err)
		}
		return nd.SchedulingEligibility
	}
	stats := func() (idle, pending int) {
		var st struct{ Idle, Pending int }
		if err := hc.call("GET", "/api/v1/sandbox/stats", nil, &st); err != nil {
			t.Fatal(err)
		}
		return st.Idle, st.Pending
	}

	hc.waitIdle(t, 120*time.Second)
	var sb sandboxView
	hc.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	eventually(t, "the pool warm again (2 idle)", 120*time.Second, func() bool { idle, _ := stats(); return idle >= 2 })

	if r := admin.run("drain", "no-such-node"); r.code != 3 {
		t.Fatalf("drain of an unknown node: want exit 3; %s", r)
	}
	var out struct {
		Node         string         `json:"node"`
		Eligible     bool           `json:"eligible"`
		IdleReleased []string       `json:"idle_released"`
		Remaining    map[string]int `json:"remaining"`
	}
	if err := json.Unmarshal([]byte(admin.ok("drain", client.Name, "-json")), &out); err != nil {
		t.Fatal(err)
	}
	if out.Node != client.ID || out.Eligible || len(out.IdleReleased) < 2 || out.Remaining["active"] != 1 {
		t.Fatalf("drain %s: %+v, want node %s ineligible, >= 2 idle released, alice's active one left", client.Name, out, client.ID)
	}
	if e := eligibility(); e != "ineligible" {
		t.Fatalf("nomad says the drained node is %q", e)
	}
	// The recycled sandboxes go, and the warmer places none on the node.
	eventually(t, "the drained node's idle sandboxes gone", 60*time.Second, func() bool {
		ids := admin.sandboxIDs()
		for _, id := range out.IdleReleased {
			if slices.Contains(ids, id) {
				return false
			}
		}
		return true
	})
	for i := 0; i < 10; i++ {
		if idle, pending := stats(); idle != 0 || pending != 0 {
			t.Fatalf("a sandbox was warmed on the drained node: %d idle, %d pending", idle, pending)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The released ones say why.
	var ev struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	line := strings.TrimSpace(admin.ok("events", "-json", "--sandbox", out.IdleReleased[0], "--type", "released"))
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != "released" || ev.Reason != "drained" {
		t.Fatalf("released event of a drained sandbox: %q (%v), want reason drained", line, err)
	}
	// Alice's sandbox is not disturbed.
	if got := alice.ok("exec", sb.SandboxID, "--", "echo", "still here"); got != "still here\n" {
		t.Fatalf("exec in the active sandbox on the drained node: %q", got)
	}

	// Undo: eligible again, and the pool refills.
	if got := admin.ok("drain", "--undo", client.Name); !strings.Contains(got, "eligible:") || !strings.Contains(got, "yes") {
		t.Fatalf("drain --undo: %q", got)
	}
	if e := eligibility(); e != "eligible" {
		t.Fatalf("nomad says the undrained node is %q", e)
	}
	eventually(t, "the pool refilled after the undo", 120*time.Second, func() bool { idle, _ := stats(); return idle >= 1 })
}
