package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Nomad cannot freeze a task, so pausing a sandbox here means: its
// /workspace is archived through the agent into the ArchiveStore (S3 for a
// control plane of several nodes, a local directory for one), and its job
// is stopped. Resume, on whichever control node leads by then, registers
// the job again wherever Nomad finds room (possibly another node, with a
// new host port), restores the archive and reports the new placement,
// which the reconciler records. Files survive; processes and memory do
// not. See placement/DESIGN.md.

// pauseRecord is what Resume needs besides the tar: the job as registered
// (with its secret) and where it ran. DiskMB is the /workspace size the
// archive was bounded by.
type pauseRecord struct {
	Job       *api.Job      `json:"job"`
	Placement fsm.Placement `json:"placement"`
	Image     string        `json:"image"`
	DiskMB    int64         `json:"disk_mb"`
}

// Pause archives /workspace and stops the job. Pausing a paused sandbox
// succeeds. A workspace tar larger than the sandbox's disk allows fails
// with *ArchiveTooLargeError and leaves the sandbox running, as does any
// other failure: the job is stopped only once the record is stored.
func (d *Driver) Pause(ctx context.Context, sandboxID string) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("pause sandbox: %w", err)
	}
	if d.archive == nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, ErrNoArchiveStore)
	}
	defer d.lock(sandboxID)()
	_, err := d.archive.Record(ctx, sandboxID)
	if err == nil {
		// Archived by an earlier Pause, whose stop may have failed.
		return d.stopJob(ctx, sandboxID)
	}
	if !errors.Is(err, ErrNoArchive) {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	job, p, err := d.locate(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	diskMB := d.workspaceDiskMB(job)
	image, _ := job.TaskGroups[0].Tasks[0].Config["image"].(string)
	rec, err := json.Marshal(pauseRecord{Job: job, Placement: p, Image: image, DiskMB: diskMB})
	if err != nil {
		return fmt.Errorf("pause sandbox %s: encode record: %w", sandboxID, err)
	}
	if err := d.saveWorkspace(ctx, sandboxID, p, diskMB, rec); err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	if err := d.stopJob(ctx, sandboxID); err != nil {
		return err
	}
	d.log.Info("sandbox paused", "sandbox.id", sandboxID, "disk_mb", diskMB)
	return nil
}

// stopJob stops, not purges, a paused sandbox's job: it stays listed
// (until Nomad's job GC) and its spec readable for operators.
func (d *Driver) stopJob(ctx context.Context, sandboxID string) error {
	if _, _, err := d.api.Jobs().Deregister(d.JobID(sandboxID), false, d.writeOpts(ctx)); err != nil && !isNotFound(err) {
		return fmt.Errorf("pause sandbox %s: stop job: %w", sandboxID, err)
	}
	return nil
}

// saveWorkspace streams the agent's tar of /workspace into the store,
// bounded by the sandbox's disk, then stores the record.
func (d *Driver) saveWorkspace(ctx context.Context, sandboxID string, p fsm.Placement, diskMB int64, rec []byte) error {
	c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	defer c.Close()
	body, err := c.Download(ctx, d.workspace)
	if err != nil {
		return fmt.Errorf("archive workspace: %w", err)
	}
	defer body.Close()
	br := newBoundedReader(body, sandboxID, diskMB)
	err = d.archive.Put(ctx, sandboxID, br, rec)
	if br.err != nil {
		// The store may wrap or replace the reader's error: say what it was.
		return br.err
	}
	if err != nil {
		return fmt.Errorf("archive workspace: %w", err)
	}
	return nil
}

// workspaceDiskMB reads the size of the /workspace tmpfs from the job's
// task config, which the driver wrote from the sandbox's DiskMB. A job
// without it (none the driver registers) is taken at DefaultDiskMB.
func (d *Driver) workspaceDiskMB(job *api.Job) int64 {
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			mounts, _ := t.Config["mount"].([]any)
			for _, m := range mounts {
				mm, _ := m.(map[string]any)
				if target, _ := mm["target"].(string); target != placement.WorkspacePath {
					continue
				}
				opts, _ := mm["tmpfs_options"].(map[string]any)
				if size, ok := number(opts["size"]); ok && size > 0 {
					return (size + 1<<20 - 1) >> 20
				}
			}
		}
	}
	d.log.Warn("job has no /workspace tmpfs size: archive bounded by the default disk", "job.id", *job.ID, "disk_mb", d.cfg.DefaultDiskMB)
	return d.cfg.DefaultDiskMB
}

