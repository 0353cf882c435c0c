package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// Discovery finds the control plane's servers through Consul: each node
// registers itself with a TTL check kept passing while it is healthy, and
// reads the passing registrations with blocking queries. It only finds
// peers; the caller opens the Node with Config{Peers: ...} (every node that
// bootstraps from the same sorted, complete list forms one cluster, so
// bootstrapping from it "once" needs no coordination) or Config{Join: ...}.
type Discovery struct {
	cfg    DiscoveryConfig
	client *consul.Client
	log    *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// DiscoveryConfig configures Consul discovery. Zero values take the
// defaults noted.
type DiscoveryConfig struct {
	// ConsulAddr and Token are CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN.
	ConsulAddr string
	Token      string
	// Service is the Consul service name (default "cloud-sandbox").
	Service string
	// NodeID is this node's Raft id and its Consul service id.
	NodeID string
	// RaftAddr is the address peers dial (Config.AdvertiseAddr);
	// HTTPAddr the node's REST address, published for operators.
	RaftAddr string
	HTTPAddr string
	// BootstrapExpect is how many servers form the first cluster.
	BootstrapExpect int
	// TTL of the health check (default 10 s); it is refreshed every TTL/3.
	TTL time.Duration
	// DeregisterAfter lets Consul drop a registration critical this long
	// (default 10 min).
	DeregisterAfter time.Duration
	// Healthy says whether to keep the check passing; nil means always.
	Healthy func() error
	// BootstrapTimeout bounds the wait for BootstrapExpect servers (default 5 min).
	BootstrapTimeout time.Duration
	// Logger receives discovery logs (default slog.Default()).
	Logger *slog.Logger
}

// Service meta keys.
const (
	MetaRaftAddr = "raft_addr"
	MetaHTTPAddr = "http_addr"
	MetaNodeID   = "node_id"
)

// Errors of discovery.
var (
	// ErrBootstrapTimeout: BootstrapExpect servers did not all pass in time.
	ErrBootstrapTimeout = errors.New("discovery: expected servers not found in time")
)

func (c *DiscoveryConfig) setDefaults() {
	if c.Service == "" {
		c.Service = "cloud-sandbox"
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Second
	}
	if c.DeregisterAfter == 0 {
		c.DeregisterAfter = 10 * time.Minute
	}
	if c.BootstrapTimeout == 0 {
		c.BootstrapTimeout = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports what is missing.
func (c DiscoveryConfig) Validate() error {
	var errs []error
	if c.ConsulAddr == "" {
		errs = append(errs, errors.New("consul address (CONSUL_HTTP_ADDR) is required"))
	}
	if c.NodeID == "" || c.RaftAddr == "" {
		errs = append(errs, errors.New("node id and raft address are required"))
	}
	if c.BootstrapExpect < 1 {
		errs = append(errs, fmt.Errorf("bootstrap expect %d: want >= 1", c.BootstrapExpect))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("discovery config: %w", err)
	}
	return nil
}

// DiscoveryConfigFromEnv reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
// CONSUL_SERVICE (default cloud-sandbox) and BOOTSTRAP_EXPECT; ok is false
// when CONSUL_HTTP_ADDR is unset (static peers then apply). The caller
// fills NodeID, RaftAddr, HTTPAddr and Healthy.
func DiscoveryConfigFromEnv(getenv func(string) string) (cfg DiscoveryConfig, ok bool, err error) {
	cfg = DiscoveryConfig{ConsulAddr: getenv("CONSUL_HTTP_ADDR"), Token: getenv("CONSUL_HTTP_TOKEN"), Service: getenv("CONSUL_SERVICE")}
	if cfg.ConsulAddr == "" {
		return cfg, false, nil
	}
	cfg.BootstrapExpect = 1
	if v := getenv("BOOTSTRAP_EXPECT"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &cfg.BootstrapExpect); err != nil {
			return cfg, true, fmt.Errorf("BOOTSTRAP_EXPECT %q: %w", v, err)
		}
	}
	return cfg, true, nil
}

// NewDiscovery builds a discovery client; it does not contact Consul.
func NewDiscovery(cfg DiscoveryConfig) (*Discovery, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cc := consul.DefaultConfig()
	cc.Address = cfg.ConsulAddr
	cc.Token = cfg.Token
	client, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("discovery: consul client: %w", err)
	}
	return &Discovery{cfg: cfg, client: client, log: cfg.Logger.With("component", "discovery", "node.id", cfg.NodeID)}, nil
}

func (d *Discovery) checkID() string { return d.cfg.Service + ":" + d.cfg.NodeID + ":ttl" }

// Register publishes this node and starts keeping its check passing while
// Healthy says so. Call Close (or Leave) to deregister.
func (d *Discovery) Register(ctx context.Context) error {
	reg := &consul.AgentServiceRegistration{
		ID:   d.cfg.NodeID,
		Name: d.cfg.Service,
		Meta: map[string]string{MetaNodeID: d.cfg.NodeID, MetaRaftAddr: d.cfg.RaftAddr, MetaHTTPAddr: d.cfg.HTTPAddr},
		Check: &consul.AgentServiceCheck{
			CheckID:                        d.checkID(),
			Name:                           "cloud-sandbox node health",
			TTL:                            d.cfg.TTL.String(),
			DeregisterCriticalServiceAfter: d.cfg.DeregisterAfter.String(),
		},
	}
	if err := d.client.Agent().ServiceRegisterOpts(reg, consul.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("discovery: register %s: %w", d.cfg.NodeID, err)
	}
	d.heartbeat(ctx) // passing before anyone waits a TTL for it
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel == nil {
		hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		d.cancel, d.done = cancel, make(chan struct{})
		go d.heartbeats(hctx)
	}
	d.log.Info("registered in consul", "service", d.cfg.Service, "raft_addr", d.cfg.RaftAddr)
	return nil
}

func (d *Discovery) heartbeats(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.heartbeat(ctx)
		}
	}
}

