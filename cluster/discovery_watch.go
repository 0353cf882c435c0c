package cluster

import (
	"context"
	"time"
)

// MemberEvent is a change in the passing set of servers.
type MemberEvent struct {
	// Joined is true for a server that started passing, false for one that
	// stopped (failed its check, or deregistered).
	Joined bool
	Peer   Peer
}

// Watch follows the passing servers with blocking queries until ctx ends
// and calls fn for every join and leave after the first read (whose set is
// the baseline). The leader can Join/Remove from fn; a departure is not
// necessarily permanent (a node restarting drops out briefly), so removing
// is the caller's policy. Errors back off, bounded at 10 s between tries.
func (d *Discovery) Watch(ctx context.Context, fn func(MemberEvent)) {
	var index uint64
	var known map[string]Peer
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ps, next, err := d.Passing(ctx, index, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("discovery watch", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		cur := make(map[string]Peer, len(ps))
		for _, p := range ps {
			cur[p.ID] = p
		}
		if known != nil {
			for _, p := range ps {
				if old, ok := known[p.ID]; !ok || old.Addr != p.Addr {
					fn(MemberEvent{Joined: true, Peer: p})
				}
			}
			for id, p := range known {
				if _, ok := cur[id]; !ok {
					fn(MemberEvent{Joined: false, Peer: p})
				}
			}
		}
		known = cur
		if next < index { // Consul reset its index: start over, as its docs advise
			next = 0
		}
		index = next
	}
}
