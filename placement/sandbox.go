package placement

import (
	"fmt"
	"regexp"
)

// What every driver gives a sandbox, kept in one place so the Docker and
// Nomad sandboxes cannot drift apart.
const (
	// SandboxUser is the numeric user:group sandboxes run as; numeric, so any
	// image works, whether or not it has such a user.
	SandboxUser = "1000:1000"
	// SandboxUID is SandboxUser's uid.
	SandboxUID = 1000
	// WorkspacePath is the writable, size-limited working directory.
	WorkspacePath = "/workspace"
)

// sandboxIDPattern is what may appear in a container or job name and a path.
var sandboxIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// CheckID rejects a sandbox id that is not safe in names and paths.
func CheckID(id string) error {
	if !sandboxIDPattern.MatchString(id) {
		return fmt.Errorf("sandbox id %q: want [a-zA-Z0-9_.-], starting alphanumeric", id)
	}
	return nil
}

// clusterNamePattern is what a container name allows, minus '.' so that
// "<cluster>-<id>" splits unambiguously.
var clusterNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)

// CheckClusterName rejects a cluster name drivers cannot label or name with.
func CheckClusterName(name string) error {
	if !clusterNamePattern.MatchString(name) {
		return fmt.Errorf("cluster %q: want 1-63 of [a-zA-Z0-9_-], starting alphanumeric", name)
	}
	return nil
}
