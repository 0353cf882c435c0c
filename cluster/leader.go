package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// LeaderCh returns a channel that first carries this node's current
// leadership (true: leader) and then every change. It is buffered by one and
// never blocks the node: a slow reader skips intermediate values but always
// sees the latest. The channel is closed when the node closes.
func (n *Node) LeaderCh() <-chan bool {
	ch := make(chan bool, 1)
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.isClosed() {
		close(ch)
		return ch
	}
	ch <- n.isLeader.Load()
	n.subs = append(n.subs, ch)
	return ch
}

// publish hands v to every subscriber without blocking, replacing a value
// the subscriber has not read yet.
func (n *Node) publish(v bool) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	n.isLeader.Store(v)
	for _, ch := range n.subs {
		select {
		case ch <- v:
		default:
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- v:
			default:
			}
		}
	}
}

func (n *Node) closeSubscribers() {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	for _, ch := range n.subs {
		close(ch)
	}
	n.subs = nil
}

// leaderChangedCh returns a channel closed at the next change of the known
// leader; take it before checking the leader to not miss a change.
func (n *Node) leaderChangedCh() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

func (n *Node) signalLeaderChanged() {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	close(n.leaderChanged)
	n.leaderChanged = make(chan struct{})
}

// watchLeadership drains raft's notify and observer channels for the node's
// whole life. Raft blocks on a full NotifyCh, so it must always be read
// (Consul and Nomad both deadlocked on this once).
func (n *Node) watchLeadership() {
	for {
		select {
		case <-n.closing:
			return
		case v := <-n.notifyCh:
			n.log.Info("leadership changed", "leader", v)
			if m := n.cfg.Metrics; m != nil {
				m.isLeader.Set(boolGauge(v))
			}
			n.publish(v)
			n.signalLeaderChanged()
		case o := <-n.obsCh:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				n.log.Info("leader observed", "leader.id", lo.LeaderID, "leader.addr", lo.LeaderAddr)
			}
			n.signalLeaderChanged()
		}
	}
}

// WaitForLeader blocks until the cluster has a leader known to this node.
func (n *Node) WaitForLeader(ctx context.Context) error {
	for {
		changed := n.leaderChangedCh()
		if _, addr := n.Leader(); addr != "" {
			return nil
		}
		// Observations can be dropped under load; re-check now and then.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for leader: %w: %w", ErrNoLeader, ctx.Err())
		case <-n.closing:
			t.Stop()
			return ErrClosed
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// refreshMetrics keeps the polled gauges current.
func (n *Node) refreshMetrics() {
	m := n.cfg.Metrics
	if m == nil {
		return
	}
	t := time.NewTicker(metricsInterval)
	defer t.Stop()
	var corrupt uint64 // FSM count already added to the counter
	for {
		m.appliedIndex.Set(float64(n.fsm.AppliedIndex()))
		if c := n.fsm.CorruptEntries(); c > corrupt {
			m.corruptEntries.Add(float64(c - corrupt))
			corrupt = c
		}
		if n.IsLeader() {
			m.lastContact.Set(0)
		} else if lc := n.raft.LastContact(); !lc.IsZero() {
			m.lastContact.Set(time.Since(lc).Seconds())
		}
		if servers, err := n.configuration(); err == nil {
			voters := 0
			for _, s := range servers {
				if s.Suffrage == raft.Voter {
					voters++
				}
			}
			m.peers.Set(float64(voters))
		}
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
