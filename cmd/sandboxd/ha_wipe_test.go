package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHANodeWiped stops a node, wipes its data volume and starts it again
// on the empty volume, twice: a follower restarted with the same PEERS as
// before (what compose or a StatefulSet does when a disk is replaced), then
// the leader restarted with JOIN (README: the addresses of running nodes to
// join). Each time the cluster must take the node back and every node must
// converge to the same state, the wiped one included.
func TestHANodeWiped(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, haPhaseRounds)
	for run, join := range []bool{false, true} {
		if run > 0 {
			w.drain(t)
			w.start(haPhaseRounds)
		}
		leader := c.waitLeader(nil, 30*time.Second)
		n, what := c.others(leader)[0], "wipe follower, PEERS"
		if join {
			n, what = leader, "wipe leader, JOIN"
		}
		p := c.probe()
		time.Sleep(time.Second)
		n.stop()
		fault := p.after(what, n, time.Now())
		n.wipe(join)
		n.start()
		fault()
		c.waitLeader(nil, 30*time.Second)
		w.finish(t)
		c.verify(w)
		// How the empty node came back, in its own words.
		out, _ := exec.Command("docker", "logs", n.container).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, `msg="bootstrapping cluster"`) || strings.Contains(line, `msg="joined cluster"`) ||
				strings.Contains(line, `msg="join attempt failed"`) || strings.Contains(line, `msg="raft state found`) {
				t.Logf("%s after the wipe: %s", n.id, line)
			}
		}
	}
}

// TestHAWipedNodeVotes is the case TestHANodeWiped cannot show: a node that
// lost its disk comes back while the only other copy of recent writes is
// down. The leader commits writes with one follower (the other is cut off);
// then the leader is killed, that follower's disk is wiped, the cut-off
// follower is reconnected and the wiped one restarted. Raft counts on a
// voter never forgetting what it acknowledged: if the empty node votes, the
// stale follower wins and the writes committed before are lost. The node
// that lost its disk must not vote (or count in a quorum) until it has
// caught up; then the cluster waits for the killed leader, which has the
// writes.
//
// It failed before cluster's vote gate (fc9efd7), with PEERS and with JOIN
// alike, 3 runs of 3: the empty node bootstrapped the PEERS voter list (or,
// with JOIN, had no configuration, and Raft grants votes then), JOIN of the
// same id and address was a no-op, so it voted at once; the stale follower
// was elected and the acknowledged acquires and sessions were gone on every
// node. Now the empty node refuses votes until re-admitted and caught up,
// so no leader is elected until the killed leader is back.
func TestHAWipedNodeVotes(t *testing.T) {
	for _, join := range []bool{false, true} {
		name := "PEERS"
		if join {
			name = "JOIN"
		}
		t.Run(name, func(t *testing.T) {
			c := startHACluster(t)
			leader := c.waitLeader(nil, 30*time.Second)
			wiped, stale := c.others(leader)[0], c.others(leader)[1]
			dockerCLI(t, "network", "disconnect", c.raftNet, stale.container)

			w := c.startWorkload(2, 0)
			for _, cl := range w.users {
				cl.next = slices.Index(c.nodes, leader)
			}
			w.start(1)
			w.wg.Wait() // acknowledged by the leader and wiped, not stale
			ci, _ := leader.info()
			t.Logf("%s leads; %s acknowledged up to index %d with it; %s cut off", leader.id, wiped.id, ci.AppliedIndex, stale.id)

			dockerCLI(t, "kill", "-s", "KILL", leader.container)
			wiped.stop()
			wiped.wipe(join)
			dockerCLI(t, "network", "connect", "--alias", stale.id+"-raft", c.raftNet, stale.container)
			wiped.launch()
			// The empty node must be running before the election window
			// opens: on a loaded machine its start alone took over 15 s,
			// the old leader came back first and hid the bug.
			eventually(t, wiped.id+" serving its operator API", 60*time.Second, func() bool {
				_, err := wiped.info()
				return err == nil
			})
			// Bounded: with the empty node kept out of the quorum no leader
			// is expected here, only once the killed leader is back.
			elected := ""
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) && elected == "" {
				if ci, err := stale.info(); err == nil && ci.LeaderID != "" {
					elected = ci.LeaderID
					t.Logf("with %s down, %s (empty, %s) and %s (cut off before the writes) elected %s at applied index %d",
						leader.id, wiped.id, name, stale.id, ci.LeaderID, ci.AppliedIndex)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if elected == "" {
				t.Logf("no leader among %s and %s within 15 s of %s serving", wiped.id, stale.id, wiped.id)
			}
			leader.launch()
			c.waitReady()
			c.waitLeader(nil, 30*time.Second)
			w.finish(t)
			c.verify(w)
		})
	}
}
