package placement

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// memDriver is an in-memory Driver: the reconciler's logic is tested here
// against it; the Docker driver has its own tests against a real daemon.
type memDriver struct {
	mu        sync.Mutex
	instances map[string]*Instance
	failImage string // Create fails for this image
	// moveOnResume makes Resume place the sandbox anew, as Nomad does: a
	// new container on another node with a new endpoint.
	moveOnResume bool
	// onResume, if set, runs at the start of Resume (without the lock): a
	// test changes the state while the driver works.
	onResume func(id string)
	resumes  int
	calls    []string
	// lateLeftovers are ids whose first Create finds a container an earlier
	// leader's unfinished create just made (after this term's adopt).
	lateLeftovers map[string]bool
	// hostSlots, when > 0, is how many sandboxes the hosts hold in all
	// (Capacity reports what is left, as Nomad's driver does).
	hostSlots int
	// refusePause makes Pause fail for good, as Nomad's does for a
	// workspace larger than its disk limit.
	refusePause bool
	// onDestroy, if set, runs at the start of Destroy (without the lock):
	// a test makes something happen while the destroy is under way.
	onDestroy func(id string, p fsm.Placement)
	// fixedLimits makes the driver say it cannot change limits in place.
	fixedLimits bool
	// onList, if set, runs after List has read the instances and before it
	// returns: the state changes while the list is in flight.
	onList func()
}

// Capacity is the room left on the hosts; with no hostSlots, plenty.
func (d *memDriver) Capacity(context.Context, fsm.Resources) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hostSlots == 0 {
		return 1 << 20, nil
	}
	return d.hostSlots - len(d.instances), nil
}

func newMemDriver() *memDriver { return &memDriver{instances: map[string]*Instance{}} }

func (d *memDriver) Name() string { return "mem" }

func (d *memDriver) Capabilities() Capabilities {
	return Capabilities{LiveUpdate: !d.fixedLimits, FreezeInPlace: !d.moveOnResume, MovesOnResume: d.moveOnResume}
}

func (d *memDriver) record(call string) {
	d.calls = append(d.calls, call)
}

func (d *memDriver) Create(_ context.Context, s Spec) (fsm.Placement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("create " + s.ID)
	if s.Image == d.failImage {
		return fsm.Placement{}, &ImageNotFoundError{Image: s.Image}
	}
	if d.lateLeftovers[s.ID] {
		delete(d.lateLeftovers, s.ID)
		d.instances[s.ID] = &Instance{SandboxID: s.ID, Running: true, Status: "leftover"}
	}
	if _, ok := d.instances[s.ID]; ok {
		return fsm.Placement{}, fmt.Errorf("create %s: %w", s.ID, ErrExists)
	}
	p := fsm.Placement{Driver: "mem", ContainerID: "c-" + s.ID, AgentEndpoint: "unix:///nowhere/" + s.ID}
	d.instances[s.ID] = &Instance{SandboxID: s.ID, Placement: p, Running: true, Status: "running"}
	return p, nil
}

