package placement

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

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
	Sessions() []*fsm.Session
	Pool() fsm.PoolConfig
	Watch() <-chan struct{}
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
	// Concurrency is how many driver calls may run at once.
	Concurrency int
	// SessionRetention keeps deleted sessions visible as tombstones this long.
	SessionRetention time.Duration
	// FailedRetention keeps an owned failed sandbox's record this long so its
	// owner can see why it failed.
	FailedRetention time.Duration
	// MaxWarmBackoff caps the pause between pool refills after failures.
	MaxWarmBackoff time.Duration
	// Pool, when set, is written to the state at the start of each term if it
	// differs: the leader's configuration wins.
	Pool    *fsm.PoolConfig
	Logger  *slog.Logger
	Metrics *Metrics
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Reconciler makes the driver's sandboxes match the FSM. It runs on the
// leader only; every result goes back into the FSM as a command, so a new
// leader picks up where the old one stopped.
type Reconciler struct {
	cfg    Config
	driver Driver
	apply  Applier
	state  State
	log    *slog.Logger

	sem chan struct{}

	mu sync.Mutex
	// inflight holds sandbox ids with a driver call under way.
	inflight map[string]bool
	// paused is what the driver last reported or was told: true when frozen.
	paused map[string]bool
	// applied holds the limits each sandbox was created or updated with.
	applied map[string]fsm.Resources
	// destroyed holds failed sandboxes whose container is already gone.
	destroyed map[string]bool
	// warmFailures counts consecutive pool create failures, for backoff.
	warmFailures  int
	warmNotBefore time.Time
	lastPurge     time.Time
	lastResync    time.Time
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
		apply:  apply,
		state:  state,
		log:    cfg.Logger.With("component", "reconciler", "driver", driver.Name()),
		sem:    make(chan struct{}, cfg.Concurrency),
	}
}

