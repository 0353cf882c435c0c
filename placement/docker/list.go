package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// List returns every container labelled with this cluster, in any state.
func (d *Driver) List(ctx context.Context) ([]placement.Instance, error) {
	cs, err := d.docker.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelCluster+"="+d.cfg.Cluster)),
	})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := make([]placement.Instance, 0, len(cs))
	for _, c := range cs {
		id := c.Labels[LabelSandbox]
		if placement.CheckID(id) != nil {
			// Not one of ours in shape; the label filter makes this rare.
			d.log.Warn("labelled container without a valid sandbox id", "container.id", c.ID, "label", id)
			continue
		}
		p := fsm.Placement{Driver: d.Name(), Node: d.node, ContainerID: c.ID, AgentEndpoint: d.endpoint(id)}
		if c.NetworkSettings != nil {
			for _, n := range c.NetworkSettings.Networks {
				if n != nil && n.IPAddress != "" {
					p.IP = n.IPAddress
					break
				}
			}
		}
		state := string(c.State)
		out = append(out, placement.Instance{
			SandboxID: id,
			Placement: p,
			Running:   state == container.StateRunning || state == container.StatePaused,
			Paused:    state == container.StatePaused,
			Status:    state + ": " + c.Status,
		})
	}
	return out, nil
}
