// Package api is the REST front end of Cloud Sandbox: chi router, JWT auth,
// handlers, validation, one error renderer and Prometheus middleware. Every
// node serves the whole API; writes go through Raft via Cluster, reads come
// from the local FSM, and exec and file traffic goes to the sandbox's agent.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Cluster is what the API needs from the Raft node (*cluster.Node).
type Cluster interface {
	// Apply commits cmd through the leader and returns the FSM's response;
	// the FSM's business error comes back as the error.
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Response, error)
	// ConsistentRead returns once the local FSM has every write committed
	// before the call. The API calls it once at start (readiness) and once
	// before answering 404 or 409 for an id it may lag on.
	ConsistentRead(ctx context.Context) error
	ID() string
	Leader() (id, addr string)
	IsLeader() bool
	// Members, WriteSnapshot and Restore serve the admin endpoints (admin.go).
	Members(ctx context.Context) ([]cluster.Member, error)
	WriteSnapshot(w io.Writer) error
	Restore(ctx context.Context, data []byte) error
}

// State is the read side of the replicated state (*fsm.FSM).
type State interface {
	Sandbox(id string) (*fsm.Sandbox, error)
	Sandboxes() []*fsm.Sandbox
	SandboxesByOwner(owner string) []*fsm.Sandbox
	Session(id string) (*fsm.Session, error)
	Sessions() []*fsm.Session
	SessionsByOwner(owner string) []*fsm.Session
	Pool() fsm.PoolConfig
	PoolStats() fsm.PoolStats
	// Created counts sandboxes and sessions ever created in the cluster.
	Created() (sandboxes, sessions uint64)
	TokenRevoked(id string) bool
	AppliedIndex() uint64
	// Watch returns a channel closed at the next apply.
	Watch() <-chan struct{}
}

// Deps are the components the API is wired to.
type Deps struct {
	Cluster Cluster
	State   State
	// Registry receives the API's collectors; nil makes a private registry.
	Registry prometheus.Registerer
	// Gatherer serves /metrics; nil uses Registry when it is a *prometheus.Registry.
	Gatherer prometheus.Gatherer
	// Drainer drains placement hosts (Nomad); nil answers drain with 501.
	Drainer Drainer
}

// Server serves the public API and the operator listener.
type Server struct {
	cfg     Config
	cluster Cluster
	state   State
	drainer Drainer
	log     *slog.Logger
	metrics *metrics
	gather  prometheus.Gatherer
	tokens  *tokenIssuer
	limiter *rateLimiter
	streams *streamLimiter
	agents  *agentCache
	touches *toucher
	ready   *readiness

	handler http.Handler
	ops     http.Handler

	closeOnce sync.Once
}

// New validates cfg (after filling defaults) and builds the server. Call
// Close when done to flush activity records and stop background work.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if deps.Cluster == nil || deps.State == nil {
		return nil, errors.New("api: Deps.Cluster and Deps.State are required")
	}
	reg := deps.Registry
	gather := deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gather = r, r
	}
	if gather == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("api: Deps.Gatherer is required when Registry is not a Gatherer")
		}
		gather = g
	}
	s := &Server{
		cfg:     cfg,
		cluster: deps.Cluster,
		state:   deps.State,
		drainer: deps.Drainer,
		log:     cfg.Logger.With("component", "api"),
		gather:  gather,
		tokens:  newTokenIssuer(cfg),
		limiter: newRateLimiter(cfg.RateLimitRPS, cfg.RateLimitBurst),
		streams: newStreamLimiter(cfg.MaxStreamsPerUser),
		agents: newAgentCache(func(id string) bool {
			_, err := deps.State.Sandbox(id)
			return err == nil
		}),
	}
	m, err := newMetrics(reg, deps.State)
	if err != nil {
		return nil, fmt.Errorf("api metrics: %w", err)
	}
	s.metrics = m
	s.touches = newToucher(deps.Cluster, cfg.TouchInterval, s.log)
	s.startReadiness()
	s.handler = s.routes()
	s.ops = s.opsRoutes()
	return s, nil
}

// Handler is the public API (the gateway listener, :8080 by default). Serve
// it with HTTPServer, whose timeouts the long-running routes rely on.
func (s *Server) Handler() http.Handler { return s.handler }

// OpsHandler is the operator listener (OPS_ADDR, loopback by default):
// read-only stats, health, metrics and cluster view without a token.
func (s *Server) OpsHandler() http.Handler { return s.ops }

// Close stops background work and flushes pending activity records. It does
// not wait for in-flight requests; the http.Server's Shutdown does that.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stopReadiness()
		s.touches.close()
		s.agents.close()
	})
	return nil
}
