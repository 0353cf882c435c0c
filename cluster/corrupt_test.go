package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// An undecodable entry that reached the log (here proposed straight to
// raft, past Apply's check) is skipped by every node alike: the cluster keeps
// applying the entries after it, counts it, and every node replays it
// without harm after a restart.
func TestCorruptEntrySkippedEverywhere(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bad json", []byte{byte(fsm.TypeSandboxCreate), '{'}},
		{"unknown type", []byte{0x7e, '{', '}'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regs := map[string]*prometheus.Registry{}
			c := startCluster(t, 3, bootPeers, func(cfg *Config) {
				reg := prometheus.NewRegistry()
				m, err := NewMetrics(reg)
				if err != nil {
					t.Fatal(err)
				}
				regs[cfg.ID], cfg.Metrics = reg, m
			})
			leader := c.leader()
			mustApply(t, leader, setPool(5))

			fut := leader.raft.Apply(tc.data, 5*time.Second)
			if err := fut.Error(); err != nil {
				t.Fatalf("raft apply of the corrupt entry: %v", err)
			}
			resp, ok := fut.Response().(*fsm.Response)
			if !ok || !errors.Is(resp.Error(), fsm.ErrInvalid) {
				t.Fatalf("corrupt entry response %#v, want an invalid error", fut.Response())
			}
			mustApply(t, c.follower(), &fsm.SandboxCreate{ID: "after"})
			want := c.waitConverged()
			for _, n := range c.running() {
				if _, err := n.FSM().Sandbox("after"); err != nil {
					t.Fatalf("node %s did not apply the entry after the corrupt one: %v", n.ID(), err)
				}
				if got := n.FSM().CorruptEntries(); got != 1 {
					t.Fatalf("node %s skipped %d corrupt entries, want 1", n.ID(), got)
				}
				waitFor(t, 5*time.Second, "raft_fsm_corrupt_entries_total 1 on "+n.ID(), func() bool {
					return metricValue(t, regs[n.ID()], "raft_fsm_corrupt_entries_total") == 1
				})
			}

			// Every node restarts from its log, replaying the corrupt entry.
			for i := range c.nodes {
				c.kill(i)
			}
			for i := range c.nodes {
				c.start(i)
			}
			c.leader()
			if got := c.waitConverged(); got != want {
				t.Fatalf("state after restart:\n got %s\nwant %s", got, want)
			}
			for _, n := range c.running() {
				if got := n.FSM().CorruptEntries(); got != 1 {
					t.Fatalf("node %s skipped %d corrupt entries on replay, want 1", n.ID(), got)
				}
			}
			mustApply(t, c.follower(), &fsm.SandboxCreate{ID: "after-restart"})
			c.waitConverged()
		})
	}
}
