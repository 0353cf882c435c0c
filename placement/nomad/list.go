package nomad

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// List returns every sandbox job of this cluster (job id prefix and meta
// both match), plus sandboxes paused into an archive whose job is gone.
// Running follows the allocation the driver placed for the job's current
// version: a failed, lost or completed one is not running, even when Nomad
// has placed a replacement beside it, so the reconciler marks it failed.
func (d *Driver) List(ctx context.Context) ([]placement.Instance, error) {
	q := d.queryOpts(ctx, 0, 0)
	q.Prefix = d.cfg.JobPrefix + "-"
	q.Filter = fmt.Sprintf("Meta.%s == %s", MetaCluster, strconv.Quote(d.cfg.Cluster))
	stubs, _, err := d.api.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, q)
	if err != nil {
		return nil, fmt.Errorf("list sandbox jobs: %w", err)
	}
	paused, err := d.archived(ctx)
	if err != nil {
		return nil, fmt.Errorf("list sandbox jobs: %w", err)
	}
	out := make([]placement.Instance, 0, len(stubs)+len(paused))
	seen := map[string]bool{}
	for _, st := range stubs {
		id := st.Meta[MetaSandbox]
		if id == "" {
			id = strings.TrimPrefix(st.ID, d.cfg.JobPrefix+"-")
		}
		seen[id] = true
		if paused[id] {
			out = append(out, pausedInstance(id))
			continue
		}
		in, err := d.instance(ctx, id, st)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	for id := range paused {
		if !seen[id] {
			out = append(out, pausedInstance(id))
		}
	}
	return out, nil
}

func pausedInstance(id string) placement.Instance {
	return placement.Instance{
		SandboxID: id, Running: true, Paused: true, Status: "paused (workspace archived, job stopped)",
		Placement: fsm.Placement{Driver: "nomad"},
	}
}

func (d *Driver) instance(ctx context.Context, id string, st *api.JobListStub) (placement.Instance, error) {
	in := placement.Instance{SandboxID: id, Placement: fsm.Placement{Driver: "nomad"}}
	if st.Stop {
		in.Status = "job stopped"
		return in, nil
	}
	allocs, _, err := d.api.Jobs().Allocations(st.ID, false, d.queryOpts(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			in.Status = "job gone"
			return in, nil
		}
		return in, fmt.Errorf("list sandbox %s allocations: %w", id, err)
	}
	a := current(allocs, st.JobModifyIndex)
	if a == nil {
		// Registered, not yet placed: Create is waiting on it.
		in.Running, in.Status = true, "job "+st.Status
		return in, nil
	}
	in.Placement.Node, in.Placement.ContainerID = a.NodeID, a.ID
	in.Status = "alloc " + a.ClientStatus
	in.Running = a.ClientStatus == "running" || a.ClientStatus == "pending"
	if a.ClientStatus == "failed" || a.ClientStatus == "lost" {
		in.Status += ": " + allocFailed(a.ID, a.ClientStatus, a.ClientDescription, "", a.TaskStates).Error()
	}
	return in, nil
}
