package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/cluster/consulfake"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newDiscovery(t *testing.T, consul *consulfake.Server, id, raftAddr string, healthy func() error) *cluster.Discovery {
	t.Helper()
	d, err := cluster.NewDiscovery(cluster.DiscoveryConfig{
		ConsulAddr: consul.Addr(), NodeID: id, RaftAddr: raftAddr, HTTPAddr: "127.0.0.1:0",
		BootstrapExpect: 3, TTL: 300 * time.Millisecond, Healthy: healthy,
		BootstrapTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// Three servers started at once each wait for the other two, compute the
// same bootstrap set, and the three real Raft nodes opened from it elect
// one leader and replicate a write.
func TestDiscoveryBootstrapsOneCluster(t *testing.T) {
	consul := consulfake.New()
	defer consul.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ids := []string{"node-c", "node-a", "node-b"}
	addrs := map[string]string{}
	for _, id := range ids {
		addrs[id] = freeAddr(t)
	}
	results := make([][]cluster.Peer, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		d := newDiscovery(t, consul, id, addrs[id], nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Register(ctx); err != nil {
				errs[i] = err
				return
			}
			var join bool
			results[i], join, errs[i] = d.BootstrapPeers(ctx)
			if join {
				errs[i] = fmt.Errorf("%s was told to join an existing cluster", id)
			}
		}()
	}
	wg.Wait()
	want := []cluster.Peer{{ID: "node-a", Addr: addrs["node-a"]}, {ID: "node-b", Addr: addrs["node-b"]}, {ID: "node-c", Addr: addrs["node-c"]}}
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("%s: %v", ids[i], errs[i])
		}
		if !reflect.DeepEqual(results[i], want) {
			t.Fatalf("%s bootstrap set %v, want %v", ids[i], results[i], want)
		}
	}

	var nodes []*cluster.Node
	for i, id := range ids {
		n, err := cluster.Open(cluster.Config{
			ID: id, DataDir: t.TempDir(), BindAddr: addrs[id], Peers: results[i],
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		}, fsm.New())
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		nodes = append(nodes, n)
		t.Cleanup(func() { _ = n.Close() })
	}
	for _, n := range nodes {
		if err := n.WaitForLeader(ctx); err != nil {
			t.Fatalf("wait for leader: %v", err)
		}
	}
	leaders := 0
	for _, n := range nodes {
		if n.IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders, want 1", leaders)
	}
	pool := fsm.PoolConfig{MinSize: 1, MaxSize: 7, Image: "img"}
	if _, err := nodes[0].Apply(ctx, &fsm.SetPool{Pool: pool}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, n := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for n.FSM().Pool().MaxSize != 7 {
			if time.Now().After(deadline) {
				t.Fatal("write did not replicate to every node")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A node whose health fails, or that stops heartbeating, drops out; a node
// that registers later is reported as a join; a node that leaves, as a leave.
func TestDiscoveryWatchReportsJoinsAndLeaves(t *testing.T) {
	consul := consulfake.New()
	defer consul.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var sick atomic.Bool
	a := newDiscovery(t, consul, "a", "127.0.0.1:7001", nil)
	b := newDiscovery(t, consul, "b", "127.0.0.1:7002", func() error {
		if sick.Load() {
			return errors.New("raft has no leader")
		}
		return nil
	})
	for _, d := range []*cluster.Discovery{a, b} {
		if err := d.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	events := make(chan cluster.MemberEvent, 16)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Watch(wctx, func(e cluster.MemberEvent) { events <- e }) }()
	defer func() { wcancel(); <-done }()

	next := func(what string) cluster.MemberEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no event: %s", what)
			return cluster.MemberEvent{}
		}
	}
	// Let the watch take its baseline of {a, b} before changing anything.
	waitPassing(t, a, 2)
	time.Sleep(100 * time.Millisecond)

	c := newDiscovery(t, consul, "c", "127.0.0.1:7003", nil)
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if e := next("c joins"); !e.Joined || e.Peer.ID != "c" || e.Peer.Addr != "127.0.0.1:7003" {
		t.Errorf("event %+v, want c joined", e)
	}

	sick.Store(true)
	if e := next("b fails its health"); e.Joined || e.Peer.ID != "b" {
		t.Errorf("event %+v, want b left", e)
	}
	sick.Store(false)
	if e := next("b recovers"); !e.Joined || e.Peer.ID != "b" {
		t.Errorf("event %+v, want b joined again", e)
	}

	// c dies without deregistering: its TTL runs out.
	if err := stopHeartbeatOnly(c); err != nil {
		t.Fatal(err)
	}
	if e := next("c's TTL expires"); e.Joined || e.Peer.ID != "c" {
		t.Errorf("event %+v, want c left", e)
	}
	if got := consul.CheckStatus("cloud-sandbox:c:ttl"); got != "critical" {
		t.Errorf("c's check is %q, want critical", got)
	}

	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if e := next("b leaves"); e.Joined || e.Peer.ID != "b" {
		t.Errorf("event %+v, want b left", e)
	}
}

// stopHeartbeatOnly simulates a crash: the process is gone, the
// registration stays. Closing through a dead Consul address does that.
func stopHeartbeatOnly(d *cluster.Discovery) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deregister request fails at once; the heartbeat stops
	if err := d.Close(ctx); err == nil {
		return errors.New("close with a cancelled context deregistered")
	}
	return nil
}

func waitPassing(t *testing.T, d *cluster.Discovery, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps, _, err := d.Passing(context.Background(), 0, 0)
		if err == nil && len(ps) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("passing = %v (%v), want %d", ps, err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
