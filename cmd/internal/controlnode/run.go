// Package controlnode runs one Cloud Sandbox control node: the REST API, a
// Raft node of the control cluster, and (while it leads) the reconciler that
// places sandboxes. It only wires the packages together; the sandboxd binary
// and the guide's gateway, scheduler and session-manager binaries (three
// nodes of one local cluster) differ only in their Defaults.
package controlnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cloud-sandbox/cloud-sandbox/api"
	"github.com/cloud-sandbox/cloud-sandbox/api/webhook"
	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/docker"
)

// Main runs a node until SIGTERM or SIGINT and exits the process with its
// outcome. name prefixes errors; args are the command-line flags.
// "health [url]" instead checks a running node's /health (the compose
// healthcheck: the image has no curl) and exits 0 only when it is ready.
func Main(name string, args []string, d Defaults) {
	if len(args) > 0 && args[0] == "health" {
		if err := HealthCheck(args[1:], os.Getenv); err != nil {
			fmt.Fprintf(os.Stderr, "%s health: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	if err := Run(args, d); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Run runs a node until SIGTERM or SIGINT, then drains requests, stops the
// reconciler and hands leadership over.
func Run(args []string, d Defaults) error {
	cfg, err := loadConfig(args, os.Getenv, d)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if d.BuildAgent {
		if err := buildAgent(cfg.AgentBin); err != nil {
			return err
		}
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	apiCfg, err := api.ConfigFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	apiCfg.DefaultImage = cfg.Pool.Image
	// A session or acquire that names no size gets the pool's, so it can
	// take a warm sandbox even where limits cannot change (Nomad).
	apiCfg.DefaultCPUCount = cfg.Pool.Resources.CPUCount
	apiCfg.DefaultMemoryMB = cfg.Pool.Resources.MemoryMB
	apiCfg.Logger = log
	if cfg.Driver == "docker" && docker.NoNetwork(cfg.Runtime) {
		apiCfg.NoNetworkRuntime = cfg.Runtime
	}
	if err := apiCfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Development defaults start; each open door is said once, loudly.
	for _, w := range apiCfg.UnsafeSettings(cfg.Listen) {
		log.Warn("unsafe setting", "detail", w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	clusterMetrics, err := cluster.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("cluster metrics: %w", err)
	}
	disc, err := discover(ctx, cfg, log)
	if err != nil {
		return err
	}
	if disc != nil {
		defer disc.close()
	}
	var clusterTLS *cluster.TLS
	if cfg.TLSCA != "" {
		if clusterTLS, err = cluster.LoadTLS(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	state := fsm.New()
	node, err := cluster.Open(cluster.Config{
		ID:            cfg.NodeID,
		DataDir:       cfg.DataDir,
		BindAddr:      cfg.RaftAddr,
		AdvertiseAddr: cfg.Advertise,
		Bootstrap:     cfg.Bootstrap,
		Peers:         cfg.Peers,
		Join:          cfg.Join,
		TLS:           clusterTLS,
		Logger:        log,
		Metrics:       clusterMetrics,

		RaftMultiplier: cfg.RaftMultiplier,
	}, state)
	if err != nil {
		return fmt.Errorf("open cluster node: %w", err)
	}
	defer func() {
		// Hands leadership over when there is someone to hand it to.
		if err := node.Close(); err != nil {
			log.Error("close cluster node", "err", err)
		}
	}()

	if disc != nil {
		go disc.run(ctx, node)
	}
	driver, err := newDriver(cfg, log)
	if err != nil {
		return fmt.Errorf("placement driver: %w", err)
	}
	pool := cfg.Pool
	rec := placement.New(placement.Config{Logger: log, Metrics: placement.NewMetrics(reg), Pool: &pool}, driver, node, state)
	recDone := make(chan struct{})
	recCtx, recCancel := context.WithCancel(context.Background())
	go func() {
		defer close(recDone)
		rec.Lead(recCtx, node.IsLeader(), node.LeaderCh())
	}()
	// Runs before the node closes (defers are LIFO): no driver call is left
	// half-done when leadership is handed over.
	defer func() { recCancel(); <-recDone }()

	// Webhook deliveries, from the leader like the reconciler's work.
	hooks := webhook.New(webhook.Config{AllowPrivate: apiCfg.WebhookAllowPrivate, Logger: log}, state, node)
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		hooks.Lead(recCtx, node.IsLeader(), node.LeaderCh())
	}()
	defer func() { recCancel(); <-hooksDone }()

	// The API starts not ready: until this node has applied what the leader
	// had committed (a single node: its own log), every API call but /health
	// and /metrics answers 503 not_ready and /health says "starting", so a
	// restarted node never serves a stale list (api/DESIGN.md, "Consistency").
	deps := api.Deps{Cluster: node, State: state, Registry: reg, Gatherer: reg}
	if d, ok := driver.(api.Drainer); ok {
		deps.Drainer = d // Nomad: client nodes can be drained
	}
	srv, err := api.New(apiCfg, deps)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer srv.Close()

	// The API's servers carry its read, write and idle bounds.
	servers := []*http.Server{srv.HTTPServer(cfg.Listen)}
	if cfg.OpsListen != "" {
		servers = append(servers, srv.OpsHTTPServer(cfg.OpsListen))
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.Addr, err)
		}
		log.Info("listening", "addr", ln.Addr().String())
		go func(s *http.Server) {
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", s.Addr, err)
			}
		}(s)
	}
	log.Info("sandboxd started", "node.id", cfg.NodeID, "raft", cfg.Advertise, "api", cfg.Listen,
		"ops", cfg.OpsListen, "pool.min", pool.MinSize, "pool.max", pool.MaxSize, "image", pool.Image)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server failed", "err", err)
	}
	// In-flight requests finish first; then the reconciler stops, and the
	// deferred node.Close hands leadership to another node.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownIn)
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil {
			log.Warn("http shutdown", "addr", s.Addr, "err", serr)
		}
	}
	return err
}

func newLogger(cfg *config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

// healthCheckTimeout bounds one health check (compose runs it every few seconds).
const healthCheckTimeout = 3 * time.Second

// HealthCheck GETs a node's /health and fails unless it answers 200: the
// node is up and caught up with its cluster. The URL is args[0], or
// LISTEN_ADDR's (loopback when it names every interface).
func HealthCheck(args []string, getenv func(string) string) error {
	url := ""
	if len(args) > 0 {
		url = args[0]
	} else {
		addr := getenv("LISTEN_ADDR")
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("LISTEN_ADDR %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		url = "http://" + net.JoinHostPort(host, port) + "/health"
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status + ": " + string(body))
	}
	return nil
}
