package placement

import (
	"context"
	"fmt"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// adopt compares what the driver runs with the state at the start of a term:
// containers the state knows are adopted, the rest are removed, and sandboxes
// whose container vanished are marked failed. It runs before any worker.
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
			r.obs.update(sb.ID, func(o *observation) {
				o.paused, o.pausedKnown = in.Paused, true
				o.applied, o.appliedKnown = sb.Resources, true
			})
			adopted++
		case ok && sb.State == fsm.StatePending:
			// A create the previous leader did not finish: its placement was
			// never recorded, so start over. The listed container, not the
			// name: a late create of that name may land meanwhile.
			r.destroy(ctx, in.SandboxID, in.Placement)
			removed++
		case ok:
			// terminating or failed: the sandbox's own work destroys it.
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
			r.obs.update(sb.ID, func(o *observation) { o.destroyed = true })
		}
	}
	r.log.Info("adopted sandboxes", "adopted", adopted, "removed", removed)
	return nil
}

// resync asks the driver what runs and marks dead or vanished sandboxes
// failed; containers nobody knows are queued for removal. Sandboxes a
// worker holds are skipped: their state is changing under that worker.
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
		if r.q.busy(sandboxKey(in.SandboxID)) {
			continue
		}
		sb, ok := byID[in.SandboxID]
		if !ok {
			p := in.Placement
			r.obs.update(in.SandboxID, func(o *observation) { o.orphan = &p })
			r.q.add(sandboxKey(in.SandboxID))
			continue
		}
		// Only a container the state recorded before the list began: one
		// placed meanwhile may have been listed while it was still being
		// created (not yet running), and another container of the
		// sandbox's name says nothing about the recorded one.
		if !in.Running && placedBefore[sb.ID] && sb.Placed() && samePlacement(in.Placement, sb.Placement) {
			r.log.Info("sandbox's container is not running", "sandbox.id", sb.ID, "status", in.Status)
			r.fail(ctx, sb, "container exited: "+in.Status)
		}
	}
	for _, sb := range byID {
		if seen[sb.ID] || !placedBefore[sb.ID] || r.q.busy(sandboxKey(sb.ID)) {
			continue
		}
		if sb.Placed() {
			r.log.Info("sandbox's container is gone", "sandbox.id", sb.ID)
			r.fail(ctx, sb, "container removed")
		}
	}
}

// samePlacement reports whether a listed container is the one recorded
// (a driver that lists no container id matches any).
func samePlacement(listed, recorded fsm.Placement) bool {
	return listed.ContainerID == "" || recorded.ContainerID == "" || listed.ContainerID == recorded.ContainerID
}
