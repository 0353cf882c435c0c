package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// testLogger discards logs unless CLUSTER_TEST_LOG is set, so node
// goroutines never write to a finished test.
func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// freeAddr reserves a loopback port for a node that must know its peers'
// addresses before they listen (static bootstrap).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// testCluster runs in-process nodes on loopback ports with their own data dirs.
type testCluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*Node // nil while a node is stopped
	cfgs  []Config
}

type bootMode int

const (
	bootJoin  bootMode = iota // node 0 bootstraps alone, the others join it
	bootPeers                 // every node bootstraps from the same static peer list
)

// startCluster starts size nodes and waits until all are voters that know
// the leader. tweak adjusts every node's config.
func startCluster(t testing.TB, size int, mode bootMode, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: make([]*Node, size), cfgs: make([]Config, size)}
	base := t.TempDir()
	// Registered after TempDir so nodes stop before their directories go.
	t.Cleanup(c.stopAll)
	var peers []Peer
	for i := range size {
		cfg := Config{
			ID:       fmt.Sprintf("n%d", i),
			DataDir:  filepath.Join(base, fmt.Sprintf("n%d", i)),
			BindAddr: "127.0.0.1:0",
			Logger:   testLogger(),
		}
		if mode == bootPeers {
			cfg.BindAddr = freeAddr(t)
			peers = append(peers, Peer{ID: cfg.ID, Addr: cfg.BindAddr})
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs[i] = cfg
	}
	for i := range size {
		switch {
		case mode == bootPeers:
			c.cfgs[i].Peers = peers
		case i == 0:
			c.cfgs[i].Bootstrap = true
		default:
			c.cfgs[i].Join = []string{c.nodes[0].Addr()}
		}
		c.start(i)
		if i == 0 && mode == bootJoin {
			if err := c.nodes[0].WaitForLeader(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitMembers(size)
	return c
}

// start opens node i with a fresh FSM; a restarted node reuses its data dir and address.
func (c *testCluster) start(i int) *Node {
	c.t.Helper()
	n, err := Open(c.cfgs[i], fsm.New(fsm.WithLogger(testLogger())))
	if err != nil {
		c.t.Fatalf("open node %d: %v", i, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.cfgs[i].BindAddr = n.Addr()
	c.mu.Unlock()
	return n
}

// kill stops node i abruptly: no leadership transfer.
func (c *testCluster) kill(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		if err := n.shutdown(false); err != nil {
			c.t.Errorf("kill node %d: %v", i, err)
		}
	}
}

func (c *testCluster) stopAll() {
	for i := range c.nodes {
		c.kill(i)
	}
}

func (c *testCluster) node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *testCluster) running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader waits until exactly one running node leads and returns it.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, 10*time.Second, "a leader", func() bool {
		l = nil
		for _, n := range c.running() {
			if n.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		return l != nil
	})
	return l
}

func (c *testCluster) follower() *Node {
	c.t.Helper()
	l := c.leader()
	for _, n := range c.running() {
		if n != l {
			return n
		}
	}
	c.t.Fatal("no follower running")
	return nil
}

func (c *testCluster) index(n *Node) int {
	for i := range c.nodes {
		if c.node(i) == n {
			return i
		}
	}
	c.t.Fatalf("node %s not in cluster", n.ID())
	return -1
}

// waitMembers waits until every running node sees size voters and a leader.
func (c *testCluster) waitMembers(size int) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, fmt.Sprintf("%d voters and a leader on every node", size), func() bool {
		for _, n := range c.running() {
			servers, err := n.Servers()
			if err != nil || len(servers) != size || n.Readmitting() {
				return false
			}
			for _, s := range servers {
				if !s.Voter {
					return false
				}
			}
			if _, addr := n.Leader(); addr == "" {
				return false
			}
		}
		return true
	})
}

// stateOf is a node's replicated state in a comparable form.
func stateOf(n *Node) string {
	f := n.FSM()
	b, err := json.Marshal(struct {
		Sandboxes []*fsm.Sandbox
		Sessions  []*fsm.Session
		Pool      fsm.PoolConfig
	}{f.Sandboxes(), f.Sessions(), f.Pool()})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// waitConverged waits until every running node holds the same state as the leader.
// Each node first makes a linearizable read, so after a restart no node
// is compared before it has re-applied what was committed before it.
func (c *testCluster) waitConverged() string {
	c.t.Helper()
	for _, n := range c.running() {
		if err := n.ConsistentRead(testCtx(c.t, 20*time.Second)); err != nil {
			c.t.Fatalf("consistent read on %s: %v", n.ID(), err)
		}
	}
	var want string
	waitFor(c.t, 20*time.Second, "every node to hold the leader's state", func() bool {
		nodes := c.running()
		var l *Node
		for _, n := range nodes {
			if n.IsLeader() {
				l = n
			}
		}
		if l == nil {
			return false
		}
		want = stateOf(l)
		for _, n := range nodes {
			if n.AppliedIndex() != l.AppliedIndex() || stateOf(n) != want {
				return false
			}
		}
		return true
	})
	return want
}

// mustApply applies cmd on n and fails the test on any error.
func mustApply(t testing.TB, n *Node, cmd fsm.Command) *fsm.Response {
	t.Helper()
	resp, err := n.Apply(testCtx(t, 10*time.Second), cmd)
	if err != nil {
		t.Fatalf("apply %T on %s: %v", cmd, n.ID(), err)
	}
	return resp
}

func setPool(max int) *fsm.SetPool {
	return &fsm.SetPool{Pool: fsm.PoolConfig{MinSize: 0, MaxSize: max, Image: "python:3.11-slim",
		Resources: fsm.Resources{CPUCount: 1, MemoryMB: 512, DiskMB: 1024}}}
}
