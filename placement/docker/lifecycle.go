package docker

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// Destroy force-removes a sandbox's container and its host directory. A
// sandbox that is already gone is destroyed successfully.
func (d *Driver) Destroy(ctx context.Context, sandboxID string) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("destroy sandbox: %w", err)
	}
	// Force removes a paused container too: Docker kills, then thaws.
	err := d.docker.ContainerRemove(ctx, d.containerName(sandboxID), container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("destroy sandbox %s: remove container: %w", sandboxID, err)
	}
	if err := os.RemoveAll(d.hostDir(sandboxID)); err != nil {
		return fmt.Errorf("destroy sandbox %s: remove host dir: %w", sandboxID, err)
	}
	d.log.Info("sandbox destroyed", "sandbox.id", sandboxID, "was_present", err == nil)
	return nil
}

// Pause freezes every process of a sandbox (the cgroup freezer), keeping its
// memory. Pausing a paused sandbox succeeds.
func (d *Driver) Pause(ctx context.Context, sandboxID string) error {
	return d.setPaused(ctx, sandboxID, true)
}

// Resume thaws a paused sandbox in place: the container, its endpoint and
// its memory are where they were, so it never reports a move (and returns a
// zero placement). Resuming a running sandbox succeeds.
func (d *Driver) Resume(ctx context.Context, sandboxID string) (fsm.Placement, bool, error) {
	return fsm.Placement{}, false, d.setPaused(ctx, sandboxID, false)
}

func (d *Driver) setPaused(ctx context.Context, sandboxID string, pause bool) error {
	op, call := "resume", d.docker.ContainerUnpause
	if pause {
		op, call = "pause", d.docker.ContainerPause
	}
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("%s sandbox: %w", op, err)
	}
	name := d.containerName(sandboxID)
	err := call(ctx, name)
	if err == nil {
		return nil
	}
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s sandbox %s: %w", op, sandboxID, placement.ErrNotFound)
	}
	// "already paused" / "not paused" come back as conflicts; the state
	// decides whether the caller got what it wanted.
	info, ierr := d.docker.ContainerInspect(ctx, name)
	if ierr == nil && info.State != nil && info.State.Running && info.State.Paused == pause {
		return nil
	}
	return fmt.Errorf("%s sandbox %s: %w", op, sandboxID, err)
}

// Update changes a running sandbox's memory (swap kept equal: none) and CPU
// limits. DiskMB cannot change: /workspace is a tmpfs mounted at start.
func (d *Driver) Update(ctx context.Context, sandboxID string, res fsm.Resources) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("update sandbox: %w", err)
	}
	res = d.resources(res)
	_, err := d.docker.ContainerUpdate(ctx, d.containerName(sandboxID), container.UpdateConfig{Resources: d.limits(res)})
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("update sandbox %s: %w", sandboxID, placement.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", sandboxID, err)
	}
	return nil
}
