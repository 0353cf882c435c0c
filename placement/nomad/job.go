package nomad

import (
	"cmp"
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Job meta keys and labels naming the owner; List finds jobs by them.
const (
	MetaCluster = "cloud_sandbox_cluster"
	MetaSandbox = "sandbox_id"
	MetaManaged = "cloud_sandbox_managed"

	LabelCluster = "cloud-sandbox.cluster"
	LabelSandbox = "cloud-sandbox.sandbox"
	LabelManaged = "cloud-sandbox.managed"
)

// Names inside the job and paths inside the sandbox (as the docker driver).
const (
	groupName  = "sandbox"
	taskName   = "sandbox"
	portLabel  = "agent"
	agentPath  = "/.sandbox/agent"
	secretFile = "secrets/agent-secret" // relative to the task dir
	// The agent serves TLS with these, beside its secret file (its default).
	tlsCertFile = "secrets/" + agent.TLSCertFile
	tlsKeyFile  = "secrets/" + agent.TLSKeyFile

	// Nomad keeps logFiles × logFileMB of the task's output; the
	// ephemeral disk must exceed that.
	logFiles        = 2
	logFileMB       = 5
	ephemeralDiskMB = 32
)

// JobID is the Nomad job id of a sandbox: <JobPrefix>-<sandbox id>.
func (d *Driver) JobID(sandboxID string) string { return d.cfg.JobPrefix + "-" + sandboxID }

// resources fills zero fields with the driver's defaults.
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

// shape is what a job depends on besides the sandbox: what the clients
// report and which fields their Nomad version understands.
type shape struct {
	// mhzPerCore converts a CPU count to Nomad's MHz.
	mhzPerCore int
	// disconnect: every client runs Nomad >= 1.8, which has the group's
	// disconnect block (1.6 refuses it).
	disconnect bool
}

// shape reads the clients (cached) and derives the job's shape; when they
// cannot be read it falls back to the configured MHz and 1.6's fields.
func (d *Driver) shape(ctx context.Context) shape {
	sh := shape{mhzPerCore: d.cfg.MHzPerCPU}
	c, err := d.clients(ctx)
	if err != nil {
		d.log.Warn("reading nomad clients; sizing jobs from the configuration", "err", err)
	}
	if sh.mhzPerCore == 0 {
		sh.mhzPerCore = c.mhzPerCore
	}
	if sh.mhzPerCore == 0 {
		sh.mhzPerCore = DefaultMHzPerCPU
	}
	sh.disconnect = !c.version.zero() && c.version.atLeast(1, 8)
	return sh
}

// cpuMHz converts a CPU count to Nomad's MHz: CPUCount × MHz per core, at
// least Nomad's minimum of 1 MHz.
func (sh shape) cpuMHz(cpus float64) int {
	return max(1, int(cpus*float64(sh.mhzPerCore)+0.5))
}

// Job builds the Nomad job for one sandbox as a Nomad 1.6 client with the
// configured (or default) MHz per core takes it; the secret is the agent's
// bearer token and id its TLS certificate and key. It is exported so
// jobs/sandbox.nomad.hcl can be checked against it.
func (d *Driver) Job(spec placement.Spec, secret string, id agent.TLSIdentity) *api.Job {
	return d.job(spec, secret, id, shape{mhzPerCore: cmp.Or(d.cfg.MHzPerCPU, DefaultMHzPerCPU)})
}

func (d *Driver) job(spec placement.Spec, secret string, cert agent.TLSIdentity, sh shape) *api.Job {
	res := d.resources(spec.Resources)
	id := d.JobID(spec.ID)
	job := api.NewBatchJob(id, id, d.cfg.Region, d.cfg.Priority)
	job.Datacenters = d.cfg.Datacenters
	if d.cfg.Namespace != "" {
		job.Namespace = &d.cfg.Namespace
	}
	if d.cfg.NodePool != "" {
		job.NodePool = &d.cfg.NodePool
	}
	if d.cfg.Region == "" {
		job.Region = nil
	}
	job.Meta = map[string]string{MetaCluster: d.cfg.Cluster, MetaSandbox: spec.ID, MetaManaged: "true"}

	tg := api.NewTaskGroup(groupName, 1)
	// Nomad must never restart or replace a sandbox on its own: the
	// reconciler sees the failure and the pool replaces it.
	tg.RestartPolicy = &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")}
	tg.ReschedulePolicy = &api.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)}
	// Nomad 1.8+: keep a disconnected allocation, never place a replacement.
	// 1.6 refuses the block; a lost allocation is then replaced, and List
	// reports the sandbox not running all the same (see list.go).
	if sh.disconnect {
		tg.Disconnect = &api.DisconnectStrategy{Replace: ptr(false)}
	}
	// The ephemeral disk holds only Nomad's copy of the task's logs (the
	// agent refuses writes outside /workspace and /tmp), and Nomad requires
	// it to be larger than the log storage.
	tg.EphemeralDisk = &api.EphemeralDisk{SizeMB: ptr(ephemeralDiskMB)}
	mode := d.cfg.NoEgressNetwork
	if spec.Network {
		mode = d.cfg.EgressNetwork
	}
	tg.Networks = []*api.NetworkResource{{
		Mode:         mode,
		DynamicPorts: []api.Port{{Label: portLabel, To: d.cfg.AgentPort}},
	}}

	task := api.NewTask(taskName, "docker")
	task.User = placement.SandboxUser
	task.KillTimeout = ptr(5 * time.Second)
	task.LogConfig = &api.LogConfig{MaxFiles: ptr(logFiles), MaxFileSizeMB: ptr(logFileMB)}
	// Memory is the user's plus the tmpfs it can fill (/workspace, /tmp,
	// /dev/shm): tmpfs pages are charged to the task's memory cgroup, so a
	// full disk must not leave the agent without memory; the agent keeps user
	// processes to MemoryMB (placement/DESIGN.md, "Abuse"). Reserved and
	// limit are equal: no oversubscription.
	task.Resources = &api.Resources{
		CPU:         ptr(sh.cpuMHz(res.CPUCount)),
		MemoryMB:    ptr(int(d.taskMemoryMB(res))),
		MemoryMaxMB: ptr(int(d.taskMemoryMB(res))),
	}
	task.Config = d.taskConfig(spec, res)
	// The memory above holds the tmpfs: the agent's guard keeps processes
	// to MemoryMB (placement/agent/oom.go).
	task.Env = map[string]string{agent.GuardEnv: "on"}
	// The secret reaches the agent as a file in the task's secrets/ dir
	// (not the environment: execs would inherit it and docker inspect shows it).
	task.Templates = []*api.Template{secretTemplate(secretFile, secret)}
	setAgentTLS(task, cert)
	if d.cfg.AgentArtifact != "" {
		task.Artifacts = []*api.TaskArtifact{{
			GetterSource: ptr(d.cfg.AgentArtifact),
			RelativeDest: ptr("local/"),
			GetterMode:   ptr("file"),
		}}
	}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

