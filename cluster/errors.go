package cluster

import "errors"

// Cluster errors. Callers branch on them with errors.Is; they survive being
// forwarded between nodes (see rpc.go for the wire codes).
var (
	// ErrNoLeader: the cluster has no leader right now (election in progress
	// or quorum lost). The write was not applied; retrying later is safe.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrNotLeader: the node asked to act as leader is not the leader. The
	// write was not applied.
	ErrNotLeader = errors.New("cluster: not leader")
	// ErrLeadershipLost: the leader lost leadership while the write was in
	// flight. The write may or may not have been applied; a command with a
	// RequestID can be retried safely, the FSM applies it once.
	ErrLeadershipLost = errors.New("cluster: leadership lost, outcome unknown")
	// ErrTimeout: the operation did not finish within its deadline. For a
	// write the outcome is unknown (see ErrLeadershipLost).
	ErrTimeout = errors.New("cluster: timeout")
	// ErrClosed: the node is shut down or shutting down.
	ErrClosed = errors.New("cluster: node closed")
)
