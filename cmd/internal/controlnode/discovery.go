package controlnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
)

// discovery finds the Raft peers through Consul when CONSUL_HTTP_ADDR is set;
// without it the static -peers/-join flags stand.
type discovery struct {
	d    *cluster.Discovery
	node atomic.Pointer[cluster.Node]
	log  *slog.Logger
}

// discover registers this node in Consul and waits (bounded by the
// discovery's BootstrapTimeout) for BOOTSTRAP_EXPECT passing servers, then
// fills cfg.Peers (a first cluster: every node bootstraps with the same
// sorted set) or cfg.Join (a cluster already exists). It returns nil when
// Consul is not configured.
func discover(ctx context.Context, cfg *config, log *slog.Logger) (*discovery, error) {
	dcfg, ok, err := cluster.DiscoveryConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("consul discovery: %w", err)
	}
	if !ok {
		return nil, nil
	}
	disc := &discovery{log: log}
	dcfg.NodeID = cfg.NodeID
	dcfg.RaftAddr = cfg.Advertise
	dcfg.HTTPAddr = cfg.HTTPAdvertise
	if dcfg.HTTPAddr == "" {
		dcfg.HTTPAddr = cfg.Listen
	}
	dcfg.Logger = log
	// Passing while starting (so peers can find us to bootstrap), then only
	// while the node knows a leader.
	dcfg.Healthy = func() error {
		n := disc.node.Load()
		if n == nil {
			return nil
		}
		if id, _ := n.Leader(); id == "" {
			return errors.New("no raft leader known")
		}
		return nil
	}
	if disc.d, err = cluster.NewDiscovery(dcfg); err != nil {
		return nil, fmt.Errorf("consul discovery: %w", err)
	}
	if err := disc.d.Register(ctx); err != nil {
		return nil, fmt.Errorf("consul register: %w", err)
	}
	peers, join, err := disc.d.BootstrapPeers(ctx)
	if err != nil {
		disc.d.Close(context.Background())
		return nil, fmt.Errorf("consul bootstrap: %w", err)
	}
	cfg.Bootstrap = false
	if join {
		for _, p := range peers {
			if p.ID != cfg.NodeID {
				cfg.Join = append(cfg.Join, p.Addr)
			}
		}
	} else {
		cfg.Peers = peers
	}
	log.Info("peers from consul", "peers", len(peers), "join", join)
	return disc, nil
}

// run adds servers that appear in Consul later to the Raft configuration,
// from the leader. Servers that fail their check are not removed: a flapping
// check must not shrink the quorum; removal stays an operator's decision.
func (disc *discovery) run(ctx context.Context, node *cluster.Node) {
	disc.node.Store(node)
	disc.d.Watch(ctx, func(ev cluster.MemberEvent) {
		if !ev.Joined || !node.IsLeader() || ev.Peer.ID == node.ID() {
			return
		}
		if err := node.Join(ctx, ev.Peer.ID, ev.Peer.Addr); err != nil {
			disc.log.Warn("add server from consul", "peer", ev.Peer.ID, "err", err)
		}
	})
}

// close deregisters this node from Consul.
func (disc *discovery) close() {
	if err := disc.d.Close(context.Background()); err != nil {
		disc.log.Warn("consul deregister", "err", err)
	}
}
