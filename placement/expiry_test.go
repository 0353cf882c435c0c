package placement

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// newClockRig is a rig whose reconciler and commands run on a fake clock.
func newClockRig(t *testing.T, pool fsm.PoolConfig) *rig {
	t.Helper()
	c := newFakeClock()
	f := fsm.New()
	r := &rig{t: t, f: f, apply: &directApplier{f: f, now: c.Now}, driver: newMemDriver(), clock: c}
	r.reg = prometheus.NewRegistry()
	r.m = NewMetrics(r.reg)
	r.mustApply(&fsm.SetPool{Pool: pool})
	return r
}

// quiet gives the reconciler time to act on what it was woken for: the
// tests below then check that it did nothing.
func quiet() { time.Sleep(100 * time.Millisecond) }

func (r *rig) gone(id string) bool {
	_, err := r.f.Sandbox(id)
	return errors.Is(err, fsm.ErrNotFound)
}

func (r *rig) stateOf(id string) fsm.SandboxState {
	sb, err := r.f.Sandbox(id)
	if err != nil {
		return ""
	}
	return sb.State
}

// TestReconcilerExpiresSandboxesOnTheirTimers moves a fake clock past a
// sandbox's deadlines: nothing happens a minute before, the sandbox is
// released right after, and activity moves an idle deadline.
func TestReconcilerExpiresSandboxesOnTheirTimers(t *testing.T) {
	cases := []struct {
		name     string
		acquire  fsm.SandboxAcquire
		touchAt  time.Duration // 0: no activity
		survives time.Duration // clock offset at which it must still be there
		endsBy   time.Duration // clock offset by which it must be gone
	}{
		{name: "lifetime", acquire: fsm.SandboxAcquire{Lifetime: 10 * time.Minute},
			survives: 9 * time.Minute, endsBy: 10*time.Minute + time.Second},
		{name: "idle timeout", acquire: fsm.SandboxAcquire{IdleTimeout: 5 * time.Minute},
			survives: 4 * time.Minute, endsBy: 5*time.Minute + time.Second},
		{name: "activity moves the idle deadline", acquire: fsm.SandboxAcquire{IdleTimeout: 5 * time.Minute},
			touchAt: 4 * time.Minute, survives: 8 * time.Minute, endsBy: 9*time.Minute + time.Second},
		{name: "lifetime ends an active sandbox", acquire: fsm.SandboxAcquire{IdleTimeout: 5 * time.Minute, Lifetime: 6 * time.Minute},
			touchAt: 4 * time.Minute, survives: 5*time.Minute + 30*time.Second, endsBy: 6*time.Minute + time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newClockRig(t, testPool)
			r.start()
			r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
			acq := tc.acquire
			acq.Owner, acq.NewID = "erin", NewID()
			id := r.mustApply(&acq).Sandbox.ID
			elapsed := time.Duration(0)
			advanceTo := func(at time.Duration) {
				r.clock.Advance(at - elapsed)
				elapsed = at
			}
			if tc.touchAt > 0 {
				advanceTo(tc.touchAt)
				r.mustApply(&fsm.SandboxTouch{IDs: []string{id}})
			}
			advanceTo(tc.survives)
			quiet()
			if st := r.stateOf(id); st != fsm.StateActive {
				t.Fatalf("at +%v the sandbox is %q, want active", tc.survives, st)
			}
			advanceTo(tc.endsBy)
			r.eventually("sandbox released and removed", func() bool { return r.gone(id) })
		})
	}
}

