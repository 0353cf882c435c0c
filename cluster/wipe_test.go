package cluster

import (
	"os"
	"testing"
	"time"
)

// TestWipedNodeDoesNotVote: the leader commits a write with follower W
// while follower S is down; the leader is killed, W's data dir wiped and W
// reopened with the same id (with its PEERS, or with JOIN), and S
// restarted. W must not vote until it has caught up, so S (which lacks the
// write) cannot be elected with W's vote; once the old leader is back the
// write is on every node and W is a voter again.
func TestWipedNodeDoesNotVote(t *testing.T) {
	for _, join := range []bool{false, true} {
		name := "PEERS"
		if join {
			name = "JOIN"
		}
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, 3, bootPeers, nil)
			l := c.leader()
			li := c.index(l)
			wi, si := (li+1)%3, (li+2)%3
			c.kill(si)
			mustApply(t, l, setPool(7)) // committed by l and W alone
			c.kill(li)
			c.kill(wi)
			if err := os.RemoveAll(c.cfgs[wi].DataDir); err != nil {
				t.Fatal(err)
			}
			s := c.start(si)
			if join {
				c.cfgs[wi].Peers = nil
				c.cfgs[wi].Join = []string{c.cfgs[li].BindAddr, c.cfgs[si].BindAddr}
			}
			w := c.start(wi)

			// S campaigns as soon as its heartbeat times out; W answers
			// every (pre-)vote request. Without the fix S wins here.
			waitFor(t, 20*time.Second, "S to lead or W to refuse it a vote", func() bool {
				return s.IsLeader() || w.gate.refused.Load() > 0
			})
			if s.IsLeader() || w.IsLeader() {
				t.Fatalf("a leader was elected without the write: s=%v w=%v", s.IsLeader(), w.IsLeader())
			}
			if !w.Readmitting() {
				t.Fatal("wiped node is not re-admitting")
			}

			c.start(li)
			c.waitMembers(3) // W a voter again, re-admission done
			c.waitConverged()
			for _, n := range c.running() {
				if got := n.FSM().Pool().MaxSize; got != 7 {
					t.Errorf("%s: pool max %d, want the committed 7", n.ID(), got)
				}
			}
		})
	}
}

// TestJoinAsNonvoter: a join without a vote adds a non-voter, a join with
// one promotes it, and asking a voter for a non-voter leaves it a voter
// (the re-admitting node refuses votes itself; the quorum does not shrink).
func TestJoinAsNonvoter(t *testing.T) {
	c := startCluster(t, 1, bootJoin, nil)
	l := c.node(0)
	voterOf := func(id string) (member, voter bool) {
		servers, err := l.Servers()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if s.ID == id {
				return true, s.Voter
			}
		}
		return false, false
	}
	ctx := testCtx(t, 10*time.Second)
	if err := l.joinAs(ctx, "n9", "127.0.0.1:1", false); err != nil {
		t.Fatal(err)
	}
	if m, v := voterOf("n9"); !m || v {
		t.Fatalf("after join as non-voter: member=%v voter=%v", m, v)
	}
	if err := l.joinAs(ctx, "n9", "127.0.0.1:1", true); err != nil {
		t.Fatal(err)
	}
	if m, v := voterOf("n9"); !m || !v {
		t.Fatalf("after promotion: member=%v voter=%v", m, v)
	}
	if err := l.joinAs(ctx, "n9", "127.0.0.1:1", false); err != nil {
		t.Fatal(err)
	}
	if m, v := voterOf("n9"); !m || !v {
		t.Fatalf("a voter asking again without a vote: member=%v voter=%v", m, v)
	}
}

// TestJoinCatchesUpBeforeVoting: a node that joins with JOIN ends a voter
// holding the log it joined behind.
func TestJoinCatchesUpBeforeVoting(t *testing.T) {
	c := startCluster(t, 1, bootJoin, nil)
	for i := range 20 {
		mustApply(t, c.node(0), setPool(i+1))
	}
	cfg := Config{ID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Logger: testLogger(),
		Join: []string{c.node(0).Addr()}}
	c.mu.Lock()
	c.nodes = append(c.nodes, nil)
	c.cfgs = append(c.cfgs, cfg)
	c.mu.Unlock()
	n := c.start(1)
	c.waitMembers(2)
	if got := n.FSM().Pool().MaxSize; got != 20 {
		t.Fatalf("joined voter has pool max %d, want 20", got)
	}
}
