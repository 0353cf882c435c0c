package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's Prometheus collectors. Create them once per
// registry with NewMetrics and pass them in Config.Metrics.
type Metrics struct {
	isLeader      prometheus.Gauge
	applyDuration prometheus.Histogram
	appliedIndex  prometheus.Gauge
	lastContact   prometheus.Gauge
	peers         prometheus.Gauge
	// corruptEntries counts log entries the FSM skipped as undecodable.
	corruptEntries prometheus.Counter
}

// NewMetrics registers the Raft collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raft_is_leader",
			Help: "1 if this node is the Raft leader, else 0.",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raft_apply_duration_seconds",
			Help: "Time from raft.Apply on the leader until the command is committed and applied (commit latency).",
			// 100 µs .. ~3 s: a loopback commit is ~1 ms, a failover seconds.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}),
		appliedIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raft_applied_index",
			Help: "Index of the last Raft log entry applied on this node.",
		}),
		lastContact: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raft_last_contact_seconds",
			Help: "Seconds since this follower last heard from the leader (0 on the leader).",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raft_peers",
			Help: "Number of voters in the Raft configuration, this node included.",
		}),
		corruptEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raft_fsm_corrupt_entries_total",
			Help: "Raft log entries this node's FSM could not decode and skipped (replays after a restart count again); any is worth an alert.",
		}),
	}
	for _, c := range []prometheus.Collector{m.isLeader, m.applyDuration, m.appliedIndex, m.lastContact, m.peers, m.corruptEntries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register raft metrics: %w", err)
		}
	}
	return m, nil
}
