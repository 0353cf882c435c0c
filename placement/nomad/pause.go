package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Nomad cannot freeze a task, so pausing a sandbox here means: its
// /workspace is archived through the agent to ArchiveDir on this control
// node, and its job is stopped. Resume registers the job again wherever
// Nomad finds room (possibly another node, with a new host port), restores
// the archive and reports the new placement, which the reconciler records.
// Files survive; processes and memory do not. See placement/DESIGN.md.

// pauseRecord is what Resume needs besides the tar: the job as registered
// (with its secret) and where it ran.
type pauseRecord struct {
	Job       *api.Job      `json:"job"`
	Placement fsm.Placement `json:"placement"`
	Image     string        `json:"image"`
}

func (d *Driver) archivePaths(id string) (tarPath, recPath string) {
	return filepath.Join(d.cfg.ArchiveDir, id+".tar"), filepath.Join(d.cfg.ArchiveDir, id+".json")
}

// Pause archives /workspace and stops the job. Pausing a paused sandbox
// succeeds.
func (d *Driver) Pause(ctx context.Context, sandboxID string) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("pause sandbox: %w", err)
	}
	if d.cfg.ArchiveDir == "" {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, ErrNoArchiveDir)
	}
	defer d.lock(sandboxID)()
	tarPath, recPath := d.archivePaths(sandboxID)
	if _, err := os.Stat(recPath); err == nil {
		return nil
	}
	job, p, err := d.locate(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	if err := os.MkdirAll(d.cfg.ArchiveDir, 0o700); err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	if err := d.saveWorkspace(ctx, p, tarPath); err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	image, _ := job.TaskGroups[0].Tasks[0].Config["image"].(string)
	rec, err := json.Marshal(pauseRecord{Job: job, Placement: p, Image: image})
	if err != nil {
		return fmt.Errorf("pause sandbox %s: encode record: %w", sandboxID, err)
	}
	// The record is written last and atomically: its presence means paused.
	if err := writeFileSync(recPath, rec); err != nil {
		return fmt.Errorf("pause sandbox %s: %w", sandboxID, err)
	}
	// Stopped, not purged: the job stays listed (until Nomad's job GC)
	// and its spec readable for operators.
	if _, _, err := d.api.Jobs().Deregister(d.JobID(sandboxID), false, d.writeOpts(ctx)); err != nil && !isNotFound(err) {
		return fmt.Errorf("pause sandbox %s: stop job: %w", sandboxID, err)
	}
	d.log.Info("sandbox paused", "sandbox.id", sandboxID, "archive", tarPath)
	return nil
}

// Resume registers the paused job again, unpinned, waits for its new
// allocation and agent as Create does, restores /workspace, drops the
// archive, and returns the new placement with moved = true. The agent
// secret is the one the job was registered with. Resuming a running sandbox
// succeeds and also reports its placement as moved: an earlier Resume may
// have placed it without the caller recording where.
func (d *Driver) Resume(ctx context.Context, sandboxID string) (fsm.Placement, bool, error) {
	if err := placement.CheckID(sandboxID); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox: %w", err)
	}
	defer d.lock(sandboxID)()
	tarPath, recPath := d.archivePaths(sandboxID)
	raw, err := os.ReadFile(recPath)
	if errors.Is(err, fs.ErrNotExist) || d.cfg.ArchiveDir == "" {
		if _, p, lerr := d.locate(ctx, sandboxID); lerr == nil {
			return p, true, nil // not paused by this node: running already
		}
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, placement.ErrNotFound)
	}
	if err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	var rec pauseRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: decode %s: %w", sandboxID, recPath, err)
	}
	job := fresh(rec.Job)
	p, err := d.place(ctx, sandboxID, rec.Image, job, jobSecret(job))
	if err != nil {
		// place purged the job; the archive stays for the next attempt.
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	if err := d.restoreWorkspace(ctx, p, tarPath); err != nil {
		// An allocation without the files must not pass for the sandbox:
		// purge it so that the next attempt places and restores afresh.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := d.deregister(cctx, sandboxID); derr != nil {
			d.log.Warn("purge after failed restore", "sandbox.id", sandboxID, "err", derr)
		}
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	if err := d.removeArchive(sandboxID); err != nil {
		return fsm.Placement{}, false, fmt.Errorf("resume sandbox %s: %w", sandboxID, err)
	}
	d.log.Info("sandbox resumed", "sandbox.id", sandboxID, "alloc.id", p.ContainerID, "node.id", p.Node,
		"from.node.id", rec.Placement.Node, "endpoint", p.AgentEndpoint)
	return p, true, nil
}

func (d *Driver) restoreWorkspace(ctx context.Context, p fsm.Placement, tarPath string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return fmt.Errorf("restore workspace: %w", err)
	}
	defer f.Close()
	c := agent.NewClient(p.AgentEndpoint, p.AgentSecret)
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
	p.AgentSecret = jobSecret(job)
	return job, p, nil
}

func (d *Driver) saveWorkspace(ctx context.Context, p fsm.Placement, tarPath string) error {
	c := agent.NewClient(p.AgentEndpoint, p.AgentSecret)
	defer c.Close()
	body, err := c.Download(ctx, d.workspace)
	if err != nil {
		return fmt.Errorf("archive workspace: %w", err)
	}
	defer body.Close()
	tmp := tarPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("archive workspace: %w", err)
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("archive workspace: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("archive workspace: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("archive workspace: %w", err)
	}
	return os.Rename(tmp, tarPath)
}

// archived lists the sandboxes paused into ArchiveDir.
func (d *Driver) archived() (map[string]bool, error) {
	out := map[string]bool{}
	if d.cfg.ArchiveDir == "" {
		return out, nil
	}
	ents, err := os.ReadDir(d.cfg.ArchiveDir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read archive dir: %w", err)
	}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && placement.CheckID(id) == nil {
			out[id] = true
		}
	}
	return out, nil
}

func (d *Driver) removeArchive(id string) error {
	if d.cfg.ArchiveDir == "" {
		return nil
	}
	tarPath, recPath := d.archivePaths(id)
	for _, p := range []string{recPath, tarPath, tarPath + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove archive: %w", err)
		}
	}
	return nil
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

// jobSecret reads the agent secret back from the job's template.
func jobSecret(job *api.Job) string {
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			for _, tm := range t.Templates {
				if tm.DestPath != nil && *tm.DestPath == secretFile && tm.EmbeddedTmpl != nil {
					return *tm.EmbeddedTmpl
				}
			}
		}
	}
	return ""
}

func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
