package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func TestSingleNodeBootstrapApplyRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snapshot bool // restore from a snapshot plus log, not the log alone
	}{
		{"log replay", false},
		{"snapshot and log", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			metrics, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{ID: "solo", DataDir: filepath.Join(t.TempDir(), "solo"), BindAddr: "127.0.0.1:0",
				Bootstrap: true, Metrics: metrics, Logger: testLogger()}
			n, err := Open(cfg, fsm.New())
			if err != nil {
				t.Fatal(err)
			}
			if err := n.WaitForLeader(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "raft_is_leader 1", func() bool { return metricValue(t, reg, "raft_is_leader") == 1 })

			mustApply(t, n, setPool(10))
			for i := range 3 {
				resp := mustApply(t, n, &fsm.SandboxCreate{ID: fmt.Sprintf("sb-%d", i)})
				if resp.Sandbox == nil || resp.Sandbox.CreatedAt.IsZero() || resp.Index == 0 {
					t.Fatalf("create response %+v: want the sandbox, a creation time filled from the clock and a raft index", resp)
				}
			}
			if tc.snapshot {
				if err := n.raft.Snapshot().Error(); err != nil {
					t.Fatal(err)
				}
			}
			resp := mustApply(t, n, &fsm.SandboxAcquire{Header: fsm.Header{RequestID: "acq-1"}, Owner: "alice", NewID: "sb-new"})
			if resp.Sandbox.Owner != "alice" {
				t.Fatalf("acquired sandbox owner = %q, want alice", resp.Sandbox.Owner)
			}
			if got := metricValue(t, reg, "raft_apply_duration_seconds"); got != 5 {
				t.Fatalf("raft_apply_duration_seconds count = %v, want 5 applies", got)
			}
			want := stateOf(n)
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if err := n.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}

			cfg.BindAddr = n.Addr()
			cfg.Metrics = nil
			n2, err := Open(cfg, fsm.New())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n2.Close() })
			if err := n2.WaitForLeader(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := n2.ConsistentRead(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if got := stateOf(n2); got != want {
				t.Fatalf("state after restart:\n got %s\nwant %s", got, want)
			}
			if got := len(n2.FSM().Sandboxes()); got != 4 {
				t.Fatalf("sandboxes after restart = %d, want 4", got)
			}
			// The node keeps accepting writes after the restart.
			mustApply(t, n2, &fsm.SandboxCreate{ID: "sb-after"})
		})
	}
}

func TestForwardedApplyReturnsTypedErrors(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	leader, follower := c.leader(), c.follower()
	mustApply(t, follower, setPool(2))
	a := mustApply(t, follower, &fsm.SandboxAcquire{Header: fsm.Header{RequestID: "a1"}, Owner: "alice", NewID: "sb-a"})
	mustApply(t, leader, &fsm.SandboxAcquire{Header: fsm.Header{RequestID: "b1"}, Owner: "bob", NewID: "sb-b"})

	for _, tc := range []struct {
		name string
		cmd  fsm.Command
		want error
	}{
		{"acquire at max", &fsm.SandboxAcquire{Owner: "carol", NewID: "sb-c"}, fsm.ErrPoolExhausted},
		{"release another owner's sandbox", &fsm.SandboxRelease{ID: a.Sandbox.ID, Owner: "mallory"}, fsm.ErrNotFound},
		{"create an existing id", &fsm.SandboxCreate{ID: "sb-b"}, fsm.ErrExists},
		{"invalid pool", &fsm.SetPool{Pool: fsm.PoolConfig{MaxSize: 0, Image: "x"}}, fsm.ErrInvalid},
		{"resume unknown session", &fsm.SessionResume{ID: "nope", Owner: "alice"}, fsm.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []*Node{follower, leader} {
				resp, err := n.Apply(testCtx(t, 10*time.Second), tc.cmd)
				if !errors.Is(err, tc.want) {
					t.Fatalf("on %s (leader=%v): err = %v, want %v", n.ID(), n.IsLeader(), err, tc.want)
				}
				var fe *fsm.Error
				if !errors.As(err, &fe) || resp == nil || resp.Err == nil || resp.Err.Code != fe.Code {
					t.Fatalf("on %s: want the typed *fsm.Error in both the error and the response, got err %v resp %+v", n.ID(), err, resp)
				}
			}
		})
	}
	state := c.waitConverged()
	if got := len(follower.FSM().Sandboxes()); got != 2 {
		t.Fatalf("sandboxes = %d, want 2 (refused commands change nothing); state %s", got, state)
	}
}

