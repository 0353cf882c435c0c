package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// Create starts a hardened container for spec and returns once its agent
// answers health checks. On any failure it removes what it made.
func (d *Driver) Create(ctx context.Context, spec placement.Spec) (p fsm.Placement, err error) {
	if err := placement.CheckID(spec.ID); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox: %w", err)
	}
	if spec.Image == "" {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: no image", spec.ID)
	}
	if n := len(d.hostDir(spec.ID)) + 1 + len(socketName); n > maxSocketPath {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: agent socket path is %d bytes, over the unix limit of %d: shorten the state dir", spec.ID, n, maxSocketPath)
	}
	start := time.Now()
	log := d.log.With("sandbox.id", spec.ID, "image", spec.Image)

	// Refused before anything exists: there is nothing to clean up.
	if spec.Network && NoNetwork(d.cfg.Runtime) {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, &placement.NoNetworkError{Runtime: d.cfg.Runtime})
	}
	if err := d.ensureImage(ctx, spec.Image); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	// A container of this id would own the host dir we are about to clear.
	if info, err := d.docker.ContainerInspect(ctx, d.containerName(spec.ID)); err == nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, &ExistsError{SandboxID: spec.ID, ContainerID: info.ID})
	} else if !errdefs.IsNotFound(err) {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: inspect container: %w", spec.ID, err)
	}
	dir := d.hostDir(spec.ID)
	if err := d.makeHostDir(dir); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	var id string
	defer func() {
		if err == nil {
			return
		}
		// Clean up with a fresh context: ctx may be the reason we failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if id != "" {
			if rerr := d.docker.ContainerRemove(cctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !errdefs.IsNotFound(rerr) {
				log.Warn("remove container after failed create", "err", rerr)
			}
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			log.Warn("remove host dir after failed create", "err", rerr)
		}
	}()

	cfg, host := d.containerSpec(spec)
	var rules egress.Rules
	if spec.Network {
		var pins []string
		if rules, pins, err = d.egressRules(ctx, spec); err != nil {
			return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
		}
		host.ExtraHosts = pins
	}
	created, err := d.docker.ContainerCreate(ctx, cfg, host, nil, nil, d.containerName(spec.ID))
	if errdefs.IsConflict(err) {
		// Someone else's create of this id landed since the inspect above.
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, &ExistsError{SandboxID: spec.ID})
	}
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: create container: %w", spec.ID, err)
	}
	id = created.ID
	if err := d.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: start container: %w", spec.ID, err)
	}
	if spec.Network {
		if err := d.installEgress(ctx, spec, id, rules); err != nil {
			return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
		}
	}
	if err := d.waitReady(ctx, id, d.endpoint(spec.ID)); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	if err := sealHostDir(dir); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	p = fsm.Placement{Driver: d.Name(), Node: d.node, ContainerID: id, AgentEndpoint: d.endpoint(spec.ID)}
	if spec.Network {
		info, err := d.docker.ContainerInspect(ctx, id)
		if err != nil {
			return fsm.Placement{}, fmt.Errorf("create sandbox %s: inspect container: %w", spec.ID, err)
		}
		p.IP = containerIP(info.NetworkSettings)
	}
	log.Info("sandbox created", "container.id", id[:12], "network", spec.Network, "duration", time.Since(start))
	return p, nil
}

// ensureImage checks that image is present and otherwise tries one pull,
// bounded by PullTimeout.
func (d *Driver) ensureImage(ctx context.Context, ref string) error {
	_, err := d.docker.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %q: %w", ref, err)
	}
	d.log.Info("image missing locally; pulling", "image", ref, "timeout", d.cfg.PullTimeout)
	pctx, cancel := context.WithTimeout(ctx, d.cfg.PullTimeout)
	defer cancel()
	if err := d.pull(pctx, ref); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pull image %q: %w", ref, ctx.Err())
		}
		return &placement.ImageNotFoundError{Image: ref, Err: fmt.Errorf("not present locally and pull failed: %w", err)}
	}
	if _, err := d.docker.ImageInspect(ctx, ref); err != nil {
		return &placement.ImageNotFoundError{Image: ref, Err: fmt.Errorf("pulled but not found: %w", err)}
	}
	return nil
}

// pull pulls ref; the daemon reports a failed pull inside the stream, so the
// stream is decoded to its end.
func (d *Driver) pull(ctx context.Context, ref string) error {
	rc, err := d.docker.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	return decodePullStream(rc)
}

// makeHostDir creates the per-sandbox socket directory, 0700 and owned by the
// sandbox user. A control plane that is not root cannot chown; it opens the
// directory instead and relies on StateDir (0711, its own) to keep other host
// users out.
func (d *Driver) makeHostDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make host dir: %w", err)
		}
		// A leftover of an earlier sandbox with this id: start clean.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clear stale host dir: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("make host dir: %w", err)
		}
	}
	if os.Geteuid() == placement.SandboxUID {
		return nil
	}
	if err := os.Chown(dir, placement.SandboxUID, placement.SandboxUID); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("chown host dir: %w", err)
		}
		d.log.Warn("cannot chown sandbox dir (not root); opening it to all, StateDir guards it", "dir", filepath.Base(dir))
		if err := os.Chmod(dir, 0o777); err != nil {
			return fmt.Errorf("chmod host dir: %w", err)
		}
	}
	return nil
}

// sealHostDir takes the socket directory back from the sandbox user once the
// agent listens: the socket keeps working, but code in the sandbox can no
// longer create files there, which would land on the host's disk outside
// every size limit.
func sealHostDir(dir string) error {
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 0, 0); err != nil {
			return fmt.Errorf("seal host dir: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("seal host dir: %w", err)
	}
	return nil
}

// waitReady polls the agent's health with a short backoff until it answers,
// the container stops running, or ReadyTimeout passes.
func (d *Driver) waitReady(ctx context.Context, id, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ReadyTimeout)
	defer cancel()
	c := agent.NewClient(endpoint, "")
	defer c.Close()
	delay := 2 * time.Millisecond
	var lastErr error
	for attempt := 1; ; attempt++ {
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		_, lastErr = c.Health(hctx)
		hcancel()
		if lastErr == nil {
			return nil
		}
		// A dead agent never becomes ready: look every few attempts.
		if attempt%8 == 0 {
			if info, err := d.docker.ContainerInspect(ctx, id); err == nil && info.State != nil && !info.State.Running {
				return fmt.Errorf("agent exited before ready (container %s, exit code %d, oom killed %t): %s",
					info.State.Status, info.State.ExitCode, info.State.OOMKilled, d.logTail(id))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent not ready within %s: %w (last: %v; logs: %s)", d.cfg.ReadyTimeout, ctx.Err(), lastErr, d.logTail(id))
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// logTail is the end of a container's output, for error messages.
func (d *Driver) logTail(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := d.docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var out strings.Builder
	_, _ = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 8<<10))
	if s := strings.TrimSpace(out.String()); s != "" {
		return s
	}
	return "(no output)"
}

// containerIP is the address on the first network that has one.
func containerIP(ns *container.NetworkSettings) string {
	if ns == nil {
		return ""
	}
	if ns.IPAddress != "" {
		return ns.IPAddress
	}
	for _, n := range ns.Networks {
		if n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}
