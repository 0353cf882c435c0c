package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// memberProbeTimeout bounds the probe of one member: an operator listing
// members waits for the slowest reachable one, never for a dead one.
const memberProbeTimeout = time.Second

// Member is a Server with what a probe over the cluster port found.
type Member struct {
	Server
	// Reachable: the member answered the probe (always true for this node).
	Reachable bool `json:"reachable"`
	// LastIndex is the member's Raft last log index, when it answered.
	LastIndex uint64 `json:"last_index,omitempty"`
	// Error says why the probe failed.
	Error string `json:"error,omitempty"`
}

// Members lists the Raft configuration like Servers and probes every other
// member over the cluster port (the state RPC a re-admitting node uses), in
// parallel, each bounded by memberProbeTimeout.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	servers, err := n.Servers()
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i].Server = s
		if s.ID == n.id {
			out[i].Reachable, out[i].LastIndex = true, n.raft.LastIndex()
			continue
		}
		wg.Add(1)
		go func(m *Member) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, memberProbeTimeout)
			defer cancel()
			idx, err := n.rpc.lastIndex(pctx, m.Addr)
			if err != nil {
				m.Error = err.Error()
				return
			}
			m.Reachable, m.LastIndex = true, idx
		}(&out[i])
	}
	wg.Wait()
	return out, nil
}

// WriteSnapshot writes the local FSM's state as the FSM's own snapshot
// document (fsm.FSM.Snapshot then Persist), the format Restore reads. The
// memdb snapshot is one consistent point in the log; call ConsistentRead
// first to make it include every write acknowledged before the call.
func (n *Node) WriteSnapshot(w io.Writer) error {
	snap, err := n.fsm.Snapshot()
	if err != nil {
		return fmt.Errorf("snapshot fsm: %w", err)
	}
	defer snap.Release()
	sink := &writerSink{w: w}
	if err := snap.Persist(sink); err != nil {
		return err
	}
	return sink.err
}

// writerSink adapts an io.Writer to raft.SnapshotSink for Persist.
type writerSink struct {
	w   io.Writer
	err error
}

func (s *writerSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *writerSink) Close() error                { return nil }
func (s *writerSink) ID() string                  { return "download" }
func (s *writerSink) Cancel() error {
	s.err = errors.New("snapshot cancelled")
	return nil
}

// ErrBadSnapshot: a snapshot offered to Restore cannot be read by the FSM.
// Nothing was changed.
var ErrBadSnapshot = errors.New("cluster: snapshot cannot be restored")

// ValidateSnapshot decodes data into a scratch FSM, exactly as Restore
// would: raft panics when the FSM refuses a user snapshot, so nothing
// reaches raft before this passes.
func ValidateSnapshot(data []byte) error {
	if err := fsm.New().Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	return nil
}

// Restore replaces the replicated state with a snapshot document written
// by WriteSnapshot, on every node: hashicorp/raft's user restore on the
// leader writes it as a new snapshot past the log's end, so followers
// install it. It is validated (ValidateSnapshot) here and, called on a
// follower and forwarded, again on the leader before raft sees it. The
// restored state's applied index is the saved one, below the index raft
// moved to; a no-op command afterwards moves every node's applied index
// past the restore, so index waits and read-your-writes keep working.
func (n *Node) Restore(ctx context.Context, data []byte) error {
	if err := ValidateSnapshot(data); err != nil {
		return err // here too, so errors.Is(err, ErrBadSnapshot) holds on any node
	}
	err := n.onLeaderOnce(ctx, func(ctx context.Context, leaderAddr string) error {
		if leaderAddr == "" {
			return n.restoreLocal(ctx, data)
		}
		_, err := n.rpc.call(ctx, leaderAddr, pathRestore, "application/json", data)
		return err
	})
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if _, err := n.Apply(ctx, &fsm.SandboxTouch{}); err != nil {
		return fmt.Errorf("restore snapshot: restored, but the index mark failed: %w", err)
	}
	return nil
}

// onLeaderOnce runs op on the leader like onLeader, but retries only while
// op certainly did not run (no leader, not leader, not sent): a restore is
// not idempotent with respect to writes made after it.
func (n *Node) onLeaderOnce(ctx context.Context, op func(ctx context.Context, leaderAddr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	delay := retryMin
	for {
		if n.isClosed() {
			return ErrClosed
		}
		changed := n.leaderChangedCh()
		_, leaderAddr := n.Leader()
		var err error
		switch {
		case n.IsLeader():
			err = op(ctx, "")
		case leaderAddr == "":
			err = ErrNoLeader
		default:
			err = op(ctx, leaderAddr)
		}
		if err == nil || !retryable(err, false) {
			return err
		}
		if werr := n.pause(ctx, changed, &delay); werr != nil {
			return fmt.Errorf("%w: %w", werr, err)
		}
	}
}

// restoreLocal hands data to raft's user restore; this node must lead.
func (n *Node) restoreLocal(ctx context.Context, data []byte) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if err := ValidateSnapshot(data); err != nil {
		return err
	}
	cfg, err := n.configuration()
	if err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{
		Version:       raft.SnapshotVersionMax,
		Size:          int64(len(data)),
		Configuration: raft.Configuration{Servers: cfg},
	}
	timeout := n.timeoutFor(ctx)
	start := time.Now()
	if err := n.raft.Restore(meta, bytes.NewReader(data), timeout); err != nil {
		return fmt.Errorf("raft restore: %w", raftErr(err))
	}
	n.log.Warn("state restored from an operator's snapshot", "bytes", len(data), "took", time.Since(start))
	return nil
}
