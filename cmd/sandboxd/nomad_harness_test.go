package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// A real Nomad dev agent, configured from deploy/nomad/ as an operator
// configures a client: the docker plugin options and infra image of
// client.hcl, the no-egress CNI network and its firewall rules. Only the
// ports, the data dir and the CNI config dir are the test's own.

// nomadBin finds the Nomad binary: NOMAD_BIN, else nomad on PATH.
func nomadBin() string {
	if b := os.Getenv("NOMAD_BIN"); b != "" {
		return b
	}
	b, _ := exec.LookPath("nomad")
	return b
}

// needNomad skips the test, saying so in one line, when no Nomad binary is
// there; `make test-nomad` sets NOMAD_REQUIRED to make that a failure.
func needNomad(t *testing.T) string {
	t.Helper()
	b := nomadBin()
	if b == "" {
		if os.Getenv("NOMAD_REQUIRED") != "" {
			t.Fatal("NOMAD_REQUIRED is set but no nomad binary was found (NOMAD_BIN or PATH)")
		}
		t.Skip("Nomad suite skipped: no nomad binary (set NOMAD_BIN or put Nomad 1.6.5 on PATH)")
	}
	return b
}

type nomadAgent struct {
	t       *testing.T
	bin     string
	addr    string // http://127.0.0.1:port
	dataDir string
	cmd     *exec.Cmd
	logs    *bytes.Buffer
	exited  chan struct{}
}

