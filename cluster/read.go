package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// commandScanLimit bounds how far readIndex walks back through the log to
// find the last FSM command; past it, a barrier answers instead.
const commandScanLimit = 1024

// ConsistentRead makes the next read of the local FSM linearizable: when it
// returns nil, the FSM reflects every write acknowledged before the call. On
// the leader it confirms leadership with a quorum; on a follower it asks the
// leader for its read index and waits until the local FSM has applied it.
// Retries across leader changes, bounded by ctx and ApplyTimeout.
func (n *Node) ConsistentRead(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	delay := retryMin
	for attempt := 1; ; attempt++ {
		if n.isClosed() {
			return ErrClosed
		}
		changed := n.leaderChangedCh()
		var idx uint64
		var err error
		_, leaderAddr := n.Leader()
		switch {
		case n.IsLeader():
			idx, err = n.readIndex(ctx)
		case leaderAddr == "":
			err = ErrNoLeader
		default:
			idx, err = n.rpc.readIndex(ctx, leaderAddr)
		}
		if err == nil {
			return n.waitApplied(ctx, idx)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("consistent read: %w after %d attempts: %w", ErrTimeout, attempt, err)
		}
		// A read changes nothing, so every cluster failure can be retried.
		var re *remoteError
		if errors.As(err, &re) || n.isClosed() {
			return fmt.Errorf("consistent read: %w", err)
		}
		if werr := n.pause(ctx, changed, &delay); werr != nil {
			return fmt.Errorf("consistent read: %w after %d attempts: %w", werr, attempt, err)
		}
	}
}

// readIndex runs on the leader. It returns the index of the last FSM command
// that may have been acknowledged, after confirming with a quorum that this
// node still leads. The log's last index is used rather than the commit
// index because a fresh leader's commit index can trail entries that the
// previous leader already acknowledged.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	last := n.raft.LastIndex()
	if err := n.wait(ctx, n.raft.VerifyLeader(), "verify leadership"); err != nil {
		return 0, err
	}
	if idx, ok := n.lastCommandIndex(last); ok {
		return idx, nil
	}
	// The tail of the log holds no command (only configuration changes or
	// it was compacted): a barrier makes the FSM apply everything before it.
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := n.wait(ctx, n.raft.Barrier(timeout), "barrier"); err != nil {
		return 0, err
	}
	return n.fsm.AppliedIndex(), nil
}

// lastCommandIndex finds the last FSM command at or before idx. Raft's own
// entries (no-ops, configuration) never reach the FSM, so the FSM's applied
// index is compared with a command's index, not with the log's last index.
func (n *Node) lastCommandIndex(idx uint64) (uint64, bool) {
	for i := idx; i > 0 && idx-i < commandScanLimit; i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			return 0, false
		}
		if l.Type == raft.LogCommand {
			return i, true
		}
	}
	return 0, idx == 0
}

// wait waits for a raft future, bounded by ctx and the node's life.
func (n *Node) wait(ctx context.Context, f raft.Future, what string) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, raftErr(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w: %w", what, ErrTimeout, ctx.Err())
	case <-n.closing:
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
}

// waitApplied blocks until the local FSM has applied index idx.
func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := n.fsm.Watch()
		if n.fsm.AppliedIndex() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w: %w", idx, n.fsm.AppliedIndex(), ErrTimeout, ctx.Err())
		case <-n.closing:
			return ErrClosed
		}
	}
}

// Barrier waits until every entry committed before it is applied to the
// local FSM. Leader only (ErrNotLeader elsewhere): the reconciler starts each
// term with it so it acts on the whole state, as Nomad's leader loop does.
func (n *Node) Barrier(ctx context.Context) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	return n.wait(ctx, n.raft.Barrier(timeout), "barrier")
}
