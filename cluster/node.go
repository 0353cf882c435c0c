// Package cluster runs the Raft node that replicates the control plane's FSM:
// stores, transport, bootstrap, join/leave, leader forwarding and membership.
// See DESIGN.md for what it promises.
package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

const (
	// snapshotsRetained is how many snapshots stay on disk (one to restore, one spare).
	snapshotsRetained = 2
	// logCacheSize keeps recent entries in memory so replication does not re-read bolt.
	logCacheSize = 512
	// transportTimeout bounds one Raft RPC's I/O (scaled up by raft for snapshots).
	transportTimeout = 10 * time.Second
	// transportMaxPool is the number of idle Raft connections kept per peer.
	transportMaxPool = 5
	// metricsInterval is how often the polled gauges are refreshed.
	metricsInterval = time.Second
)

// Node is one member of the Raft cluster. It owns Raft and everything Raft
// needs (stores, transport, listener) and serves the cluster RPCs.
type Node struct {
	cfg  Config
	id   string
	addr string // advertised host:port
	log  *slog.Logger
	fsm  *fsm.FSM

	raft   *raft.Raft
	bolt   *raftboltdb.BoltStore
	logs   raft.LogStore
	trans  *raft.NetworkTransport
	gate   *voteGate // the transport Raft uses: trans, refusing votes while re-admitting
	mux    *mux
	rpcSrv *http.Server
	rpc    *rpcClient

	notifyCh chan bool
	obsCh    chan raft.Observation
	observer *raft.Observer

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed and replaced when the known leader changes
	subs          []chan bool
	isLeader      atomic.Bool

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// Open starts a node: it listens on cfg.BindAddr, opens (or creates) the
// stores in cfg.DataDir, restores the latest snapshot into f, bootstraps or
// joins when the node has no state yet, and returns while the cluster elects
// a leader (use WaitForLeader). f must be fresh; the node owns it.
func Open(cfg Config, f *fsm.FSM) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, errors.New("open cluster node: nil FSM")
	}
	log := cfg.Logger.With("component", "cluster", "node.id", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.BindAddr, err)
	}
	adv, err := advertiseAddr(cfg.AdvertiseAddr, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return nil, err
	}

	n := &Node{
		cfg:           cfg,
		id:            cfg.ID,
		addr:          adv.String(),
		log:           log,
		fsm:           f,
		notifyCh:      make(chan bool, 16),
		obsCh:         make(chan raft.Observation, 16),
		leaderChanged: make(chan struct{}),
		closing:       make(chan struct{}),
	}
	n.mux = newMux(ln, adv, cfg.TLS, log)
	n.rpc = newRPCClient(cfg.TLS)
	if err := n.openRaft(); err != nil {
		if n.raft != nil {
			_ = n.raft.Shutdown().Error()
		}
		_ = n.release()
		return nil, err
	}

	n.rpcSrv = newRPCServer(n)
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		if err := n.rpcSrv.Serve(n.mux.rpc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.Error("cluster rpc server stopped", "error", err)
		}
	}()
	go func() { defer n.wg.Done(); n.watchLeadership() }()
	go func() { defer n.wg.Done(); n.refreshMetrics() }()

	log.Info("cluster node open", "addr", n.addr, "data_dir", cfg.DataDir, "tls", cfg.TLS != nil)
	return n, nil
}

// advertiseAddr picks the address peers dial: the configured one as given
// (a DNS name stays a name, so a restarted container with a new IP is still
// found), else the bound one, which must then name a host: 0.0.0.0 would
// tell peers nothing.
func advertiseAddr(configured string, bound net.Addr) (tcpAddr, error) {
	if configured != "" {
		host, port, err := net.SplitHostPort(configured)
		if err != nil || host == "" || port == "" || port == "0" {
			return "", fmt.Errorf("advertise address %q: want host:port with a non-zero port", configured)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return "", fmt.Errorf("advertise address %q is not routable", configured)
		}
		return tcpAddr(configured), nil
	}
	a, ok := bound.(*net.TCPAddr)
	if !ok || a.IP == nil || a.IP.IsUnspecified() {
		return "", fmt.Errorf("bound address %s is not routable: set AdvertiseAddr", bound)
	}
	return tcpAddr(a.String()), nil
}

// tcpAddr is an advertised host:port, possibly a DNS name.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

func (n *Node) openRaft() error {
	cfg := n.cfg
	hlog := newHclog(n.log, "raft")

	bolt, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return fmt.Errorf("open raft log store: %w", err)
	}
	n.bolt = bolt
	logs, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		return fmt.Errorf("create raft log cache: %w", err)
	}
	n.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hlog.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("open raft snapshot store: %w", err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{subListener: n.mux.raft, m: n.mux},
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hlog.Named("transport"),
	})
	n.gate = newVoteGate(n.trans)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = n.notifyCh
	rc.Logger = hlog
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}

	hasState, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		return fmt.Errorf("check existing raft state: %w", err)
	}
	// A node without state decides before Raft starts whether it may vote.
	var readmitVia []string
	if !hasState {
		readmitVia = n.readmitAddrs()
		if len(readmitVia) > 0 {
			n.gate.refusing.Store(true)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, bolt, snaps, n.gate)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)

	if hasState {
		n.log.Info("raft state found, not bootstrapping", "last_index", r.LastIndex())
		return nil
	}
	if len(readmitVia) > 0 {
		attempts := 0 // an existing cluster that lists this node: until it closes
		if len(cfg.Join) > 0 {
			attempts = cfg.JoinAttempts
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.readmit(readmitVia, attempts) }()
		return nil
	}
	var servers []raft.Server
	switch {
	case cfg.Bootstrap:
		servers = []raft.Server{{ID: raft.ServerID(n.id), Address: raft.ServerAddress(n.addr)}}
	case len(cfg.Peers) > 0:
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
	}
	if len(servers) > 0 {
		n.log.Info("bootstrapping cluster", "servers", len(servers))
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
	}
	return nil
}