// Destroy removes the container at p, or, with no container id in p,
// whatever runs under id, as the real drivers do: a newer container of the
// same sandbox is kept (and the call says so in calls).
func (d *memDriver) Destroy(_ context.Context, id string, p fsm.Placement) error {
	d.mu.Lock()
	hook := d.onDestroy
	d.mu.Unlock()
	if hook != nil {
		hook(id, p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.instances[id]
	if ok && p.ContainerID != "" && in.Placement.ContainerID != p.ContainerID {
		d.record(fmt.Sprintf("destroy %s %s: kept %s", id, p.ContainerID, in.Placement.ContainerID))
		return nil
	}
	d.record(strings.TrimSpace("destroy " + id + " " + p.ContainerID))
	delete(d.instances, id)
	return nil
}

// destroyed reports the Destroy calls that removed sandbox id's container.
func (d *memDriver) destroyed(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, c := range d.calls {
		if (c == "destroy "+id || strings.HasPrefix(c, "destroy "+id+" ")) && !strings.Contains(c, "kept") {
			out = append(out, c)
		}
	}
	return out
}

func (d *memDriver) Pause(_ context.Context, id string) error {
	d.mu.Lock()
	refuse := d.refusePause
	d.mu.Unlock()
	if refuse {
		return fmt.Errorf("pause %s: archive too large: %w", id, ErrPauseRefused)
	}
	return d.setPaused(id, true)
}

func (d *memDriver) Resume(_ context.Context, id string) (fsm.Placement, bool, error) {
	d.mu.Lock()
	hook := d.onResume
	d.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	if err := d.setPaused(id, false); err != nil {
		return fsm.Placement{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("resume " + id)
	if !d.moveOnResume {
		return fsm.Placement{}, false, nil
	}
	d.resumes++
	in := d.instances[id]
	in.Placement = fsm.Placement{Driver: "mem", Node: "n2", ContainerID: fmt.Sprintf("c-%s-%d", id, d.resumes),
		AgentEndpoint: fmt.Sprintf("unix:///elsewhere/%s/%d", id, d.resumes), AgentSecret: "new"}
	return in.Placement, true, nil
}

func (d *memDriver) setPaused(id string, p bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.instances[id]
	if !ok {
		return ErrNotFound
	}
	in.Paused = p
	return nil
}

func (d *memDriver) Update(_ context.Context, id string, _ fsm.Resources) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("update " + id)
	return nil
}

func (d *memDriver) List(context.Context) ([]Instance, error) {
	d.mu.Lock()
	var out []Instance
	for _, in := range d.instances {
		out = append(out, *in)
	}
	hook := d.onList
	d.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, nil
}

func (d *memDriver) ids() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id := range d.instances {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (d *memDriver) paused(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.instances[id]
	return ok && in.Paused
}

// directApplier applies commands to an FSM in order, as one Raft node would.
type directApplier struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
	// lost, if set, runs after each command is applied: an error it returns
	// is what the proposer hears instead of the response, as when a commit
	// is not acknowledged in time (the command applied all the same).
	lost func(c fsm.Command) error
	// follower is true once raft no longer calls this node the leader;
	// leaderChecks counts how often the reconciler asked.
	follower     atomic.Bool
	leaderChecks atomic.Int64
	// now, if set, stamps commands instead of the wall clock.
	now func() time.Time
}

func (a *directApplier) Apply(_ context.Context, c fsm.Command) (*fsm.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fsm.Hdr(c).Now.IsZero() {
		fsm.Hdr(c).Now = time.Now().UTC()
		if a.now != nil {
			fsm.Hdr(c).Now = a.now().UTC()
		}
	}
	b, err := fsm.Encode(c)
	if err != nil {
		return nil, err
	}
	a.index++
	resp := a.f.Apply(&raft.Log{Index: a.index, Data: b}).(*fsm.Response)
	if a.lost != nil {
		if err := a.lost(c); err != nil {
			return nil, err
		}
	}
	return resp, resp.Error()
}

func (a *directApplier) IsLeader() bool {
	a.leaderChecks.Add(1)
	return !a.follower.Load()
}

func (a *directApplier) ConsistentRead(context.Context) error { return nil }

type rig struct {
	t      *testing.T
	f      *fsm.FSM
	apply  *directApplier
	driver *memDriver
	reg    *prometheus.Registry
	m      *Metrics
	cancel context.CancelFunc
	done   chan struct{}
	// clock, if set, is the reconciler's and the commands' time.
	clock *fakeClock
}

func newRig(t *testing.T, pool fsm.PoolConfig) *rig {
	t.Helper()
	f := fsm.New()
	r := &rig{t: t, f: f, apply: &directApplier{f: f}, driver: newMemDriver(), reg: prometheus.NewRegistry()}
	r.m = NewMetrics(r.reg)
	r.mustApply(&fsm.SetPool{Pool: pool})
	return r
}

func (r *rig) start() {
	r.t.Helper()
	cfg := Config{Resync: 50 * time.Millisecond, Metrics: r.m}
	if r.clock != nil {
		cfg.Clock = r.clock
	}
	rec := New(cfg, r.driver, r.apply, r.f)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() { defer close(r.done); rec.Run(ctx) }()
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *rig) mustApply(c fsm.Command) *fsm.Response {
	r.t.Helper()
	resp, err := r.apply.Apply(context.Background(), c)
	if err != nil {
		r.t.Fatalf("apply %T: %v", c, err)
	}
	return resp
}

// eventually polls cond until it holds or 5 s pass.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; state: %s; driver: %v", what, r.describe(), r.driver.ids())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter reads a counter's value from the rig's registry.
func (r *rig) counter(name string) float64 {
	r.t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			var sum float64
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func (r *rig) count(st fsm.SandboxState) int {
	return len(r.f.SandboxesByState(st))
}

func (r *rig) describe() string {
	var s string
	for _, sb := range r.f.Sandboxes() {
		s += fmt.Sprintf("%s:%s:%s ", sb.ID, sb.State, sb.Owner)
	}
	return s
}

var testPool = fsm.PoolConfig{MinSize: 3, MaxSize: 5, Image: "img", Resources: fsm.Resources{CPUCount: 1, MemoryMB: 256}}

func TestReconcilerWarmsPoolAndRefillsAfterAcquire(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle sandboxes", func() bool { return r.count(fsm.StateIdle) == 3 })
	if got := len(r.driver.ids()); got != 3 {
		t.Fatalf("driver runs %d sandboxes, want 3", got)
	}

	resp := r.mustApply(&fsm.SandboxAcquire{Owner: "alice", NewID: NewID()})
	if resp.Sandbox.State != fsm.StateActive {
		t.Fatalf("acquired sandbox state %s, want active (taken from the pool)", resp.Sandbox.State)
	}
	r.eventually("pool refilled to 3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })

	r.mustApply(&fsm.SandboxRelease{ID: resp.Sandbox.ID, Owner: "alice"})
	r.eventually("released sandbox destroyed and forgotten", func() bool {
		_, err := r.f.Sandbox(resp.Sandbox.ID)
		return errors.Is(err, fsm.ErrNotFound)
	})
	for _, id := range r.driver.ids() {
		if id == resp.Sandbox.ID {
			t.Fatalf("released sandbox %s still has a container", id)
		}
	}
}

func TestReconcilerNeverExceedsMax(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 2, MaxSize: 4, Image: "img"})
	r.start()
	r.eventually("2 idle", func() bool { return r.count(fsm.StateIdle) == 2 })
	var exhausted int
	for i := 0; i < 10; i++ {
		_, err := r.apply.Apply(context.Background(), &fsm.SandboxAcquire{Owner: "bob", NewID: NewID()})
		if errors.Is(err, fsm.ErrPoolExhausted) {
			exhausted++
		} else if err != nil {
			t.Fatal(err)
		}
		if n := len(r.driver.ids()); n > 4 {
			t.Fatalf("driver runs %d sandboxes, max is 4", n)
		}
	}
	// The two idle ones at least were handed out; the warmer's refills may
	// take the rest of the capacity, but never more than max in total.
	granted := 10 - exhausted
	if granted < 2 || granted > 4 {
		t.Fatalf("%d of 10 acquires granted with max 4 and 2 idle, want 2-4", granted)
	}
	r.eventually("every granted sandbox active", func() bool { return r.count(fsm.StateActive) == granted })
	time.Sleep(200 * time.Millisecond) // let the warmer try to overshoot
	if n := len(r.driver.ids()); n > 4 {
		t.Fatalf("driver runs %d sandboxes, max is 4", n)
	}
}

func TestReconcilerPlansThePoolWithinHostCapacity(t *testing.T) {
	r := newRig(t, testPool) // min 3
	r.driver.hostSlots = 2
	r.start()
	r.eventually("2 idle", func() bool { return r.count(fsm.StateIdle) == 2 })
	time.Sleep(200 * time.Millisecond) // several passes, each could overshoot
	if n := len(r.f.Sandboxes()); n != 2 {
		t.Errorf("sandboxes in the state = %d, want 2: the hosts hold no more", n)
	}
	r.driver.mu.Lock()
	r.driver.hostSlots = 3
	r.driver.mu.Unlock()
	r.eventually("the third once there is room", func() bool { return r.count(fsm.StateIdle) == 3 })
}

func TestReconcilerReplacesContainerRemovedBehindItsBack(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	victim := r.driver.ids()[0]
	r.driver.Destroy(context.Background(), victim, fsm.Placement{})
	r.eventually("victim forgotten", func() bool {
		_, err := r.f.Sandbox(victim)
		return errors.Is(err, fsm.ErrNotFound)
	})
	r.eventually("3 idle again", func() bool { return r.count(fsm.StateIdle) == 3 && len(r.driver.ids()) == 3 })
}

func TestReconcilerMarksOwnedDeadSandboxFailed(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	sb := r.mustApply(&fsm.SandboxAcquire{Owner: "carol", NewID: NewID()}).Sandbox
	r.driver.mu.Lock()
	r.driver.instances[sb.ID].Running = false
	r.driver.instances[sb.ID].Status = "exited (137)"
	r.driver.mu.Unlock()
	r.eventually("owned sandbox failed", func() bool {
		got, err := r.f.Sandbox(sb.ID)
		return err == nil && got.State == fsm.StateFailed
	})
	got, _ := r.f.Sandbox(sb.ID)
	if got.FailReason == "" {
		t.Fatal("failed sandbox has no reason for its owner")
	}
	r.eventually("dead container removed", func() bool {
		for _, id := range r.driver.ids() {
			if id == sb.ID {
				return false
			}
		}
		return true
	})
}

func TestReconcilerAdoptsKnownAndRemovesOrphans(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	r.stop()
	live := r.driver.ids()
	// A container of this cluster the state has never heard of.
	r.driver.Create(context.Background(), Spec{ID: "orphan0000000000", Image: "img"})

	r.start()
	r.eventually("orphan removed", func() bool { return len(r.driver.ids()) == 3 })
	if got := r.driver.ids(); fmt.Sprint(got) != fmt.Sprint(live) {
		t.Fatalf("after restart driver runs %v, want the adopted %v", got, live)
	}
	if n := r.count(fsm.StateIdle); n != 3 {
		t.Fatalf("%d idle after adoption, want 3", n)
	}
}

func TestReconcilerCreateFailureBacksOff(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 1, MaxSize: 2, Image: "missing"})
	r.driver.failImage = "missing"
	r.start()
	time.Sleep(500 * time.Millisecond)
	r.driver.mu.Lock()
	creates := 0
	for _, c := range r.driver.calls {
		if len(c) > 6 && c[:6] == "create" {
			creates++
		}
	}
	r.driver.mu.Unlock()
	if creates == 0 || creates > 3 {
		t.Fatalf("%d create attempts in 0.5 s for a missing image, want 1-3 (backoff)", creates)
	}
	if got := r.counter("pool_refill_failures_total"); got < 1 || int(got) != creates {
		t.Fatalf("pool_refill_failures_total = %v, want %d (one per failed create)", got, creates)
	}
	if len(r.f.SandboxesByState(fsm.StateFailed)) > 1 {
		t.Fatalf("failed pool sandboxes pile up: %s", r.describe())
	}
}

func TestReconcilerPausesAndResumesSessions(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	resp := r.mustApply(&fsm.SessionCreate{ID: "s1", Owner: "dave", Image: "img", CPUCount: 2, MemoryMB: 1024, SandboxID: NewID()})
	sb := resp.Sandbox.ID
	r.eventually("limits updated to the session's", func() bool {
		r.driver.mu.Lock()
		defer r.driver.mu.Unlock()
		for _, c := range r.driver.calls {
			if c == "update "+sb {
				return true
			}
		}
		return false
	})
	r.mustApply(&fsm.SessionPause{ID: "s1", Owner: "dave"})
	r.eventually("container paused", func() bool { return r.driver.paused(sb) })
	r.mustApply(&fsm.SessionResume{ID: "s1", Owner: "dave"})
	r.eventually("container resumed", func() bool { return !r.driver.paused(sb) })
	r.mustApply(&fsm.SessionDelete{ID: "s1", Owner: "dave"})
	r.eventually("session sandbox destroyed", func() bool {
		_, err := r.f.Sandbox(sb)
		return errors.Is(err, fsm.ErrNotFound)
	})
}

func TestReconcilerResumesASessionWhosePauseIsRefused(t *testing.T) {
	r := newRig(t, testPool)
	r.driver.refusePause = true
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	resp := r.mustApply(&fsm.SessionCreate{ID: "s1", Owner: "dave", Image: "img", CPUCount: 1, MemoryMB: 256, SandboxID: NewID()})
	id := resp.Sandbox.ID
	r.mustApply(&fsm.SessionPause{ID: "s1", Owner: "dave"})
	r.eventually("the session active again, its sandbox running", func() bool {
		sb, err := r.f.Sandbox(id)
		se, serr := r.f.Session("s1")
		return err == nil && serr == nil && sb.State == fsm.StateActive && se.State == fsm.SessionActive
	})
	if r.driver.paused(id) {
		t.Error("the driver reports the sandbox paused")
	}
}

func TestReconcilerRecordsPlacementOfMovedResume(t *testing.T) {
	var duringState fsm.SandboxState
	cases := []struct {
		name string
		// during runs inside the driver's Resume; nil: nothing happens.
		during func(r *rig, id string)
		check  func(t *testing.T, r *rig, id string, before fsm.Placement)
	}{
		{name: "new placement recorded",
			check: func(t *testing.T, r *rig, id string, before fsm.Placement) {
				var sb *fsm.Sandbox
				r.eventually("placement moved in the state", func() bool {
					sb, _ = r.f.Sandbox(id)
					return sb != nil && sb.Placement != before
				})
				r.driver.mu.Lock()
				want := r.driver.instances[id].Placement
				r.driver.mu.Unlock()
				if sb.Placement != want || sb.Placement.AgentEndpoint == before.AgentEndpoint {
					t.Errorf("state placement %+v, want the driver's new one %+v", sb.Placement, want)
				}
				if sb.State != fsm.StateActive {
					t.Errorf("state %s, want active", sb.State)
				}
			}},
		{name: "resuming, never active at the old placement, until recorded",
			during: func(r *rig, id string) {
				sb, _ := r.f.Sandbox(id)
				duringState = sb.State
			},
			check: func(t *testing.T, r *rig, id string, before fsm.Placement) {
				r.eventually("active", func() bool {
					sb, _ := r.f.Sandbox(id)
					return sb != nil && sb.State == fsm.StateActive
				})
				if duringState != fsm.StateResuming {
					t.Errorf("state while the driver resumed = %q, want resuming", duringState)
				}
				if sb, _ := r.f.Sandbox(id); sb.Placement == before {
					t.Errorf("active at the old placement %+v", before)
				}
			}},
		{name: "failed while resuming is destroyed",
			during: func(r *rig, id string) { r.mustApply(&fsm.SandboxFailed{ID: id, Reason: "node lost"}) },
			check: func(t *testing.T, r *rig, id string, before fsm.Placement) {
				r.eventually("resumed container destroyed", func() bool {
					for _, have := range r.driver.ids() {
						if have == id {
							return false
						}
					}
					return true
				})
				if sb, err := r.f.Sandbox(id); err == nil && sb.Placement != before {
					t.Errorf("failed sandbox's placement changed to %+v", sb.Placement)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, testPool)
			r.driver.moveOnResume = true
			r.start()
			r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
			resp := r.mustApply(&fsm.SessionCreate{ID: "s1", Owner: "dave", Image: "img", CPUCount: 1, MemoryMB: 256, SandboxID: NewID()})
			id, before := resp.Sandbox.ID, resp.Sandbox.Placement
			r.mustApply(&fsm.SessionPause{ID: "s1", Owner: "dave"})
			r.eventually("container paused", func() bool { return r.driver.paused(id) })
			if tc.during != nil {
				var once sync.Once
				r.driver.mu.Lock()
				r.driver.onResume = func(got string) {
					if got == id {
						once.Do(func() { tc.during(r, id) })
					}
				}
				r.driver.mu.Unlock()
			}
			r.mustApply(&fsm.SessionResume{ID: "s1", Owner: "dave"})
			tc.check(t, r, id, before)
		})
	}
}

func TestReconcilerReleasesIdleSandbox(t *testing.T) {
	r := newRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	sb := r.mustApply(&fsm.SandboxAcquire{Owner: "erin", NewID: NewID(), IdleTimeout: 100 * time.Millisecond}).Sandbox
	r.eventually("idle sandbox released and removed", func() bool {
		_, err := r.f.Sandbox(sb.ID)
		return errors.Is(err, fsm.ErrNotFound)
	})
}

func TestReconcilerReplacesLeftoverOfAnUnfinishedCreate(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 0, MaxSize: 4, Image: "img"})
	id := NewID()
	r.driver.lateLeftovers = map[string]bool{id: true}
	r.start()
	r.mustApply(&fsm.SandboxAcquire{Owner: "frank", NewID: id})
	r.eventually("sandbox active despite the leftover", func() bool {
		sb, err := r.f.Sandbox(id)
		return err == nil && sb.State == fsm.StateActive
	})
	r.driver.mu.Lock()
	defer r.driver.mu.Unlock()
	if in := r.driver.instances[id]; in == nil || in.Status == "leftover" {
		t.Fatalf("the leftover was kept instead of a fresh sandbox: %+v", in)
	}
	if got := fmt.Sprint(r.driver.calls); !strings.Contains(got, "destroy "+id) {
		t.Fatalf("leftover not destroyed before the retry; calls %s", got)
	}
}