// startNomad starts a dev agent and waits until its node is ready with a
// healthy docker driver.
func startNomad(t *testing.T) *nomadAgent {
	t.Helper()
	bin := needNomad(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The infra image and the firewall rules, as deploy/nomad/README.md
	// has an operator install them.
	run(t, "bash", filepath.Join(repo, "deploy/nomad/pause-image.sh"), agentBin)
	run(t, "bash", filepath.Join(repo, "deploy/nomad/firewall.sh"), "apply")

	dir, err := os.MkdirTemp("", "nomad-e2e")
	if err != nil {
		t.Fatal(err)
	}
	cni := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cni, 0o755); err != nil {
		t.Fatal(err)
	}
	confs, _ := filepath.Glob(filepath.Join(repo, "deploy/nomad/cni/*.conflist"))
	for _, c := range confs {
		if err := copyFile(c, filepath.Join(cni, filepath.Base(c))); err != nil {
			t.Fatal(err)
		}
	}
	httpPort, rpcPort, serfPort := portOf(freePort(t)), portOf(freePort(t)), portOf(freePort(t))
	override := fmt.Sprintf(`data_dir = %q
bind_addr = "127.0.0.1"
ports {
  http = %s
  rpc  = %s
  serf = %s
}
client {
  cni_config_dir = %q
}
`, filepath.Join(dir, "data"), httpPort, rpcPort, serfPort, cni)
	if err := os.WriteFile(filepath.Join(dir, "test.hcl"), []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &nomadAgent{t: t, bin: bin, addr: "http://127.0.0.1:" + httpPort, dataDir: filepath.Join(dir, "data"), logs: &bytes.Buffer{}}
	a.cmd = exec.Command(bin, "agent", "-dev",
		"-config", filepath.Join(repo, "deploy/nomad/client.hcl"),
		"-config", filepath.Join(dir, "test.hcl"))
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.stop()
		os.RemoveAll(dir)
	})
	a.waitReady()
	return a
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nomad runs the nomad CLI against the agent.
func (a *nomadAgent) nomad(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// get decodes a Nomad HTTP API answer.
func (a *nomadAgent) get(path string, out any) (int, error) {
	resp, err := http.Get(a.addr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || out == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

func (a *nomadAgent) waitReady() {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-a.exited:
			a.t.Fatalf("nomad agent exited:\n%s", tail(a.logs.String(), 40))
		default:
		}
		var nodes []struct {
			Status  string
			Drivers map[string]struct{ Healthy bool }
		}
		if code, err := a.get("/v1/nodes", &nodes); err == nil && code == 200 &&
			len(nodes) == 1 && nodes[0].Status == "ready" && nodes[0].Drivers["docker"].Healthy {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("nomad node not ready with a healthy docker driver after 60 s:\n%s", tail(a.logs.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jobs lists the ids of the jobs whose id starts with prefix.
func (a *nomadAgent) jobs(prefix string) []string {
	var js []struct {
		ID, Status string
	}
	if _, err := a.get("/v1/jobs?prefix="+prefix, &js); err != nil {
		a.t.Fatalf("list jobs: %v", err)
	}
	var ids []string
	for _, j := range js {
		if j.Status != "dead" {
			ids = append(ids, j.ID)
		}
	}
	return ids
}

// stop purges every job, waits (bounded) for their allocations to stop so
// the client removes their containers and networks, then stops the agent.
func (a *nomadAgent) stop() {
	if a.cmd == nil {
		return
	}
	// Every allocation this agent ever made, for the sweep below.
	var all []struct{ ID string }
	a.get("/v1/allocations", &all)
	var js []struct{ ID string }
	a.get("/v1/jobs", &js)
	for _, j := range js {
		a.nomad("job", "stop", "-purge", "-detach", j.ID)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var allocs []struct{ ClientStatus string }
		a.get("/v1/allocations", &allocs)
		live := 0
		for _, al := range allocs {
			if al.ClientStatus == "running" || al.ClientStatus == "pending" {
				live++
			}
		}
		if live == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
	if a.t.Failed() {
		a.t.Logf("nomad agent logs:\n%s", tail(a.logs.String(), 40))
	}
	a.cmd = nil
	// An agent that stopped answering, or was killed, leaves its tasks' and
	// infra containers behind: they carry the allocation's id as a label.
	for _, al := range all {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.hashicorp.nomad.alloc_id="+al.ID).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
	unmountUnder(a.dataDir)
}

// unmountUnder detaches every mount below dir (a killed client leaves its
// allocations' secrets tmpfs and binds), deepest first, so the data dir can
// be removed.
func unmountUnder(dir string) {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			targets = append(targets, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(targets)))
	for _, m := range targets {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// startPeers starts a cluster of n sandboxd processes on loopback, static
// peers, all with env, and waits until each serves with a leader.
func startPeers(t *testing.T, count int, cluster string, env map[string]string) []*node {
	t.Helper()
	nodes := make([]*node, count)
	var peers []string
	for i := range nodes {
		dir, err := os.MkdirTemp("", "cs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		nd := &node{t: t, id: fmt.Sprintf("n%d", i+1), dataDir: dir}
		api, ops := freePort(t), freePort(t)
		nd.api, nd.ops, nd.raft = "http://"+api, "http://"+ops, freePort(t)
		peers = append(peers, nd.id+"="+nd.raft)
		nd.args = []string{"-node-id", nd.id, "-data-dir", dir, "-listen", api, "-ops-listen", ops,
			"-raft-addr", nd.raft, "-cluster-name", cluster, "-agent-bin", agentBin}
		nodes[i] = nd
	}
	for _, nd := range nodes {
		nd.args = append(nd.args, "-peers", strings.Join(peers, ","))
		nd.env = append(os.Environ(), "SANDBOX_IMAGE=python:3.11-slim")
		for k, v := range env {
			nd.env = append(nd.env, k+"="+v)
		}
	}
	t.Cleanup(func() { removeClusterContainers(cluster) })
	// Start all before waiting: none has a leader until a quorum runs.
	for _, nd := range nodes {
		nd.logs = &bytes.Buffer{}
		nd.cmd = exec.Command(sandboxdBin, nd.args...)
		nd.cmd.Env = nd.env
		nd.cmd.Stdout, nd.cmd.Stderr = nd.logs, nd.logs
		if err := nd.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nd.exited = make(chan struct{})
		go func(nd *node) { nd.cmd.Wait(); close(nd.exited) }(nd)
		t.Cleanup(nd.kill)
	}
	for _, nd := range nodes {
		nd.waitHealthy()
	}
	return nodes
}

// leaderOf is the node the others name as leader.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var leader *node
	eventually(t, "one leader", 30*time.Second, func() bool {
		for _, nd := range nodes {
			if nd.cmd == nil {
				continue
			}
			var h struct {
				Role string `json:"role"`
			}
			resp, err := http.Get(nd.api + "/health")
			if err != nil {
				continue
			}
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Role == "leader" {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

// placedEndpoint is the agent endpoint sandboxd recorded for an
// allocation, as its driver logged it on placing ("sandbox placed") or
// resuming ("sandbox resumed") it: the placement the reconciler records.
func placedEndpoint(t *testing.T, allocID string, nodes ...*node) string {
	t.Helper()
	re := regexp.MustCompile(`msg="sandbox (?:placed|resumed)".* alloc\.id=` + regexp.QuoteMeta(allocID) + ` .*endpoint=(\S+)`)
	for _, n := range nodes {
		if m := re.FindStringSubmatch(n.logs.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no sandboxd log names the endpoint of allocation %s", allocID)
	return ""
}

// checkAgentTLS checks the agent of a running sandbox as the control
// plane reaches it: its recorded endpoint is https, the agent there serves
// TLS 1.3 with the certificate its Nomad job carries (the one sandboxd
// pins), and plain HTTP to the same port gets no answer from the API. It
// returns the certificate's SHA-256.
func checkAgentTLS(t *testing.T, nomad *nomadAgent, jobID, allocID string, nodes ...*node) string {
	t.Helper()
	endpoint := placedEndpoint(t, allocID, nodes...)
	hostport, ok := strings.CutPrefix(endpoint, "https://")
	if !ok {
		t.Fatalf("recorded agent endpoint %q is not https", endpoint)
	}
	var job struct {
		TaskGroups []struct {
			Tasks []struct {
				Templates []struct{ EmbeddedTmpl, DestPath string }
			}
		}
	}
	if code, err := nomad.get("/v1/job/"+jobID, &job); err != nil || code != 200 {
		t.Fatalf("nomad job %s: %d %v", jobID, code, err)
	}
	want := ""
	for _, tg := range job.TaskGroups {
		for _, task := range tg.Tasks {
			for _, tm := range task.Templates {
				if tm.DestPath == "secrets/"+agent.TLSCertFile {
					sum, err := agent.CertSHA256([]byte(tm.EmbeddedTmpl))
					if err != nil {
						t.Fatalf("job %s certificate: %v", jobID, err)
					}
					want = sum
				}
			}
		}
	}
	if want == "" {
		t.Fatalf("job %s gives its agent no certificate", jobID)
	}

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", hostport, &tls.Config{InsecureSkipVerify: true}) // only to read what it serves
	if err != nil {
		t.Fatalf("TLS to the agent at %s: %v", hostport, err)
	}
	st := conn.ConnectionState()
	conn.Close()
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	if got := hex.EncodeToString(sum[:]); got != want || st.Version != tls.VersionTLS13 {
		t.Errorf("agent at %s serves certificate %s over TLS %x; want the job's %s over 1.3", hostport, got, st.Version, want)
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + hostport + "/health")
	if err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 == 2 || strings.Contains(string(body), `"status"`) {
			t.Errorf("plain http to the agent at %s answered %d %q", hostport, resp.StatusCode, body)
		}
	}
	return want
}
