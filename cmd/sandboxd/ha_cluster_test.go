package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haCluster is a three-node sandboxd cluster in Docker containers, built from
// this tree's binaries, on two private networks: raftNet carries Raft (and is
// what a partition cuts), apiNet is where the test reaches each node's API by
// container IP. Every object it makes is labelled cloud-sandbox.test=1 and
// removed by t.Cleanup.
type haCluster struct {
	t       *testing.T
	name    string // cluster name (sandbox label) and prefix of every object
	image   string
	dir     string // shared host dir, mounted at the same path in every node
	raftNet string
	apiNet  string
	nodes   []*haNode
	// past holds the logs of containers replaced during the test, so a
	// failure can still be traced through a rolling upgrade.
	past []string
	// faults is the write unavailability of every fault, printed as a
	// table when the test ends.
	faults []haFault
	// suspects are ids verify found wrong; a failed test prints every log
	// line of every node that names one.
	suspects []string
}

// haNode is one control container; its data volume outlives the container.
type haNode struct {
	c         *haCluster
	id        string
	container string
	volume    string
	image     string
	api, ops  string // http://ip:port on apiNet, refreshed on every start
	// join makes create give the node JOIN (the other nodes) instead of
	// PEERS: the documented way for a node without state to enter a
	// cluster that already exists.
	join bool
}

const haTestLabel = "cloud-sandbox.test=1"

func dockerCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildSandboxdImage builds deploy/sandboxd/Dockerfile from the binaries
// TestMain built, tagged tag, and removes the tag when the test ends.
func buildSandboxdImage(t *testing.T, tag string) {
	t.Helper()
	dockerCLI(t, "build", "-q", "--label", haTestLabel, "-f", "../../deploy/sandboxd/Dockerfile", "-t", tag, filepath.Dir(sandboxdBin))
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
}

func startHACluster(t *testing.T) *haCluster {
	t.Helper()
	name := fmt.Sprintf("ha%d", time.Now().UnixNano()%1e9)
	c := &haCluster{t: t, name: name, image: "cloud-sandbox/sandboxd:" + name,
		raftNet: name + "-raft", apiNet: name + "-api"}
	buildSandboxdImage(t, c.image)
	// Short: sandbox sockets live below it (unix path limit).
	dir, err := os.MkdirTemp("", "csha")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	if err := copyFile(agentBin, filepath.Join(dir, "sandbox-agent")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cleanup)
	t.Cleanup(c.logFaults)
	dockerCLI(t, "network", "create", "--internal", "--label", haTestLabel, c.raftNet)
	dockerCLI(t, "network", "create", "--label", haTestLabel, c.apiNet)
	for _, id := range []string{"n1", "n2", "n3"} {
		n := &haNode{c: c, id: id, container: name + "-" + id, volume: name + "-" + id, image: c.image}
		dockerCLI(t, "volume", "create", "--label", haTestLabel, n.volume)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.create()
		n.launch()
	}
	c.waitReady()
	c.waitLeader(nil, 60*time.Second)
	return c
}