// A SandboxPlaced that commits but whose acknowledgement is lost (a leader
// change, a timeout) is proposed again. The retry must get the first
// success back, not a conflict with its own commit that destroys a healthy
// sandbox its owner was already told about.
func TestReconcilerRetryOfACommittedPlacementKeepsTheSandbox(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 0, MaxSize: 2, Image: "img"})
	var proposals atomic.Int64
	r.apply.lost = func(c fsm.Command) error {
		if _, ok := c.(*fsm.SandboxPlaced); ok && proposals.Add(1) == 1 {
			return errors.New("timed out waiting for the commit")
		}
		return nil
	}
	id := NewID()
	r.mustApply(&fsm.SandboxAcquire{Owner: "gina", NewID: id})
	r.start()
	r.eventually("the placement proposed again after its lost acknowledgement", func() bool { return proposals.Load() >= 2 })
	r.stop() // waits for the create's goroutine, and any destroy it starts
	if got := r.driver.destroyed(id); len(got) != 0 {
		t.Errorf("the sandbox was destroyed after its placement committed: %v", got)
	}
	sb, err := r.f.Sandbox(id)
	if err != nil || sb.State != fsm.StateActive {
		t.Fatalf("sandbox = %+v, %v; want active", sb, err)
	}
	if ids := r.driver.ids(); len(ids) != 1 || ids[0] != id {
		t.Errorf("driver runs %v, want only %s", ids, id)
	}
}

