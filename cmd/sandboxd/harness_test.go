package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests start real sandboxd processes that place real containers on the
// local Docker daemon, and talk to them over real HTTP.

var (
	sandboxdBin string
	agentBin    string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "docker is required for the end-to-end tests:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping end-to-end tests: no docker")
		return 0
	}
	dir, err := os.MkdirTemp("", "sandboxd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sandboxdBin = filepath.Join(dir, "sandboxd")
	agentBin = filepath.Join(dir, "sandbox-agent")
	for bin, pkg := range map[string]string{sandboxdBin: ".", agentBin: "../sandbox-agent"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	img := exec.Command("bash", "../../deploy/sandbox-image/build.sh", "cloud-sandbox/python:3.11-slim", "python:3.11-slim")
	img.Stdout, img.Stderr = os.Stderr, os.Stderr
	if err := img.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox image:", err)
		return 1
	}
	return m.Run()
}

// node is one sandboxd process.
type node struct {
	t       testing.TB
	id      string
	dataDir string
	api     string // http://127.0.0.1:port
	ops     string
	raft    string
	env     []string
	args    []string
	cmd     *exec.Cmd
	logs    *bytes.Buffer
	exited  chan struct{}
}

type nodeOpts struct {
	cluster string
	env     map[string]string
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts a single-node cluster and waits until it serves.
func startNode(t testing.TB, o nodeOpts) *node {
	t.Helper()
	// Short data dir: sandbox agent sockets live below it (unix path limit).
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{t: t, id: "n1", dataDir: dir}
	api, ops, raft := freePort(t), freePort(t), freePort(t)
	n.api, n.ops, n.raft = "http://"+api, "http://"+ops, raft
	n.args = []string{"-node-id", n.id, "-data-dir", dir, "-listen", api, "-ops-listen", ops, "-raft-addr", raft,
		"-cluster-name", o.cluster, "-agent-bin", agentBin}
	n.env = append(os.Environ(), "POOL_MIN_SIZE=2", "POOL_MAX_SIZE=8", "SANDBOX_IMAGE=python:3.11-slim",
		"SANDBOX_LABELS=cloud-sandbox.test=1", "ADMIN_USERS=ops,root")
	for k, v := range o.env {
		n.env = append(n.env, k+"="+v)
	}
	t.Cleanup(func() { removeClusterContainers(o.cluster) })
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.logs = &bytes.Buffer{}
	n.cmd = exec.Command(sandboxdBin, n.args...)
	n.cmd.Env = n.env
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.exited) }()
	n.waitHealthy()
}

func (n *node) waitHealthy() {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-n.exited:
			n.t.Fatalf("sandboxd exited early:\n%s", n.logs)
		default:
		}
		resp, err := http.Get(n.api + "/health")
		if err == nil {
			var h map[string]any
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if resp.StatusCode == 200 && h["leader"] != nil && h["leader"] != "" {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("sandboxd not healthy after 30 s:\n%s", n.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL (a crash) and waits for it.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	if n.t.Failed() {
		n.t.Logf("sandboxd logs:\n%s", tail(n.logs.String(), 60))
	}
	n.cmd = nil
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// client is a user of the REST API.
type client struct {
	t     testing.TB
	base  string
	token string
	hc    *http.Client
}

func (n *node) login(t testing.TB, user, role string) *client {
	t.Helper()
	c := &client{t: t, base: n.api, hc: &http.Client{Timeout: 2 * time.Minute}}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    string `json:"expires_in"`
	}
	c.do("POST", "/api/v1/auth/token", map[string]string{"user_id": user, "role": role}, 200, &tok)
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != "900" {
		t.Fatalf("token response %+v does not have the guide's fields (expires_in: the 15-minute default)", tok)
	}
	c.token = tok.AccessToken
	return c
}

// do sends a JSON request and decodes the JSON answer into out, failing the
// test unless the status is want. It returns the raw body.
func (c *client) do(method, path string, body any, want int, out any) []byte {
	c.t.Helper()
	status, raw := c.send(method, path, body, nil)
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return raw
}

// call is do without the test failure: for benchmarks and retry loops.
func (c *client) call(method, path string, body any, out any) error {
	status, raw := c.send(method, path, body, nil)
	if status/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, status, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// raw GETs path and returns the body as is.
func (c *client) raw(method, path string) ([]byte, error) {
	status, raw := c.send(method, path, nil, nil)
	if status != 200 {
		return nil, fmt.Errorf("%s %s: status %d: %s", method, path, status, raw)
	}
	return raw, nil
}

// waitIdle waits until the pool has an idle sandbox.
func (c *client) waitIdle(t testing.TB, timeout time.Duration) {
	t.Helper()
	eventually(t, "an idle sandbox in the pool", timeout, func() bool {
		var st struct {
			Idle int `json:"idle"`
		}
		return c.call("GET", "/api/v1/sandbox/stats", nil, &st) == nil && st.Idle > 0
	})
}

func (c *client) send(method, path string, body any, header map[string]string) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// containers lists the ids of sandboxes Docker runs for a cluster.
func containers(t testing.TB, cluster string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=cloud-sandbox.cluster="+cluster,
		"--format", `{{.Label "cloud-sandbox.sandbox"}}`).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// removeClusterContainers removes a dead cluster's containers. It looks
// twice: the daemon may still finish a create the node sent before it died.
func removeClusterContainers(cluster string) {
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=cloud-sandbox.cluster="+cluster).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
}

func uniqueCluster(t testing.TB) string {
	return fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e9)
}

func eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