// secretTemplate renders data, verbatim, to dest in the task directory,
// readable by the sandbox's uid only.
func secretTemplate(dest, data string) *api.Template {
	return &api.Template{
		EmbeddedTmpl: ptr(data),
		DestPath:     ptr(dest),
		Perms:        ptr("0400"),
		Uid:          ptr(placement.SandboxUID),
		Gid:          ptr(placement.SandboxUID),
		ChangeMode:   ptr("noop"),
		LeftDelim:    ptr("[[nomad-no-template"), // the secret is data, never a template
		RightDelim:   ptr("nomad-no-template]]"),
	}
}

// setAgentTLS gives the task the agent's certificate and key as files
// beside its secret, where the agent looks for them by default, replacing
// any it had (a resumed job gets a new key; see pause.go). The files are
// readable by the sandbox's uid, which user code runs as too: see
// placement/agent/tls.go for what the key does and does not protect.
func setAgentTLS(task *api.Task, id agent.TLSIdentity) {
	kept := task.Templates[:0:0]
	for _, tm := range task.Templates {
		if tm.DestPath == nil || (*tm.DestPath != tlsCertFile && *tm.DestPath != tlsKeyFile) {
			kept = append(kept, tm)
		}
	}
	task.Templates = append(kept, secretTemplate(tlsCertFile, string(id.CertPEM)), secretTemplate(tlsKeyFile, string(id.KeyPEM)))
}

