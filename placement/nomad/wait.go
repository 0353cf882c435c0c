package nomad

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// maxBlock caps one blocking query so a cancelled wait notices promptly
// even if the HTTP layer does not.
const maxBlock = 5 * time.Second

// waitPlaced follows the job's allocations with blocking queries until the
// allocation of this registration runs, ends, or PlaceTimeout passes. An
// allocation created before the registration (a purged or stopped earlier
// incarnation of the same job id, still listed until GC) is ignored.
func (d *Driver) waitPlaced(ctx context.Context, jobID, image string, reg *api.JobRegisterResponse) (fsm.Placement, error) {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.PlaceTimeout)
	defer cancel()
	p, err := d.followAllocs(wctx, jobID, image, reg)
	// Whichever query the place timeout interrupted, the caller learns it
	// as ErrPlaceTimeout, not as that query's context error.
	if err != nil && !errors.Is(err, ErrPlaceTimeout) && wctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("job %s: %w (%s): %v", jobID, ErrPlaceTimeout, d.cfg.PlaceTimeout, err)
	}
	return p, err
}

func (d *Driver) followAllocs(wctx context.Context, jobID, image string, reg *api.JobRegisterResponse) (fsm.Placement, error) {
	// The scheduler answers first: a job it cannot place fails now, not
	// when the place timeout runs out.
	if err := d.waitEval(wctx, jobID, reg.EvalID); err != nil {
		return fsm.Placement{}, err
	}
	var index uint64
	for {
		wait, err := d.blockFor(wctx, jobID)
		if err != nil {
			return fsm.Placement{}, err
		}
		stubs, qm, err := d.api.Jobs().Allocations(jobID, false, d.queryOpts(wctx, index, wait))
		if err != nil {
			return fsm.Placement{}, fmt.Errorf("job %s allocations: %w", jobID, err)
		}
		a := current(stubs, reg.JobModifyIndex)
		switch {
		case a == nil:
			if err := d.checkEval(wctx, jobID, reg.EvalID); err != nil {
				return fsm.Placement{}, err
			}
		case a.ClientStatus == "running":
			return d.placement(wctx, a.ID)
		case a.ClientStatus == "failed", a.ClientStatus == "lost", a.ClientStatus == "complete":
			return fsm.Placement{}, allocFailed(a.ID, a.ClientStatus, a.ClientDescription, image, a.TaskStates)
		}
		// Nomad never returns index 0; guard against a spin all the same.
		if qm.LastIndex > index {
			index = qm.LastIndex
		} else if index == 0 {
			index = 1
		}
	}
}

// blockFor is how long the next blocking query may wait.
func (d *Driver) blockFor(wctx context.Context, jobID string) (time.Duration, error) {
	wait := maxBlock
	if dl, ok := wctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if wait <= 0 {
		return 0, fmt.Errorf("job %s: %w (%s)", jobID, ErrPlaceTimeout, d.cfg.PlaceTimeout)
	}
	return wait, nil
}

// waitEval follows the registration's evaluation with blocking queries
// until the scheduler has processed it, and reports a job it could not
// place as an UnplaceableError.
func (d *Driver) waitEval(wctx context.Context, jobID, evalID string) error {
	if evalID == "" {
		return nil
	}
	var index uint64
	for {
		wait, err := d.blockFor(wctx, jobID)
		if err != nil {
			return err
		}
		ev, qm, err := d.api.Evaluations().Info(evalID, d.queryOpts(wctx, index, wait))
		if err != nil {
			if isNotFound(err) {
				return nil // garbage collected; the allocation list decides
			}
			return fmt.Errorf("job %s eval %s: %w", jobID, evalID, err)
		}
		if len(ev.FailedTGAllocs) > 0 {
			return unplaceable(jobID, ev)
		}
		if ev.Status != "pending" {
			return nil
		}
		if qm.LastIndex > index {
			index = qm.LastIndex
		} else if index == 0 {
			index = 1
		}
	}
}

// current is the allocation the driver placed for the registration at
// sinceIndex: the oldest created at or after it. A replacement Nomad made
// for a lost allocation is younger and never takes its place.
func current(stubs []*api.AllocationListStub, sinceIndex uint64) *api.AllocationListStub {
	var best *api.AllocationListStub
	for _, s := range stubs {
		if s.CreateIndex < sinceIndex {
			continue
		}
		if best == nil || s.CreateIndex < best.CreateIndex {
			best = s
		}
	}
	return best
}

