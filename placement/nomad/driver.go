// Package nomad places sandboxes as Nomad jobs: one batch job per sandbox
// with a single hardened Docker task running the sandbox-agent as PID 1 on
// a Nomad-mapped TCP port with a per-sandbox bearer secret. See
// placement/DESIGN.md, section "Nomad", for the data path, pause, and what
// the Nomad clients must allow.
package nomad

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Driver is the production placement.Driver.
type Driver struct {
	cfg Config
	api *api.Client
	log *slog.Logger
	// workspace is the archived directory as the agent names it; tests
	// running the agent on the host point it elsewhere.
	workspace string

	// archive keeps paused sandboxes' workspaces (nil: cannot pause).
	archive ArchiveStore

	// mu serialises operations on one sandbox: Pause racing Destroy would
	// leave an archive of a destroyed sandbox.
	mu    sync.Mutex
	locks map[string]*sync.Mutex

	cc clientCache
}

var _ placement.Driver = (*Driver)(nil)

// New validates cfg and builds a driver; it does not contact Nomad. With
// S3 configured it checks the bucket (see NewS3Store), so that a wrong
// endpoint or credentials stop the start-up instead of every later pause.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	ac := api.DefaultConfig() // reads NOMAD_* TLS and address variables too
	if cfg.Address != "" {
		ac.Address = cfg.Address
	}
	ac.SecretID = cfg.Token
	ac.Region = cfg.Region
	ac.Namespace = cfg.Namespace
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("nomad driver: client: %w", err)
	}
	archive, err := newArchiveStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("nomad driver: %w", err)
	}
	return &Driver{
		cfg:       cfg,
		api:       client,
		log:       cfg.Logger.With("component", "placement.nomad"),
		workspace: placement.WorkspacePath,
		archive:   archive,
		locks:     map[string]*sync.Mutex{},
	}, nil
}

// Name is "nomad".
func (d *Driver) Name() string { return "nomad" }

func (d *Driver) lock(id string) func() {
	d.mu.Lock()
	l, ok := d.locks[id]
	if !ok {
		l = &sync.Mutex{}
		d.locks[id] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Create registers the sandbox's job, waits for its allocation to run and
// its agent to answer, and returns where it is. On any failure the job is
// deregistered with purge, so nothing is left behind.
func (d *Driver) Create(ctx context.Context, spec placement.Spec) (fsm.Placement, error) {
	if err := placement.CheckID(spec.ID); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox: %w", err)
	}
	defer d.lock(spec.ID)()
	secret, err := newSecret()
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	id, err := d.newAgentTLS(spec.ID)
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	job := d.job(spec, secret, id, d.shape(ctx))
	if err := d.withEgress(ctx, job, spec); err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	p, err := d.place(ctx, spec.ID, spec.Image, job)
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("create sandbox %s: %w", spec.ID, err)
	}
	return p, nil
}

// place registers job and waits for it to run and its agent to answer over
// TLS, with the secret and certificate the job carries; on failure it
// purges the job. The caller holds the sandbox's lock.
func (d *Driver) place(ctx context.Context, sandboxID, image string, job *api.Job) (fsm.Placement, error) {
	start := time.Now()
	defer d.forgetClients() // the clients' free room changed, or may have
	resp, _, err := d.api.Jobs().Register(job, d.writeOpts(ctx))
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("register job %s: %w", *job.ID, err)
	}
	p, err := d.waitPlaced(ctx, *job.ID, image, resp)
	if err == nil && !d.hasEgress(job) {
		p.IP = "" // the API's contract: no network, no address
	}
	if err == nil {
		p, err = agentAccess(p, job)
	}
	if err == nil {
		err = d.waitHealthy(ctx, p)
	}
	if err != nil {
		// A context already cancelled must not stop the cleanup.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := d.deregister(cctx, sandboxID); derr != nil {
			d.log.Warn("purge after failed placement", "sandbox.id", sandboxID, "err", derr)
		}
		return fsm.Placement{}, err
	}
	d.log.Info("sandbox placed", "sandbox.id", sandboxID, "alloc.id", p.ContainerID, "node.id", p.Node,
		"endpoint", p.AgentEndpoint, "elapsed", time.Since(start))
	return p, nil
}

// hasEgress reports a job whose sandbox may reach the network: any group
// network but the no-egress one.
func (d *Driver) hasEgress(job *api.Job) bool {
	for _, tg := range job.TaskGroups {
		for _, n := range tg.Networks {
			if n.Mode != "" && n.Mode != "none" && n.Mode != d.cfg.NoEgressNetwork {
				return true
			}
		}
	}
	return false
}

