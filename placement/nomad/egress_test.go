package nomad

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// An egress sandbox's job carries a prestart task that installs its
// firewall with net_admin; the sandbox task itself still drops every
// capability, and a sandbox without network gets no such task.
func TestEgressJob(t *testing.T) {
	control := netip.MustParsePrefix("198.51.100.9/32")
	d, err := New(Config{Address: "http://127.0.0.1:1", Cluster: "test", Logger: quietLogger(),
		EgressDeny: []netip.Prefix{control}, Resolver: mapResolver{"mirror.test": {netip.MustParseAddr("203.0.113.5")}}})
	if err != nil {
		t.Fatal(err)
	}
	build := func(network bool, allow ...string) *api.Job {
		spec := placement.Spec{ID: "a", Image: "img", Network: network, EgressAllow: allow, Resources: fsm.Resources{CPUCount: 1}}
		job := d.Job(spec, "sec", agent.TLSIdentity{})
		if err := d.withEgress(context.Background(), job, spec); err != nil {
			t.Fatal(err)
		}
		return job
	}

	if tasks := build(false).TaskGroups[0].Tasks; len(tasks) != 1 {
		t.Fatalf("a sandbox without network has %d tasks, want only the sandbox", len(tasks))
	}
	tasks := build(true, "203.0.113.0/24", "mirror.test").TaskGroups[0].Tasks
	if len(tasks) != 2 || tasks[1].Name != egressTaskName {
		t.Fatalf("tasks = %d, want the sandbox and the egress prestart task", len(tasks))
	}
	sb, eg := tasks[0], tasks[1]
	var rules egress.Rules
	args, _ := eg.Config["args"].([]string)
	if len(args) != 2 || args[0] != egress.HelperArg || json.Unmarshal([]byte(args[1]), &rules) != nil {
		t.Fatalf("egress task args = %q", args)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"prestart", eg.Lifecycle.Hook, "prestart"},
		{"not a sidecar", eg.Lifecycle.Sidecar, false},
		{"egress task caps", eg.Config["cap_add"], []string{"net_admin"}},
		{"egress task drops the rest", eg.Config["cap_drop"], []string{"ALL"}},
		{"egress task entrypoint is the agent", eg.Config["entrypoint"], sb.Config["entrypoint"]},
		{"egress task image", eg.Config["image"], "img"},
		{"sandbox task keeps no capability", sb.Config["cap_drop"], []string{"ALL"}},
		{"sandbox task adds none", sb.Config["cap_add"], nil},
		{"pinned host", sb.Config["extra_hosts"], []string{"mirror.test:203.0.113.5"}},
		{"allow-list", rules.Allow, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("203.0.113.5/32")}},
		{"not open", rules.Open, false},
		{"control plane denied", slices.Contains(rules.Deny, control), true},
		{"metadata denied", slices.Contains(rules.Deny, netip.MustParsePrefix("169.254.0.0/16")), true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}
