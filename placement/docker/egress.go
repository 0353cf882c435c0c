package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// LabelEgressFor marks an egress helper container with its sandbox's id.
const LabelEgressFor = "cloud-sandbox.egress-for"

// egressTimeout bounds one helper run: create, start, exit, remove.
const egressTimeout = 30 * time.Second

// egressRules builds spec's firewall and the host names to pin in its
// /etc/hosts. Called before the container exists, so that the pins are
// part of its configuration.
func (d *Driver) egressRules(ctx context.Context, spec placement.Spec) (egress.Rules, []string, error) {
	r, hosts, err := egress.Build(ctx, spec.EgressAllow, d.cfg.EgressDeny, d.cfg.Resolver, d.log.With("sandbox.id", spec.ID))
	if err != nil {
		return egress.Rules{}, nil, err
	}
	return r, egress.HostEntries(hosts), nil
}

// installEgress runs the agent binary as a helper container that joins
// only the sandbox's network namespace with CAP_NET_ADMIN, installs r
// there and exits. Nothing the sandbox runs holds that capability, so the
// rules stay as installed. It runs before the sandbox is handed to anyone.
func (d *Driver) installEgress(ctx context.Context, spec placement.Spec, sandboxContainer string, r egress.Rules) (err error) {
	ctx, cancel := context.WithTimeout(ctx, egressTimeout)
	defer cancel()
	arg, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("egress: encode rules: %w", err)
	}
	cfg := &container.Config{
		Image:      spec.Image, // present: the sandbox runs it; the static agent needs nothing of it
		User:       "0:0",
		Entrypoint: []string{agentPath, egress.HelperArg, string(arg)},
		Labels:     map[string]string{LabelEgressFor: spec.ID, LabelCluster + ".egress": d.cfg.Cluster},
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode("container:" + sandboxContainer),
		Mounts:         []mount.Mount{{Type: mount.TypeBind, Source: d.cfg.AgentBinary, Target: agentPath, ReadOnly: true}},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_ADMIN"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		Runtime:        d.cfg.Runtime,
		LogConfig:      container.LogConfig{Type: "json-file"},
	}
	name := d.containerName(spec.ID) + "-egress"
	// A helper left by a crashed node would hold the name.
	if rerr := d.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); rerr != nil && !errdefs.IsNotFound(rerr) {
		return fmt.Errorf("egress: remove stale helper: %w", rerr)
	}
	created, err := d.docker.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return fmt.Errorf("egress: create helper: %w", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if rerr := d.docker.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && !errdefs.IsNotFound(rerr) {
			d.log.Warn("remove egress helper", "sandbox.id", spec.ID, "err", rerr)
		}
	}()
	waitC, errC := d.docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := d.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("egress: start helper: %w", err)
	}
	select {
	case res := <-waitC:
		if res.StatusCode != 0 {
			return fmt.Errorf("egress: helper exited %d: %s", res.StatusCode, d.logTail(created.ID))
		}
	case err := <-errC:
		return fmt.Errorf("egress: wait for helper: %w", err)
	}
	return nil
}
