package docker

import "fmt"

// ExistsError is a Create for a sandbox id that already has a container;
// the caller destroys the old one first if it wants a new one.
type ExistsError struct {
	SandboxID   string
	ContainerID string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("sandbox %s already has container %.12s", e.SandboxID, e.ContainerID)
}
