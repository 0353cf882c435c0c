package nomad

import (
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
	var index uint64
	for {
		wait := maxBlock
		if dl, ok := wctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return fsm.Placement{}, fmt.Errorf("job %s: %w (%s)", jobID, ErrPlaceTimeout, d.cfg.PlaceTimeout)
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
			return fsm.Placement{}, allocFailed(a.ID, a.ClientStatus, image, a.TaskStates)
		}
		// Nomad never returns index 0; guard against a spin all the same.
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

// allocFailed describes an ended allocation from its task's last events; a
// driver failure to find or pull the image is an ImageNotFoundError.
func allocFailed(id, status, image string, states map[string]*api.TaskState) error {
	e := &AllocFailedError{AllocID: id, Status: status, Reason: status}
	ts := states[taskName]
	if ts == nil {
		return e
	}
	var msgs []string
	for _, ev := range ts.Events {
		if ev.Type == "Driver Failure" || ev.Type == "Terminated" || ev.Type == "Setup Failure" {
			msg := ev.DisplayMessage
			if ev.DriverError != "" {
				msg = ev.DriverError
			}
			msgs = append(msgs, msg)
			low := strings.ToLower(msg)
			if strings.Contains(low, "failed to pull") || strings.Contains(low, "no such image") {
				return &placement.ImageNotFoundError{Image: image, Err: errors.New(msg)}
			}
		}
	}
	if len(msgs) > 0 {
		e.Reason = strings.Join(msgs, "; ")
	}
	return e
}
