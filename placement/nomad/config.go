package nomad

import (
	"net"
	"net/netip"

	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"

	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// Config configures a Driver. Zero values take the defaults noted.
type Config struct {
	// Address, Token, Region and Namespace reach the Nomad API; they are the
	// standard NOMAD_ADDR, NOMAD_TOKEN, NOMAD_REGION and NOMAD_NAMESPACE.
	Address   string
	Token     string
	Region    string
	Namespace string
	// Datacenters the sandboxes may run in (default ["*"]); NodePool the
	// node pool (default: Nomad's "default").
	Datacenters []string
	NodePool    string

	// Cluster names the owning control plane: job meta cloud_sandbox_cluster
	// and, by default, the job id prefix.
	Cluster string
	// JobPrefix starts every sandbox job id: <JobPrefix>-<sandbox id>
	// (default "cs-<Cluster>").
	JobPrefix string

	// AgentPath is the sandbox-agent binary on every Nomad client, bind
	// mounted read-only into the task (default /opt/cloud-sandbox/bin/sandbox-agent;
	// needs the docker plugin's volumes { enabled = true }).
	AgentPath string
	// AgentArtifact, when set, is a go-getter URL of the agent binary that
	// Nomad downloads into the task's local/ directory instead of the bind
	// mount, for clients without the binary or with volumes disabled.
	AgentArtifact string
	// AgentPort is the agent's port inside the allocation's network
	// namespace (default 7777); Nomad maps it to a dynamic host port.
	AgentPort int

	// PlaceTimeout bounds the wait for the allocation to run (default 2 min);
	// HealthTimeout the wait for the agent's first health answer after that
	// (default 30 s).
	PlaceTimeout  time.Duration
	HealthTimeout time.Duration
	// MHzPerCPU converts a request's CPU count into Nomad's MHz. Zero (the
	// default) takes it from the clients: the smallest cpu.totalcompute /
	// cores among them, so one CPU is one core wherever the sandbox lands.
	MHzPerCPU int

	// EgressNetwork is the group network mode of sandboxes allowed egress
	// (default "bridge"); NoEgressNetwork of the rest (default
	// "cni/cloud-sandbox-noegress", a CNI network the operator installs
	// on every client; see placement/DESIGN.md).
	EgressNetwork   string
	NoEgressNetwork string
	// EgressDeny are addresses no egress sandbox may reach besides
	// egress.AlwaysDenied and its own network (the control plane, the
	// clients' hosts); Resolver looks up allow-listed host names (default
	// net.DefaultResolver). See placement/egress.
	EgressDeny []netip.Prefix
	Resolver   egress.Resolver
	// Runtime is an optional OCI runtime (e.g. "runsc"); the clients' docker
	// plugin must list it in allow_runtimes.
	Runtime string
	// PidsLimit, TmpSizeMB and the Default* sizes match the docker driver's.
	PidsLimit       int64
	TmpSizeMB       int64
	DefaultDiskMB   int64
	DefaultMemoryMB int64
	DefaultCPUs     float64
	// Labels are added to every container; they cannot override the driver's.
	Labels map[string]string
	// Priority of sandbox jobs (default 50).
	Priority int

	// ArchiveDir keeps the /workspace archives of paused sandboxes on this
	// control node's disk (SANDBOX_ARCHIVE_DIR): the single-node
	// development store. S3, when its Endpoint is set, keeps them in
	// object storage that every control node reaches instead. The two
	// exclude each other; with neither the driver cannot pause, and
	// ConfigFromEnv refuses that.
	ArchiveDir string
	S3         S3Config

	// Logger receives the driver's logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultAgentPath     = "/opt/cloud-sandbox/bin/sandbox-agent"
	DefaultAgentPort     = 7777
	DefaultPlaceTimeout  = 2 * time.Minute
	DefaultHealthTimeout = 30 * time.Second
	// DefaultMHzPerCPU is used only when neither the configuration nor
	// the clients say what a core is worth.
	DefaultMHzPerCPU       = 1000
	DefaultEgressNetwork   = "bridge"
	DefaultNoEgressNetwork = "cni/cloud-sandbox-noegress"
)

func (c *Config) setDefaults() {
	if len(c.Datacenters) == 0 {
		c.Datacenters = []string{"*"}
	}
	if c.JobPrefix == "" {
		c.JobPrefix = "cs-" + c.Cluster
	}
	if c.AgentPath == "" {
		c.AgentPath = DefaultAgentPath
	}
	if c.AgentPort == 0 {
		c.AgentPort = DefaultAgentPort
	}
	if c.PlaceTimeout == 0 {
		c.PlaceTimeout = DefaultPlaceTimeout
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.EgressNetwork == "" {
		c.EgressNetwork = DefaultEgressNetwork
	}
	if c.NoEgressNetwork == "" {
		c.NoEgressNetwork = DefaultNoEgressNetwork
	}
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
	if c.Priority == 0 {
		c.Priority = 50
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.S3.Endpoint != "" {
		c.S3.setDefaults()
	}
}

// Validate reports every problem with the configuration after defaults.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if err := placement.CheckClusterName(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if c.AgentArtifact == "" && !filepath.IsAbs(c.AgentPath) {
		errs = append(errs, fmt.Errorf("agent path %q is not absolute", c.AgentPath))
	}
	if c.AgentPort < 1 || c.AgentPort > 65535 {
		errs = append(errs, fmt.Errorf("agent port %d out of range", c.AgentPort))
	}
	if c.PlaceTimeout < 0 || c.HealthTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if c.MHzPerCPU < 0 {
		errs = append(errs, fmt.Errorf("MHz per CPU %d: want >= 1, or 0 for what the clients report", c.MHzPerCPU))
	}
	if c.ArchiveDir != "" && !filepath.IsAbs(c.ArchiveDir) {
		errs = append(errs, fmt.Errorf("archive dir %q is not absolute", c.ArchiveDir))
	}
	if c.ArchiveDir != "" && c.S3.Endpoint != "" {
		errs = append(errs, errors.New("pause archives: SANDBOX_ARCHIVE_DIR (ArchiveDir) and MINIO_ENDPOINT (S3) are both set: choose one"))
	}
	if c.S3.Endpoint != "" {
		if err := c.S3.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nomad driver config: %w", err)
	}
	return nil
}

// ConfigFromEnv reads the standard Nomad variables and the driver's own:
//
//	NOMAD_ADDR NOMAD_TOKEN NOMAD_REGION NOMAD_NAMESPACE
//	NOMAD_DATACENTERS (comma separated)  NOMAD_NODE_POOL
//	CLUSTER_NAME (default cloud-sandbox)  NOMAD_JOB_PREFIX
//	SANDBOX_AGENT_PATH  SANDBOX_AGENT_ARTIFACT  SANDBOX_RUNTIME
//	NOMAD_PLACE_TIMEOUT (Go duration)  NOMAD_CPU_MHZ_PER_CORE
//	SANDBOX_ARCHIVE_DIR  SANDBOX_EGRESS_NETWORK  SANDBOX_NOEGRESS_NETWORK
//	MINIO_ENDPOINT  MINIO_ACCESS_KEY  MINIO_SECRET_KEY  MINIO_BUCKET
//	MINIO_REGION  MINIO_USE_SSL  MINIO_PREFIX
//
// Unlike Validate it requires a pause archive store, SANDBOX_ARCHIVE_DIR or
// MINIO_ENDPOINT: a control node that cannot pause must not start.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Address:         getenv("NOMAD_ADDR"),
		Token:           getenv("NOMAD_TOKEN"),
		Region:          getenv("NOMAD_REGION"),
		Namespace:       getenv("NOMAD_NAMESPACE"),
		NodePool:        getenv("NOMAD_NODE_POOL"),
		Cluster:         getenv("CLUSTER_NAME"),
		JobPrefix:       getenv("NOMAD_JOB_PREFIX"),
		AgentPath:       getenv("SANDBOX_AGENT_PATH"),
		AgentArtifact:   getenv("SANDBOX_AGENT_ARTIFACT"),
		Runtime:         getenv("SANDBOX_RUNTIME"),
		ArchiveDir:      getenv("SANDBOX_ARCHIVE_DIR"),
		EgressNetwork:   getenv("SANDBOX_EGRESS_NETWORK"),
		NoEgressNetwork: getenv("SANDBOX_NOEGRESS_NETWORK"),
		S3: S3Config{
			Endpoint:  getenv("MINIO_ENDPOINT"),
			AccessKey: getenv("MINIO_ACCESS_KEY"),
			SecretKey: getenv("MINIO_SECRET_KEY"),
			Bucket:    getenv("MINIO_BUCKET"),
			Region:    getenv("MINIO_REGION"),
			Prefix:    getenv("MINIO_PREFIX"),
		},
	}
	if v := getenv("MINIO_USE_SSL"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("MINIO_USE_SSL: %w", err)
		}
		c.S3.UseSSL = b
	}
	if c.Cluster == "" {
		c.Cluster = "cloud-sandbox"
	}
	for _, dc := range strings.Split(getenv("NOMAD_DATACENTERS"), ",") {
		if dc = strings.TrimSpace(dc); dc != "" {
			c.Datacenters = append(c.Datacenters, dc)
		}
	}
	if v := getenv("NOMAD_PLACE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("NOMAD_PLACE_TIMEOUT: %w", err)
		}
		c.PlaceTimeout = d
	}
	if v := getenv("NOMAD_CPU_MHZ_PER_CORE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return c, fmt.Errorf("NOMAD_CPU_MHZ_PER_CORE: %w", err)
		}
		c.MHzPerCPU = n
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.ArchiveDir == "" && c.S3.Endpoint == "" {
		return c, fmt.Errorf("nomad driver config: %w", errNoArchiveEnv)
	}
	return c, nil
}

// errNoArchiveEnv is ConfigFromEnv's refusal of a driver that could not
// pause, in the operator's terms.
var errNoArchiveEnv = fmt.Errorf("%w: set MINIO_ENDPOINT, MINIO_ACCESS_KEY and MINIO_SECRET_KEY "+
	"(S3-compatible storage, for any number of control nodes; bucket MINIO_BUCKET, default %s), "+
	"or SANDBOX_ARCHIVE_DIR=<absolute dir> (local disk, a single control node)",
	ErrNoArchiveStore, DefaultS3Bucket)