// Lead runs the reconciler for each term in which this node is the leader,
// until ctx ends. leaderCh delivers leadership changes; isLeader is the
// current value, read once at start.
func (r *Reconciler) Lead(ctx context.Context, isLeader bool, leaderCh <-chan bool) {
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
			r.Run(tctx)
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

// Run reconciles until ctx ends (leadership lost or shutdown).
func (r *Reconciler) Run(ctx context.Context) {
	r.log.Info("reconciler starting")
	defer r.log.Info("reconciler stopped")
	r.reset()
	// A barrier first: act only on state that includes every committed write.
	if err := retry(ctx, 10, func() error { return r.apply.ConsistentRead(ctx) }); err != nil {
		r.log.Warn("barrier failed, giving up this term", "err", err)
		return
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
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		watch := r.state.Watch()
		r.pass(ctx)
		select {
		case <-ctx.Done():
			r.wait()
			return
		case <-watch:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(r.cfg.Resync)
	}
}

func (r *Reconciler) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight = map[string]bool{}
	r.paused = map[string]bool{}
	r.applied = map[string]fsm.Resources{}
	r.destroyed = map[string]bool{}
	r.warmFailures = 0
	r.warmNotBefore = time.Time{}
	r.lastResync = time.Time{}
	r.term = NewID()
}

// wait blocks until every driver call started in this term has finished.
func (r *Reconciler) wait() {
	for i := 0; i < cap(r.sem); i++ {
		r.sem <- struct{}{}
	}
	for i := 0; i < cap(r.sem); i++ {
		<-r.sem
	}
}

// wantPool is the configured pool with what the driver can do.
func (r *Reconciler) wantPool() *fsm.PoolConfig {
	if r.cfg.Pool == nil {
		return nil
	}
	p := *r.cfg.Pool
	p.FixedLimits = r.limitsFixed()
	return &p
}

func (r *Reconciler) limitsFixed() bool {
	f, ok := r.driver.(LimitsFixer)
	return ok && f.LimitsFixed()
}

// adopt compares what the driver runs with the state at the start of a term:
// containers the state knows are adopted, the rest are removed, and sandboxes
// whose container vanished are marked failed.
func (r *Reconciler) adopt(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	instances, err := r.driver.List(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	byID := map[string]*fsm.Sandbox{}
	for _, sb := range r.state.Sandboxes() {
		byID[sb.ID] = sb
	}
	seen := map[string]bool{}
	adopted, removed := 0, 0
	for _, in := range instances {
		seen[in.SandboxID] = true
		sb, ok := byID[in.SandboxID]
		switch {
		case ok && sb.Placed():
			r.mu.Lock()
			r.paused[sb.ID] = in.Paused
			r.applied[sb.ID] = sb.Resources
			r.mu.Unlock()
			adopted++
		case ok && sb.State == fsm.StatePending:
			// A create the previous leader did not finish: its placement was
			// never recorded, so start over. The listed container, not the
			// name: a late create of that name may land meanwhile.
			r.destroy(ctx, in.SandboxID, in.Placement)
			removed++
		case ok:
			// terminating or failed: the regular pass destroys it.
		default:
			r.log.Info("removing orphan sandbox", "sandbox.id", in.SandboxID, "status", in.Status)
			r.destroy(ctx, in.SandboxID, in.Placement)
			removed++
		}
	}
	for _, sb := range byID {
		if sb.Placed() && !seen[sb.ID] {
			r.fail(ctx, sb, "container missing at leader start")
		}
		if sb.State == fsm.StateFailed && !seen[sb.ID] {
			r.mu.Lock()
			r.destroyed[sb.ID] = true
			r.mu.Unlock()
		}
	}
	r.log.Info("adopted sandboxes", "adopted", adopted, "removed", removed)
	return nil
}

// pass is one reconciliation over the whole state.
func (r *Reconciler) pass(ctx context.Context) {
	now := time.Now()
	sandboxes := r.state.Sandboxes()
	pool := r.state.Pool()
	for _, sb := range sandboxes {
		if ctx.Err() != nil {
			return
		}
		switch sb.State {
		case fsm.StatePending:
			r.startCreate(ctx, sb)
		case fsm.StateTerminating:
			r.startDestroy(ctx, sb.ID, fsm.Placement{}, func() { r.removed(ctx, sb.ID) })
		case fsm.StateFailed:
			r.reapFailed(ctx, sb, now)
		case fsm.StatePaused:
			r.ensurePaused(ctx, sb.ID, true)
		case fsm.StateResuming:
			r.startResume(ctx, sb.ID)
		case fsm.StateActive:
			r.ensurePaused(ctx, sb.ID, false)
			r.ensureResources(ctx, sb)
			r.enforceTTL(ctx, sb, now)
		case fsm.StateIdle:
			r.ensurePaused(ctx, sb.ID, false)
		}
	}
	r.enforceSessions(ctx, sandboxes, now)
	r.warm(ctx, sandboxes, pool, now)
	if now.Sub(r.lastResync) >= r.cfg.Resync {
		r.lastResync = now
		r.resync(ctx)
	}
	if now.Sub(r.lastPurge) >= r.cfg.SessionRetention/4 {
		r.lastPurge = now
		before := now.Add(-r.cfg.SessionRetention)
		r.submit(ctx, withID(&fsm.SessionsPurge{Before: before}, requestID("purge", "", fmt.Sprint(before.UnixNano()))))
	}
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.observe(sandboxes)
	}
}

// claim marks id in flight; false if a call for it is already running.
func (r *Reconciler) claim(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight[id] {
		return false
	}
	r.inflight[id] = true
	return true
}

func (r *Reconciler) release(id string) {
	r.mu.Lock()
	delete(r.inflight, id)
	r.mu.Unlock()
}

// async runs fn for sandbox id in the background, one call per id at a time,
// at most Concurrency at once. It reports false if id was busy.
func (r *Reconciler) async(ctx context.Context, id string, fn func()) bool {
	if !r.claim(id) {
		return false
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		r.release(id)
		return false
	}
	go func() {
		defer func() { <-r.sem; r.release(id) }()
		fn()
	}()
	return true
}

func (r *Reconciler) startCreate(ctx context.Context, sb *fsm.Sandbox) {
	spec := Spec{ID: sb.ID, Image: sb.Image, Resources: sb.Resources, Network: sb.Network, EgressAllow: sb.EgressAllow}
	r.async(ctx, sb.ID, func() {
		// The pass may have read the state before an earlier create of this
		// sandbox was recorded; only the claim holder reads it fresh.
		if cur, err := r.state.Sandbox(sb.ID); err != nil || cur.State != fsm.StatePending {
			return
		}
		start := time.Now()
		p, err := r.create(ctx, spec)
		if ctx.Err() != nil || errors.Is(err, errNotLeading) {
			// Leadership lost mid-create: the next leader's adopt (or its
			// create, finding a leftover) removes what we may have started.
			// Nor is the sandbox failed for it.
			return
		}
		r.cfg.Metrics.placed(err, time.Since(start), sb.Pool)
		if err != nil {
			r.log.Warn("sandbox create failed", "sandbox.id", sb.ID, "image", sb.Image, "err", err)
			if sb.Pool {
				r.warmFailed()
			}
			r.fail(ctx, sb, err.Error())
			return
		}
		if sb.Pool {
			r.warmSucceeded()
		}
		r.mu.Lock()
		r.paused[sb.ID] = false
		r.applied[sb.ID] = spec.Resources
		r.mu.Unlock()
		// The request ID names this container: a retry of a proposal that
		// did commit gets its success back, not a conflict with itself.
		placed := withID(&fsm.SandboxPlaced{ID: sb.ID, Placement: p}, requestID("placed", sb.ID, p.ContainerID))
		if _, err := r.applyRetry(ctx, placed); err != nil {
			if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict) {
				// Removed or failed meanwhile: the container must go.
				r.log.Info("placed sandbox gone from the state, destroying it", "sandbox.id", sb.ID, "err", err)
				r.destroy(ctx, sb.ID, p)
				return
			}
			r.log.Warn("record placement", "sandbox.id", sb.ID, "err", err)
			return
		}
		r.log.Info("sandbox placed", "sandbox.id", sb.ID, "container", shortID(p.ContainerID), "ms", time.Since(start).Milliseconds())
	})
}