// readmitAddrs decides how a node without Raft state starts. It returns
// the addresses to re-admit through (readmit.go), or nil to bootstrap as
// configured. JOIN always joins: first without a vote, so a fresh node
// never votes before it has the log. PEERS bootstraps only if no peer has
// state beyond a bootstrap configuration: otherwise the cluster exists and
// this node lost its disk, and bootstrapping would let it vote at once.
func (n *Node) readmitAddrs() []string {
	cfg := n.cfg
	if len(cfg.Join) > 0 && !cfg.Bootstrap {
		return cfg.Join
	}
	var addrs []string
	for _, p := range cfg.Peers {
		if p.ID != n.id {
			addrs = append(addrs, p.Addr)
		}
	}
	addrs = append(addrs, cfg.Join...)
	if len(addrs) == 0 || !n.clusterExists(addrs) {
		return nil
	}
	n.log.Warn("no raft state but the cluster exists: not bootstrapping; re-admitting without a vote until caught up")
	return addrs
}

// ID returns this node's Raft server ID.
func (n *Node) ID() string { return n.id }

// Addr returns the address other nodes use to reach this node.
func (n *Node) Addr() string { return n.addr }

// FSM returns the local state machine. Reads from it are local (possibly a
// little stale on a follower); call ConsistentRead first for a linearizable read.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// IsLeader reports whether this node is the leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address, or empty strings when
// no leader is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// AppliedIndex is the Raft index of the last command applied to the local FSM.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// Stats returns hashicorp/raft's stats plus this node's identity and leader.
func (n *Node) Stats() map[string]string {
	s := n.raft.Stats()
	lid, laddr := n.Leader()
	s["node_id"] = n.id
	s["addr"] = n.addr
	s["leader_id"] = lid
	s["leader_addr"] = laddr
	s["fsm_applied_index"] = fmt.Sprint(n.fsm.AppliedIndex())
	return s
}

func (n *Node) isClosed() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// Close leaves the cluster running without this node: if it leads and other
// voters exist it hands leadership over first (bounded), then shuts Raft down
// and closes the stores and the listener. It does not remove the node from
// the configuration (see Leave). Close is idempotent.
func (n *Node) Close() error { return n.shutdown(true) }

// shutdown stops the node; transfer=false is a crash-like stop used by tests.
func (n *Node) shutdown(transfer bool) error {
	n.closeOnce.Do(func() {
		if transfer && n.IsLeader() && n.otherVoters() > 0 {
			n.transferLeadership()
		}
		close(n.closing)
		var errs []error
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
			}
			n.raft.DeregisterObserver(n.observer)
		}
		if n.rpcSrv != nil {
			// In-flight RPCs are bounded by their own deadlines; Close does not wait for them.
			_ = n.rpcSrv.Close()
		}
		errs = append(errs, n.release())
		n.wg.Wait()
		// A closed node leads nothing; say so even if raft's last notification
		// raced with the shutdown.
		n.publish(false)
		if m := n.cfg.Metrics; m != nil {
			m.isLeader.Set(0)
		}
		n.closeSubscribers()
		n.closeErr = errors.Join(errs...)
		n.log.Info("cluster node closed", "transferred", transfer)
	})
	return n.closeErr
}

// release closes what Open acquired below Raft: transport, listener, stores.
func (n *Node) release() error {
	var errs []error
	if n.gate != nil {
		if err := n.gate.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	} else if n.trans != nil {
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	if n.mux != nil {
		if err := n.mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener: %w", err))
		}
	}
	if n.rpc != nil {
		n.rpc.close()
	}
	if n.bolt != nil {
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// transferLeadership hands leadership to the most up-to-date follower. Raft
// bounds the transfer by an election timeout; we bound the wait as well.
func (n *Node) transferLeadership() {
	start := time.Now()
	fut := n.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("leadership transfer failed", "error", err)
			return
		}
		n.log.Info("leadership transferred", "took", time.Since(start))
	case <-time.After(2*n.cfg.ElectionTimeout + time.Second):
		n.log.Warn("leadership transfer timed out")
	}
}

// otherVoters counts voters other than this node in the latest configuration.
func (n *Node) otherVoters() int {
	servers, err := n.configuration()
	if err != nil {
		return 0
	}
	c := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.id {
			c++
		}
	}
	return c
}

// configuration returns the latest Raft configuration.
func (n *Node) configuration() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("get raft configuration: %w", raftErr(err))
	}
	return f.Configuration().Servers, nil
}
