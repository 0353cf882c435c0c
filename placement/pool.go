package placement

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// warmPool keeps MinSize unowned sandboxes of the pool image idle or on
// their way, never exceeding MaxSize live sandboxes in total. It only
// proposes creates; the sandboxes' own work places them. It runs when the
// pool's counts change (observed.go keeps them in step with the change
// feed) and when a refill backoff ends.
func (r *Reconciler) warmPool(ctx context.Context) {
	pool := r.state.Pool()
	if pool.Image == "" || pool.MaxSize == 0 {
		return
	}
	if wait := r.warm.remaining(r.clock.Now()); wait > 0 {
		r.q.addAfter(poolKey, wait)
		return
	}
	live, warm, pending, _ := r.obs.counts()
	need := min(pool.MinSize-warm, pool.MaxSize-live)
	if need > 0 {
		if room := r.hostRoom(ctx, pending, pool.Resources); room < need {
			// The hosts' room changes outside the state: look again later.
			need = room
			r.q.addAfter(poolKey, r.cfg.Resync)
		}
	}
	for i := 0; i < need; i++ {
		id := NewID()
		cmd := withID(&fsm.SandboxCreate{ID: id, Image: pool.Image, Resources: pool.Resources}, requestID("create", id, ""))
		if _, err := r.apply.Apply(ctx, cmd); err != nil {
			if !errors.Is(err, fsm.ErrPoolExhausted) && ctx.Err() == nil {
				r.log.Warn("pool refill", "err", err)
				r.q.retry(poolKey, r.cfg.MaxRetryBackoff)
			}
			return
		}
		// Counted now, not when the feed gets to it: a run before then
		// would ask for it again.
		sb, _ := r.state.Sandbox(id)
		r.obs.reshape(id, sb, pool)
	}
}

// capacity is what a driver that knows its hosts' size offers (Nomad): how
// many more sandboxes of res they can hold now.
type capacity interface {
	Capacity(ctx context.Context, res fsm.Resources) (int, error)
}

// hostRoom is how many more pool sandboxes the hosts can take, less those
// still pending (asked for, maybe not yet counted by the hosts), so the
// pool never plans beyond what the hosts can hold. Without a capacity
// driver, or when it cannot tell, the pool's own maximum is the bound.
func (r *Reconciler) hostRoom(ctx context.Context, pending int, res fsm.Resources) int {
	c, ok := r.driver.(capacity)
	if !ok {
		return math.MaxInt
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	n, err := c.Capacity(cctx, res)
	cancel()
	if err != nil {
		r.log.Warn("host capacity unknown; planning the pool by its maximum", "err", err)
		return math.MaxInt
	}
	return max(n-pending, 0)
}

// warmBackoff spaces pool refills after consecutive create failures.
type warmBackoff struct {
	mu        sync.Mutex
	failures  int
	notBefore time.Time
}

func (b *warmBackoff) remaining(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.notBefore.Sub(now)
}

func (r *Reconciler) warmFailed() {
	r.warm.mu.Lock()
	r.warm.failures++
	backoff := min(time.Second<<min(r.warm.failures-1, 10), r.cfg.MaxWarmBackoff)
	r.warm.notBefore = r.clock.Now().Add(backoff)
	r.warm.mu.Unlock()
	r.cfg.Metrics.refillFailed()
}

func (r *Reconciler) warmSucceeded() {
	r.warm.mu.Lock()
	r.warm.failures = 0
	r.warm.notBefore = time.Time{}
	r.warm.mu.Unlock()
}
