package cluster

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func sandboxIDs(n *Node) []string {
	var ids []string
	for _, s := range n.FSM().Sandboxes() {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestSnapshotRestoreThroughFollower: a snapshot written on one node and
// restored through a follower replaces the state on every node; writes go
// on afterwards, with applied indexes past the restore; a bad document is
// refused before raft sees it (raft would panic) and changes nothing.
func TestSnapshotRestoreThroughFollower(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	mustApply(t, c.leader(), setPool(10))
	mustApply(t, c.follower(), &fsm.SandboxCreate{ID: "saved"})
	c.waitConverged()

	var saved bytes.Buffer
	if err := c.follower().WriteSnapshot(&saved); err != nil {
		t.Fatal(err)
	}
	if err := ValidateSnapshot(saved.Bytes()); err != nil {
		t.Fatalf("a written snapshot does not validate: %v", err)
	}
	mustApply(t, c.leader(), &fsm.SandboxCreate{ID: "later"})
	mustApply(t, c.leader(), setPool(20))
	before := c.waitConverged()
	beforeIndex := c.leader().AppliedIndex()

	for _, bad := range []string{"", "not json", `{"version":99}`, `{"version":1,"sandboxes":[{"id":"x"},{"id":"x"}]`} {
		err := c.follower().Restore(testCtx(t, 10*time.Second), []byte(bad))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("restore of %q: %v, want refused", bad, err)
		}
	}
	if got := c.waitConverged(); got != before {
		t.Fatalf("refused restores changed the state:\n%s\nwant\n%s", got, before)
	}

	if err := c.follower().Restore(testCtx(t, 20*time.Second), saved.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	for _, n := range c.running() {
		if ids := sandboxIDs(n); !slices.Equal(ids, []string{"saved"}) || n.FSM().Pool().MaxSize != 10 {
			t.Fatalf("%s after the restore: sandboxes %v, pool max %d; want [saved], 10", n.ID(), ids, n.FSM().Pool().MaxSize)
		}
		if n.AppliedIndex() <= beforeIndex {
			t.Fatalf("%s applied index %d after the restore, not past %d: index waits would hang", n.ID(), n.AppliedIndex(), beforeIndex)
		}
	}
	mustApply(t, c.follower(), &fsm.SandboxCreate{ID: "after"})
	c.waitConverged()
	for _, n := range c.running() {
		if ids := sandboxIDs(n); !slices.Equal(ids, []string{"after", "saved"}) {
			t.Fatalf("%s after a write past the restore: %v", n.ID(), ids)
		}
	}
	// The same on the leader itself, without forwarding.
	if err := c.leader().Restore(testCtx(t, 20*time.Second), saved.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	for _, n := range c.running() {
		if ids := sandboxIDs(n); !slices.Equal(ids, []string{"saved"}) {
			t.Fatalf("%s after a restore on the leader: %v", n.ID(), ids)
		}
	}
}

func TestMembersProbe(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	c.waitConverged()
	dead := c.follower()
	deadID := dead.ID()
	c.kill(c.index(dead))
	var asker *Node
	for _, n := range c.running() {
		asker = n
	}
	ms, err := asker.Members(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members %+v, want 3", ms)
	}
	for _, m := range ms {
		if m.Reachable == (m.ID == deadID) || !m.Voter {
			t.Errorf("member %+v (dead: %s)", m, deadID)
		}
		if m.Reachable && m.LastIndex == 0 {
			t.Errorf("reachable member %s without a last index", m.ID)
		}
	}
}
