package nomad

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors a caller may branch on.
var (
	// ErrLimitsFixed is returned by Update: under Nomad a sandbox's limits
	// are fixed for its life.
	ErrLimitsFixed = errors.New("limits are fixed under nomad: changing them would replace the allocation")
	// ErrPlaceTimeout means the allocation did not run within PlaceTimeout
	// (a slow or stuck scheduler, a slow image pull).
	ErrPlaceTimeout = errors.New("allocation not running within the place timeout")
)

// UnplaceableError is a job Nomad's scheduler could not place: its eval
// has FailedTGAllocs (and a blocked eval waits for capacity).
type UnplaceableError struct {
	JobID string
	// Exhausted counts the nodes that ran out of each dimension (memory, cpu, ...).
	Exhausted map[string]int
	// Filtered counts nodes removed by constraints or classes.
	Filtered int
}

func (e *UnplaceableError) Error() string {
	dims := make([]string, 0, len(e.Exhausted))
	for k, v := range e.Exhausted {
		dims = append(dims, fmt.Sprintf("%s exhausted on %d node(s)", k, v))
	}
	sort.Strings(dims)
	if e.Filtered > 0 {
		dims = append(dims, fmt.Sprintf("%d node(s) filtered", e.Filtered))
	}
	if len(dims) == 0 {
		dims = append(dims, "no eligible node")
	}
	return fmt.Sprintf("job %s unplaceable: %s", e.JobID, strings.Join(dims, ", "))
}

// AllocFailedError is an allocation that ended before its sandbox was ready.
type AllocFailedError struct {
	AllocID string
	// Status is the client status: failed, lost or complete.
	Status string
	// Reason is the task's last event message, for logs and FailReason.
	Reason string
}

func (e *AllocFailedError) Error() string {
	return fmt.Sprintf("allocation %s %s: %s", e.AllocID, e.Status, e.Reason)
}