func TestLeaderFailover(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	mustApply(t, c.follower(), setPool(100))
	old := c.leader()
	oldID := old.ID()
	killed := time.Now()
	c.kill(c.index(old))

	var next *Node
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		for _, n := range c.running() {
			if n.IsLeader() {
				next = n
				return true
			}
		}
		return false
	})
	failover := time.Since(killed)
	t.Logf("failover: new leader %s in %s after killing %s (heartbeat %s, election %s)",
		next.ID(), failover.Round(time.Millisecond), oldID, DefaultHeartbeatTimeout, DefaultElectionTimeout)

	for _, n := range c.running() {
		mustApply(t, n, &fsm.SandboxCreate{ID: "after-" + n.ID()})
	}
	if id, _ := c.running()[0].Leader(); id == oldID || id == "" {
		t.Fatalf("leader id = %q, want a survivor", id)
	}
	c.waitConverged()
	// The old leader comes back as a follower and catches up.
	back := c.start(c.index(nil))
	c.waitConverged()
	if _, err := back.FSM().Sandbox("after-" + next.ID()); err != nil {
		t.Fatalf("restarted old leader misses a write made while it was down: %v", err)
	}
}

func TestFollowerCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name         string
		writes       int
		wantSnapshot bool // the leader compacted its log past the follower
	}{
		{"from the log", 30, false},
		{"from a snapshot", 120, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3, bootJoin, func(cfg *Config) {
				cfg.SnapshotThreshold = 40
				cfg.TrailingLogs = 10
				cfg.SnapshotInterval = time.Hour // snapshots are taken explicitly below
			})
			mustApply(t, c.leader(), setPool(1000))
			f := c.follower()
			fi := c.index(f)
			c.kill(fi)
			l := c.leader()
			for i := range tc.writes {
				mustApply(t, l, &fsm.SandboxCreate{ID: "sb-" + strconv.Itoa(i)})
			}
			if tc.wantSnapshot {
				if err := l.raft.Snapshot().Error(); err != nil {
					t.Fatal(err)
				}
			}
			back := c.start(fi)
			c.waitConverged()
			if got := len(back.FSM().Sandboxes()); got != tc.writes {
				t.Fatalf("restarted follower has %d sandboxes, want %d", got, tc.writes)
			}
			gotSnap := back.Stats()["last_snapshot_index"] != "0"
			if gotSnap != tc.wantSnapshot {
				t.Fatalf("follower installed a snapshot = %v (last_snapshot_index %s), want %v",
					gotSnap, back.Stats()["last_snapshot_index"], tc.wantSnapshot)
			}
		})
	}
}

