package controlnode

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/api"
	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad"
)

// config is everything one control node needs, from flags and the guide's
// environment variables (flags win).
type config struct {
	NodeID      string
	DataDir     string
	Listen      string // public API (the guide's gateway, :8080)
	OpsListen   string // operator listener (the guide's :9090)
	RaftAddr    string
	Advertise   string
	Bootstrap   bool
	Peers       []cluster.Peer
	Join        []string
	ClusterName string
	// RaftMultiplier scales the Raft timeouts (cluster.Config.RaftMultiplier):
	// 1 on a quiet LAN for the fastest failover, up to 10 for slow links.
	RaftMultiplier int

	// TLSCA, TLSCert and TLSKey are PEM files for mutual TLS on the cluster
	// port; all empty is plain TCP.
	TLSCA, TLSCert, TLSKey string

	Driver        string
	AgentBin      string
	StateDir      string
	Runtime       string
	Labels        map[string]string
	HTTPAdvertise string
	Pool          fsm.PoolConfig
	LogFormat     string
	LogLevel      string
	ShutdownIn    time.Duration

	// archiveWarning is set when pause archives stay on this node's disk
	// although other control nodes may have to resume them (development
	// only: production refuses it).
	archiveWarning string
	// tlsWarning is set when the cluster port is reachable off loopback
	// without TLS (development only: production refuses it).
	tlsWarning string
}

// Defaults are the flag defaults a binary starts from; the environment and
// flags override them. The zero value gives sandboxd's.
type Defaults struct {
	NodeID    string
	DataDir   string
	Listen    string
	OpsListen string
	RaftAddr  string
	Peers     string
	StateDir  string
	AgentBin  string
	// BuildAgent builds AgentBin from ./cmd/sandbox-agent when it is missing,
	// so that `go run ./cmd/gateway` from the repository works as the guide
	// shows, without a make step.
	BuildAgent bool
}

