package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// A node that starts without Raft state while its cluster already exists
// (a lost or replaced disk, or a fresh JOIN) must not vote until it holds
// what it may once have acknowledged: Raft's safety assumes a voter never
// forgets. Such a node is "re-admitting": its transport refuses vote
// requests and sends none, until the leader has it in the configuration,
// it has applied the leader's read index, and it is a voter again.

const (
	// probeTimeout bounds the question "does a cluster exist?" at Open.
	probeTimeout = 3 * time.Second
	// readmitRetryMax caps the backoff between re-admission attempts.
	readmitRetryMax = 5 * time.Second
	// bootstrapIndex is the last index of a node that has only bootstrapped
	// its configuration: no leader was ever elected (a leader's first entry,
	// a no-op, comes after it), so nothing can have been committed.
	bootstrapIndex = 1
)

// errRefusingVotes is returned for an outgoing vote request while re-admitting.
var errRefusingVotes = errors.New("cluster: re-admitting, not campaigning")

// voteGate wraps the Raft transport. While refusing, it answers incoming
// RequestVote and RequestPreVote with Granted=false, refuses TimeoutNow
// (a leadership transfer to this node), and fails outgoing vote requests,
// so the node neither votes nor campaigns. Everything else passes through.
type voteGate struct {
	*raft.NetworkTransport
	refusing atomic.Bool
	refused  atomic.Uint64 // vote requests refused, for tests and logs
	ch       chan raft.RPC
	done     chan struct{}
	stop     sync.Once
	wg       sync.WaitGroup
}

var (
	_ raft.Transport   = (*voteGate)(nil)
	_ raft.WithPreVote = (*voteGate)(nil)
	_ raft.WithClose   = (*voteGate)(nil)
)

func newVoteGate(t *raft.NetworkTransport) *voteGate {
	g := &voteGate{NetworkTransport: t, ch: make(chan raft.RPC), done: make(chan struct{})}
	g.wg.Add(1)
	go g.run()
	return g
}

func (g *voteGate) run() {
	defer g.wg.Done()
	in := g.NetworkTransport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-g.done:
			return
		}
		if g.refusing.Load() && g.answer(rpc) {
			continue
		}
		select {
		case g.ch <- rpc:
		case <-g.done:
			rpc.Respond(nil, raft.ErrTransportShutdown)
			return
		}
	}
}

// answer refuses rpc if it asks for a vote or for leadership; false means pass it on.
func (g *voteGate) answer(rpc raft.RPC) bool {
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		g.refused.Add(1)
		// The candidate's own term: never makes it step down.
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: req.ProtocolVersion}, Term: req.Term, Granted: false}, nil)
	case *raft.RequestPreVoteRequest:
		g.refused.Add(1)
		// A pre-vote carries the term the candidate would take; answer
		// with the one it has, as a node at that term would.
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: req.ProtocolVersion}, Term: req.Term - 1, Granted: false}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(nil, errRefusingVotes)
	default:
		return false
	}
	return true
}

// Consumer implements raft.Transport.
func (g *voteGate) Consumer() <-chan raft.RPC { return g.ch }

// RequestVote implements raft.Transport.
func (g *voteGate) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if g.refusing.Load() {
		return errRefusingVotes
	}
	return g.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (g *voteGate) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if g.refusing.Load() {
		return errRefusingVotes
	}
	return g.NetworkTransport.RequestPreVote(id, target, args, resp)
}

// Close implements raft.WithClose; it stops the gate and the transport.
func (g *voteGate) Close() error {
	g.stop.Do(func() { close(g.done) })
	err := g.NetworkTransport.Close()
	g.wg.Wait()
	return err
}

// clusterExists asks the peers, bounded by probeTimeout, whether any holds
// Raft state beyond a bootstrap configuration. A peer that does not answer
// counts as not existing: if none answers, the caller starts a new cluster.
func (n *Node) clusterExists(addrs []string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	found := make(chan string, len(addrs))
	var wg sync.WaitGroup
	for _, addr := range addrs {
		if addr == n.addr {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := n.rpc.lastIndex(ctx, addr)
			if err != nil {
				n.log.Debug("probe: peer did not answer", "peer.addr", addr, "error", err)
				return
			}
			n.log.Info("probe: peer answered", "peer.addr", addr, "last_index", idx)
			if idx > bootstrapIndex {
				found <- addr
			}
		}()
	}
	go func() { wg.Wait(); close(found) }()
	select {
	case _, ok := <-found:
		return ok
	case <-ctx.Done():
		return false
	}
}

// readmit brings this node back as a voter: it asks the cluster (through
// addrs, which forward to the leader) to have it as a member without a
// vote, waits until it has applied the leader's read index, asks to be a
// voter, and only then stops refusing votes. Each step retries with
// backoff until it succeeds or the node closes; joinAttempts > 0 bounds the
// first step (Config.JoinAttempts for JOIN).
func (n *Node) readmit(addrs []string, joinAttempts int) {
	start := time.Now()
	n.log.Info("re-admitting: refusing votes until caught up", "via", addrs)
	if !n.retry("re-admit: join as non-voter", joinAttempts, func(ctx context.Context) error {
		var errs []error
		for _, addr := range addrs {
			if addr == n.addr {
				continue
			}
			err := n.rpc.join(ctx, addr, n.id, n.addr, false, false)
			if err == nil {
				n.log.Info("joined cluster", "via", addr, "voter", false)
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}) {
		n.log.Error("could not join cluster: attempts exhausted", "attempts", joinAttempts, "join", addrs)
		return
	}
	if !n.retry("re-admit: catch up", 0, n.ConsistentRead) {
		return
	}
	if !n.retry("re-admit: become a voter", 0, func(ctx context.Context) error {
		return n.Join(ctx, n.id, n.addr)
	}) {
		return
	}
	n.gate.refusing.Store(false)
	n.log.Info("re-admitted: voting again", "applied_index", n.fsm.AppliedIndex(),
		"took", time.Since(start), "votes_refused", n.gate.refused.Load())
}

// retry runs op until it succeeds (true), the node closes or attempts
// (when > 0) are used up (false), backing off 250 ms → readmitRetryMax.
// Each attempt is bounded by ApplyTimeout and cancelled on close.
func (n *Node) retry(what string, attempts int, op func(context.Context) error) bool {
	delay := 250 * time.Millisecond
	for attempt := 1; attempts <= 0 || attempt <= attempts; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		go func() {
			select {
			case <-n.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := op(ctx)
		cancel()
		if err == nil {
			return true
		}
		if n.isClosed() {
			return false
		}
		n.log.Warn(what+" failed", "attempt", attempt, "retry_in", delay, "error", err)
		select {
		case <-n.closing:
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, readmitRetryMax)
	}
	return false
}

// Readmitting reports whether this node is still refusing votes because it
// started without state in an existing cluster and has not caught up yet.
func (n *Node) Readmitting() bool { return n.gate.refusing.Load() }