// An earlier leader's create of a pending sandbox left a container, which
// this leader's adopt destroys; meanwhile that create, still retrying, makes
// a newer one of the same name. The destroy addresses the container it
// listed, so the newer one stays (the create then finds it and starts over
// by name, as no state records it).
func TestReconcilerDestroyLeavesANewerContainerOfTheSameSandbox(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 0, MaxSize: 2, Image: "img"})
	id := NewID()
	r.mustApply(&fsm.SandboxAcquire{Owner: "hal", NewID: id})
	r.driver.instances[id] = &Instance{SandboxID: id, Running: true, Status: "leftover",
		Placement: fsm.Placement{Driver: "mem", ContainerID: "c-old"}}
	var once sync.Once
	r.driver.onDestroy = func(got string, p fsm.Placement) {
		if got != id {
			return
		}
		once.Do(func() {
			r.driver.mu.Lock()
			r.driver.instances[id] = &Instance{SandboxID: id, Running: true, Status: "newer",
				Placement: fsm.Placement{Driver: "mem", ContainerID: "c-newer"}}
			r.driver.mu.Unlock()
		})
	}
	r.start()
	r.eventually("sandbox active", func() bool {
		sb, err := r.f.Sandbox(id)
		return err == nil && sb.State == fsm.StateActive
	})
	r.stop()
	r.driver.mu.Lock()
	calls := fmt.Sprint(r.driver.calls)
	r.driver.mu.Unlock()
	if !strings.Contains(calls, "destroy "+id+" c-old: kept c-newer") {
		t.Errorf("the destroy of the listed leftover c-old did not leave the newer c-newer; calls: %s", calls)
	}
}

