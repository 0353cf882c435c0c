package nomad

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// egressTaskName is the prestart task that installs an egress sandbox's
// firewall in the group's network namespace.
const egressTaskName = "egress"

// withEgress gives an egress sandbox's job its firewall: a prestart task,
// sharing only the group's network namespace, holds CAP_NET_ADMIN there,
// installs the rules built from the sandbox's allow-list and exits before
// the sandbox task starts (which never holds that capability). Allow-listed
// host names are pinned in the sandbox's /etc/hosts. Clients must allow the
// net_admin capability (deploy/nomad/client.hcl).
func (d *Driver) withEgress(ctx context.Context, job *api.Job, spec placement.Spec) error {
	if !spec.Network {
		return nil
	}
	rules, hosts, err := egress.Build(ctx, spec.EgressAllow, d.cfg.EgressDeny, d.cfg.Resolver, d.log.With("sandbox.id", spec.ID))
	if err != nil {
		return err
	}
	arg, err := json.Marshal(rules)
	if err != nil {
		return fmt.Errorf("egress: encode rules: %w", err)
	}
	tg := job.TaskGroups[0]
	sandbox := tg.Tasks[0]
	if pins := egress.HostEntries(hosts); len(pins) > 0 {
		sandbox.Config["extra_hosts"] = pins
	}
	t := api.NewTask(egressTaskName, "docker")
	t.User = "0"
	t.Lifecycle = &api.TaskLifecycle{Hook: api.TaskLifecycleHookPrestart, Sidecar: false}
	t.LogConfig = &api.LogConfig{MaxFiles: ptr(1), MaxFileSizeMB: ptr(1)}
	t.Resources = &api.Resources{CPU: ptr(20), MemoryMB: ptr(32)}
	// The same static agent as the sandbox's, from the same place.
	t.Artifacts = sandbox.Artifacts
	cfg := map[string]any{
		"image":           sandbox.Config["image"],
		"force_pull":      false,
		"entrypoint":      sandbox.Config["entrypoint"],
		"args":            []string{egress.HelperArg, string(arg)},
		"cap_drop":        []string{"ALL"},
		"cap_add":         []string{"net_admin"},
		"readonly_rootfs": true,
		"security_opt":    []string{"no-new-privileges"},
	}
	if mounts, ok := sandbox.Config["mount"].([]map[string]any); ok && len(mounts) > 0 && mounts[0]["type"] == "bind" {
		cfg["mount"] = mounts[:1] // the agent binary
	}
	if rt, ok := sandbox.Config["runtime"]; ok {
		cfg["runtime"] = rt
	}
	t.Config = cfg
	tg.AddTask(t)
	return nil
}