// create starts a sandbox. A leftover of the same id (a create an earlier
// leader began and never recorded, which may even land after this term's
// adopt) is destroyed and the create tried again, a bounded number of times.
func (r *Reconciler) create(ctx context.Context, spec Spec) (fsm.Placement, error) {
	const attempts = 3
	var (
		p   fsm.Placement
		err error
	)
	for i := 0; i < attempts; i++ {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CreateTimeout)
		p, err = r.driver.Create(cctx, spec)
		cancel()
		if !errors.Is(err, ErrExists) || ctx.Err() != nil {
			return p, err
		}
		// No state records the leftover (the sandbox is pending), so it
		// goes by name.
		r.log.Info("removing a leftover of an unfinished create", "sandbox.id", spec.ID)
		if derr := r.destroy(ctx, spec.ID, fsm.Placement{}); errors.Is(derr, errNotLeading) {
			return p, derr
		} else if derr != nil {
			return p, err
		}
	}
	return p, err
}

// startDestroy removes a sandbox's container in the background. With after
// set it is a terminating sandbox: the placement is the one the state holds
// when the claim is taken, and after runs once it is gone. Without, it is an
// orphan the driver listed at p.
func (r *Reconciler) startDestroy(ctx context.Context, id string, p fsm.Placement, after func()) {
	r.async(ctx, id, func() {
		if after != nil {
			cur, err := r.state.Sandbox(id)
			if err != nil || cur.State != fsm.StateTerminating {
				return // already removed by an earlier call
			}
			p = cur.Placement
		}
		if r.destroy(ctx, id, p) == nil && after != nil {
			after()
		}
	})
}

// errNotLeading refuses a destroy once this term's leadership is gone.
var errNotLeading = errors.New("not the leader of this term any more")

// leading reports whether this term still holds the leadership: its context
// lives and, when the Applier can tell, raft still calls this node leader.
func (r *Reconciler) leading(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	l, ok := r.apply.(leadership)
	return !ok || l.IsLeader()
}