// checkEval turns an evaluation that could not place the job into an error;
// a pending or blocked-but-placed eval is not one.
func (d *Driver) checkEval(ctx context.Context, jobID, evalID string) error {
	if evalID == "" {
		return nil
	}
	ev, _, err := d.api.Evaluations().Info(evalID, d.queryOpts(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return nil // garbage collected; the allocation list decides
		}
		return fmt.Errorf("job %s eval %s: %w", jobID, evalID, err)
	}
	if len(ev.FailedTGAllocs) == 0 {
		return nil
	}
	return unplaceable(jobID, ev)
}

func unplaceable(jobID string, ev *api.Evaluation) *UnplaceableError {
	ue := &UnplaceableError{JobID: jobID, Exhausted: map[string]int{}}
	for _, m := range ev.FailedTGAllocs {
		for dim, n := range m.DimensionExhausted {
			ue.Exhausted[dim] += n
		}
		ue.Filtered += m.NodesFiltered
	}
	return ue
}

// placement reads the running allocation's node and agent port mapping.
func (d *Driver) placement(ctx context.Context, allocID string) (fsm.Placement, error) {
	a, _, err := d.api.Allocations().Info(allocID, d.queryOpts(ctx, 0, 0))
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("allocation %s: %w", allocID, err)
	}
	host, port := "", 0
	if a.AllocatedResources != nil {
		for _, p := range a.AllocatedResources.Shared.Ports {
			if p.Label == portLabel {
				host, port = p.HostIP, p.Value
			}
		}
	}
	if port == 0 {
		return fsm.Placement{}, fmt.Errorf("allocation %s has no %q port mapping", allocID, portLabel)
	}
	if host == "" || host == "0.0.0.0" {
		// Bound to every address: dial the node's advertised HTTP address.
		n, _, err := d.api.Nodes().Info(a.NodeID, d.queryOpts(ctx, 0, 0))
		if err != nil {
			return fsm.Placement{}, fmt.Errorf("allocation %s node %s: %w", allocID, a.NodeID, err)
		}
		if host, _, err = net.SplitHostPort(n.HTTPAddr); err != nil {
			return fsm.Placement{}, fmt.Errorf("node %s http addr %q: %w", a.NodeID, n.HTTPAddr, err)
		}
	}
	ip := ""
	if a.NetworkStatus != nil {
		ip = a.NetworkStatus.Address
	}
	return fsm.Placement{
		Driver:        "nomad",
		Node:          a.NodeID,
		ContainerID:   a.ID,
		IP:            ip,
		AgentEndpoint: "http://" + net.JoinHostPort(host, strconv.Itoa(port)),
	}, nil
}

// allocFailed describes an ended allocation with Nomad's own reasons: the
// task events that failed it (Failed Validation, Driver Failure, Setup
// Failure, ...), else the allocation's client description. A failure to
// find or pull the sandbox's own image is an ImageNotFoundError.
func allocFailed(id, status, desc, image string, states map[string]*api.TaskState) error {
	e := &AllocFailedError{AllocID: id, Status: status, Reason: status}
	var msgs []string
	if ts := states[taskName]; ts != nil {
		for _, ev := range ts.Events {
			msg := eventReason(ev)
			if msg == "" {
				continue
			}
			msgs = append(msgs, msg)
			if ev.Type == api.TaskDriverFailure && mentionsImage(msg, image) {
				return &placement.ImageNotFoundError{Image: image, Err: errors.New(msg)}
			}
		}
	}
	if len(msgs) == 0 && desc != "" {
		msgs = append(msgs, desc)
	}
	if len(msgs) > 0 {
		e.Reason = strings.Join(msgs, "; ")
	}
	return e
}

// eventReason is what a task event says about a failure, "" for events
// that are not one.
func eventReason(ev *api.TaskEvent) string {
	detail := ""
	for _, s := range []string{ev.ValidationError, ev.DriverError, ev.SetupError, ev.DownloadError, ev.KillError, ev.VaultError} {
		if s != "" {
			detail = s
			break
		}
	}
	switch {
	case detail != "":
	case ev.Type == api.TaskTerminated:
		// Before the agent answered, any exit is the failure.
		detail = cmp.Or(ev.DisplayMessage, fmt.Sprintf("Exit Code: %d, Signal: %d", ev.ExitCode, ev.Signal))
	case ev.FailsTask:
		detail = ev.DisplayMessage
	default:
		return ""
	}
	return ev.Type + ": " + detail
}

// mentionsImage reports a driver failure about pulling or finding image
// (not, say, the infra image of the group's network).
func mentionsImage(msg, image string) bool {
	low := strings.ToLower(msg)
	if !strings.Contains(low, "pull") && !strings.Contains(low, "no such image") {
		return false
	}
	return strings.Contains(msg, image)
}