func loadConfig(args []string, getenv func(string) string, d Defaults) (*config, error) {
	c := &config{}
	pick := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	fs.StringVar(&c.NodeID, "node-id", env("NODE_ID", d.NodeID), "node id, unique in the cluster (default: derived from -raft-addr)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", pick(d.DataDir, "data")), "directory for the Raft log, snapshots and sandbox sockets")
	// Loopback unless the operator says otherwise: development mode gives a
	// token to whoever asks. Images and manifests set 0.0.0.0 explicitly.
	fs.StringVar(&c.Listen, "listen", env("LISTEN_ADDR", pick(d.Listen, "127.0.0.1:8080")), "public REST API address")
	fs.StringVar(&c.OpsListen, "ops-listen", env("OPS_ADDR", pick(d.OpsListen, "127.0.0.1:9090")), "operator listener (unauthenticated pool stats, health, metrics); empty disables")
	fs.StringVar(&c.RaftAddr, "raft-addr", env("RAFT_ADDR", pick(d.RaftAddr, "127.0.0.1:7000")), "Raft and cluster RPC address")
	fs.StringVar(&c.Advertise, "advertise", env("RAFT_ADVERTISE", ""), "Raft address other nodes dial (default: -raft-addr)")
	peers := fs.String("peers", env("PEERS", d.Peers), "static peers id=host:port,... (every node gets the same list, itself included)")
	join := fs.String("join", env("JOIN", ""), "addresses of running nodes to join, comma separated")
	fs.StringVar(&c.TLSCA, "tls-ca", env("TLS_CA_FILE", ""), "cluster CA certificate (PEM) for mutual TLS between control nodes")
	fs.StringVar(&c.TLSCert, "tls-cert", env("TLS_CERT_FILE", ""), "this node's certificate (PEM), signed by -tls-ca")
	fs.StringVar(&c.TLSKey, "tls-key", env("TLS_KEY_FILE", ""), "this node's private key (PEM)")
	raftMult, err := envInt(getenv("RAFT_MULTIPLIER"), cluster.DefaultRaftMultiplier)
	if err != nil {
		return nil, fmt.Errorf("RAFT_MULTIPLIER: %w", err)
	}
	fs.IntVar(&c.RaftMultiplier, "raft-multiplier", raftMult, fmt.Sprintf("scales Raft's heartbeat, election, lease and commit timeouts, 1 (LAN, fastest failover) to %d", cluster.MaxRaftMultiplier))
	fs.BoolVar(&c.Bootstrap, "bootstrap", envBool(getenv("BOOTSTRAP"), false), "bootstrap a single-node cluster (the default when neither -peers nor -join is given)")
	fs.StringVar(&c.ClusterName, "cluster-name", env("CLUSTER_NAME", "cloud-sandbox"), "name labelling this cluster's sandboxes")
	fs.StringVar(&c.Driver, "driver", env("PLACEMENT_DRIVER", "docker"), "placement driver: docker (local) or nomad")
	fs.StringVar(&c.HTTPAdvertise, "http-advertise", env("HTTP_ADVERTISE", ""), "REST address published in Consul (default: -listen)")
	labels := fs.String("labels", env("SANDBOX_LABELS", ""), "extra labels for sandbox containers, key=value,...")
	fs.StringVar(&c.AgentBin, "agent-bin", env("SANDBOX_AGENT_BIN", d.AgentBin), "static sandbox-agent binary mounted into sandboxes (default: beside sandboxd)")
	fs.StringVar(&c.StateDir, "sandbox-dir", env("SANDBOX_STATE_DIR", d.StateDir), "host directory for per-sandbox agent sockets (default: DATA_DIR/sb)")
	fs.StringVar(&c.Runtime, "runtime", env("SANDBOX_RUNTIME", ""), "Docker runtime for sandboxes, e.g. runsc (default: the daemon's)")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "text or json")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn, error")
	fs.DurationVar(&c.ShutdownIn, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take on SIGTERM")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	if c.Peers, err = parsePeers(*peers); err != nil {
		return nil, err
	}
	c.Join = splitList(*join)
	if c.Labels, err = parseLabels(*labels); err != nil {
		return nil, fmt.Errorf("SANDBOX_LABELS: %w", err)
	}
	// With Consul discovery the peers come from Consul, not from here.
	if len(c.Peers) == 0 && len(c.Join) == 0 && getenv("CONSUL_HTTP_ADDR") == "" {
		c.Bootstrap = true
	}
	if c.Advertise == "" {
		c.Advertise = c.RaftAddr
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID(c.Advertise, c.Peers)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(c.DataDir, "sb")
	}
	if c.AgentBin == "" {
		if exe, err := os.Executable(); err == nil {
			c.AgentBin = filepath.Join(filepath.Dir(exe), "sandbox-agent")
		}
	}
	// Docker resolves bind-mount sources on the host: they must be absolute.
	for _, p := range []*string{&c.AgentBin, &c.StateDir} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}

	c.Pool = fsm.PoolConfig{
		Image:     env("SANDBOX_IMAGE", "python:3.11-slim"),
		Resources: fsm.Resources{CPUCount: 1, MemoryMB: 512, DiskMB: 512},
	}
	ints := []struct {
		key string
		def int
		dst *int
	}{
		{"POOL_MIN_SIZE", 5, &c.Pool.MinSize},
		{"POOL_MAX_SIZE", 50, &c.Pool.MaxSize},
	}
	for _, i := range ints {
		v, err := envInt(getenv(i.key), i.def)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", i.key, err)
		}
		*i.dst = v
	}
	if v, err := envFloat(getenv("SANDBOX_CPU_COUNT"), 1); err != nil {
		return nil, fmt.Errorf("SANDBOX_CPU_COUNT: %w", err)
	} else {
		c.Pool.Resources.CPUCount = v
	}
	if v, err := envInt(getenv("SANDBOX_MEMORY_MB"), 512); err != nil {
		return nil, fmt.Errorf("SANDBOX_MEMORY_MB: %w", err)
	} else {
		c.Pool.Resources.MemoryMB = int64(v)
	}
	if v, err := envInt(getenv("SANDBOX_DISK_MB"), 512); err != nil {
		return nil, fmt.Errorf("SANDBOX_DISK_MB: %w", err)
	} else {
		c.Pool.Resources.DiskMB = int64(v)
	}
	if c.Pool.Quota, err = quotaFromEnv(getenv); err != nil {
		return nil, err
	}
	if err := errors.Join(c.validate(), c.checkArchive(getenv), c.checkTLS(getenv)); err != nil {
		return c, err
	}
	for _, w := range []string{c.archiveWarning, c.tlsWarning} {
		if w != "" {
			newLogger(c).Warn(w)
		}
	}
	return c, nil
}

// checkTLS wants the three TLS files together, and refuses in production
// mode a cluster port that other machines can reach (RAFT_ADDR,
// RAFT_ADVERTISE, PEERS or JOIN off loopback) without TLS: anyone reaching
// it could join as a voter, read the state or apply any command.
// Development only warns.
func (c *config) checkTLS(getenv func(string) string) error {
	set := 0
	for _, f := range []string{c.TLSCA, c.TLSCert, c.TLSKey} {
		if f != "" {
			set++
		}
	}
	if set == 3 {
		return nil
	}
	if set > 0 {
		return errors.New("TLS_CA_FILE (-tls-ca), TLS_CERT_FILE (-tls-cert) and TLS_KEY_FILE (-tls-key) go together: set all three or none")
	}
	exposed := c.offLoopback()
	if exposed == "" {
		return nil
	}
	msg := fmt.Sprintf("the cluster port is reachable off loopback (%s) without TLS: anyone who reaches it can join as a voter, "+
		"read all state and apply any command; set TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE "+
		"(create them with `sandboxd tls ca create` and `sandboxd tls cert create`)", exposed)
	if getenv("SANDBOX_MODE") == api.ModeProduction {
		return errors.New(msg + " (refused with SANDBOX_MODE=production)")
	}
	c.tlsWarning = msg
	return nil
}

