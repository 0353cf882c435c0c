package api

import (
	"maps"
	"net/http"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// One lifecycle for every sandbox (issue 14): an acquire takes the same
// options a session does and more, and any owned sandbox can be given a
// new lifetime, paused, resumed and connected to.

// acquireRequest is POST /api/v1/sandbox/acquire. Every field is optional.
type acquireRequest struct {
	Image string `json:"image"`
	// Template is another name for image, as E2B's SDK calls it.
	Template    string            `json:"template"`
	Network     bool              `json:"network"`
	CPUCount    *float64          `json:"cpu_count"`
	MemoryMB    *int64            `json:"memory_mb"`
	DiskMB      *int64            `json:"disk_mb"`
	Timeout     *int64            `json:"timeout"`
	IdleTimeout *int64            `json:"idle_timeout"`
	Metadata    map[string]string `json:"metadata"`
	Env         map[string]string `json:"env"`
}

// Bounds on what a caller may store with a sandbox: it lives in the
// replicated state, on every node.
const (
	maxMetadataKeys  = 32
	maxMetadataKey   = 64
	maxMetadataValue = 512
	maxEnvVars       = 64
	maxEnvValue      = 4096
	minDiskMB        = 16
	maxDiskMB        = 65536
	maxLifetimeSecs  = int64(365 * 24 * time.Hour / time.Second)
)

var (
	metadataKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	envNamePattern     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// acquireCommand validates the request and fills defaults.
func (s *Server) acquireCommand(req acquireRequest, p *principal) (*fsm.SandboxAcquire, error) {
	if req.Template != "" {
		if req.Image != "" && req.Image != req.Template {
			return nil, errBadRequest("image and template name the same thing; give one")
		}
		req.Image = req.Template
	}
	if req.Image == "" {
		// Name the image rather than leave it to the replicated pool
		// configuration: right after a cluster's first start the leader may
		// not have written that yet. Both come from SANDBOX_IMAGE.
		req.Image = s.cfg.DefaultImage
	}
	if err := s.checkImage(req.Image); err != nil {
		return nil, err
	}
	if err := s.checkNetwork(req.Network); err != nil {
		return nil, err
	}
	cmd := &fsm.SandboxAcquire{Owner: p.User, Role: p.Role, NewID: newID(), Image: req.Image, Network: req.Network,
		IdleTimeout: s.cfg.DefaultIdleTimeout, Lifetime: s.cfg.DefaultLifetime}
	if req.CPUCount != nil || req.MemoryMB != nil || req.DiskMB != nil {
		// The replicated pool configuration is the one source of defaults.
		res := s.state.Pool().Resources
		if res.CPUCount == 0 {
			res.CPUCount = s.cfg.DefaultCPUCount
		}
		if res.MemoryMB == 0 {
			res.MemoryMB = s.cfg.DefaultMemoryMB
		}
		if err := requestedSize(req.CPUCount, req.MemoryMB, &res.CPUCount, &res.MemoryMB); err != nil {
			return nil, err
		}
		if v := req.DiskMB; v != nil {
			if *v < minDiskMB || *v > maxDiskMB {
				return nil, errUnprocessable("disk_mb must be between %d and %d", minDiskMB, maxDiskMB)
			}
			res.DiskMB = *v
		}
		cmd.Resources = &res
	}
	if v := req.Timeout; v != nil {
		lifetime, err := s.lifetime(*v)
		if err != nil {
			return nil, err
		}
		cmd.Lifetime = lifetime
	}
	if v := req.IdleTimeout; v != nil {
		if *v < 0 || *v > maxLifetimeSecs {
			return nil, errUnprocessable("idle_timeout must be between 0 (none) and one year in seconds")
		}
		cmd.IdleTimeout = time.Duration(*v) * time.Second
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return nil, err
	}
	if err := checkEnv(req.Env); err != nil {
		return nil, err
	}
	cmd.Metadata, cmd.Env = req.Metadata, req.Env
	return cmd, nil
}

// lifetime checks a timeout in seconds: 0 means no hard end, which only an
// operator who set no default lifetime (SANDBOX_MAX_LIFETIME=0) allows.
func (s *Server) lifetime(secs int64) (time.Duration, error) {
	switch {
	case secs == 0 && s.cfg.DefaultLifetime > 0:
		return 0, errUnprocessable("timeout 0 (no end) is not allowed here: this server ends sandboxes after at most SANDBOX_MAX_LIFETIME; give 1 to %d seconds",
			int64(s.cfg.DefaultLifetime/time.Second))
	case secs < 0 || secs > maxLifetimeSecs:
		return 0, errUnprocessable("timeout must be between 1 and %d seconds", maxLifetimeSecs)
	case s.cfg.DefaultLifetime > 0 && time.Duration(secs)*time.Second > s.cfg.DefaultLifetime:
		return 0, errUnprocessable("timeout must be at most %d seconds (SANDBOX_MAX_LIFETIME)", int64(s.cfg.DefaultLifetime/time.Second))
	}
	return time.Duration(secs) * time.Second, nil
}

func checkMetadata(m map[string]string) error {
	if len(m) > maxMetadataKeys {
		return errUnprocessable("metadata: at most %d keys", maxMetadataKeys)
	}
	for k, v := range m {
		switch {
		case len(k) > maxMetadataKey || !metadataKeyPattern.MatchString(k):
			return errUnprocessable("metadata key %q: 1-%d of [A-Za-z0-9._/-], starting alphanumeric", k, maxMetadataKey)
		case len(v) > maxMetadataValue:
			return errUnprocessable("metadata %q: value longer than %d bytes", k, maxMetadataValue)
		}
	}
	return nil
}

func checkEnv(env map[string]string) error {
	if len(env) > maxEnvVars {
		return errUnprocessable("env: at most %d variables", maxEnvVars)
	}
	for k, v := range env {
		switch {
		case !envNamePattern.MatchString(k):
			return errUnprocessable("env name %q: want [A-Za-z_][A-Za-z0-9_]*", k)
		case len(v) > maxEnvValue:
			return errUnprocessable("env %s: value longer than %d bytes", k, maxEnvValue)
		}
	}
	return nil
}

// sandboxEnv is what a process started in sb gets: the sandbox's env, then
// the request's on top.
func sandboxEnv(sb *fsm.Sandbox, req map[string]string) map[string]string {
	if len(sb.Env) == 0 {
		return req
	}
	out := maps.Clone(sb.Env)
	maps.Copy(out, req)
	return out
}

type timeoutRequest struct {
	Timeout *int64 `json:"timeout"`
}

// handleSetTimeout answers POST /api/v1/sandbox/{id}/timeout: a new
// lifetime counted from now.
func (s *Server) handleSetTimeout(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	id := chi.URLParam(r, "sandbox_id")
	var req timeoutRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Timeout == nil {
		return errBadRequest("timeout is required (seconds from now)")
	}
	lifetime, err := s.lifetime(*req.Timeout)
	if err != nil {
		return err
	}
	if _, err := s.ownedSandbox(r, id); err != nil {
		return err
	}
	return s.sandboxAction(w, r, &fsm.SandboxSetTimeout{ID: id, Owner: p.User, Admin: p.admin(), Lifetime: lifetime}, false)
}

// handlePauseSandbox answers POST /api/v1/sandbox/{id}/pause.
func (s *Server) handlePauseSandbox(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	id := chi.URLParam(r, "sandbox_id")
	if _, err := s.ownedSandbox(r, id); err != nil {
		return err
	}
	return s.sandboxAction(w, r, &fsm.SandboxPause{ID: id, Owner: p.User, Admin: p.admin()}, false)
}

// handleResumeSandbox answers POST /api/v1/sandbox/{id}/resume and
// /connect: a paused sandbox is resumed and the answer comes once it runs;
// a running one is answered at once.
func (s *Server) handleResumeSandbox(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	id := chi.URLParam(r, "sandbox_id")
	if _, err := s.ownedSandbox(r, id); err != nil {
		return err
	}
	return s.sandboxAction(w, r, &fsm.SandboxResume{ID: id, Owner: p.User, Admin: p.admin()}, true)
}

// sandboxAction applies a lifecycle command and answers with the sandbox
// as of that write (after the resume, when waitRunning).
func (s *Server) sandboxAction(w http.ResponseWriter, r *http.Request, cmd fsm.Command, waitRunning bool) error {
	resp, err := s.apply(r.Context(), cmd, "")
	if err != nil {
		return err
	}
	if err := s.waitApplied(r.Context(), resp.Index); err != nil {
		return err
	}
	sb := resp.Sandbox
	if waitRunning && sb != nil && sb.State == fsm.StateResuming {
		if sb, err = s.waitResumed(r.Context(), sb.ID); err != nil {
			return err
		}
	}
	if sb == nil {
		return errNotFound("sandbox")
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
	return nil
}

// checkNetwork refuses a sandbox with network when the runtime has none.
func (s *Server) checkNetwork(network bool) error {
	if network && s.cfg.NoNetworkRuntime != "" {
		return errUnprocessable("network: sandboxes here run under runtime %q (gVisor), which gives them no network; ask without network", s.cfg.NoNetworkRuntime)
	}
	return nil
}
