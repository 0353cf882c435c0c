package docker

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/docker/docker/client"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// Driver places sandboxes as containers on the local Docker daemon.
type Driver struct {
	cfg    Config
	docker *client.Client
	node   string
	log    *slog.Logger
}

var _ placement.Driver = (*Driver)(nil)

// New connects to the Docker daemon named by the environment (DOCKER_HOST,
// default the local socket), negotiating the API version, and prepares
// cfg.StateDir.
func New(cfg Config) (*Driver, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.AgentBinary); err != nil {
		return nil, fmt.Errorf("docker driver: agent binary: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("docker driver: state dir: %w", err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker driver: connect to docker: %w", err)
	}
	node, err := os.Hostname()
	if err != nil {
		node = "localhost"
	}
	return &Driver{
		cfg:    cfg,
		docker: cli,
		node:   node,
		log:    cfg.Logger.With("component", "placement.docker", "cluster", cfg.Cluster),
	}, nil
}

// Name is "docker".
func (d *Driver) Name() string { return "docker" }

// Capabilities: limits change in place (not under gVisor), a pause freezes the container
// (processes and memory kept), and a resume thaws it where it is.
func (d *Driver) Capabilities() placement.Capabilities {
	// Debian's runsc (0.0~20221219) has no "update" subcommand: Docker's
	// update fails under gVisor, so limits are fixed at create there.
	return placement.Capabilities{LiveUpdate: !GVisor(d.cfg.Runtime), FreezeInPlace: true, MovesOnResume: false}
}

// Close releases the connection to the Docker daemon; sandboxes keep running.
func (d *Driver) Close() error { return d.docker.Close() }
