package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// haFault is one fault a test ran and how long writes were unavailable
// after it.
type haFault struct {
	what   string // "kill leader 3/5", "partition leader", ...
	node   string // the node the fault hit
	leader string // who led once writes were back
	// took is from the fault command's return (the fault is in effect) to
	// the first write any node committed after it; 0 with err set when none
	// did within the bound.
	took time.Duration
	err  string
}

// haProbeBound bounds the wait for the first write after one fault.
const haProbeBound = 60 * time.Second

// writeProbe is a refresh token minted before a fault, so that the first
// write after it is a revocation: a linearizable Raft write with no side
// effects, which times the cluster alone.
type writeProbe struct {
	c       *haCluster
	access  string // revoke is an authenticated call
	refresh string
}

// probe mints the token writeAfter will revoke. Call it before the fault.
func (c *haCluster) probe() writeProbe {
	c.t.Helper()
	var pair struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	cl := &haClient{c: c, user: c.name + "-probe", hc: &http.Client{Timeout: 30 * time.Second}}
	if err := cl.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": cl.user}, &pair); err != nil {
		c.t.Fatalf("probe token: %v", err)
	}
	return writeProbe{c: c, access: pair.AccessToken, refresh: pair.RefreshToken}
}

// after starts timing the fault what on node (nil: every node), which took
// effect at start: every 50 ms it asks each node's current address to
// revoke the probe's token (a follower forwards to the leader), each
// attempt in its own goroutine and bounded by 3 s, so an attempt stuck on a
// dead or cut-off node (or forwarded to one) does not hold back the next.
// The returned func waits for the first 204 (at most haProbeBound after
// start), records the fault and returns it; call it from the test's
// goroutine.
func (p writeProbe) after(what string, node *haNode, start time.Time) func() haFault {
	c := p.c
	body, _ := json.Marshal(map[string]string{"refresh_token": p.refresh})
	done := make(chan struct{})
	won := make(chan probeResult, 1) // the first answer; later ones are dropped
	hc := &http.Client{Timeout: 3 * time.Second}
	attempt := func(api string) {
		req, _ := http.NewRequest("POST", api+"/api/v1/auth/revoke", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+p.access)
		resp, err := hc.Do(req)
		if err != nil {
			return
		}
		resp.Body.Close()
		// 204, or a refusal no retry fixes: said instead of timing out.
		if resp.StatusCode == 204 || (resp.StatusCode < 500 && resp.StatusCode != 429) {
			select {
			case won <- probeResult{took: time.Since(start), status: resp.StatusCode}:
			default:
			}
		}
	}
	var apis []string
	for _, n := range c.nodes {
		apis = append(apis, n.api)
	}
	go func() {
		tick := time.NewTicker(haProbeEvery)
		defer tick.Stop()
		for {
			for _, api := range apis {
				go attempt(api)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() haFault { return p.record(what, node, start, won, done) }
}

// haProbeEvery is how often a probe sends a new write to each node.
const haProbeEvery = 50 * time.Millisecond

// probeResult is the first final answer to a probe's revoke.
type probeResult struct {
	took   time.Duration
	status int
}

func (p writeProbe) record(what string, node *haNode, start time.Time, won chan probeResult, done chan struct{}) haFault {
	c := p.c
	f := haFault{what: what, node: "all"}
	if node != nil {
		f.node = node.id
	}
	select {
	case r := <-won:
		f.took = r.took
		if r.status != 204 {
			f.took, f.err = 0, fmt.Sprintf("revoke refused with status %d", r.status)
		}
	case <-time.After(haProbeBound - time.Since(start)):
		f.err = fmt.Sprintf("no write committed within %v", haProbeBound)
	}
	close(done)
	if f.err == "" {
		for _, n := range c.nodes {
			if ci, err := n.info(); err == nil && ci.LeaderID != "" {
				f.leader = ci.LeaderID
				break
			}
		}
	}
	c.faults = append(c.faults, f)
	c.t.Logf("fault %q on %s: first write %v after it (leader %s) %s", what, f.node, f.took.Round(time.Millisecond), f.leader, f.err)
	if f.err != "" {
		c.t.Errorf("fault %q on %s: %s", what, f.node, f.err)
	}
	return f
}

// logFaults prints the test's faults as a table.
func (c *haCluster) logFaults() {
	if len(c.faults) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "write unavailability per fault (fault command returned -> first committed write):\n")
	fmt.Fprintf(&b, "  %-28s %-5s %-7s %12s\n", "fault", "node", "leader", "unavailable")
	for _, f := range c.faults {
		took := f.took.Round(time.Millisecond).String()
		if f.err != "" {
			took = f.err
		}
		fmt.Fprintf(&b, "  %-28s %-5s %-7s %12s\n", f.what, f.node, f.leader, took)
	}
	c.t.Log(b.String())
}
