package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the Raft configuration.
type Server struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Leader bool   `json:"leader"`
	Voter  bool   `json:"voter"`
}

// Servers lists the latest Raft configuration, marking the known leader.
func (n *Node) Servers() ([]Server, error) {
	cfg, err := n.configuration()
	if err != nil {
		return nil, err
	}
	leaderID, _ := n.Leader()
	out := make([]Server, 0, len(cfg))
	for _, s := range cfg {
		out = append(out, Server{
			ID:     string(s.ID),
			Addr:   string(s.Address),
			Leader: string(s.ID) == leaderID,
			Voter:  s.Suffrage == raft.Voter,
		})
	}
	return out, nil
}

// Join adds the node id at addr as a voter. It is idempotent: the same id
// and address is a no-op, and the same id (or address) with a different
// partner replaces the stale entry. Called on a follower, it is forwarded to
// the leader; it retries across leader changes until ctx ends.
func (n *Node) Join(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return errors.New("join: id and addr are required")
	}
	return n.joinAs(ctx, id, addr, true)
}

// joinAs is Join with the suffrage asked for: a node without state joins
// as a non-voter first and asks for a vote once it has caught up
// (readmit.go). A member already at the same address keeps its suffrage
// when a non-voter is asked for: a voter's entry stays, and the node
// refuses votes on its own until it has caught up, so re-admission never
// shrinks the quorum while another voter is down.
func (n *Node) joinAs(ctx context.Context, id, addr string, voter bool) error {
	if id == "" || addr == "" {
		return errors.New("join: id and addr are required")
	}
	return n.onLeader(ctx, "join "+id, func(ctx context.Context, leaderAddr string) error {
		if leaderAddr == "" {
			return n.joinLocal(ctx, id, addr, voter)
		}
		return n.rpc.join(ctx, leaderAddr, id, addr, true, voter)
	})
}

// Remove removes the node id from the configuration; removing an unknown id
// is a no-op. Forwarded to the leader like Join.
func (n *Node) Remove(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("remove: id is required")
	}
	return n.onLeader(ctx, "remove "+id, func(ctx context.Context, leaderAddr string) error {
		if leaderAddr == "" {
			return n.removeLocal(ctx, id)
		}
		return n.rpc.remove(ctx, leaderAddr, id)
	})
}

// Leave removes this node from the cluster. A leader hands leadership over
// first so the removal does not cost the cluster an election timeout. Close
// the node afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if n.IsLeader() && n.otherVoters() > 0 {
		n.transferLeadership()
	}
	return n.Remove(ctx, n.id)
}

// onLeader runs op on the leader, retrying across leader changes. op gets ""
// when this node leads, else the leader's address to forward to. Membership
// changes are idempotent, so every cluster failure is retried.
func (n *Node) onLeader(ctx context.Context, what string, op func(ctx context.Context, leaderAddr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	delay := retryMin
	for attempt := 1; ; attempt++ {
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
		if err == nil {
			return nil
		}
		var re *remoteError
		if errors.As(err, &re) || !retryable(err, true) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w after %d attempts: %w", what, ErrTimeout, attempt, err)
		}
		if werr := n.pause(ctx, changed, &delay); werr != nil {
			return fmt.Errorf("%s: %w after %d attempts: %w", what, werr, attempt, err)
		}
	}
}

// joinLocal changes the configuration on this node, which must lead.
// voter=false adds a new member without a vote; voter=true adds a voter or
// promotes a non-voter at the same address.
func (n *Node) joinLocal(ctx context.Context, id, addr string, voter bool) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	servers, err := n.configuration()
	if err != nil {
		return err
	}
	for _, s := range servers {
		sameID, sameAddr := string(s.ID) == id, string(s.Address) == addr
		if sameID && sameAddr {
			if s.Suffrage == raft.Voter || !voter {
				n.log.Debug("join: already a member", "peer.id", id, "peer.addr", addr, "voter", s.Suffrage == raft.Voter)
				return nil
			}
			continue // a non-voter asking for a vote: promoted below
		}
		if sameID || sameAddr {
			n.log.Info("join: removing stale entry", "peer.id", s.ID, "peer.addr", s.Address)
			if err := n.wait(ctx, n.raft.RemoveServer(s.ID, 0, n.timeoutFor(ctx)), "remove stale "+string(s.ID)); err != nil {
				return err
			}
		}
	}
	change, what := n.raft.AddVoter, "add voter "+id
	if !voter {
		change, what = n.raft.AddNonvoter, "add non-voter "+id
	}
	if err := n.wait(ctx, change(raft.ServerID(id), raft.ServerAddress(addr), 0, n.timeoutFor(ctx)), what); err != nil {
		return err
	}
	n.log.Info("node joined", "peer.id", id, "peer.addr", addr, "voter", voter)
	return nil
}

// removeLocal removes id on this node, which must lead.
func (n *Node) removeLocal(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	servers, err := n.configuration()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == id {
			if err := n.wait(ctx, n.raft.RemoveServer(s.ID, 0, n.timeoutFor(ctx)), "remove server "+id); err != nil {
				return err
			}
			n.log.Info("node removed", "peer.id", id)
			return nil
		}
	}
	return nil
}

func (n *Node) timeoutFor(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return n.cfg.ApplyTimeout
}
