package docker

import (
	"fmt"
	"path/filepath"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Labels every container of this driver carries.
const (
	LabelCluster = "cloud-sandbox.cluster"
	LabelSandbox = "cloud-sandbox.sandbox"
	LabelManaged = "cloud-sandbox.managed"
)

// Paths inside the sandbox.
const (
	agentPath  = "/.sandbox/agent"
	socketDir  = "/run/sandbox"
	socketName = "agent.sock"
)

// containerName is cs-<cluster>-<id>.
func (d *Driver) containerName(id string) string {
	return "cs-" + d.cfg.Cluster + "-" + id
}

// hostDir is the per-sandbox directory mounted at /run/sandbox.
func (d *Driver) hostDir(id string) string {
	return filepath.Join(d.cfg.StateDir, id)
}

// endpoint is how the control plane reaches the sandbox's agent.
func (d *Driver) endpoint(id string) string {
	return "unix://" + filepath.Join(d.hostDir(id), socketName)
}

// labels are the configured extra labels under the driver's own.
func (d *Driver) labels(id string) map[string]string {
	l := make(map[string]string, len(d.cfg.Labels)+3)
	for k, v := range d.cfg.Labels {
		l[k] = v
	}
	l[LabelCluster] = d.cfg.Cluster
	l[LabelSandbox] = id
	l[LabelManaged] = "true"
	return l
}

// resources fills zero fields of res with the driver's defaults.
func (d *Driver) resources(res fsm.Resources) fsm.Resources {
	if res.CPUCount <= 0 {
		res.CPUCount = d.cfg.DefaultCPUs
	}
	if res.MemoryMB <= 0 {
		res.MemoryMB = d.cfg.DefaultMemoryMB
	}
	if res.DiskMB <= 0 {
		res.DiskMB = d.cfg.DefaultDiskMB
	}
	return res
}

// limits is the part of a container's resources that Update can change.
func (d *Driver) limits(res fsm.Resources) container.Resources {
	mem := d.memoryLimitMB(res) << 20
	return container.Resources{
		Memory:     mem,
		MemorySwap: mem, // equal to Memory: no swap
		NanoCPUs:   int64(res.CPUCount * 1e9),
	}
}

// memoryLimitMB is the container's memory cgroup limit: the user's memory
// plus every tmpfs the user can fill (/workspace, /tmp, /dev/shm). The kernel
// charges tmpfs pages to the cgroup of whoever wrote them and cannot reclaim
// them without swap, so with a limit of MemoryMB alone a full disk left no
// memory and the OOM killer took the agent. With this room a full tmpfs
// answers ENOSPC, and the agent keeps the user's processes to MemoryMB
// (placement/agent/oom.go; placement/DESIGN.md, "Abuse").
func (d *Driver) memoryLimitMB(res fsm.Resources) int64 {
	return res.MemoryMB + res.DiskMB + 2*d.cfg.TmpSizeMB
}

// containerSpec is the whole hardened container for one sandbox; see doc.go.
func (d *Driver) containerSpec(spec placement.Spec) (*container.Config, *container.HostConfig) {
	res := d.resources(spec.Resources)
	cfg := &container.Config{
		Image:      spec.Image,
		User:       placement.SandboxUser,
		Entrypoint: []string{agentPath, "-listen", "unix://" + socketDir + "/" + socketName, "-workdir", placement.WorkspacePath},
		Cmd:        nil,
		WorkingDir: placement.WorkspacePath,
		// HOME by value: an image without a user 1000 would give HOME=/.
		// The memory limit holds the tmpfs too: the agent's guard keeps
		// processes to the rest (placement/agent/oom.go).
		Env:    []string{"HOME=" + placement.WorkspacePath, agent.GuardEnv + "=on"},
		Labels: d.labels(spec.ID),
	}
	pids := d.cfg.PidsLimit
	oomScore := 500
	r := d.limits(res)
	r.PidsLimit = &pids
	host := &container.HostConfig{
		NetworkMode: "none",
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: d.cfg.AgentBinary, Target: agentPath, ReadOnly: true},
			{Type: mount.TypeBind, Source: d.hostDir(spec.ID), Target: socketDir},
		},
		Tmpfs: map[string]string{
			placement.WorkspacePath: fmt.Sprintf("rw,nosuid,nodev,size=%dm,uid=%d,gid=%d,mode=0755", res.DiskMB, placement.SandboxUID, placement.SandboxUID),
			"/tmp":                  fmt.Sprintf("rw,nosuid,nodev,size=%dm,mode=1777", d.cfg.TmpSizeMB),
		},
		ShmSize:        d.cfg.TmpSizeMB << 20,
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		Privileged:     false,
		IpcMode:        "private",
		Init:           new(bool), // false: the agent is PID 1 and reaps itself
		AutoRemove:     false,
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		OomScoreAdj:    oomScore,
		Runtime:        d.cfg.Runtime,
		Resources:      r,
		LogConfig: container.LogConfig{
			Type:   "json-file",
			Config: map[string]string{"max-size": "1m", "max-file": "2"},
		},
	}
	if spec.Network {
		host.NetworkMode = "bridge"
	}
	return cfg, host
}