func TestWholeClusterRestart(t *testing.T) {
	c := startCluster(t, 3, bootPeers, nil)
	mustApply(t, c.leader(), setPool(1000))
	var acked []string
	for i := range 30 {
		n := c.running()[i%3]
		id := fmt.Sprintf("sb-%d", i)
		mustApply(t, n, &fsm.SandboxCreate{Header: fsm.Header{RequestID: "create-" + id}, ID: id})
		acked = append(acked, id)
	}
	for i := range c.nodes {
		if err := c.node(i).Close(); err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = nil
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.leader()
	c.waitConverged()
	for _, n := range c.running() {
		for _, id := range acked {
			if _, err := n.FSM().Sandbox(id); err != nil {
				t.Fatalf("node %s lost acknowledged sandbox %s after a full restart: %v", n.ID(), id, err)
			}
		}
		if got := n.FSM().Pool().MaxSize; got != 1000 {
			t.Fatalf("node %s pool max after restart = %d, want 1000", n.ID(), got)
		}
	}
}

func TestRequestIDAppliedOnceAcrossLeaderChange(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	mustApply(t, c.leader(), setPool(10))
	acquire := func(newID string) *fsm.SandboxAcquire {
		return &fsm.SandboxAcquire{Header: fsm.Header{RequestID: "alice/acquire-1"}, Owner: "alice", NewID: newID}
	}
	first := mustApply(t, c.follower(), acquire("sb-first"))
	c.kill(c.index(c.leader()))
	// The client did not see the answer and retries on another node after the
	// failover; the retry carries a fresh NewID as a careless client would.
	second := mustApply(t, c.follower(), acquire("sb-second"))
	if second.Sandbox == nil || second.Sandbox.ID != first.Sandbox.ID {
		t.Fatalf("retried acquire returned %+v, want the first sandbox %s", second.Sandbox, first.Sandbox.ID)
	}
	c.waitConverged()
	for _, n := range c.running() {
		if got := n.FSM().SandboxesByOwner("alice"); len(got) != 1 {
			t.Fatalf("node %s: alice owns %d sandboxes, want 1", n.ID(), len(got))
		}
	}
}

func TestJoinRemoveIdempotent(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	ctx := testCtx(t, 30*time.Second)
	servers := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		ss, err := c.leader().Servers()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			got[s.ID] = s.Addr
		}
		return got
	}
	n2addr := c.node(2).Addr()

	for _, tc := range []struct {
		name string
		op   func() error
		want map[string]string
	}{
		{"join same id and addr on the leader", func() error { return c.leader().Join(ctx, "n2", n2addr) }, nil},
		{"join same id and addr via a follower", func() error { return c.follower().Join(ctx, "n2", n2addr) }, nil},
		{"remove an unknown id", func() error { return c.follower().Remove(ctx, "ghost") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := servers()
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			if got := servers(); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("servers changed: %v -> %v", before, got)
			}
		})
	}

	t.Run("same id at a new address replaces the stale entry", func(t *testing.T) {
		c.kill(2)
		c.cfgs[2].BindAddr = "127.0.0.1:0"
		moved := c.start(2)
		if moved.Addr() == n2addr {
			t.Fatal("restarted node got its old port; cannot test an address change")
		}
		if err := c.node(0).Join(ctx, "n2", moved.Addr()); err != nil {
			t.Fatal(err)
		}
		if got := servers(); len(got) != 3 || got["n2"] != moved.Addr() {
			t.Fatalf("servers = %v, want 3 with n2 at %s", got, moved.Addr())
		}
		mustApply(t, c.leader(), setPool(5))
		c.waitConverged()
	})

	t.Run("remove twice, then leave", func(t *testing.T) {
		victim := c.follower()
		for range 2 {
			if err := c.leader().Remove(ctx, victim.ID()); err != nil {
				t.Fatal(err)
			}
		}
		if got := servers(); len(got) != 2 || got[victim.ID()] != "" {
			t.Fatalf("servers after remove = %v, want 2 without %s", got, victim.ID())
		}
		c.kill(c.index(victim))
		l := c.leader()
		if err := l.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		var rest *Node
		for _, n := range c.running() {
			if n != l {
				rest = n
			}
		}
		waitFor(t, 10*time.Second, "the remaining node to lead alone", func() bool {
			ss, err := rest.Servers()
			return err == nil && len(ss) == 1 && ss[0].ID == rest.ID() && rest.IsLeader()
		})
		mustApply(t, rest, setPool(7))
	})
}

func TestLeaderChFanOut(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	l := c.leader()
	slow, fast := l.LeaderCh(), l.LeaderCh()
	if v := <-fast; !v {
		t.Fatal("first value on the leader's LeaderCh = false, want true")
	}
	// Closing hands leadership over; the reader that never read still gets
	// the latest value rather than blocking the node.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c.nodes[c.index(l)] = nil
	var last bool
	for v := range slow {
		last = v
	}
	if last {
		t.Fatal("last value on a closed former leader's LeaderCh = true, want false")
	}
	if _, ok := <-fast; ok {
		for range fast {
		}
	}
	next := c.leader()
	if next == l {
		t.Fatal("leader did not change")
	}
}

// metricValue returns a gauge's or counter's value or a histogram's sample count.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		switch mf.GetType() {
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
