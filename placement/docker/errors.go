package docker

import (
	"fmt"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// ExistsError is a Create for a sandbox id that already has a container;
// the caller destroys the old one first if it wants a new one.
type ExistsError struct {
	SandboxID   string
	ContainerID string
}

func (e *ExistsError) Error() string {
	if e.ContainerID == "" {
		return fmt.Sprintf("sandbox %s already has a container", e.SandboxID)
	}
	return fmt.Sprintf("sandbox %s already has container %.12s", e.SandboxID, e.ContainerID)
}

// Unwrap lets callers test for placement.ErrExists.
func (e *ExistsError) Unwrap() error { return placement.ErrExists }
