package placement

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// syncSandbox brings one sandbox's container in line with its state. The
// caller holds the sandbox's key, so nothing else acts on it meanwhile. An
// error means a driver call failed and the key comes back after a backoff.
func (r *Reconciler) syncSandbox(ctx context.Context, id string) error {
	sb, err := r.state.Sandbox(id)
	if err != nil {
		// Gone from the state. A container resync found that no state
		// records goes now.
		ob := r.obs.forget(id)
		if ob.orphan == nil {
			return nil
		}
		r.log.Info("removing orphan sandbox", "sandbox.id", id, "container", shortID(ob.orphan.ContainerID))
		if err := r.destroy(ctx, id, *ob.orphan); err != nil && !errors.Is(err, errNotLeading) {
			r.obs.update(id, func(o *observation) { o.orphan = ob.orphan })
			return err
		}
		return nil
	}
	switch sb.State {
	case fsm.StatePending:
		return r.create(ctx, sb)
	case fsm.StateTerminating:
		return r.terminate(ctx, sb)
	case fsm.StateFailed:
		return r.reapFailed(ctx, sb)
	case fsm.StatePaused:
		if err := r.ensurePaused(ctx, sb, true); err != nil {
			return err
		}
		r.enforceLifetime(ctx, sb)
	case fsm.StateResuming:
		return r.resume(ctx, sb)
	case fsm.StateActive:
		if err := r.ensurePaused(ctx, sb, false); err != nil {
			return err
		}
		if err := r.ensureResources(ctx, sb); err != nil {
			return err
		}
		r.enforceLifetime(ctx, sb)
	case fsm.StateIdle:
		return r.ensurePaused(ctx, sb, false)
	}
	return nil
}

// create starts a pending sandbox and records where it runs.
func (r *Reconciler) create(ctx context.Context, sb *fsm.Sandbox) error {
	spec := Spec{ID: sb.ID, Image: sb.Image, Resources: sb.Resources, Network: sb.Network, EgressAllow: sb.EgressAllow}
	start := r.clock.Now()
	p, err := r.createReplacing(ctx, spec)
	if ctx.Err() != nil || errors.Is(err, errNotLeading) {
		// Leadership lost mid-create: the next leader's adopt (or its
		// create, finding a leftover) removes what we may have started.
		// Nor is the sandbox failed for it.
		return nil
	}
	r.cfg.Metrics.placed(err, r.clock.Now().Sub(start), sb.Pool)
	if err != nil {
		r.log.Warn("sandbox create failed", "sandbox.id", sb.ID, "image", sb.Image, "err", err)
		if sb.Pool {
			r.warmFailed()
		}
		r.fail(ctx, sb, err.Error())
		return nil
	}
	if sb.Pool {
		r.warmSucceeded()
	}
	r.obs.update(sb.ID, func(o *observation) {
		o.paused, o.pausedKnown = false, true
		o.applied, o.appliedKnown = spec.Resources, true
	})
	// The request ID names this container: a retry of a proposal that did
	// commit gets its success back, not a conflict with itself.
	placed := withID(&fsm.SandboxPlaced{ID: sb.ID, Placement: p}, requestID("placed", sb.ID, p.ContainerID))
	if _, err := r.applyRetry(ctx, placed); err != nil {
		if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict) {
			// Removed or failed meanwhile: the container must go.
			r.log.Info("placed sandbox gone from the state, destroying it", "sandbox.id", sb.ID, "err", err)
			if derr := r.destroy(ctx, sb.ID, p); derr != nil && !errors.Is(derr, errNotLeading) {
				r.obs.update(sb.ID, func(o *observation) { o.orphan = &p })
			}
			return nil
		}
		// Not recorded, and the term goes on: the sandbox is still
		// pending, so the next try finds this container as a leftover,
		// removes it and starts over.
		r.log.Warn("record placement", "sandbox.id", sb.ID, "err", err)
		return err
	}
	r.log.Info("sandbox placed", "sandbox.id", sb.ID, "container", shortID(p.ContainerID), "ms", r.clock.Now().Sub(start).Milliseconds())
	return nil
}

