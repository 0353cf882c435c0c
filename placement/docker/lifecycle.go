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
// sandbox that is already gone is destroyed successfully. With
// p.ContainerID it removes that container only, and keeps the host
// directory when a newer container of the sandbox owns it: a late destroy
// leaves what a later create made. Without, it removes the container of
// the sandbox's name.
func (d *Driver) Destroy(ctx context.Context, sandboxID string, p fsm.Placement) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("destroy sandbox: %w", err)
	}
	name := d.containerName(sandboxID)
	target := name
	if p.ContainerID != "" {
		target = p.ContainerID
		// Never a stranger's container, whatever the placement says.
		info, err := d.docker.ContainerInspect(ctx, target)
		switch {
		case errdefs.IsNotFound(err):
			target = ""
		case err != nil:
			return fmt.Errorf("destroy sandbox %s: inspect container: %w", sandboxID, err)
		case info.Config == nil || info.Config.Labels[LabelSandbox] != sandboxID || info.Config.Labels[LabelCluster] != d.cfg.Cluster:
			return fmt.Errorf("destroy sandbox %s: container %s is not this cluster's sandbox %s", sandboxID, shortID(target), sandboxID)
		}
	}
	var err error
	if target != "" {
		if GVisor(d.cfg.Runtime) {
			// Under gVisor Docker's kill cannot reach a paused sandbox's
			// processes ("PID ... is zombie and can not be killed"), so the
			// forced remove fails: thaw it first. Errors other than "not
			// paused" or "gone" leave the remove to report.
			if uerr := d.docker.ContainerUnpause(ctx, target); uerr != nil && !errdefs.IsNotFound(uerr) && !errdefs.IsConflict(uerr) {
				d.log.Debug("unpause before remove", "sandbox.id", sandboxID, "err", uerr)
			}
		}
		// Force removes a paused container too: Docker kills, then thaws.
		err = d.docker.ContainerRemove(ctx, target, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("destroy sandbox %s: remove container: %w", sandboxID, err)
		}
	}
	if p.ContainerID != "" {
		// The host dir is the sandbox's, not the container's: a newer
		// container of the name still uses it.
		info, ierr := d.docker.ContainerInspect(ctx, name)
		if ierr == nil && info.ID != p.ContainerID {
			d.log.Info("sandbox destroyed; a newer container of it kept", "sandbox.id", sandboxID,
				"container.id", shortID(p.ContainerID), "kept", shortID(info.ID), "was_present", target != "" && err == nil)
			return nil
		}
		if ierr != nil && !errdefs.IsNotFound(ierr) {
			return fmt.Errorf("destroy sandbox %s: inspect container: %w", sandboxID, ierr)
		}
	}
	if err := os.RemoveAll(d.hostDir(sandboxID)); err != nil {
		return fmt.Errorf("destroy sandbox %s: remove host dir: %w", sandboxID, err)
	}
	d.log.Info("sandbox destroyed", "sandbox.id", sandboxID, "container.id", shortID(p.ContainerID), "was_present", target != "" && err == nil)
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
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
	if GVisor(d.cfg.Runtime) {
		// Refused before Docker answers with runsc's usage text; a missing
		// sandbox is still ErrNotFound.
		if _, err := d.docker.ContainerInspect(ctx, d.containerName(sandboxID)); errdefs.IsNotFound(err) {
			return fmt.Errorf("update sandbox %s: %w", sandboxID, placement.ErrNotFound)
		}
		return fmt.Errorf("update sandbox %s: runtime %q (gVisor) cannot change a running sandbox's limits; Capabilities().LiveUpdate is false", sandboxID, d.cfg.Runtime)
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
