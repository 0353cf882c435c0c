package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// BenchmarkLeaderKill measures write unavailability after the leader of a
// 3-node in-process cluster on loopback dies abruptly: from the kill until
// an Apply through a survivor succeeds. Each iteration is one kill; the
// killed node is restarted and caught up before the next one (at most 20). It prints the
// median per RaftMultiplier beside the default's, no assertions.
//
//	go test ./cluster -run '^$' -bench LeaderKill -benchtime 10x
//
// BENCH_RAFT_MULTIPLIERS=1,2,3 picks other multipliers (default 1 and
// DefaultRaftMultiplier).
func BenchmarkLeaderKill(b *testing.B) {
	const maxLeaderKills = 20
	mults := []int{1, DefaultRaftMultiplier}
	if s := os.Getenv("BENCH_RAFT_MULTIPLIERS"); s != "" {
		mults = nil
		for _, f := range strings.Split(s, ",") {
			m, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("BENCH_RAFT_MULTIPLIERS: %v", err)
			}
			mults = append(mults, m)
		}
	}
	type row struct {
		mult                int
		p50, minD, maxD     time.Duration
		kills               int
		heartbeat, election time.Duration
	}
	// Keyed by multiplier: the testing package may run a sub-benchmark more
	// than once (b.N = 1 first); the last run is the one reported.
	rows := map[int]row{}
	mults = slices.Compact(mults)
	for _, m := range mults {
		b.Run(fmt.Sprintf("multiplier=%d", m), func(b *testing.B) {
			c := startCluster(b, 3, bootJoin, func(cfg *Config) { cfg.RaftMultiplier = m })
			mustApply(b, c.leader(), setPool(1<<30))
			var unavail []time.Duration
			b.ResetTimer()
			// Bounded whatever -benchtime asks: each kill costs seconds.
			for i := 0; i < min(b.N, maxLeaderKills); i++ {
				old := c.leader()
				idx := c.index(old)
				var survivor *Node
				for _, n := range c.running() {
					if n != old {
						survivor = n
						break
					}
				}
				killed := time.Now()
				c.kill(idx)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := survivor.Apply(ctx, &fsm.SandboxCreate{
					Header: fsm.Header{RequestID: fmt.Sprintf("kill-%d-%d", m, i)},
					ID:     fmt.Sprintf("after-kill-%d-%d", m, i),
					Image:  "python:3.11-slim",
				})
				cancel()
				d := time.Since(killed)
				if err != nil {
					b.Fatalf("write after kill %d: %v", i, err)
				}
				unavail = append(unavail, d)
				b.StopTimer()
				c.start(idx)
				c.waitMembers(3)
				c.waitConverged()
				b.StartTimer()
			}
			b.StopTimer()
			p50 := median(unavail)
			b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
			cfg := c.cfgs[0].withDefaults()
			rows[m] = row{mult: m, p50: p50, minD: slices.Min(unavail), maxD: slices.Max(unavail),
				kills: len(unavail), heartbeat: cfg.HeartbeatTimeout, election: cfg.ElectionTimeout}
		})
	}
	def := rows[DefaultRaftMultiplier].p50
	fmt.Fprintf(os.Stdout, "\nwrite unavailability after a leader kill, 3 nodes on loopback\n")
	fmt.Fprintf(os.Stdout, "%-12s %10s %10s %6s %10s %10s %10s %14s\n",
		"multiplier", "heartbeat", "election", "kills", "min", "p50", "max", "p50 vs default")
	for _, m := range mults {
		r, ok := rows[m]
		if !ok {
			continue
		}
		ratio := "-"
		if def > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.p50)/float64(def))
		}
		fmt.Fprintf(os.Stdout, "%-12d %10s %10s %6d %10s %10s %10s %14s\n", r.mult, r.heartbeat, r.election, r.kills,
			r.minD.Round(time.Millisecond), r.p50.Round(time.Millisecond), r.maxD.Round(time.Millisecond), ratio)
	}
}

// median of ds (the upper one of an even count); ds is sorted in place.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
