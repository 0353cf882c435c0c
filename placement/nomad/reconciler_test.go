package nomad

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad/nomadfake"
)

// directApplier applies commands to an FSM in order, as one Raft node would.
type directApplier struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
}

func (a *directApplier) Apply(_ context.Context, c fsm.Command) (*fsm.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fsm.Hdr(c).Now.IsZero() {
		fsm.Hdr(c).Now = time.Now().UTC()
	}
	b, err := fsm.Encode(c)
	if err != nil {
		return nil, err
	}
	a.index++
	resp := a.f.Apply(&raft.Log{Index: a.index, Data: b}).(*fsm.Response)
	return resp, resp.Error()
}

func (a *directApplier) ConsistentRead(context.Context) error { return nil }

// A control node crashed after placing sandboxes its successor's state does
// not know: the real reconciler, driving the nomad driver, removes those
// orphans (and nothing of another cluster), warms the pool on Nomad, and
// replaces a sandbox whose allocation is lost.
func TestReconcilerCleansOrphansAndReplacesLostSandboxes(t *testing.T) {
	e := newEnv(t, nomadfake.Options{AutoRun: true}, nil)
	ctx := ctxT(t)
	for _, id := range []string{"orphan1", "orphan2"} {
		s := spec
		s.ID = id
		if _, err := e.d.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	other, err := New(Config{Address: e.fake.URL(), Cluster: "other", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	foreign := spec
	foreign.ID = "x"
	id, err := other.newAgentTLS(foreign.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.api.Jobs().Register(other.Job(foreign, "s", id), nil); err != nil {
		t.Fatal(err)
	}

	f := fsm.New()
	apply := &directApplier{f: f}
	pool := fsm.PoolConfig{MinSize: 2, MaxSize: 3, Image: spec.Image, Resources: spec.Resources}
	if _, err := apply.Apply(ctx, &fsm.SetPool{Pool: pool}); err != nil {
		t.Fatal(err)
	}
	rec := placement.New(placement.Config{Resync: 50 * time.Millisecond, Metrics: placement.NewMetrics(prometheus.NewRegistry()), Logger: quietLogger()}, e.d, apply, f)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	idle := func() []*fsm.Sandbox { return f.SandboxesByState(fsm.StateIdle) }
	eventually(t, "orphans purged and two idle sandboxes on nomad", func() bool {
		return e.fake.Job("cs-test-orphan1") == nil && e.fake.Job("cs-test-orphan2") == nil && len(idle()) == 2
	})
	for _, sb := range idle() {
		if sb.Placement.Driver != "nomad" || sb.Placement.AgentSecret == "" || e.fake.Job("cs-test-"+sb.ID) == nil {
			t.Errorf("idle sandbox %s placement %+v: want a nomad job with an agent secret", sb.ID, sb.Placement)
		}
	}
	if e.fake.Job("cs-other-x") == nil {
		t.Error("another cluster's job was removed")
	}

	lost := idle()[0]
	if err := e.fake.Lose(lost.Placement.ContainerID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lost sandbox replaced", func() bool {
		sb, _ := f.Sandbox(lost.ID)
		return (sb == nil || sb.State == fsm.StateFailed) && len(idle()) == 2 && e.fake.Job("cs-test-"+lost.ID) == nil
	})
}

// A session paused on a node that then goes down resumes on another node
// through the real reconciler: the FSM learns the new placement (the API
// reads it per request) and the files are there.
func TestReconcilerRecordsResumeOnAnotherNode(t *testing.T) {
	e := newEnv(t, nomadfake.Options{AutoRun: true, Nodes: 2}, nil)
	ctx := ctxT(t)
	f := fsm.New()
	apply := &directApplier{f: f}
	// No warm pool: one sandbox, so the shared stand-in workspace is its own.
	pool := fsm.PoolConfig{MinSize: 0, MaxSize: 2, Image: spec.Image, Resources: spec.Resources}
	if _, err := apply.Apply(ctx, &fsm.SetPool{Pool: pool}); err != nil {
		t.Fatal(err)
	}
	rec := placement.New(placement.Config{Resync: 50 * time.Millisecond, Metrics: placement.NewMetrics(prometheus.NewRegistry()), Logger: quietLogger()}, e.d, apply, f)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	session := &fsm.SessionCreate{ID: "s1", Owner: "dave", Image: spec.Image, CPUCount: spec.Resources.CPUCount,
		MemoryMB: spec.Resources.MemoryMB, SandboxID: "sb1"}
	if _, err := apply.Apply(ctx, session); err != nil {
		t.Fatal(err)
	}
	sandbox := func() *fsm.Sandbox { sb, _ := f.Sandbox("sb1"); return sb }
	eventually(t, "session sandbox active", func() bool { sb := sandbox(); return sb != nil && sb.State == fsm.StateActive }, func() string { return fmt.Sprintf("sandbox %+v", sandbox()) })
	before := sandbox().Placement
	c := agent.NewPinnedClient(before.AgentEndpoint, before.AgentSecret, before.AgentCertSHA256)
	defer c.Close()
	if _, err := c.WriteFile(ctx, e.ws+"/notes.txt", strings.NewReader("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, err := apply.Apply(ctx, &fsm.SessionPause{ID: "s1", Owner: "dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "workspace archived and job stopped", func() bool {
		list, err := e.d.List(ctx)
		return err == nil && len(list) == 1 && list[0].Paused
	})
	if err := e.fake.NodeDown(before.Node); err != nil {
		t.Fatal(err)
	}
	if _, err := apply.Apply(ctx, &fsm.SessionResume{ID: "s1", Owner: "dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new placement recorded", func() bool { return sandbox().Placement.Node == e.fake.NodeIDs()[1] })
	after := sandbox()
	if after.State != fsm.StateActive || after.Placement.AgentEndpoint == before.AgentEndpoint || after.Placement.ContainerID == before.ContainerID {
		t.Errorf("after resume: state %s placement %+v; want active in a new allocation at a new endpoint (was %+v)", after.State, after.Placement, before)
	}
	nc := agent.NewPinnedClient(after.Placement.AgentEndpoint, after.Placement.AgentSecret, after.Placement.AgentCertSHA256)
	defer nc.Close()
	rc, err := nc.ReadFile(ctx, e.ws+"/notes.txt")
	if err != nil {
		t.Fatalf("read at the recorded placement: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "kept\n" {
		t.Errorf("file after the move = %q, want %q", got, "kept\n")
	}
}

func eventually(t *testing.T, what string, cond func() bool, describe ...func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			var state string
			for _, d := range describe {
				state += "; " + d()
			}
			t.Fatalf("timed out waiting for %s%s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