// offLoopback names the first cluster address that is not on loopback, or "".
func (c *config) offLoopback() string {
	addrs := []struct{ what, addr string }{{"RAFT_ADDR", c.RaftAddr}, {"RAFT_ADVERTISE", c.Advertise}}
	for _, p := range c.Peers {
		addrs = append(addrs, struct{ what, addr string }{"PEERS", p.Addr})
	}
	for _, j := range c.Join {
		addrs = append(addrs, struct{ what, addr string }{"JOIN", j})
	}
	for _, a := range addrs {
		if !isLoopback(a.addr) {
			return a.what + " " + a.addr
		}
	}
	return ""
}

// isLoopback reports whether host:port names only this machine. An empty
// host (":7000") listens on every interface, and a DNS name other than
// localhost may resolve anywhere: neither is loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkArchive refuses, before the node opens Raft, a Nomad driver that
// could not pause: nomad.ConfigFromEnv wants SANDBOX_ARCHIVE_DIR or
// MINIO_ENDPOINT (and checks the rest of the Nomad variables). Archives on
// local disk with more than one control node (PEERS, JOIN or Consul
// discovery) are refused in production mode, since a sandbox paused on one
// node could not be resumed by another, and only warned about in
// development.
func (c *config) checkArchive(getenv func(string) string) error {
	if c.Driver != "nomad" {
		return nil
	}
	ncfg, err := nomad.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	multi := len(c.Peers) > 1 || len(c.Join) > 0 || getenv("CONSUL_HTTP_ADDR") != ""
	if ncfg.ArchiveDir == "" || !multi {
		return nil
	}
	msg := fmt.Sprintf("SANDBOX_ARCHIVE_DIR %s is this node's disk but the control plane has several nodes "+
		"(PEERS, JOIN or CONSUL_HTTP_ADDR): a sandbox paused here cannot be resumed by another node; "+
		"set MINIO_ENDPOINT, MINIO_ACCESS_KEY and MINIO_SECRET_KEY (S3-compatible storage) instead", ncfg.ArchiveDir)
	if getenv("SANDBOX_MODE") == api.ModeProduction {
		return errors.New(msg + " (refused with SANDBOX_MODE=production)")
	}
	c.archiveWarning = msg
	return nil
}

func (c *config) validate() error {
	var errs []error
	if c.Pool.MinSize < 0 || c.Pool.MaxSize < 1 || c.Pool.MinSize > c.Pool.MaxSize {
		errs = append(errs, fmt.Errorf("pool sizes: need 0 <= POOL_MIN_SIZE (%d) <= POOL_MAX_SIZE (%d) and POOL_MAX_SIZE >= 1", c.Pool.MinSize, c.Pool.MaxSize))
	}
	if c.Driver != "docker" && c.Driver != "nomad" {
		errs = append(errs, fmt.Errorf("PLACEMENT_DRIVER %q: want docker or nomad", c.Driver))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is required"))
	}
	if c.Bootstrap && len(c.Peers) > 0 {
		errs = append(errs, errors.New("-bootstrap and -peers exclude each other"))
	}
	if c.RaftMultiplier < 1 || c.RaftMultiplier > cluster.MaxRaftMultiplier {
		errs = append(errs, fmt.Errorf("RAFT_MULTIPLIER / -raft-multiplier %d: want 1 to %d", c.RaftMultiplier, cluster.MaxRaftMultiplier))
	}
	return errors.Join(errs...)
}

func parsePeers(s string) ([]cluster.Peer, error) {
	var peers []cluster.Peer
	for _, item := range splitList(s) {
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", item)
		}
		peers = append(peers, cluster.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

func defaultNodeID(advertise string, peers []cluster.Peer) string {
	for _, p := range peers {
		if p.Addr == advertise {
			return p.ID
		}
	}
	r := strings.NewReplacer(":", "-", ".", "-", "[", "", "]", "")
	return "node-" + r.Replace(advertise)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envInt(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", v)
	}
	return n, nil
}

func envFloat(v string, def float64) (float64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", v)
	}
	return n, nil
}

func envBool(v string, def bool) bool {
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return def
}
