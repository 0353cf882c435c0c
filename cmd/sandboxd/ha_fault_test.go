package main

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Fault tests: a three-node cluster in containers while users keep working.
// Each test ends with haCluster.verify (nothing lost, nothing doubled, Docker
// matches the state, every node agrees).

// TestHALeaderKilled kills the leader with SIGKILL three times and measures
// how long until a surviving node commits a write.
func TestHALeaderKilled(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, 12)
	probe := c.client(c.name+"-probe", "user")
	var took []time.Duration
	for run := range 3 {
		leader := c.waitLeader(nil, 30*time.Second)
		// A refresh token to revoke: revocation is a linearizable Raft
		// write with no side effects, so it times the new leader alone.
		var pair struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := probe.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": probe.user}, &pair); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // let the workload run against a healthy cluster
		start := time.Now()
		dockerCLI(t, "kill", "-s", "KILL", leader.container)
		survivor := c.others(leader)[run%2]
		status := 0
		for time.Since(start) < 30*time.Second {
			s, _, err := probe.send(survivor, "POST", "/api/v1/auth/revoke", "", map[string]string{"refresh_token": pair.RefreshToken})
			if err == nil && s == 204 {
				status = s
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if status != 204 {
			t.Fatalf("run %d: no write committed on %s within 30 s of killing leader %s", run+1, survivor.id, leader.id)
		}
		took = append(took, time.Since(start))
		newLeader := c.waitLeader(c.others(leader), 10*time.Second)
		t.Logf("run %d: killed leader %s; %s leads; a write committed %v after the kill", run+1, leader.id, newLeader.id, took[run].Round(time.Millisecond))
		leader.start()
	}
	slices.Sort(took)
	t.Logf("leader failover to a committed write over %d runs: median %v, max %v", len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	if max := took[len(took)-1]; max > 2*time.Second {
		t.Errorf("a new leader took %v to serve a write, want within 2 s", max)
	}
	w.finish(t)
	c.verify(w)
}

// TestHALeaderPartitioned cuts the leader off the Raft network: it must stop
// accepting writes, the majority must elect a new leader and carry on, and
// after the network heals the old leader must rejoin and converge.
func TestHALeaderPartitioned(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, 10)
	time.Sleep(2 * time.Second)
	leader := c.waitLeader(nil, 30*time.Second)
	dockerCLI(t, "network", "disconnect", c.raftNet, leader.container)

	majority := c.others(leader)
	newLeader := c.waitLeader(majority, 15*time.Second)
	if newLeader == leader {
		t.Fatalf("the cut-off node %s still leads the majority", leader.id)
	}
	// The old leader must refuse writes: it cannot reach a quorum.
	cut := c.client(c.name+"-cut", "user")
	var pair struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := cut.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": cut.user}, &pair); err != nil {
		t.Fatal(err)
	}
	status, raw, err := cut.send(leader, "POST", "/api/v1/auth/revoke", "", map[string]string{"refresh_token": pair.RefreshToken})
	if err != nil || status != 503 {
		t.Fatalf("write on the cut-off old leader %s: status %d %v %s, want 503", leader.id, status, err, raw)
	}
	status, raw, err = cut.send(leader, "POST", "/api/v1/sandbox/acquire", "cut-acquire", nil)
	if err != nil || status != 503 {
		t.Fatalf("acquire on the cut-off old leader %s: status %d %v %s, want 503", leader.id, status, err, raw)
	}
	// The majority carries on.
	if err := cut.call("POST", "/api/v1/auth/revoke", "", map[string]string{"refresh_token": pair.RefreshToken}, nil); err != nil {
		t.Fatalf("write on the majority: %v", err)
	}
	time.Sleep(3 * time.Second)
	dockerCLI(t, "network", "connect", "--alias", leader.id+"-raft", c.raftNet, leader.container)
	c.waitLeader(nil, 30*time.Second)
	w.finish(t)
	c.verify(w)
}

// TestHARollingUpgrade replaces every node, one at a time, with a container
// of a new image (same data volume) while users work and a reader reads.
func TestHARollingUpgrade(t *testing.T) {
	c := startHACluster(t)
	next := c.image + "-next"
	buildSandboxdImage(t, next)
	w := c.startWorkload(3, 10)
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
	for _, n := range c.nodes {
		n.recreate(next)
		c.waitLeader(nil, 30*time.Second)
		t.Logf("node %s upgraded", n.id)
	}
	close(stop)
	wg.Wait()
	t.Logf("reader: %d read rounds during the upgrade, %d with no node answering", reads, stopped)
	if stopped > 0 || reads == 0 {
		t.Errorf("reads stopped in %d of %d rounds", stopped, reads)
	}
	w.finish(t)
	c.verify(w)
}

// TestHAAllKilled kills every node with SIGKILL at once while they hold
// sandboxes, starts them again, and expects all state back.
func TestHAAllKilled(t *testing.T) {
	c := startHACluster(t)
	w := c.startWorkload(3, 6)
	w.wg.Wait() // all acknowledged before the crash
	args := []string{"kill", "-s", "KILL"}
	for _, n := range c.nodes {
		args = append(args, n.container)
	}
	dockerCLI(t, args...)
	for _, n := range c.nodes {
		n.launch()
	}
	c.waitReady()
	c.waitLeader(nil, 60*time.Second)
	w.finish(t)
	c.verify(w)
}
