package docker

import (
	"net"
	"net/netip"
	"strings"

	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"

	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// Config configures a Driver. Zero values take the defaults noted.
type Config struct {
	// Cluster names the owning cluster: it is the cloud-sandbox.cluster label
	// and part of every container name.
	Cluster string
	// AgentBinary is the host path of the static sandbox-agent.
	AgentBinary string
	// StateDir holds one directory per sandbox with its agent socket. Keep it
	// short: a unix socket path is limited to 108 bytes.
	StateDir string
	// Labels are added to every container (e.g. cloud-sandbox.test=1); they
	// cannot override the cloud-sandbox.cluster, .sandbox and .managed labels.
	Labels map[string]string
	// Runtime is an optional OCI runtime, e.g. "runsc" for gVisor.
	// Sandboxes under gVisor have no network (see NoNetwork).
	Runtime string
	// PidsLimit caps processes per sandbox (default 256).
	PidsLimit int64
	// TmpSizeMB sizes the /tmp tmpfs (default 64).
	TmpSizeMB int64
	// DefaultDiskMB sizes /workspace when Resources.DiskMB is zero (default 512).
	DefaultDiskMB int64
	// DefaultMemoryMB applies when Resources.MemoryMB is zero (default 512).
	DefaultMemoryMB int64
	// DefaultCPUs applies when Resources.CPUCount is zero (default 1).
	DefaultCPUs float64
	// ReadyTimeout bounds the wait for the agent's first health answer
	// (default 20 s).
	ReadyTimeout time.Duration
	// PullTimeout bounds the one pull tried for a missing image (default 2 min).
	PullTimeout time.Duration
	// EgressDeny are addresses no sandbox may reach besides egress.AlwaysDenied
	// and its own network: the control plane, the host, what the operator adds.
	EgressDeny []netip.Prefix
	// Resolver looks up allow-listed host names (default net.DefaultResolver).
	Resolver egress.Resolver
	// Logger receives the driver's logs (default slog.Default()).
	Logger *slog.Logger
}

// maxSocketPath keeps StateDir/<id>/agent.sock under the 108-byte sun_path.
const maxSocketPath = 104

func (c *Config) setDefaults() {
	if c.PidsLimit == 0 {
		c.PidsLimit = 256
	}
	if c.TmpSizeMB == 0 {
		c.TmpSizeMB = 64
	}
	if c.DefaultDiskMB == 0 {
		c.DefaultDiskMB = 512
	}
	if c.DefaultMemoryMB == 0 {
		c.DefaultMemoryMB = 512
	}
	if c.DefaultCPUs == 0 {
		c.DefaultCPUs = 1
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 20 * time.Second
	}
	if c.PullTimeout == 0 {
		c.PullTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}

// Validate reports a configuration the driver cannot run with. Defaults are
// applied first, so a zero field is not an error.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if err := placement.CheckClusterName(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if !filepath.IsAbs(c.AgentBinary) {
		errs = append(errs, fmt.Errorf("agent binary %q: want an absolute host path", c.AgentBinary))
	}
	if !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("state dir %q: want an absolute host path", c.StateDir))
	} else if n := len(filepath.Clean(c.StateDir)) + len("/x/agent.sock"); n > maxSocketPath-16 {
		// Leave room for sandbox ids of at least 16 bytes.
		errs = append(errs, fmt.Errorf("state dir %q: too long for a unix socket path (%d bytes, keep it under %d)", c.StateDir, len(c.StateDir), maxSocketPath-16-len("/x/agent.sock")))
	}
	if c.PidsLimit < 16 {
		errs = append(errs, fmt.Errorf("pids limit %d: want at least 16", c.PidsLimit))
	}
	if c.TmpSizeMB < 1 || c.DefaultDiskMB < 1 || c.DefaultMemoryMB < 6 || c.DefaultCPUs < 0.01 {
		errs = append(errs, fmt.Errorf("sizes tmp %d MB, disk %d MB, memory %d MB, cpus %g: want tmp, disk >= 1 MB, memory >= 6 MB (Docker's floor), cpus >= 0.01",
			c.TmpSizeMB, c.DefaultDiskMB, c.DefaultMemoryMB, c.DefaultCPUs))
	}
	if c.ReadyTimeout < 0 || c.PullTimeout < 0 {
		errs = append(errs, fmt.Errorf("timeouts ready %s, pull %s: want positive", c.ReadyTimeout, c.PullTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docker driver config: %w", err)
	}
	return nil
}

// GVisor reports whether runtime is gVisor as deploy/gvisor/setup.sh
// registers it: "runsc", or a RUNTIME_NAME containing "gvisor" or "runsc".
func GVisor(runtime string) bool {
	r := strings.ToLower(runtime)
	return strings.Contains(r, "runsc") || strings.Contains(r, "gvisor")
}

// NoNetwork reports whether runtime gives containers no network: gVisor,
// registered with --network=none. Its ptrace platform cannot network in the
// root namespace, and the egress firewall needs the host kernel's netfilter
// in the sandbox's namespace, which gVisor does not use.
func NoNetwork(runtime string) bool { return GVisor(runtime) }
