package placement

import (
	"sync"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// observation is what the reconciler last saw or did to one sandbox's
// container in this term. The state says what should be; this says what
// the driver was last told or reported, so a sync acts only on a difference.
type observation struct {
	// paused is known once the driver reported it or was told it.
	paused, pausedKnown bool
	// applied holds the limits the container was created or updated with.
	applied      fsm.Resources
	appliedKnown bool
	// destroyed is true for a failed sandbox whose container is gone.
	destroyed bool
	// orphan is a container the driver listed that no state records.
	orphan *fsm.Placement
}

// poolShape is the part of a sandbox the pool counts.
type poolShape struct {
	live, warm, pending bool
}

func shapeOf(sb *fsm.Sandbox, pool fsm.PoolConfig) poolShape {
	return poolShape{
		live:    sb.Live(),
		warm:    sb.Owner == "" && (sb.State == fsm.StateIdle || sb.State == fsm.StatePending) && sb.Image == pool.Image && !sb.Network,
		pending: sb.State == fsm.StatePending,
	}
}

// observed is the one record per sandbox of this term, plus the pool's
// counts kept in step with it so warming never scans the state.
type observed struct {
	mu     sync.Mutex
	byID   map[string]*observation
	shapes map[string]poolShape
	// counts of the shapes above.
	live, warm, pending int
}

func newObserved() *observed {
	return &observed{byID: map[string]*observation{}, shapes: map[string]poolShape{}}
}

// update runs fn on id's record, made if missing, under the lock.
func (o *observed) update(id string, fn func(*observation)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob := o.byID[id]
	if ob == nil {
		ob = &observation{}
		o.byID[id] = ob
	}
	fn(ob)
}

// get returns a copy of id's record (zero when there is none).
func (o *observed) get(id string) observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ob := o.byID[id]; ob != nil {
		return *ob
	}
	return observation{}
}

// forget drops id's record and returns what it held.
func (o *observed) forget(id string) observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob := o.byID[id]
	delete(o.byID, id)
	if ob == nil {
		return observation{}
	}
	return *ob
}

// reshape records sb's pool shape (nil: the sandbox is gone) and reports
// whether the pool's counts changed.
func (o *observed) reshape(id string, sb *fsm.Sandbox, pool fsm.PoolConfig) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	old, had := o.shapes[id]
	var now poolShape
	if sb != nil {
		now = shapeOf(sb, pool)
		o.shapes[id] = now
	} else {
		delete(o.shapes, id)
	}
	if had && old == now {
		return false
	}
	o.live += b2i(now.live) - b2i(old.live)
	o.warm += b2i(now.warm) - b2i(old.warm)
	o.pending += b2i(now.pending) - b2i(old.pending)
	return old.live != now.live || old.warm != now.warm || old.pending != now.pending
}

// reseed recounts every sandbox's shape from a full read of the state.
func (o *observed) reseed(sandboxes []*fsm.Sandbox, pool fsm.PoolConfig) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.shapes = make(map[string]poolShape, len(sandboxes))
	o.live, o.warm, o.pending = 0, 0, 0
	for _, sb := range sandboxes {
		s := shapeOf(sb, pool)
		o.shapes[sb.ID] = s
		o.live += b2i(s.live)
		o.warm += b2i(s.warm)
		o.pending += b2i(s.pending)
	}
}

// counts returns the pool's counts and how many sandboxes the state holds.
func (o *observed) counts() (live, warm, pending, total int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live, o.warm, o.pending, len(o.shapes)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
