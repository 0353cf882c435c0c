// Package placement turns the desired state in the FSM into running sandboxes.
// The Driver interface is defined here, where the reconciler consumes it; the
// docker (development) and nomad (production) packages implement it.
package placement

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Spec is what a driver needs to start one sandbox.
type Spec struct {
	ID        string
	Image     string
	Resources fsm.Resources
	// Network allows egress; false means no interface but loopback.
	Network bool
	// EgressAllow is what a Network sandbox may reach (CIDRs and host
	// names; empty: any public address). See package egress.
	EgressAllow []string
}

// Instance is a sandbox as the driver sees it: a container or allocation
// labelled with this cluster's name.
type Instance struct {
	SandboxID string
	Placement fsm.Placement
	// Running is false once the sandbox's process has exited or died.
	Running bool
	// Paused is true while the sandbox is frozen.
	Paused bool
	// Status is the driver's own word for the state, for logs.
	Status string
}

// Driver places sandboxes. Every method is idempotent where it can be:
// destroying a sandbox that is gone succeeds, pausing a paused one succeeds.
type Driver interface {
	// Name is "docker" or "nomad".
	Name() string
	// Capabilities says what the driver can do to a running sandbox.
	Capabilities() Capabilities
	// Create starts a sandbox and returns once its agent answers health checks.
	Create(ctx context.Context, spec Spec) (fsm.Placement, error)
	// Destroy stops and removes a sandbox and everything the driver made for
	// it. With p.ContainerID set it acts on that container (allocation) only:
	// when the sandbox's name now belongs to another, newer one, that one is
	// left alone and Destroy succeeds, so a late call never removes what a
	// later create made. A zero p.ContainerID removes whatever runs under the
	// sandbox's name; the reconciler passes it only for what no state records
	// (orphans, leftovers of an unfinished create).
	Destroy(ctx context.Context, sandboxID string, p fsm.Placement) error
	// Pause freezes a sandbox's processes, keeping memory.
	Pause(ctx context.Context, sandboxID string) error
	// Resume brings a paused sandbox back and returns where it now runs.
	// moved is false when it is where it was (Docker unpauses in place; the
	// placement may then be zero). moved is true when the placement may differ
	// from the one recorded before the pause (Nomad places a new allocation,
	// possibly on another node, with a new endpoint): the caller must record
	// the returned placement, or nobody can reach the sandbox's agent.
	// Resuming a running sandbox succeeds.
	Resume(ctx context.Context, sandboxID string) (p fsm.Placement, moved bool, err error)
	// Update changes a running sandbox's limits.
	Update(ctx context.Context, sandboxID string, res fsm.Resources) error
	// List returns every sandbox this cluster owns, running or not.
	List(ctx context.Context) ([]Instance, error)
}

// Capabilities say what a driver can do to a running sandbox. The
// reconciler and the API adapt to them instead of trying what cannot work.
type Capabilities struct {
	// LiveUpdate: a running sandbox's limits can change in place (Docker).
	// Without it the reconciler never tries, and the pool hands an idle
	// sandbox only to a request for exactly its limits; anything else is
	// created to measure.
	LiveUpdate bool
	// FreezeInPlace: a pause freezes the sandbox's processes and memory
	// where they are, and a resume thaws them (Docker). Without it a pause
	// saves the workspace and ends every process (Nomad).
	FreezeInPlace bool
	// MovesOnResume: a resume may place the sandbox anew, possibly on
	// another node, with a new placement to record (Nomad).
	MovesOnResume bool
}

// Errors a driver returns where a caller must branch.
var (
	// ErrNotFound means the driver has no sandbox with that id.
	ErrNotFound = errors.New("sandbox not found in driver")
	// ErrExists means Create found a sandbox of that id already there: left
	// by a create an earlier leader did not finish. The caller destroys it
	// and creates again.
	ErrExists = errors.New("sandbox already exists in driver")
	// ErrPauseRefused means Pause failed for a reason no retry can fix
	// (Nomad: the workspace archive would exceed the sandbox's disk
	// limit); the sandbox still runs. The reconciler resumes its session.
	ErrPauseRefused = errors.New("sandbox cannot be paused")
	// ErrNodeNotFound means a driver that can drain hosts (Nomad) knows no
	// host by the name it was given.
	ErrNodeNotFound = errors.New("node not found in driver")
)

// ErrNoNetwork means the sandbox asked for a network (egress) that the
// driver's runtime cannot give it.
var ErrNoNetwork = errors.New("runtime gives sandboxes no network")

// NoNetworkError refuses a sandbox with a network under a runtime that has
// none: gVisor as deploy/gvisor/setup.sh registers it (--network=none).
// Nothing was created; asking again cannot succeed on this cluster.
type NoNetworkError struct {
	Runtime string
}

func (e *NoNetworkError) Error() string {
	return fmt.Sprintf("sandboxes with network (egress) cannot run under runtime %q: it gives them no network (gVisor with --network=none); ask without network, or use a runc cluster", e.Runtime)
}

func (e *NoNetworkError) Unwrap() error { return ErrNoNetwork }

// ImageNotFoundError reports an image that is neither present nor pullable.
type ImageNotFoundError struct {
	Image string
	Err   error
}

func (e *ImageNotFoundError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("image %q not found: %v", e.Image, e.Err)
	}
	return fmt.Sprintf("image %q not found", e.Image)
}

func (e *ImageNotFoundError) Unwrap() error { return e.Err }
