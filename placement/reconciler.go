package placement

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Applier submits commands to the replicated state (the cluster node).
type Applier interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Response, error)
	// ConsistentRead returns once the local state reflects every write
	// committed before the call; the reconciler's barrier at the start of a term.
	ConsistentRead(ctx context.Context) error
}

// leadership is implemented by an Applier that knows whether this node
// still leads (cluster.Node). The reconciler asks it right before every
// destroy: the term's context ends only once the leadership change is
// delivered, and raft may already have a new leader by then.
type leadership interface {
	IsLeader() bool
}

// State is the read side of the FSM that the reconciler needs.
type State interface {
	Sandbox(id string) (*fsm.Sandbox, error)
	Sandboxes() []*fsm.Sandbox
	Session(id string) (*fsm.Session, error)
	Sessions() []*fsm.Session
	Pool() fsm.PoolConfig
	Watch() <-chan struct{}
	// Changes is the feed of what each apply changed (fsm.FSM.Changes).
	Changes(after uint64) (changes []fsm.Change, last uint64, complete bool)
}

// Config tunes the reconciler.
type Config struct {
	// Resync is how often the driver's view is compared with the state even
	// when nothing changed: it bounds how long a dead container goes unnoticed.
	Resync time.Duration
	// CreateTimeout bounds one Create call (image check, start, agent ready).
	CreateTimeout time.Duration
	// OpTimeout bounds Destroy, Pause, Resume, Update and List calls.
	OpTimeout time.Duration
	// Concurrency is how many workers, and so driver calls, run at once.
	Concurrency int
	// SessionRetention keeps deleted sessions visible as tombstones this long.
	SessionRetention time.Duration
	// FailedRetention keeps an owned failed sandbox's record this long so its
	// owner can see why it failed.
	FailedRetention time.Duration
	// MaxWarmBackoff caps the pause between pool refills after failures.
	MaxWarmBackoff time.Duration
	// MaxRetryBackoff caps the pause before a failed driver call for one
	// sandbox is tried again.
	MaxRetryBackoff time.Duration
	// Pool, when set, is written to the state at the start of each term if it
	// differs: the leader's configuration wins.
	Pool    *fsm.PoolConfig
	Logger  *slog.Logger
	Metrics *Metrics
	// Clock is the reconciler's time (default the wall clock); tests move it.
	Clock Clock
}

func (c *Config) setDefaults() {
	if c.Resync <= 0 {
		c.Resync = 2 * time.Second
	}
	if c.CreateTimeout <= 0 {
		c.CreateTimeout = 60 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.SessionRetention <= 0 {
		c.SessionRetention = time.Hour
	}
	if c.FailedRetention <= 0 {
		c.FailedRetention = 10 * time.Minute
	}
	if c.MaxWarmBackoff <= 0 {
		c.MaxWarmBackoff = time.Minute
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
}

// Reconciler makes the driver's sandboxes match the FSM. It runs on the
// leader only and every result goes back into the FSM as a command, so a new
// leader picks up where the old one stopped.
//
// Its shape follows Nomad's eval broker and Consul's session timers: the
// FSM's change feed puts the key of each changed sandbox or session on a
// work queue; workers take one key at a time and compare that one object
// with what was observed of it (observed.go); lifetimes, retention and
// backoff are timers that put the key back at its deadline. Pool warming,
// expiry, resync and the term's start-up are separate units that only
// propose commands. A change costs the work on what changed, not a scan.
type Reconciler struct {
	cfg    Config
	driver Driver
	caps   Capabilities
	apply  Applier
	state  State
	log    *slog.Logger
	clock  Clock

	// Per term, set by Run before any worker starts.
	q    *workQueue
	obs  *observed
	warm *warmBackoff
	// term names this term's run in request IDs of proposals that are
	// unique to the term (the pool configuration).
	term string
}

// New returns a reconciler; call Run while this node leads.
func New(cfg Config, driver Driver, apply Applier, state State) *Reconciler {
	cfg.setDefaults()
	return &Reconciler{
		cfg:    cfg,
		driver: driver,
		caps:   driver.Capabilities(),
		apply:  apply,
		state:  state,
		clock:  cfg.Clock,
		log:    cfg.Logger.With("component", "reconciler", "driver", driver.Name()),
	}
}

// Lead runs the reconciler for each term in which this node is the leader,
// until ctx ends. leaderCh delivers leadership changes; isLeader is the
// current value, read once at start.
func (r *Reconciler) Lead(ctx context.Context, isLeader bool, leaderCh <-chan bool) {
	cluster.RunWhileLeader(ctx, isLeader, leaderCh, r.Run)
}

// Run reconciles for one term, until ctx ends (leadership lost or
// shutdown). It returns once every driver call of the term has finished.
func (r *Reconciler) Run(ctx context.Context) {
	r.log.Info("reconciler starting")
	defer r.log.Info("reconciler stopped")
	r.beginTerm()
	if !r.startTerm(ctx) {
		return
	}
	var workers sync.WaitGroup
	for i := 0; i < r.cfg.Concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			r.work(ctx)
		}()
	}
	defer func() {
		r.q.shutdown()
		workers.Wait()
	}()

	// Where the feed stands now; everything before is covered by the
	// full read that follows.
	_, cursor, _ := r.state.Changes(^uint64(0))
	r.reseed()
	r.q.add(purgeKey)
	r.q.addAfter(resyncKey, r.cfg.Resync)
	for {
		watch := r.state.Watch()
		changes, last, complete := r.state.Changes(cursor)
		if complete {
			r.feed(changes)
		} else {
			r.log.Info("change feed incomplete, rereading the state", "after", cursor, "now", last)
			r.reseed()
		}
		cursor = last
		select {
		case <-ctx.Done():
			return
		case <-watch:
		}
	}
}

// feed queues the work each change calls for.
func (r *Reconciler) feed(changes []fsm.Change) {
	for _, c := range changes {
		switch c.Kind {
		case fsm.ChangeSandbox:
			sb, _ := r.state.Sandbox(c.ID)
			if r.obs.reshape(c.ID, sb, r.state.Pool()) {
				r.q.add(poolKey)
			}
			if sb != nil && sb.SessionID != "" {
				// Its activity is its session's activity.
				r.q.add(sessionKey(sb.SessionID))
			}
			r.q.add(sandboxKey(c.ID))
		case fsm.ChangeSession:
			r.q.add(sessionKey(c.ID))
		case fsm.ChangePool:
			// What counts as warm depends on the pool's image.
			r.reseed()
		}
	}
	_, _, _, total := r.obs.counts()
	r.cfg.Metrics.tracked(total)
}

// reseed reads the whole state and queues every sandbox and session: at
// the start of a term, and when the change feed cannot say what changed.
func (r *Reconciler) reseed() {
	sandboxes := r.state.Sandboxes()
	r.obs.reseed(sandboxes, r.state.Pool())
	for _, sb := range sandboxes {
		r.q.add(sandboxKey(sb.ID))
	}
	for _, s := range r.state.Sessions() {
		if s.State != fsm.SessionDeleted {
			r.q.add(sessionKey(s.ID))
		}
	}
	r.q.add(poolKey)
	r.cfg.Metrics.tracked(len(sandboxes))
}

// work takes keys until the term ends. A key whose work failed comes back
// after a backoff; one that succeeded has its backoff reset.
func (r *Reconciler) work(ctx context.Context) {
	for {
		k, ok := r.q.get()
		if !ok {
			return
		}
		err := r.do(ctx, k)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			r.q.retry(k, r.cfg.MaxRetryBackoff)
		default:
			r.q.succeeded(k)
		}
		r.q.done(k)
	}
}

func (r *Reconciler) do(ctx context.Context, k workKey) error {
	switch k.kind {
	case workSandbox:
		return r.syncSandbox(ctx, k.id)
	case workSession:
		r.syncSession(ctx, k.id)
	case workPool:
		r.warmPool(ctx)
	case workResync:
		r.resync(ctx)
		r.q.addAfter(resyncKey, r.cfg.Resync)
	case workPurge:
		before := r.clock.Now().Add(-r.cfg.SessionRetention)
		r.submit(ctx, withID(&fsm.SessionsPurge{Before: before}, requestID("purge", "", fmt.Sprint(before.UnixNano()))))
		r.q.addAfter(purgeKey, r.cfg.SessionRetention/4)
	}
	return nil
}

// beginTerm forgets what the last term observed.
func (r *Reconciler) beginTerm() {
	r.term = NewID()
	r.obs = newObserved()
	r.warm = &warmBackoff{}
	r.q = newWorkQueue(r.clock)
}

// startTerm is the term's start-up: a barrier, so the reconciler acts only
// on state that includes every committed write; the leader's pool
// configuration; then adoption of what the driver runs.
func (r *Reconciler) startTerm(ctx context.Context) bool {
	if err := retry(ctx, 10, func() error { return r.apply.ConsistentRead(ctx) }); err != nil {
		r.log.Warn("barrier failed, giving up this term", "err", err)
		return false
	}
	if want := r.wantPool(); want != nil && !r.state.Pool().Equal(*want) {
		cmd := &fsm.SetPool{Pool: *want}
		if _, err := r.applyRetry(ctx, withID(cmd, requestID("pool", "", r.term))); err != nil {
			r.log.Error("set pool configuration", "err", err)
		}
	}
	if err := retry(ctx, 10, func() error { return r.adopt(ctx) }); err != nil {
		r.log.Warn("adopt failed", "err", err)
	}
	return ctx.Err() == nil
}

// wantPool is the configured pool with what the driver can do.
func (r *Reconciler) wantPool() *fsm.PoolConfig {
	if r.cfg.Pool == nil {
		return nil
	}
	p := *r.cfg.Pool
	p.FixedLimits = !r.caps.LiveUpdate
	return &p
}
