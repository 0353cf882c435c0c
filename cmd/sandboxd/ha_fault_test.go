package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Fault tests: a three-node cluster in containers while users keep working.
// Each test ends with haCluster.verify (nothing lost, nothing doubled, Docker
// matches the state, every node agrees).

// haKills and haPartitions are how often the leader is killed and cut off.
const (
	haKills      = 5
	haPartitions = 3
	// haPhaseRounds bounds each user's rounds between two faults.
	haPhaseRounds = 4
)

// TestHALeaderKilled kills the leader with SIGKILL haKills times and measures
// how long until a node commits a write; the cluster is verified after each
// kill.
func TestHALeaderKilled(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, haPhaseRounds)
	var took []time.Duration
	for run := range haKills {
		if run > 0 {
			w.drain(t)
			w.start(haPhaseRounds)
		}
		leader := c.waitLeader(nil, 30*time.Second)
		p := c.probe()
		time.Sleep(time.Second) // let the workload run against a healthy cluster
		dockerCLI(t, "kill", "-s", "KILL", leader.container)
		f := p.after(fmt.Sprintf("kill leader %d/%d", run+1, haKills), leader, time.Now())()
		if f.err == "" {
			took = append(took, f.took)
		}
		c.waitLeader(c.others(leader), 10*time.Second)
		leader.start()
		w.finish(t)
		c.verify(w)
	}
	if len(took) > 0 {
		slices.Sort(took)
		t.Logf("leader kill to a committed write over %d runs: median %v, max %v", len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	}
}

// TestHALeaderPartitioned cuts the leader off the Raft network haPartitions
// times: it must stop accepting writes, the majority must elect a new leader
// and carry on, and after the network heals the old leader must rejoin and
// converge.
func TestHALeaderPartitioned(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, haPhaseRounds)
	cut := c.client(c.name+"-cut", "user")
	for run := range haPartitions {
		if run > 0 {
			w.drain(t)
			w.start(haPhaseRounds)
		}
		leader := c.waitLeader(nil, 30*time.Second)
		p := c.probe()
		var pair struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := cut.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": cut.user}, &pair); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		dockerCLI(t, "network", "disconnect", c.raftNet, leader.container)
		f := p.after(fmt.Sprintf("partition leader %d/%d", run+1, haPartitions), leader, time.Now())()
		newLeader := c.waitLeader(c.others(leader), 15*time.Second)
		if newLeader == leader {
			t.Fatalf("the cut-off node %s still leads the majority", leader.id)
		}
		if f.err == "" && f.leader == leader.id {
			t.Errorf("run %d: the first write after the partition was committed while the cut-off %s led", run+1, leader.id)
		}
		// The old leader must refuse writes: it cannot reach a quorum. Both
		// are asked at once: each waits for the apply timeout.
		var wg sync.WaitGroup
		for _, req := range []struct {
			path, key string
			body      any
		}{
			{"/api/v1/auth/revoke", "", map[string]string{"refresh_token": pair.RefreshToken}},
			{"/api/v1/sandbox/acquire", fmt.Sprintf("cut-acquire-%d", run), nil},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, raw, err := cut.send(leader, "POST", req.path, req.key, req.body)
				if err != nil || status != 503 {
					t.Errorf("run %d: POST %s on the cut-off old leader %s: status %d %v %s, want 503", run+1, req.path, leader.id, status, err, raw)
				}
			}()
		}
		wg.Wait()
		// The majority carries on.
		if err := cut.call("POST", "/api/v1/auth/revoke", "", map[string]string{"refresh_token": pair.RefreshToken}, nil); err != nil {
			t.Fatalf("write on the majority: %v", err)
		}
		dockerCLI(t, "network", "connect", "--alias", leader.id+"-raft", c.raftNet, leader.container)
		c.waitLeader(nil, 30*time.Second)
		w.finish(t)
		c.verify(w)
	}
}

// TestHARollingUpgrade replaces every node, one at a time, with a container
// of a new image (same data volume) while users work and a reader reads; the
// cluster is verified after each node.
func TestHARollingUpgrade(t *testing.T) {
	c := startHACluster(t)
	next := c.image + "-next"
	buildSandboxdImage(t, next)
	w := c.startWorkload(3, haPhaseRounds)
	reader := c.client(c.name+"-reader", "admin")

	// The reader asks each node in turn; a round in which no node answers
	// is a moment when reads stopped.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, stopped int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ok := false
			for i := range c.nodes {
				if s, _, err := reader.send(c.nodes[(reads+i)%len(c.nodes)], "GET", "/api/v1/sandboxes", "", nil); err == nil && s == 200 {
					ok = true
					break
				}
			}
			reads++
			if !ok {
				stopped++
			}
		}
	}()
	for i, n := range c.nodes {
		if i > 0 {
			w.drain(t)
			w.start(haPhaseRounds)
		}
		leader := c.waitLeader(nil, 30*time.Second)
		what := "upgrade follower " + n.id
		if n == leader {
			what = "upgrade leader " + n.id
		}
		p := c.probe()
		time.Sleep(time.Second)
		n.stop()
		fault := p.after(what, n, time.Now())
		n.replace(next)
		n.start()
		fault()
		c.waitLeader(nil, 30*time.Second)
		w.finish(t)
		c.verify(w)
	}
	close(stop)
	wg.Wait()
	t.Logf("reader: %d read rounds during the upgrade, %d with no node answering", reads, stopped)
	if stopped > 0 || reads == 0 {
		t.Errorf("reads stopped in %d of %d rounds", stopped, reads)
	}
}

// TestHAAllKilled kills every node with SIGKILL at once while they hold
// sandboxes, starts them again, and expects all state back.
func TestHAAllKilled(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, 6)
	w.wg.Wait() // all acknowledged before the crash
	p := c.probe()
	args := []string{"kill", "-s", "KILL"}
	for _, n := range c.nodes {
		args = append(args, n.container)
	}
	dockerCLI(t, args...)
	start := time.Now()
	for _, n := range c.nodes {
		n.launch()
	}
	fault := p.after("kill all", nil, start)
	c.waitReady()
	fault()
	c.waitLeader(nil, 60*time.Second)
	w.finish(t)
	c.verify(w)
}