// destroy removes a sandbox's container now (the caller holds its claim or
// runs before any claim exists): the one at p, or, with a zero p, whatever
// runs under the sandbox's name. Only while this term leads: a new leader
// may have made a newer container of that sandbox already.
func (r *Reconciler) destroy(ctx context.Context, id string, p fsm.Placement) error {
	if !r.leading(ctx) {
		r.log.Info("not destroying: leadership lost", "sandbox.id", id, "container", shortID(p.ContainerID))
		return errNotLeading
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	if err := r.driver.Destroy(dctx, id, p); err != nil && !errors.Is(err, ErrNotFound) {
		r.log.Warn("sandbox destroy failed", "sandbox.id", id, "container", shortID(p.ContainerID), "err", err)
		return err
	}
	r.mu.Lock()
	delete(r.paused, id)
	delete(r.applied, id)
	r.mu.Unlock()
	return nil
}

// removed records that a sandbox's container is gone. A sandbox id is
// removed once, so the id alone makes the request unique.
func (r *Reconciler) removed(ctx context.Context, id string) {
	if _, err := r.applyRetry(ctx, withID(&fsm.SandboxRemoved{ID: id}, requestID("removed", id, ""))); err != nil {
		r.log.Warn("record removal", "sandbox.id", id, "err", err)
	}
}

// fail marks a live sandbox failed. A sandbox fails once; its placement (none
// while pending) names which life of it failed.
func (r *Reconciler) fail(ctx context.Context, sb *fsm.Sandbox, reason string) {
	cmd := withID(&fsm.SandboxFailed{ID: sb.ID, Reason: reason}, requestID("failed", sb.ID, sb.Placement.ContainerID))
	if _, err := r.applyRetry(ctx, cmd); err != nil && !errors.Is(err, fsm.ErrNotFound) {
		r.log.Warn("record failure", "sandbox.id", sb.ID, "err", err)
	}
}

// reapFailed destroys a failed sandbox's container at once; the record goes
// at once for pool sandboxes and after FailedRetention for owned ones.
func (r *Reconciler) reapFailed(ctx context.Context, sb *fsm.Sandbox, now time.Time) {
	r.mu.Lock()
	gone := r.destroyed[sb.ID]
	r.mu.Unlock()
	forget := sb.Owner == "" || now.Sub(sb.CreatedAt) > r.cfg.FailedRetention
	if gone && !forget {
		return
	}
	r.async(ctx, sb.ID, func() {
		if !gone {
			p := sb.Placement
			if cur, err := r.state.Sandbox(sb.ID); err == nil {
				p = cur.Placement
			}
			if r.destroy(ctx, sb.ID, p) != nil {
				return
			}
			r.mu.Lock()
			r.destroyed[sb.ID] = true
			r.mu.Unlock()
		}
		if forget {
			r.removed(ctx, sb.ID)
			r.mu.Lock()
			delete(r.destroyed, sb.ID)
			r.mu.Unlock()
		}
	})
}

func (r *Reconciler) ensurePaused(ctx context.Context, id string, want bool) {
	r.mu.Lock()
	have, known := r.paused[id]
	r.mu.Unlock()
	if known && have == want {
		return
	}
	if !known && !want {
		return // never paused by us, and adopt would have told us otherwise
	}
	r.async(ctx, id, func() {
		var err error
		if want {
			octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
			err = r.driver.Pause(octx, id)
			cancel()
		} else {
			err = r.resume(ctx, id)
		}
		if errors.Is(err, errGone) {
			return
		}
		if want && errors.Is(err, ErrPauseRefused) {
			r.refusePause(ctx, id, err)
			return
		}
		if err != nil {
			r.log.Warn("pause/resume failed", "sandbox.id", id, "pause", want, "err", err)
			return
		}
		r.mu.Lock()
		r.paused[id] = want
		r.mu.Unlock()
	})
}

// startResume brings a resuming sandbox back and records it running
// (SandboxResumed, with the new placement when the driver moved it); only
// then does the state call it active. A failed resume is tried again on a
// later pass: the driver keeps what it needs (Nomad: the archive).
func (r *Reconciler) startResume(ctx context.Context, id string) {
	r.async(ctx, id, func() {
		cur, err := r.state.Sandbox(id)
		if err != nil || cur.State != fsm.StateResuming {
			return
		}
		start := time.Now()
		// A resume that re-places (Nomad) waits for a placement like a create.
		octx, cancel := context.WithTimeout(ctx, max(r.cfg.OpTimeout, r.cfg.CreateTimeout))
		p, moved, err := r.driver.Resume(octx, id)
		cancel()
		if err != nil {
			r.log.Warn("resume failed; trying again", "sandbox.id", id, "err", err)
			return
		}
		r.mu.Lock()
		r.paused[id] = false
		r.mu.Unlock()
		// A sandbox resumes once per pause: the index at which it became
		// resuming names this resume.
		cmd := withID(&fsm.SandboxResumed{ID: id, Moved: moved, Placement: p},
			requestID("resumed", id, fmt.Sprint(cur.ModifyIndex)))
		if _, err := r.applyRetry(ctx, cmd); err != nil {
			// Released or failed meanwhile. Where it was, the regular pass
			// destroys it; where it moved to, no state records it, so it
			// goes now.
			r.log.Info("record resume", "sandbox.id", id, "err", err)
			if moved && (errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict)) {
				r.destroy(ctx, id, p)
			}
			return
		}
		r.log.Info("sandbox resumed", "sandbox.id", id, "moved", moved, "node", p.Node,
			"container", shortID(p.ContainerID), "ms", time.Since(start).Milliseconds())
	})
}

