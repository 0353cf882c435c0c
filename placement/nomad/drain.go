package nomad

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// SetNodeEligible marks the Nomad client node (its id, an id prefix of at
// least 8 characters, or its name) eligible or not for new sandboxes, and
// returns its full id. Ineligible, Nomad places no new job there, and the
// driver stops counting its room for the pool (clients.go), so the warmer
// replaces recycled sandboxes on the other clients and a paused sandbox
// resumes elsewhere. Allocations running there keep running: a drain does
// not kill a user's sandbox.
func (d *Driver) SetNodeEligible(ctx context.Context, node string, eligible bool) (string, error) {
	stubs, _, err := d.api.Nodes().List(d.queryOpts(ctx, 0, 0))
	if err != nil {
		return "", fmt.Errorf("list nomad clients: %w", err)
	}
	var matches []string
	for _, n := range stubs {
		if n.ID == node || n.Name == node || (len(node) >= 8 && strings.HasPrefix(n.ID, node)) {
			matches = append(matches, n.ID)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("nomad client %q: %w", node, placement.ErrNodeNotFound)
	case 1:
	default:
		return "", fmt.Errorf("nomad client %q names %d clients (%s): give the full id", node, len(matches), strings.Join(matches, ", "))
	}
	if _, err := d.api.Nodes().ToggleEligibility(matches[0], eligible, d.writeOpts(ctx)); err != nil {
		return "", fmt.Errorf("set nomad client %s eligible=%v: %w", matches[0], eligible, err)
	}
	d.forgetClients()
	d.log.Info("nomad client eligibility set", "nomad.node", matches[0], "eligible", eligible)
	return matches[0], nil
}
