package nomadfake

import (
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/nomad/api"
)

// With several nodes the fake schedules as Nomad does for what the driver
// sends: the first ready node the node-id constraints allow; a down node is
// no candidate and its allocations are lost; a group no ready node may run
// is an evaluation with FailedTGAllocs and no allocation.
func TestNodesScheduleAroundDownNodes(t *testing.T) {
	s := New(Options{Nodes: 2, AutoRun: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	client, err := api.NewClient(&api.Config{Address: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := s.NodeIDs()[0], s.NodeIDs()[1]
	job := func(id, pinTo string) *api.Job {
		j := api.NewBatchJob(id, id, "global", 50)
		task := api.NewTask("t", "docker")
		task.Resources = &api.Resources{MemoryMB: ptr(64), CPU: ptr(100)}
		tg := api.NewTaskGroup("g", 1).AddTask(task)
		if pinTo != "" {
			tg.Constrain(api.NewConstraint("${node.unique.id}", "=", pinTo))
		}
		return j.AddTaskGroup(tg)
	}
	register := func(j *api.Job) (*api.AllocationListStub, *api.Evaluation) {
		t.Helper()
		resp, _, err := client.Jobs().Register(j, nil)
		if err != nil {
			t.Fatalf("register %s: %v", *j.ID, err)
		}
		ev, _, err := client.Evaluations().Info(resp.EvalID, nil)
		if err != nil {
			t.Fatal(err)
		}
		allocs, _, err := client.Jobs().Allocations(*j.ID, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(allocs) == 0 {
			return nil, ev
		}
		return allocs[0], ev
	}

	first, _ := register(job("first", ""))
	if first == nil || first.NodeID != n1 {
		t.Fatalf("first job placed %+v, want on the first node %s", first, n1)
	}
	if err := s.NodeDown(n1); err != nil {
		t.Fatal(err)
	}
	node, _, err := client.Nodes().Info(n1, nil)
	if err != nil || node.Status != "down" {
		t.Fatalf("node %s = %+v, %v; want status down", n1, node, err)
	}
	allocs, _, err := client.Jobs().Allocations("first", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The client lists newest first.
	if len(allocs) != 2 || allocs[1].ID != first.ID || allocs[1].ClientStatus != "lost" ||
		allocs[0].NodeID != n2 || allocs[0].ClientStatus != "running" {
		t.Errorf("after node down: %d allocs; want %s lost and a replacement running on %s", len(allocs), first.ID, n2)
	}

	cases := []struct {
		name     string
		pinTo    string
		wantNode string // "" means unplaceable
	}{
		{"unpinned goes to a ready node", "", n2},
		{"pinned to the ready node", n2, n2},
		{"pinned to the down node is unplaceable", n1, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, ev := register(job(string(rune('a'+i))+"-job", tc.pinTo))
			if tc.wantNode != "" {
				if a == nil || a.NodeID != tc.wantNode {
					t.Errorf("placed %+v, want on %s", a, tc.wantNode)
				}
				return
			}
			if a != nil {
				t.Fatalf("placed on %s, want no allocation", a.NodeID)
			}
			m := ev.FailedTGAllocs["g"]
			if m == nil || m.NodesFiltered != 1 || len(m.ConstraintFiltered) != 1 {
				t.Errorf("eval failed allocs = %+v, want one node filtered by the node-id constraint", m)
			}
		})
	}
}
