package cluster

import "context"

// RunWhileLeader calls run with a fresh context for each term in which
// this node leads, cancelling it when the leadership goes, until ctx ends
// or leaderCh closes. isLeader is the current value; leaderCh delivers
// changes (LeaderCh). A term's run has returned before the next one
// starts and before RunWhileLeader returns, so no leader-only work
// overlaps a leadership change on this node.
func RunWhileLeader(ctx context.Context, isLeader bool, leaderCh <-chan bool, run func(ctx context.Context)) {
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	start := func() {
		if cancel != nil {
			return
		}
		var tctx context.Context
		tctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		go func() {
			defer close(done)
			run(tctx)
		}()
	}
	if isLeader {
		start()
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return
		case leader, ok := <-leaderCh:
			if !ok {
				stop()
				return
			}
			if leader {
				start()
			} else {
				stop()
			}
		}
	}
}
