package main

import (
	"os/exec"
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