// Raft no longer calls this node the leader, and the term's context has
// not ended yet (the change is still on its way): a sandbox released
// meanwhile is not destroyed by this node. Its successor does it.
func TestReconcilerDestroysNothingAfterLeadershipIsLost(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 2, MaxSize: 3, Image: "img"})
	r.start()
	r.eventually("2 idle", func() bool { return r.count(fsm.StateIdle) == 2 })
	victim := r.f.SandboxesByState(fsm.StateIdle)[0].ID
	r.apply.follower.Store(true)
	asked := r.apply.leaderChecks.Load()
	r.mustApply(&fsm.SandboxRelease{ID: victim, Admin: true})
	r.eventually("the reconciler asked whether it still leads", func() bool { return r.apply.leaderChecks.Load() > asked })
	r.stop()
	if got := r.driver.destroyed(victim); len(got) != 0 {
		t.Errorf("destroyed after leadership was lost: %v", got)
	}
	if sb, err := r.f.Sandbox(victim); err != nil || sb.State != fsm.StateTerminating {
		t.Errorf("released sandbox = %+v, %v; want still terminating, for the next leader", sb, err)
	}

	r.apply.follower.Store(false) // leader again, a new term
	r.start()
	r.eventually("released sandbox destroyed by the next term", func() bool {
		_, err := r.f.Sandbox(victim)
		return errors.Is(err, fsm.ErrNotFound) && len(r.driver.destroyed(victim)) == 1
	})
}

// A create that finds a leftover after leadership is lost neither removes
// it nor fails the sandbox: the next leader does both jobs right.
func TestReconcilerLeavesALeftoverAndItsSandboxAfterLeadershipIsLost(t *testing.T) {
	r := newRig(t, fsm.PoolConfig{MinSize: 0, MaxSize: 2, Image: "img"})
	id := NewID()
	r.driver.lateLeftovers = map[string]bool{id: true}
	r.apply.follower.Store(true)
	r.mustApply(&fsm.SandboxAcquire{Owner: "ida", NewID: id})
	r.start()
	r.eventually("the reconciler asked whether it still leads", func() bool { return r.apply.leaderChecks.Load() > 0 })
	r.stop()
	if got := r.driver.destroyed(id); len(got) != 0 {
		t.Errorf("destroyed after leadership was lost: %v", got)
	}
	if sb, err := r.f.Sandbox(id); err != nil || sb.State != fsm.StatePending {
		t.Errorf("sandbox = %+v, %v; want still pending, for the next leader", sb, err)
	}
}