// taskConfig is the docker task's config: the docker driver's hardening.
func (d *Driver) taskConfig(spec placement.Spec, res fsm.Resources) map[string]any {
	entry := agentPath
	mounts := []map[string]any{
		{
			"type": "tmpfs", "target": placement.WorkspacePath, "readonly": false,
			// Docker's tmpfs takes no uid: mode 1777 lets user 1000 write.
			"tmpfs_options": map[string]any{"size": res.DiskMB << 20, "mode": 01777},
		},
		{
			"type": "tmpfs", "target": "/tmp", "readonly": false,
			"tmpfs_options": map[string]any{"size": d.cfg.TmpSizeMB << 20, "mode": 01777},
		},
	}
	if d.cfg.AgentArtifact == "" {
		mounts = append([]map[string]any{{
			"type": "bind", "source": d.cfg.AgentPath, "target": agentPath, "readonly": true,
		}}, mounts...)
	} else {
		entry = "/local/" + artifactName(d.cfg.AgentArtifact)
	}
	labels := map[string]string{}
	for k, v := range d.cfg.Labels {
		labels[k] = v
	}
	labels[LabelCluster] = d.cfg.Cluster
	labels[LabelSandbox] = spec.ID
	labels[LabelManaged] = "true"
	cfg := map[string]any{
		"image":      spec.Image,
		"force_pull": false,
		"entrypoint": []string{entry},
		"args": []string{
			"-listen", "tcp://0.0.0.0:" + strconv.Itoa(d.cfg.AgentPort),
			"-secret-file", "/" + secretFile,
			"-workdir", placement.WorkspacePath,
			// /alloc and /local are host directories Nomad always mounts:
			// a client without Landlock must fail the sandbox, not run it
			// able to fill the client's disk.
			"-landlock", "on",
		},
		"work_dir":        placement.WorkspacePath,
		"ports":           []string{portLabel},
		"cap_drop":        []string{"ALL"},
		"readonly_rootfs": true,
		"pids_limit":      d.cfg.PidsLimit,
		"security_opt":    []string{"no-new-privileges"},
		"ipc_mode":        "private",
		"init":            false, // the agent is PID 1 and reaps
		"privileged":      false,
		"cpu_hard_limit":  true,
		"shm_size":        d.cfg.TmpSizeMB << 20,
		"labels":          []map[string]string{labels},
		"mount":           mounts,
		"logging": map[string]any{
			"type":   "json-file",
			"config": []map[string]string{{"max-size": "1m", "max-file": "2"}},
		},
	}
	if d.cfg.Runtime != "" {
		cfg["runtime"] = d.cfg.Runtime
	}
	return cfg
}

// taskMemoryMB is what a sandbox's task reserves and is limited to: the
// user's memory plus every tmpfs it can fill (/workspace, /tmp, /dev/shm).
func (d *Driver) taskMemoryMB(res fsm.Resources) int64 {
	return res.MemoryMB + res.DiskMB + 2*d.cfg.TmpSizeMB
}

// artifactName is the file go-getter writes for a URL: its last path element.
func artifactName(src string) string {
	end := len(src)
	for i := 0; i < len(src); i++ {
		if src[i] == '?' {
			end = i
			break
		}
	}
	s := src[:end]
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[i+1:]
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }
