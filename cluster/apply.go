package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Backoff between attempts while there is no leader or it changes. A
// failover takes ~1 s, so retries start fast and stay frequent.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 250 * time.Millisecond
)

// Apply replicates cmd and returns the FSM's response. Any node accepts it: a
// follower forwards it to the leader, and while there is no leader or the
// leader changes it retries with backoff until ctx ends or ApplyTimeout
// passes. A business error from the FSM is returned both in the response and
// as the error, so errors.Is(err, fsm.ErrNotFound) works on every node.
//
// A zero Header.Now is set to the current UTC time (the FSM never reads the
// clock). A command whose outcome is unknown (ErrLeadershipLost, ErrTimeout)
// is retried internally only when it has a RequestID, which makes the FSM
// apply it once; without one the caller gets the error.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Response, error) {
	h := fsm.Hdr(cmd)
	if h.Now.IsZero() {
		h.Now = time.Now().UTC()
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	resp, err := n.applyData(ctx, data, h.RequestID != "")
	if err != nil {
		return nil, fmt.Errorf("apply command %d (request %q): %w", cmd.Type(), h.RequestID, err)
	}
	if resp.Err != nil {
		return resp, resp.Err
	}
	return resp, nil
}

func (n *Node) applyData(ctx context.Context, data []byte, dedup bool) (*fsm.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	var last error
	delay := retryMin
	for attempt := 1; ; attempt++ {
		if n.isClosed() {
			return nil, ErrClosed
		}
		changed := n.leaderChangedCh()
		var resp *fsm.Response
		var err error
		leaderID, leaderAddr := n.Leader()
		switch {
		case n.IsLeader():
			resp, err = n.applyLocal(ctx, data)
		case leaderAddr == "":
			err = ErrNoLeader
		default:
			resp, err = n.rpc.apply(ctx, leaderAddr, data)
		}
		if err == nil {
			return resp, nil
		}
		if n.isClosed() {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrTimeout, attempt, err)
		}
		if !retryable(err, dedup) {
			return nil, err
		}
		if last == nil || err.Error() != last.Error() {
			n.log.Debug("apply retrying", "attempt", attempt, "leader.id", leaderID, "error", err)
		}
		last = err
		if werr := n.pause(ctx, changed, &delay); werr != nil {
			return nil, fmt.Errorf("%w after %d attempts: %w", werr, attempt, last)
		}
	}
}

// pause waits for the backoff delay, a leader change, ctx or close.
func (n *Node) pause(ctx context.Context, changed <-chan struct{}, delay *time.Duration) error {
	d := *delay/2 + rand.N(*delay/2+1)
	*delay = min(2**delay, retryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ErrTimeout
	case <-n.closing:
		return ErrClosed
	case <-changed:
		// A new leader is known: try it now, but not in a tight loop if
		// leadership flaps.
		select {
		case <-t.C:
		case <-time.After(retryMin):
		case <-ctx.Done():
			return ErrTimeout
		}
	case <-t.C:
	}
	return nil
}

// retryable reports whether an attempt may be repeated: always when the
// command certainly was not applied, otherwise only for deduplicated commands.
func retryable(err error, dedup bool) bool {
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) {
		return true
	}
	var te *transportError
	if errors.As(err, &te) {
		return !te.sent || dedup
	}
	var re *remoteError
	if errors.As(err, &re) {
		return false
	}
	return dedup && (errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrClosed))
}

// applyLocal appends data to the log on this node, which must lead, and
// waits for it to be committed and applied.
func (n *Node) applyLocal(ctx context.Context, data []byte) (*fsm.Response, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	start := time.Now()
	fut := n.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, raftErr(err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w waiting for commit: %w", ErrTimeout, ctx.Err())
	case <-n.closing:
		return nil, ErrClosed
	}
	if m := n.cfg.Metrics; m != nil {
		m.applyDuration.Observe(time.Since(start).Seconds())
	}
	switch v := fut.Response().(type) {
	case *fsm.Response:
		return v, nil
	case error:
		return nil, fmt.Errorf("fsm apply at index %d: %w", fut.Index(), v)
	default:
		return nil, fmt.Errorf("fsm apply at index %d: unexpected response %T", fut.Index(), v)
	}
}

// raftErr maps hashicorp/raft errors to this package's errors.
func raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
