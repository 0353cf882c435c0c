package controlnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/docker"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad"
)

// newDriver builds the placement driver PLACEMENT_DRIVER names.
func newDriver(cfg *config, log *slog.Logger) (placement.Driver, error) {
	switch cfg.Driver {
	case "docker":
		if err := installAgent(cfg.AgentBin); err != nil {
			return nil, err
		}
		deny, err := egressDeny(context.Background(), cfg, os.Getenv, log)
		if err != nil {
			return nil, err
		}
		return docker.New(docker.Config{
			EgressDeny:  deny,
			Cluster:     cfg.ClusterName,
			AgentBinary: cfg.AgentBin,
			StateDir:    cfg.StateDir,
			Runtime:     cfg.Runtime,
			Labels:      cfg.Labels,
			Logger:      log,
		})
	case "nomad":
		ncfg, err := nomad.ConfigFromEnv(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("nomad configuration: %w", err)
		}
		// The flags win over the environment here as everywhere: a
		// cluster named by -cluster-name must own its Nomad jobs too.
		ncfg.Cluster = cfg.ClusterName
		if ncfg.EgressDeny, err = egressDeny(context.Background(), cfg, os.Getenv, log); err != nil {
			return nil, err
		}
		if ncfg.Runtime == "" {
			ncfg.Runtime = cfg.Runtime
		}
		if ncfg.Labels == nil {
			ncfg.Labels = cfg.Labels
		}
		ncfg.Logger = log
		return nomad.New(ncfg)
	}
	return nil, fmt.Errorf("PLACEMENT_DRIVER %q: want docker or nomad", cfg.Driver)
}

// installAgent makes sure the static agent exists at dst. The Docker daemon
// resolves bind-mount sources on the host, so when sandboxd itself runs in a
// container, dst is a host directory mounted at the same path; the agent
// shipped beside sandboxd is copied there on first start.
func installAgent(dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	src := filepath.Join(filepath.Dir(exe), "sandbox-agent")
	if src == dst {
		return fmt.Errorf("sandbox agent %s not found: run make build", dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install sandbox agent: no agent at %s and none beside sandboxd: %w", dst, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	// Rename so that a sandbox never mounts a half-written binary.
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install sandbox agent: %w", err)
	}
	return nil
}

// buildAgent builds the static agent at dst from the repository's source when
// it is missing: what `make build` would do, for the guide's `go run` start.
func buildAgent(dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join("cmd", "sandbox-agent")); err != nil {
		return fmt.Errorf("sandbox agent %s is missing and ./cmd/sandbox-agent is not here to build it from: run make build", dst)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Each process builds to its own file and renames: the guide starts three
	// nodes at once.
	tmp := fmt.Sprintf("%s.%d.tmp", dst, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, "./cmd/sandbox-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build sandbox agent: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("build sandbox agent: %w", err)
	}
	return nil
}

// parseLabels reads SANDBOX_LABELS: "key=value,key=value".
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, item := range splitList(s) {
		k, v, ok := strings.Cut(item, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", item)
		}
		labels[k] = v
	}
	return labels, nil
}
