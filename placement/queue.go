package placement

import (
	"sync"
	"time"
)

// workKind says what a work item is about.
type workKind uint8

const (
	workSandbox workKind = iota + 1 // one sandbox: create, destroy, pause, resume, limits, lifetime
	workSession                     // one session: its lifetime and idle timeout
	workPool                        // the warm pool's size
	workResync                      // compare the driver's list with the state
	workPurge                       // drop old session tombstones
)

// workKey names one unit of work. At most one worker holds a key at a time,
// so everything done for one sandbox is serialised without a lock per id.
type workKey struct {
	kind workKind
	id   string
}

func sandboxKey(id string) workKey { return workKey{kind: workSandbox, id: id} }
func sessionKey(id string) workKey { return workKey{kind: workSession, id: id} }

var (
	poolKey   = workKey{kind: workPool}
	resyncKey = workKey{kind: workResync}
	purgeKey  = workKey{kind: workPurge}
)

// workQueue is a set of keys waiting for a worker, in the manner of
// client-go's workqueue: a key added while queued is queued once; a key
// added while a worker holds it is handed out again once that worker is
// done, so no change is missed and no key is worked on twice at once.
// Delayed adds (timers for lifetimes, backoff, periodic work) keep the
// earliest deadline per key.
type workQueue struct {
	clock Clock

	mu         sync.Mutex
	cond       *sync.Cond
	order      []workKey
	queued     map[workKey]bool
	processing map[workKey]bool
	timers     map[workKey]pendingTimer
	failures   map[workKey]int
	closed     bool
}

type pendingTimer struct {
	at   time.Time
	stop func() bool
}

func newWorkQueue(clock Clock) *workQueue {
	q := &workQueue{
		clock:      clock,
		queued:     map[workKey]bool{},
		processing: map[workKey]bool{},
		timers:     map[workKey]pendingTimer{},
		failures:   map[workKey]int{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues k now.
func (q *workQueue) add(k workKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(k)
}

func (q *workQueue) addLocked(k workKey) {
	if q.closed || q.queued[k] {
		return
	}
	q.queued[k] = true
	if q.processing[k] {
		return // done hands it out again
	}
	q.order = append(q.order, k)
	q.cond.Signal()
}

// addAfter queues k once d has passed on the queue's clock, unless an
// earlier timer for k is already set.
func (q *workQueue) addAfter(k workKey, d time.Duration) {
	if d <= 0 {
		q.add(k)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := q.clock.Now().Add(d)
	if t, ok := q.timers[k]; ok {
		if !t.at.After(at) {
			return
		}
		t.stop()
	}
	var stop func() bool
	stop = q.clock.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if t, ok := q.timers[k]; ok && t.at.Equal(at) {
			delete(q.timers, k)
		}
		q.addLocked(k)
	})
	q.timers[k] = pendingTimer{at: at, stop: stop}
}

// get blocks until a key is ready and hands it to the caller, who must call
// done with it. ok is false once the queue is shut down.
func (q *workQueue) get() (k workKey, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return workKey{}, false
	}
	k, q.order = q.order[0], q.order[1:]
	delete(q.queued, k)
	q.processing[k] = true
	return k, true
}

// done releases k; if it was added meanwhile it is queued again.
func (q *workQueue) done(k workKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, k)
	if q.queued[k] && !q.closed {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// retry queues k again after a backoff that doubles with each consecutive
// failure, from 50 ms up to ceiling.
func (q *workQueue) retry(k workKey, ceiling time.Duration) {
	q.mu.Lock()
	n := q.failures[k]
	q.failures[k] = n + 1
	q.mu.Unlock()
	q.addAfter(k, min(50*time.Millisecond<<min(n, 16), ceiling))
}

// succeeded resets k's backoff.
func (q *workQueue) succeeded(k workKey) {
	q.mu.Lock()
	delete(q.failures, k)
	q.mu.Unlock()
}

// busy reports whether a worker holds k now.
func (q *workQueue) busy(k workKey) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.processing[k]
}

// len is how many keys wait for a worker.
func (q *workQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// shutdown stops every timer and wakes every worker to return.
func (q *workQueue) shutdown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for k, t := range q.timers {
		t.stop()
		delete(q.timers, k)
	}
	q.order = nil
	q.cond.Broadcast()
}