// number reads an integer from a task config value: JSON decodes numbers
// as float64, a job built in memory has int64.
func number(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// Resume registers the paused job again, unpinned, waits for its new
// allocation and agent as Create does, restores /workspace, drops the
// archive, and returns the new placement with moved = true. The agent
// secret is the one the job was registered with; its TLS key is new. Any
// control node sharing the store can resume what another paused. Resuming
// a running sandbox succeeds and also reports its placement as moved: an
// earlier Resume may have placed it without the caller recording where.
func (d *Driver) Resume(ctx context.Context, sandboxID string) (fsm.Placement, bool, error) {
	if err := placement.CheckID(sandboxID); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox: %w", err)
	}
	defer d.lock(sandboxID)()
	var raw []byte
	err := ErrNoArchiveStore
	if d.archive != nil {
		raw, err = d.archive.Record(ctx, sandboxID)
	}
	if errors.Is(err, ErrNoArchive) || errors.Is(err, ErrNoArchiveStore) {
		if _, p, lerr := d.locate(ctx, sandboxID); lerr == nil {
			return p, true, nil // not paused: running already
		}
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, placement.ErrNotFound)
	}
	if err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	var rec pauseRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: decode pause record: %w", sandboxID, err)
	}
	job := fresh(rec.Job)
	// A new allocation, a new key: the old one stayed in the pause record
	// and was readable inside the old sandbox.
	id, err := d.newAgentTLS(sandboxID)
	if err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	task := sandboxTask(job)
	if task == nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: paused job has no task %q", sandboxID, taskName)
	}
	setAgentTLS(task, id)
	p, err := d.place(ctx, sandboxID, rec.Image, job)
	if err != nil {
		// place purged the job; the archive stays for the next attempt.
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	if err := d.restoreWorkspace(ctx, sandboxID, p); err != nil {
		// An allocation without the files must not pass for the sandbox:
		// purge it so that the next attempt places and restores afresh.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := d.deregister(cctx, sandboxID); derr != nil {
			d.log.Warn("purge after failed restore", "sandbox.id", sandboxID, "err", derr)
		}
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	if err := d.removeArchive(ctx, sandboxID); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	d.log.Info("sandbox resumed", "sandbox.id", sandboxID, "alloc.id", p.ContainerID, "node.id", p.Node,
		"from.node.id", rec.Placement.Node, "endpoint", p.AgentEndpoint)
	return p, true, nil
}

func (d *Driver) restoreWorkspace(ctx context.Context, sandboxID string, p fsm.Placement) error {
	f, err := d.archive.OpenTar(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("restore workspace: %w", err)
	}
	defer f.Close()
	c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	defer c.Close()
	if _, err := c.Upload(ctx, d.workspace, f); err != nil {
		return fmt.Errorf("restore workspace: %w", err)
	}
	return nil
}

// locate finds the running allocation of a sandbox and how to reach its
// agent (the secret is read back from the job's template).
func (d *Driver) locate(ctx context.Context, sandboxID string) (*api.Job, fsm.Placement, error) {
	jobID := d.JobID(sandboxID)
	job, _, err := d.api.Jobs().Info(jobID, d.queryOpts(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return nil, fsm.Placement{}, placement.ErrNotFound
		}
		return nil, fsm.Placement{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	if job.Stop != nil && *job.Stop {
		return nil, fsm.Placement{}, fmt.Errorf("job %s is stopped: %w", jobID, placement.ErrNotFound)
	}
	allocs, _, err := d.api.Jobs().Allocations(jobID, false, d.queryOpts(ctx, 0, 0))
	if err != nil {
		return nil, fsm.Placement{}, fmt.Errorf("job %s allocations: %w", jobID, err)
	}
	a := current(allocs, *job.JobModifyIndex)
	if a == nil || a.ClientStatus != "running" {
		return nil, fsm.Placement{}, fmt.Errorf("job %s has no running allocation: %w", jobID, placement.ErrNotFound)
	}
	p, err := d.placement(ctx, a.ID)
	if err != nil {
		return nil, fsm.Placement{}, err
	}
	if p, err = agentAccess(p, job); err != nil {
		return nil, fsm.Placement{}, err
	}
	return job, p, nil
}

// archived lists the sandboxes paused into the store.
func (d *Driver) archived(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	if d.archive == nil {
		return out, nil
	}
	ids, err := d.archive.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

func (d *Driver) removeArchive(ctx context.Context, id string) error {
	if d.archive == nil {
		return nil
	}
	return d.archive.Delete(ctx, id)
}

// fresh is the paused job as a new registration: the fields the server set
// are cleared. It is not pinned to the node it ran on, so Nomad may place
// it anywhere the job's own constraints allow.
func fresh(job *api.Job) *api.Job {
	j := *job
	j.Stop, j.Status, j.StatusDescription = nil, nil, nil
	j.Version, j.CreateIndex, j.ModifyIndex, j.JobModifyIndex, j.SubmitTime = nil, nil, nil, nil, nil
	return &j
}

// sandboxTask is the job's task that runs the agent (nil if none).
func sandboxTask(job *api.Job) *api.Task {
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			if t.Name == taskName {
				return t
			}
		}
	}
	return nil
}

// jobSecret reads the agent secret back from the job's template.
func jobSecret(job *api.Job) string { return jobTemplate(job, secretFile) }

// jobTemplate is the data the job's template renders to dest ("" if none).
func jobTemplate(job *api.Job, dest string) string {
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			for _, tm := range t.Templates {
				if tm.DestPath != nil && *tm.DestPath == dest && tm.EmbeddedTmpl != nil {
					return *tm.EmbeddedTmpl
				}
			}
		}
	}
	return ""
}