// refusePause undoes a pause the driver can never carry out: the session is
// resumed (its sandbox never stopped running), instead of a state that says
// paused over a running sandbox and a pause retried on every pass.
func (r *Reconciler) refusePause(ctx context.Context, id string, err error) {
	sb, serr := r.state.Sandbox(id)
	if serr != nil || sb.SessionID == "" || sb.State != fsm.StatePaused {
		return
	}
	r.log.Warn("pause refused; resuming the session", "sandbox.id", id, "session.id", sb.SessionID, "err", err)
	cmd := &fsm.SessionResume{ID: sb.SessionID, Admin: true}
	r.submit(ctx, withID(cmd, requestID("unpause", sb.ID, fmt.Sprint(sb.ModifyIndex))))
}

// errGone reports a sandbox destroyed because the state no longer wants it.
var errGone = errors.New("sandbox gone from the state")

// resume thaws a sandbox and, when the driver placed it anew, records the
// new placement so the API reaches the agent where it now runs. The caller
// holds the sandbox's claim.
func (r *Reconciler) resume(ctx context.Context, id string) error {
	// A resume that re-places (Nomad) waits for a placement like a create.
	octx, cancel := context.WithTimeout(ctx, max(r.cfg.OpTimeout, r.cfg.CreateTimeout))
	p, moved, err := r.driver.Resume(octx, id)
	cancel()
	if err != nil || !moved {
		return err
	}
	if _, err := r.applyRetry(ctx, withID(&fsm.SandboxMoved{ID: id, Placement: p}, requestID("moved", id, p.ContainerID))); err != nil {
		if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict) {
			// Removed or failed meanwhile: the new allocation must go.
			r.log.Info("resumed sandbox gone from the state, destroying it", "sandbox.id", id, "err", err)
			r.destroy(ctx, id, p)
			return errGone
		}
		// Not recorded: report failure so the next pass resumes again (a
		// running sandbox resumes at once) and records it then.
		return fmt.Errorf("record new placement of %s: %w", id, err)
	}
	r.log.Info("sandbox moved on resume", "sandbox.id", id, "node", p.Node, "container", shortID(p.ContainerID))
	return nil
}

func (r *Reconciler) ensureResources(ctx context.Context, sb *fsm.Sandbox) {
	r.mu.Lock()
	have, known := r.applied[sb.ID]
	r.mu.Unlock()
	if !known || have == sb.Resources || r.limitsFixed() {
		return
	}
	want := sb.Resources
	r.async(ctx, sb.ID, func() {
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		defer cancel()
		if err := r.driver.Update(octx, sb.ID, want); err != nil {
			r.log.Warn("update limits failed", "sandbox.id", sb.ID, "err", err)
			return
		}
		r.mu.Lock()
		r.applied[sb.ID] = want
		r.mu.Unlock()
	})
}

// enforceTTL releases an owned sandbox past its lifetime or idle timeout.
// Session sandboxes are handled through their session.
func (r *Reconciler) enforceTTL(ctx context.Context, sb *fsm.Sandbox, now time.Time) {
	if sb.Owner == "" || sb.SessionID != "" {
		return
	}
	reason := ""
	switch {
	case !sb.ExpiresAt.IsZero() && now.After(sb.ExpiresAt):
		reason = "lifetime expired"
	case sb.IdleTimeout > 0 && now.Sub(sb.LastActiveAt) > sb.IdleTimeout:
		reason = "idle timeout"
	default:
		return
	}
	r.log.Info("releasing sandbox", "sandbox.id", sb.ID, "owner", sb.Owner, "reason", reason)
	r.submit(ctx, withID(&fsm.SandboxRelease{ID: sb.ID, Admin: true, Reason: reason}, requestID("release", sb.ID, "")))
}

func (r *Reconciler) enforceSessions(ctx context.Context, sandboxes []*fsm.Sandbox, now time.Time) {
	lastActive := map[string]time.Time{}
	for _, sb := range sandboxes {
		if sb.SessionID != "" {
			lastActive[sb.SessionID] = sb.LastActiveAt
		}
	}
	for _, s := range r.state.Sessions() {
		if s.State == fsm.SessionDeleted {
			continue
		}
		last := s.LastActiveAt
		if t := lastActive[s.ID]; t.After(last) {
			last = t
		}
		reason := ""
		switch {
		case s.MaxLifetime > 0 && now.Sub(s.CreatedAt) > s.MaxLifetime:
			reason = "max lifetime reached"
		case s.State == fsm.SessionActive && s.IdleTimeout > 0 && now.Sub(last) > s.IdleTimeout:
			reason = "idle timeout"
		default:
			continue
		}
		r.log.Info("deleting session", "session.id", s.ID, "owner", s.Owner, "reason", reason)
		r.submit(ctx, withID(&fsm.SessionDelete{ID: s.ID, Admin: true, Reason: reason}, requestID("session-delete", s.ID, "")))
	}
}

// warm keeps MinSize unowned sandboxes of the pool image idle or on their way,
// never exceeding MaxSize live sandboxes in total.
func (r *Reconciler) warm(ctx context.Context, sandboxes []*fsm.Sandbox, pool fsm.PoolConfig, now time.Time) {
	if pool.Image == "" || pool.MaxSize == 0 {
		return
	}
	r.mu.Lock()
	notBefore := r.warmNotBefore
	r.mu.Unlock()
	if now.Before(notBefore) {
		return
	}
	warm, live := 0, 0
	for _, sb := range sandboxes {
		if sb.Live() {
			live++
		}
		if sb.Owner == "" && (sb.State == fsm.StateIdle || sb.State == fsm.StatePending) && sb.Image == pool.Image && !sb.Network {
			warm++
		}
	}
	need := pool.MinSize - warm
	if room := pool.MaxSize - live; need > room {
		need = room
	}
	if need > 0 {
		need = min(need, r.hostRoom(ctx, sandboxes, pool.Resources))
	}
	for i := 0; i < need; i++ {
		id := NewID()
		cmd := withID(&fsm.SandboxCreate{ID: id, Image: pool.Image, Resources: pool.Resources}, requestID("create", id, ""))
		if _, err := r.apply.Apply(ctx, cmd); err != nil {
			if !errors.Is(err, fsm.ErrPoolExhausted) {
				r.log.Warn("pool refill", "err", err)
			}
			return
		}
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
func (r *Reconciler) hostRoom(ctx context.Context, sandboxes []*fsm.Sandbox, res fsm.Resources) int {
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
	for _, sb := range sandboxes {
		if sb.State == fsm.StatePending {
			n--
		}
	}
	return max(n, 0)
}

func (r *Reconciler) warmFailed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warmFailures++
	backoff := time.Second << min(r.warmFailures-1, 10)
	if backoff > r.cfg.MaxWarmBackoff {
		backoff = r.cfg.MaxWarmBackoff
	}
	r.warmNotBefore = time.Now().Add(backoff)
	r.cfg.Metrics.refillFailed()
}

func (r *Reconciler) warmSucceeded() {
	r.mu.Lock()
	r.warmFailures = 0
	r.warmNotBefore = time.Time{}
	r.mu.Unlock()
}

// resync asks the driver what runs and marks dead or vanished sandboxes
// failed; containers nobody knows are removed.
func (r *Reconciler) resync(ctx context.Context) {
	// A sandbox is missing only if it was placed before the list began: one
	// placed while the list ran may be live in the state but not yet listed.
	placedBefore := map[string]bool{}
	for _, sb := range r.state.Sandboxes() {
		if sb.Placed() {
			placedBefore[sb.ID] = true
		}
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	instances, err := r.driver.List(lctx)
	cancel()
	if err != nil {
		r.log.Warn("resync list", "err", err)
		return
	}
	// Orphans are judged against the state read after the list: every
	// container is created for a sandbox the state already holds, so one the
	// state does not know then is truly nobody's.
	byID := map[string]*fsm.Sandbox{}
	for _, sb := range r.state.Sandboxes() {
		byID[sb.ID] = sb
	}
	seen := map[string]bool{}
	for _, in := range instances {
		seen[in.SandboxID] = true
		sb, ok := byID[in.SandboxID]
		r.mu.Lock()
		busy := r.inflight[in.SandboxID]
		r.mu.Unlock()
		if busy {
			continue
		}
		if !ok {
			r.log.Info("removing orphan sandbox", "sandbox.id", in.SandboxID, "status", in.Status)
			r.startDestroy(ctx, in.SandboxID, in.Placement, nil)
			continue
		}
		if !in.Running && sb.Placed() {
			r.fail(ctx, sb, "container exited: "+in.Status)
		}
	}
	for _, sb := range byID {
		r.mu.Lock()
		busy := r.inflight[sb.ID]
		r.mu.Unlock()
		if busy || seen[sb.ID] || !placedBefore[sb.ID] {
			continue
		}
		if sb.Placed() {
			r.fail(ctx, sb, "container removed")
		}
	}
}

// requestID is the request ID of a command the reconciler proposes: the step,
// the sandbox (or session) and what makes this step unique, so the same
// decision always carries the same ID, on every leader. The FSM applies it
// once and answers a retry with the first response. It never contains ':',
// which every API request ID does, so the two cannot collide.
func requestID(step, id, unique string) string {
	return "reconciler/" + step + "/" + id + "/" + unique
}

// withID sets cmd's request ID and returns it.
func withID[C fsm.Command](cmd C, id string) C {
	fsm.Hdr(cmd).RequestID = id
	return cmd
}

// submit applies a command whose failure is only worth a log line: the next
// pass tries again.
func (r *Reconciler) submit(ctx context.Context, cmd fsm.Command) {
	if _, err := r.apply.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
		r.log.Debug("submit", "type", cmd.Type(), "err", err)
	}
}

// applyRetry applies a result the FSM must learn, retrying transient cluster
// errors with a bounded backoff. FSM business errors are returned at once.
func (r *Reconciler) applyRetry(ctx context.Context, cmd fsm.Command) (*fsm.Response, error) {
	var resp *fsm.Response
	err := retry(ctx, 8, func() error {
		var err error
		resp, err = r.apply.Apply(ctx, cmd)
		var fe *fsm.Error
		if errors.As(err, &fe) {
			return permanent{err}
		}
		return err
	})
	var p permanent
	if errors.As(err, &p) {
		return resp, p.err
	}
	return resp, err
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// retry calls fn up to attempts times with exponential backoff from 50 ms,
// stopping early on success, a permanent error, or ctx.
func retry(ctx context.Context, attempts int, fn func() error) error {
	delay := 50 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
	return err
}

// NewID returns a random 16-hex-character id.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