// waitReady waits for every node to be ready.
func (c *haCluster) waitReady() {
	for _, n := range c.nodes {
		n.waitReady()
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}

func (c *haCluster) cleanup() {
	if c.t.Failed() {
		for _, n := range c.nodes {
			out, _ := exec.Command("docker", "logs", "--tail", "60", n.container).CombinedOutput()
			c.t.Logf("logs of %s:\n%s", n.container, out)
		}
		// What the reconcilers said about sandboxes, every node's whole life.
		all := append([]string(nil), c.past...)
		for _, n := range c.nodes {
			out, _ := exec.Command("docker", "logs", n.container).CombinedOutput()
			all = append(all, n.container+":\n"+string(out))
		}
		for _, l := range all {
			for _, line := range strings.Split(l, "\n") {
				if strings.Contains(line, "component=reconciler") && !strings.Contains(line, "level=INFO msg=\"sandbox placed\"") {
					c.t.Log(line)
				}
			}
		}
		// Everything any node said about what verify found wrong.
		for _, id := range c.suspects {
			for _, l := range all {
				node, _, _ := strings.Cut(l, "\n")
				for _, line := range strings.Split(l, "\n") {
					if strings.Contains(line, id) {
						c.t.Logf("%s %s", strings.TrimSuffix(node, ":"), line)
					}
				}
			}
		}
	}
	for _, n := range c.nodes {
		exec.Command("docker", "rm", "-f", "-v", n.container).Run()
	}
	removeClusterContainers(c.name)
	for _, n := range c.nodes {
		exec.Command("docker", "volume", "rm", "-f", n.volume).Run()
	}
	exec.Command("docker", "network", "rm", c.raftNet, c.apiNet).Run()
	os.RemoveAll(c.dir)
}

func (c *haCluster) peers() string {
	var p []string
	for _, n := range c.nodes {
		p = append(p, n.id+"="+n.id+"-raft:7000")
	}
	return strings.Join(p, ",")
}

// create makes the node's container: Docker socket, the shared dir at the
// host's path, its own data volume, attached to both networks. Raft peers
// dial <id>-raft, an alias that exists only on raftNet, so disconnecting a
// node from raftNet really cuts it off.
func (n *haNode) create() {
	c := n.c
	members := "PEERS=" + c.peers()
	if n.join {
		var addrs []string
		for _, o := range c.others(n) {
			addrs = append(addrs, o.id+"-raft:7000")
		}
		members = "JOIN=" + strings.Join(addrs, ",")
	}
	env := []string{
		"NODE_ID=" + n.id, "RAFT_ADVERTISE=" + n.id + "-raft:7000", members,
		"CLUSTER_NAME=" + c.name, "SANDBOX_AGENT_BIN=" + filepath.Join(c.dir, "sandbox-agent"),
		"SANDBOX_STATE_DIR=" + filepath.Join(c.dir, "sb"), "SANDBOX_IMAGE=python:3.11-slim",
		"POOL_MIN_SIZE=2", "POOL_MAX_SIZE=60", "SANDBOX_READY_TIMEOUT=20",
		"JWT_SECRET=ha-test-secret-0123456789abcdef0123456789", "RATE_LIMIT_RPS=1000", "RATE_LIMIT_BURST=1000",
		"LOG_FORMAT=text", "ADMIN_USERS=" + c.name + "-admin," + c.name + "-reader",
	}
	args := []string{"create", "--name", n.container, "--label", haTestLabel, "--label", "cloud-sandbox.ha=" + c.name,
		"--network", c.apiNet, "--stop-timeout", "40",
		"-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", c.dir + ":" + c.dir, "-v", n.volume + ":/data"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	dockerCLI(c.t, append(args, n.image)...)
	dockerCLI(c.t, "network", "connect", "--alias", n.id+"-raft", c.raftNet, n.container)
}

// start starts the container and waits until its API answers /health.
func (n *haNode) start() {
	n.c.t.Helper()
	n.launch()
	n.waitReady()
}

// launch starts the container and learns its addresses, without waiting:
// a node is ready only once it has caught up with a leader, so nodes that
// start together must all be launched before any is waited for.
func (n *haNode) launch() {
	t := n.c.t
	t.Helper()
	dockerCLI(t, "start", n.container)
	ip := dockerCLI(t, "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, n.c.apiNet), n.container)
	n.api, n.ops = "http://"+ip+":8080", "http://"+ip+":9090"
}

// waitReady waits until /health answers 200: the node has applied what the
// leader had committed when it started (503 "starting" until then).
func (n *haNode) waitReady() {
	t := n.c.t
	t.Helper()
	eventually(t, n.id+" ready (/health 200)", 60*time.Second, func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get(n.api + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// recreate replaces the container with one from image, keeping its volume:
// the rolling upgrade's step.
func (n *haNode) recreate(image string) {
	n.stop()
	n.replace(image)
	n.start()
}

// stop stops the container with SIGTERM and the grace compose gives
// (stop_grace_period 40s): the node drains its requests and hands
// leadership over before it exits. Its logs are kept for a failure report.
func (n *haNode) stop() {
	dockerCLI(n.c.t, "stop", "-t", "40", n.container)
	out, _ := exec.Command("docker", "logs", n.container).CombinedOutput()
	n.c.past = append(n.c.past, n.container+" (before it was replaced):\n"+string(out))
}

// replace removes the stopped container and creates one from image on the
// same volume, without starting it.
func (n *haNode) replace(image string) {
	dockerCLI(n.c.t, "rm", n.container)
	n.image = image
	n.create()
}

// wipe removes the stopped node's container and data volume and creates a
// new container on an empty volume, without starting it: a node whose disk
// was lost. join chooses JOIN over PEERS for the new container.
func (n *haNode) wipe(join bool) {
	t := n.c.t
	dockerCLI(t, "rm", n.container)
	dockerCLI(t, "volume", "rm", n.volume)
	dockerCLI(t, "volume", "create", "--label", haTestLabel, n.volume)
	n.join = join
	n.create()
}

// clusterInfo is the operator listener's GET /api/v1/cluster.
type clusterInfo struct {
	NodeID       string `json:"node_id"`
	Role         string `json:"role"`
	LeaderID     string `json:"leader_id"`
	AppliedIndex uint64 `json:"applied_index"`
}

func (n *haNode) info() (clusterInfo, error) {
	var ci clusterInfo
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(n.ops + "/api/v1/cluster")
	if err != nil {
		return ci, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return ci, fmt.Errorf("status %d", resp.StatusCode)
	}
	return ci, json.NewDecoder(resp.Body).Decode(&ci)
}

// waitLeader waits until the nodes in among (all when nil) agree on one
// leader among them and returns it.
func (c *haCluster) waitLeader(among []*haNode, timeout time.Duration) *haNode {
	c.t.Helper()
	if among == nil {
		among = c.nodes
	}
	var leader *haNode
	eventually(c.t, "an agreed leader", timeout, func() bool {
		leader = nil
		id := ""
		for _, n := range among {
			ci, err := n.info()
			if err != nil || ci.LeaderID == "" || (id != "" && ci.LeaderID != id) {
				return false
			}
			id = ci.LeaderID
		}
		for _, n := range among {
			if n.id == id {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

func (c *haCluster) others(n *haNode) []*haNode {
	var out []*haNode
	for _, o := range c.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}