// createReplacing starts a sandbox. A leftover of the same id (a create an
// earlier leader began and never recorded, which may even land after this
// term's adopt) is destroyed and the create tried again, a bounded number
// of times.
func (r *Reconciler) createReplacing(ctx context.Context, spec Spec) (fsm.Placement, error) {
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

// terminate removes a released sandbox's container, the one the state
// recorded, then the sandbox. A sandbox id is removed once, so the id
// alone makes the request unique.
func (r *Reconciler) terminate(ctx context.Context, sb *fsm.Sandbox) error {
	if err := r.destroy(ctx, sb.ID, sb.Placement); err != nil {
		if errors.Is(err, errNotLeading) {
			return nil
		}
		return err
	}
	if _, err := r.applyRetry(ctx, withID(&fsm.SandboxRemoved{ID: sb.ID}, requestID("removed", sb.ID, ""))); err != nil {
		r.log.Warn("record removal", "sandbox.id", sb.ID, "err", err)
		return err
	}
	return nil
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

// destroy removes a sandbox's container now (the caller holds its key or
// runs before any worker starts): the one at p, or, with a zero p, whatever
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
	r.obs.update(id, func(o *observation) {
		o.pausedKnown, o.appliedKnown = false, false
	})
	return nil
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
// at once for pool sandboxes and after FailedRetention for owned ones (a
// timer brings the key back then).
func (r *Reconciler) reapFailed(ctx context.Context, sb *fsm.Sandbox) error {
	if !r.obs.get(sb.ID).destroyed {
		if err := r.destroy(ctx, sb.ID, sb.Placement); err != nil {
			if errors.Is(err, errNotLeading) {
				return nil
			}
			return err
		}
		r.obs.update(sb.ID, func(o *observation) { o.destroyed = true })
	}
	if sb.Owner != "" {
		if left := sb.CreatedAt.Add(r.cfg.FailedRetention).Sub(r.clock.Now()); left >= 0 {
			r.q.addAfter(sandboxKey(sb.ID), left+time.Millisecond)
			return nil
		}
	}
	if _, err := r.applyRetry(ctx, withID(&fsm.SandboxRemoved{ID: sb.ID}, requestID("removed", sb.ID, ""))); err != nil {
		r.log.Warn("record removal", "sandbox.id", sb.ID, "err", err)
		return err
	}
	return nil
}

// ensurePaused freezes or thaws a sandbox when what the driver was last
// told differs from the state.
func (r *Reconciler) ensurePaused(ctx context.Context, sb *fsm.Sandbox, want bool) error {
	ob := r.obs.get(sb.ID)
	if ob.pausedKnown && ob.paused == want {
		return nil
	}
	if !ob.pausedKnown && !want {
		return nil // never paused by us, and adopt would have told us otherwise
	}
	var err error
	if want {
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		err = r.driver.Pause(octx, sb.ID)
		cancel()
	} else {
		err = r.thaw(ctx, sb.ID)
	}
	switch {
	case errors.Is(err, errGone):
		return nil
	case want && errors.Is(err, ErrPauseRefused):
		r.refusePause(ctx, sb, err)
		return nil
	case err != nil:
		r.log.Warn("pause/resume failed", "sandbox.id", sb.ID, "pause", want, "err", err)
		return err
	}
	r.obs.update(sb.ID, func(o *observation) { o.paused, o.pausedKnown = want, true })
	return nil
}

// refusePause undoes a pause the driver can never carry out: the session is
// resumed (its sandbox never stopped running), instead of a state that says
// paused over a running sandbox and a pause retried forever.
func (r *Reconciler) refusePause(ctx context.Context, sb *fsm.Sandbox, err error) {
	r.log.Warn("pause refused; resuming", "sandbox.id", sb.ID, "session.id", sb.SessionID, "err", err)
	// SandboxResume moves the session too, when there is one.
	cmd := &fsm.SandboxResume{ID: sb.ID, Admin: true}
	r.submit(ctx, withID(cmd, requestID("unpause", sb.ID, fmt.Sprint(sb.ModifyIndex))))
}

// resume brings a resuming sandbox back and records it running
// (SandboxResumed, with the new placement when the driver moved it); only
// then does the state call it active. A failed resume is tried again after
// a backoff: the driver keeps what it needs (Nomad: the archive).
func (r *Reconciler) resume(ctx context.Context, sb *fsm.Sandbox) error {
	start := r.clock.Now()
	// A resume that re-places (Nomad) waits for a placement like a create.
	octx, cancel := context.WithTimeout(ctx, max(r.cfg.OpTimeout, r.cfg.CreateTimeout))
	p, moved, err := r.driver.Resume(octx, sb.ID)
	cancel()
	if err != nil {
		r.log.Warn("resume failed; trying again", "sandbox.id", sb.ID, "err", err)
		return err
	}
	r.obs.update(sb.ID, func(o *observation) { o.paused, o.pausedKnown = false, true })
	// A sandbox resumes once per pause: the index at which it became
	// resuming names this resume.
	cmd := withID(&fsm.SandboxResumed{ID: sb.ID, Moved: moved, Placement: p},
		requestID("resumed", sb.ID, fmt.Sprint(sb.ModifyIndex)))
	if _, err := r.applyRetry(ctx, cmd); err != nil {
		// Released or failed meanwhile. Where it was, the sandbox's next
		// sync destroys it; where it moved to, no state records it, so it
		// goes now.
		r.log.Info("record resume", "sandbox.id", sb.ID, "err", err)
		if moved && (errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict)) {
			r.destroy(ctx, sb.ID, p)
		}
		return nil
	}
	r.log.Info("sandbox resumed", "sandbox.id", sb.ID, "moved", moved, "node", p.Node,
		"container", shortID(p.ContainerID), "ms", r.clock.Now().Sub(start).Milliseconds())
	return nil
}

// errGone reports a sandbox destroyed because the state no longer wants it.
var errGone = errors.New("sandbox gone from the state")

// thaw resumes a sandbox the state calls running but the driver was told to
// pause and, when the driver placed it anew, records the new placement so
// the API reaches the agent where it now runs.
func (r *Reconciler) thaw(ctx context.Context, id string) error {
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
		// Not recorded: report failure so the next try resumes again (a
		// running sandbox resumes at once) and records it then.
		return fmt.Errorf("record new placement of %s: %w", id, err)
	}
	r.log.Info("sandbox moved on resume", "sandbox.id", id, "node", p.Node, "container", shortID(p.ContainerID))
	return nil
}

// ensureResources applies changed limits where the driver can change them
// in place. Where it cannot, the state never holds limits that differ from
// the container's: the pool hands such a driver's sandboxes only to
// requests for exactly their limits.
func (r *Reconciler) ensureResources(ctx context.Context, sb *fsm.Sandbox) error {
	ob := r.obs.get(sb.ID)
	if !r.caps.LiveUpdate || !ob.appliedKnown || ob.applied == sb.Resources {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	if err := r.driver.Update(octx, sb.ID, sb.Resources); err != nil {
		r.log.Warn("update limits failed", "sandbox.id", sb.ID, "err", err)
		return err
	}
	r.obs.update(sb.ID, func(o *observation) { o.applied, o.appliedKnown = sb.Resources, true })
	return nil
}