// TestReconcilerExpiresSessionsOnTheirTimers: a session ends at its
// maximum lifetime or idle timeout, measured on the reconciler's clock;
// its sandbox's activity counts as the session's.
func TestReconcilerExpiresSessionsOnTheirTimers(t *testing.T) {
	cases := []struct {
		name       string
		idle, life time.Duration
		touchAt    time.Duration
		survives   time.Duration
		endsBy     time.Duration
	}{
		{name: "idle", idle: 5 * time.Minute, survives: 4 * time.Minute, endsBy: 5*time.Minute + time.Second},
		{name: "sandbox activity keeps it", idle: 5 * time.Minute, touchAt: 4 * time.Minute,
			survives: 8 * time.Minute, endsBy: 9*time.Minute + time.Second},
		{name: "max lifetime", idle: time.Hour, life: 30 * time.Minute, touchAt: 20 * time.Minute,
			survives: 29 * time.Minute, endsBy: 30*time.Minute + time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newClockRig(t, testPool)
			r.start()
			r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
			s := r.mustApply(&fsm.SessionCreate{ID: "s1", Owner: "frank", Image: "img", CPUCount: 1, MemoryMB: 256,
				SandboxID: NewID(), IdleTimeout: tc.idle, MaxLifetime: tc.life}).Session
			elapsed := time.Duration(0)
			advanceTo := func(at time.Duration) {
				r.clock.Advance(at - elapsed)
				elapsed = at
			}
			if tc.touchAt > 0 {
				advanceTo(tc.touchAt)
				r.mustApply(&fsm.SandboxTouch{IDs: []string{s.SandboxID}})
			}
			advanceTo(tc.survives)
			quiet()
			if got, _ := r.f.Session("s1"); got == nil || got.State == fsm.SessionDeleted {
				t.Fatalf("at +%v the session is gone, want it alive", tc.survives)
			}
			advanceTo(tc.endsBy)
			r.eventually("session deleted", func() bool {
				got, err := r.f.Session("s1")
				return err != nil || got.State == fsm.SessionDeleted
			})
			r.eventually("its sandbox removed", func() bool { return r.gone(s.SandboxID) })
		})
	}
}

// TestReconcilerBacksOffPoolRefillsOnTheClock: after a failed pool create
// the next refill waits for the backoff, however many changes arrive
// meanwhile, and comes once it has passed.
func TestReconcilerBacksOffPoolRefillsOnTheClock(t *testing.T) {
	r := newClockRig(t, fsm.PoolConfig{MinSize: 1, MaxSize: 2, Image: "img", Resources: testPool.Resources})
	r.driver.failImage = "img"
	r.start()
	r.eventually("one failed create", func() bool { return r.counter("pool_refill_failures_total") == 1 })
	// Unrelated changes wake the reconciler; none may start a refill.
	for i := 0; i < 5; i++ {
		r.mustApply(&fsm.SandboxTouch{IDs: []string{"none"}})
	}
	r.clock.Advance(500 * time.Millisecond)
	quiet()
	if n := r.counter("pool_refill_failures_total"); n != 1 {
		t.Fatalf("refills tried within the 1 s backoff: %v failures, want 1", n)
	}
	r.clock.Advance(600 * time.Millisecond)
	r.eventually("a second try after the backoff", func() bool { return r.counter("pool_refill_failures_total") == 2 })
	// The second backoff is 2 s.
	r.clock.Advance(1500 * time.Millisecond)
	quiet()
	if n := r.counter("pool_refill_failures_total"); n != 2 {
		t.Fatalf("third try before the 2 s backoff ended: %v failures", n)
	}
	r.driver.mu.Lock()
	r.driver.failImage = ""
	r.driver.mu.Unlock()
	r.clock.Advance(600 * time.Millisecond)
	r.eventually("the pool filled once the image works", func() bool { return r.count(fsm.StateIdle) == 1 })
}

// TestReconcilerKeepsAFailedRecordForItsRetention: an owned sandbox that
// failed stays visible to its owner for FailedRetention, then goes.
func TestReconcilerKeepsAFailedRecordForItsRetention(t *testing.T) {
	r := newClockRig(t, testPool)
	r.start()
	r.eventually("3 idle", func() bool { return r.count(fsm.StateIdle) == 3 })
	id := r.mustApply(&fsm.SandboxAcquire{Owner: "gina", NewID: NewID()}).Sandbox.ID
	r.mustApply(&fsm.SandboxFailed{ID: id, Reason: "test"})
	r.eventually("its container destroyed", func() bool { return len(r.driver.destroyed(id)) > 0 })
	r.clock.Advance(9 * time.Minute)
	quiet()
	if st := r.stateOf(id); st != fsm.StateFailed {
		t.Fatalf("after 9 of 10 minutes the failed sandbox is %q, want failed", st)
	}
	r.clock.Advance(2 * time.Minute)
	r.eventually("the record removed after 10 minutes", func() bool { return r.gone(id) })
}