// heartbeat reports the node's health; a failed update is retried on the
// next tick, and a TTL missed meanwhile is exactly what should happen.
func (d *Discovery) heartbeat(ctx context.Context) {
	status, output := consul.HealthPassing, "ok"
	if d.cfg.Healthy != nil {
		if err := d.cfg.Healthy(); err != nil {
			status, output = consul.HealthCritical, err.Error()
		}
	}
	q := (&consul.QueryOptions{}).WithContext(ctx)
	if err := d.client.Agent().UpdateTTLOpts(d.checkID(), output, status, q); err != nil && ctx.Err() == nil {
		d.log.Warn("update ttl check", "err", err)
	}
}

// Close stops the heartbeat and deregisters the node.
func (d *Discovery) Close(ctx context.Context) error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	q := (&consul.QueryOptions{}).WithContext(ctx)
	if err := d.client.Agent().ServiceDeregisterOpts(d.cfg.NodeID, q); err != nil {
		var se consul.StatusError
		if errors.As(err, &se) && se.Code == 404 {
			return nil
		}
		return fmt.Errorf("discovery: deregister %s: %w", d.cfg.NodeID, err)
	}
	return nil
}

// Leave is Close: a leaving node stops being discovered.
func (d *Discovery) Leave(ctx context.Context) error { return d.Close(ctx) }

// Passing returns the servers whose checks all pass, sorted by id, and the
// Consul index to block on for the next change.
func (d *Discovery) Passing(ctx context.Context, waitIndex uint64, wait time.Duration) ([]Peer, uint64, error) {
	q := (&consul.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx)
	entries, meta, err := d.client.Health().Service(d.cfg.Service, "", true, q)
	if err != nil {
		return nil, waitIndex, fmt.Errorf("discovery: health of %s: %w", d.cfg.Service, err)
	}
	seen := map[string]bool{}
	var peers []Peer
	for _, e := range entries {
		id, addr := e.Service.Meta[MetaNodeID], e.Service.Meta[MetaRaftAddr]
		if id == "" || addr == "" || seen[id] {
			continue
		}
		seen[id] = true
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	return peers, meta.LastIndex, nil
}

// BootstrapPeers waits, bounded by BootstrapTimeout, until exactly
// BootstrapExpect distinct servers pass, this one among them, and returns
// them sorted: every node sees the same set and bootstraps the same
// configuration. If more than that already pass, a cluster exists: join is
// true and peers are the others, whose addresses go to Config.Join.
func (d *Discovery) BootstrapPeers(ctx context.Context) (peers []Peer, join bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.BootstrapTimeout)
	defer cancel()
	var index uint64
	backoff := 100 * time.Millisecond
	for {
		ps, next, err := d.Passing(ctx, index, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil, false, fmt.Errorf("%w (%d expected): %v", ErrBootstrapTimeout, d.cfg.BootstrapExpect, err)
			}
			d.log.Warn("discovery query failed", "err", err)
			select {
			case <-ctx.Done():
				return nil, false, fmt.Errorf("%w (%d expected)", ErrBootstrapTimeout, d.cfg.BootstrapExpect)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		self := false
		for _, p := range ps {
			self = self || p.ID == d.cfg.NodeID
		}
		switch {
		case len(ps) > d.cfg.BootstrapExpect:
			var others []Peer
			for _, p := range ps {
				if p.ID != d.cfg.NodeID {
					others = append(others, p)
				}
			}
			return others, true, nil
		case len(ps) == d.cfg.BootstrapExpect && self:
			d.log.Info("bootstrap set found", "peers", ps)
			return ps, false, nil
		}
		index = next
	}
}