func (d *Driver) waitHealthy(ctx context.Context, p fsm.Placement) error {
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HealthTimeout)
	defer cancel()
	c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	defer c.Close()
	backoff := 20 * time.Millisecond
	for {
		_, err := c.Health(hctx)
		if err == nil {
			return nil
		}
		select {
		case <-hctx.Done():
			return fmt.Errorf("agent at %s not healthy within %s: %w", p.AgentEndpoint, d.cfg.HealthTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// Destroy deregisters the sandbox's job with purge and drops any pause
// archive. A job that is gone is success. With p.ContainerID (the
// allocation the state recorded) it does so only while the job is the one
// that allocation belongs to: a job registered anew under the same id
// after a purge (a later create) is left alone, and so is a job whose
// allocation Nomad no longer knows (the reconciler's orphan cleanup,
// which passes no allocation, removes it if no state records it).
func (d *Driver) Destroy(ctx context.Context, sandboxID string, p fsm.Placement) error {
	if err := placement.CheckID(sandboxID); err != nil {
		return fmt.Errorf("destroy sandbox: %w", err)
	}
	defer d.lock(sandboxID)()
	if p.ContainerID != "" {
		ours, why, err := d.placedBy(ctx, sandboxID, p.ContainerID)
		if err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", sandboxID, err)
		}
		if !ours {
			d.log.Info("not destroying a newer job of the sandbox", "sandbox.id", sandboxID, "alloc.id", p.ContainerID, "reason", why)
			return nil
		}
	}
	if err := d.deregister(ctx, sandboxID); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", sandboxID, err)
	}
	if err := d.removeArchive(ctx, sandboxID); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", sandboxID, err)
	}
	return nil
}

// placedBy reports whether the sandbox's job is the one that placed
// allocation allocID: the allocation is the job's and was created since the
// job was (a purge and a new registration make a new job, with a new
// CreateIndex; a stop and a resume keep it). A job that is gone is ours:
// only the archive is left to remove. When not, why says so.
func (d *Driver) placedBy(ctx context.Context, sandboxID, allocID string) (ours bool, why string, err error) {
	jobID := d.JobID(sandboxID)
	job, _, err := d.api.Jobs().Info(jobID, d.queryOpts(ctx, 0, 0))
	if isNotFound(err) {
		return true, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read job %s: %w", jobID, err)
	}
	alloc, _, err := d.api.Allocations().Info(allocID, d.queryOpts(ctx, 0, 0))
	if isNotFound(err) {
		return false, "allocation unknown to nomad", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read allocation %s: %w", allocID, err)
	}
	switch {
	case alloc.JobID != jobID:
		return false, "allocation of job " + alloc.JobID, nil
	case job.CreateIndex != nil && alloc.CreateIndex < *job.CreateIndex:
		return false, fmt.Sprintf("job registered anew at index %d, after the allocation (%d)", *job.CreateIndex, alloc.CreateIndex), nil
	}
	return true, "", nil
}

func (d *Driver) deregister(ctx context.Context, sandboxID string) error {
	id := d.JobID(sandboxID)
	_, _, err := d.api.Jobs().Deregister(id, true, d.writeOpts(ctx))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deregister job %s: %w", id, err)
	}
	return nil
}

// Capabilities: limits are fixed (see Update); a pause saves the workspace
// and stops the allocation, so processes end; a resume places a new
// allocation, possibly on another node.
func (d *Driver) Capabilities() placement.Capabilities {
	return placement.Capabilities{LiveUpdate: false, FreezeInPlace: false, MovesOnResume: true}
}

// Update refuses: Nomad applies new resources by replacing the allocation,
// which under this driver would lose the sandbox's processes and move it.
// Limits are fixed for a sandbox's life; see placement/DESIGN.md.
func (d *Driver) Update(_ context.Context, sandboxID string, _ fsm.Resources) error {
	return fmt.Errorf("update sandbox %s: %w", sandboxID, ErrLimitsFixed)
}

func (d *Driver) writeOpts(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

func (d *Driver) queryOpts(ctx context.Context, index uint64, wait time.Duration) *api.QueryOptions {
	return (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
}

// isNotFound reports Nomad's 404 (job, alloc or eval not found).
func isNotFound(err error) bool {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode() == http.StatusNotFound
	}
	return false
}

func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("agent secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// agentCertValidity is how long an agent's certificate says it is good for.
// The control plane trusts the pinned certificate, not its dates, so this
// only bounds what a reader of the certificate is told: a year outlasts
// the default sandbox lifetime (24 h) and lets an operator's unlimited one
// run without an expired certificate in view. Every resume makes a new key.
const agentCertValidity = 365 * 24 * time.Hour

// newAgentTLS makes the certificate and key of one placement of a sandbox.
func (d *Driver) newAgentTLS(sandboxID string) (agent.TLSIdentity, error) {
	id, err := agent.NewTLSIdentity(d.JobID(sandboxID), agentCertValidity)
	if err != nil {
		return agent.TLSIdentity{}, fmt.Errorf("agent certificate: %w", err)
	}
	return id, nil
}

// agentAccess completes p, as waitPlaced found it, with how the job lets
// the control plane reach its agent: the bearer secret and, for a job
// carrying a certificate, https pinned to that certificate. A job without
// one (registered before agents served TLS) keeps plain http.
func agentAccess(p fsm.Placement, job *api.Job) (fsm.Placement, error) {
	p.AgentSecret = jobSecret(job)
	cert := jobTemplate(job, tlsCertFile)
	if cert == "" {
		return p, nil
	}
	pin, err := agent.CertSHA256([]byte(cert))
	if err != nil {
		return fsm.Placement{}, fmt.Errorf("job %s: agent certificate: %w", *job.ID, err)
	}
	p.AgentCertSHA256 = pin
	if rest, ok := strings.CutPrefix(p.AgentEndpoint, "http://"); ok {
		p.AgentEndpoint = "https://" + rest
	}
	return p, nil
}
