package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Peer is one voter of a statically configured cluster.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // host:port of the peer's cluster port
}

// Config configures a Node. Zero durations and counts take the defaults
// below; Validate reports what is still wrong after that.
type Config struct {
	// ID names the node in the Raft configuration; stable across restarts.
	ID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// BindAddr is the one TCP address the node listens on for Raft traffic
	// and cluster RPCs ("127.0.0.1:0" picks a free port).
	BindAddr string
	// AdvertiseAddr is the address other nodes dial; empty means the bound
	// address, which must then be routable (not 0.0.0.0).
	AdvertiseAddr string

	// Bootstrap makes a node without state bootstrap a single-node cluster.
	Bootstrap bool
	// Peers is a static voter list including this node. Every node without
	// state bootstraps the same configuration from it.
	Peers []Peer
	// Join lists addresses of existing nodes to ask to add this node. Used
	// only when the node has no Raft state yet.
	Join []string
	// JoinAttempts bounds how often the join addresses are tried (default 10).
	JoinAttempts int

	// RaftMultiplier scales the four Raft timeouts below from their LAN
	// base (Base*), as Consul's and Nomad's raft_multiplier do: 1 is the
	// fastest failover, higher values tolerate slower networks and longer
	// stalls. 0 means DefaultRaftMultiplier; valid values are 1–10. A
	// timeout set explicitly is used as is.
	RaftMultiplier     int
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is the number of new log entries that triggers a
	// snapshot; TrailingLogs are kept after it so slightly lagging followers
	// catch up from the log instead of a snapshot.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// ApplyTimeout bounds one Apply, forwarding and retries included.
	ApplyTimeout time.Duration

	// TLS, when set, requires mutual TLS on the cluster port for Raft and
	// cluster RPC alike (see LoadTLS); every node of a cluster must agree.
	// nil is plain TCP: bind the port to a private network or loopback.
	TLS *TLS

	// Metrics receives the node's Raft metrics; nil disables them.
	Metrics *Metrics
	// Logger receives the node's logs and hashicorp/raft's (default slog.Default()).
	Logger *slog.Logger
}

// Base Raft timings, RaftMultiplier 1, tuned for a LAN. A follower notices
// a dead leader after 1–2 heartbeat timeouts (raft randomises them; the other
// follower refuses votes until it has noticed too) and an election takes up
// to 1–2 election timeouts more, so a write waits ~2–3 heartbeat timeouts
// after a leader dies (measured in DESIGN.md, BenchmarkLeaderKill). The lease
// must not exceed the heartbeat timeout; the commit timeout is how often an
// idle leader tells followers the commit index.
const (
	BaseHeartbeatTimeout   = 150 * time.Millisecond
	BaseElectionTimeout    = 150 * time.Millisecond
	BaseLeaderLeaseTimeout = 75 * time.Millisecond
	BaseCommitTimeout      = 10 * time.Millisecond

	// DefaultRaftMultiplier keeps writes unavailable for under 1 s (median)
	// after a leader dies, while a 100+ ms GC pause or -race stall on a
	// loaded 2-core box does not start an election. MaxRaftMultiplier is
	// Consul's and Nomad's limit.
	DefaultRaftMultiplier = 3
	MaxRaftMultiplier     = 10
)

// Defaults. The Raft timeouts are the base times DefaultRaftMultiplier.
const (
	DefaultHeartbeatTimeout   = DefaultRaftMultiplier * BaseHeartbeatTimeout
	DefaultElectionTimeout    = DefaultRaftMultiplier * BaseElectionTimeout
	DefaultLeaderLeaseTimeout = DefaultRaftMultiplier * BaseLeaderLeaseTimeout
	DefaultCommitTimeout      = DefaultRaftMultiplier * BaseCommitTimeout
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 10240
	DefaultApplyTimeout       = 10 * time.Second
	DefaultJoinAttempts       = 10
)

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.RaftMultiplier == 0 {
		c.RaftMultiplier = DefaultRaftMultiplier
	}
	// Out of range is left for Validate to report; do not scale by it.
	m := time.Duration(DefaultRaftMultiplier)
	if c.RaftMultiplier >= 1 && c.RaftMultiplier <= MaxRaftMultiplier {
		m = time.Duration(c.RaftMultiplier)
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = m * BaseHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = m * BaseElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = min(m*BaseLeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = m * BaseCommitTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.JoinAttempts == 0 {
		c.JoinAttempts = DefaultJoinAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every problem with the configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("ID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if c.BindAddr == "" {
		errs = append(errs, errors.New("BindAddr is required"))
	}
	for name, d := range map[string]time.Duration{
		"HeartbeatTimeout": c.HeartbeatTimeout, "ElectionTimeout": c.ElectionTimeout,
		"LeaderLeaseTimeout": c.LeaderLeaseTimeout, "CommitTimeout": c.CommitTimeout,
		"SnapshotInterval": c.SnapshotInterval, "ApplyTimeout": c.ApplyTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond {
		errs = append(errs, errors.New("HeartbeatTimeout and ElectionTimeout must be at least 5ms"))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("LeaderLeaseTimeout (%s) must not exceed HeartbeatTimeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.RaftMultiplier < 1 || c.RaftMultiplier > MaxRaftMultiplier {
		errs = append(errs, fmt.Errorf("RaftMultiplier must be 1–%d, got %d", MaxRaftMultiplier, c.RaftMultiplier))
	}
	if c.JoinAttempts < 0 {
		errs = append(errs, fmt.Errorf("JoinAttempts must be positive, got %d", c.JoinAttempts))
	}
	if len(c.Peers) > 0 {
		seenID, seenAddr, self := map[string]bool{}, map[string]bool{}, false
		for _, p := range c.Peers {
			switch {
			case p.ID == "" || p.Addr == "":
				errs = append(errs, fmt.Errorf("peer %q: ID and Addr are required", p.ID))
			case seenID[p.ID]:
				errs = append(errs, fmt.Errorf("peer ID %q listed twice", p.ID))
			case seenAddr[p.Addr]:
				errs = append(errs, fmt.Errorf("peer address %q listed twice", p.Addr))
			}
			seenID[p.ID], seenAddr[p.Addr] = true, true
			self = self || p.ID == c.ID
		}
		if !self {
			errs = append(errs, fmt.Errorf("Peers must include this node (%q)", c.ID))
		}
		if c.Bootstrap {
			errs = append(errs, errors.New("Bootstrap (single node) and Peers are exclusive"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster config: %w", errors.Join(errs...))
	}
	return nil
}
