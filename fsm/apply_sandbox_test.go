package fsm

import (
	"testing"
	"time"
)

func TestSetPool(t *testing.T) {
	valid := PoolConfig{MinSize: 2, MaxSize: 5, Image: "python", Resources: testResources}
	runCases(t, []applyCase{
		{name: "valid", cmd: &SetPool{Pool: valid}, check: func(t *testing.T, h *harness, _ *Response) {
			if got := h.f.Pool(); got != valid {
				t.Errorf("Pool() = %+v, want %+v", got, valid)
			}
			if st := h.f.PoolStats(); st.MinSize != 2 || st.MaxSize != 5 {
				t.Errorf("PoolStats min/max = %d/%d, want 2/5", st.MinSize, st.MaxSize)
			}
		}},
		{name: "min zero", cmd: &SetPool{Pool: PoolConfig{MaxSize: 1, Image: "python"}}},
		{name: "min above max", setup: cmds(setPool(0, 3)), cmd: &SetPool{Pool: PoolConfig{MinSize: 4, MaxSize: 3, Image: "python"}}, wantErr: CodeInvalid},
		{name: "max zero", cmd: &SetPool{Pool: PoolConfig{Image: "python"}}, wantErr: CodeInvalid},
		{name: "negative min", cmd: &SetPool{Pool: PoolConfig{MinSize: -1, MaxSize: 3, Image: "python"}}, wantErr: CodeInvalid},
		{name: "no image", cmd: &SetPool{Pool: PoolConfig{MaxSize: 3}}, wantErr: CodeInvalid},
	})
}

func TestSandboxCreate(t *testing.T) {
	runCases(t, []applyCase{
		{name: "pending pool sandbox with pool defaults", setup: cmds(setPool(0, 3)), cmd: create("a"),
			check: func(t *testing.T, h *harness, r *Response) {
				s := wantState(t, h, "a", StatePending)
				if !s.Pool || s.Owner != "" || s.Image != "python" || s.Resources != testResources {
					t.Errorf("sandbox = %+v, want unowned pool sandbox of python with pool resources", s)
				}
				if s.CreateIndex != h.index || s.ModifyIndex != h.index || !s.CreatedAt.Equal(h.now) {
					t.Errorf("indexes %d/%d created %v, want %d/%d %v", s.CreateIndex, s.ModifyIndex, s.CreatedAt, h.index, h.index, h.now)
				}
				if r.Sandbox == nil || r.Sandbox.ID != "a" {
					t.Errorf("response sandbox = %+v", r.Sandbox)
				}
			}},
		{name: "explicit image without pool config", cmd: createImage("a", "node", true),
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); s.Image != "node" || !s.Network {
					t.Errorf("sandbox = %+v, want node with network", s)
				}
			}},
		{name: "no image anywhere", cmd: create("a"), wantErr: CodeInvalid},
		{name: "empty id", setup: cmds(setPool(0, 3)), cmd: create(""), wantErr: CodeInvalid},
		{name: "id taken", setup: cmds(setPool(0, 3), create("a")), cmd: create("a"), wantErr: CodeExists},
		{name: "pool at max", setup: cmds(setPool(0, 2), create("a"), create("b")), cmd: create("c"), wantErr: CodePoolExhausted},
		{name: "terminating does not count toward max",
			setup: join(idle(2, "a", "b"), cmds(&SandboxRelease{ID: "a", Admin: true})), cmd: create("c"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "c", StatePending) }},
		{name: "failed does not count toward max",
			setup: cmds(setPool(0, 1), create("a"), &SandboxFailed{ID: "a", Reason: "boom"}), cmd: create("b")},
	})
}

func TestSandboxPlaced(t *testing.T) {
	runCases(t, []applyCase{
		{name: "pool sandbox becomes idle", setup: cmds(setPool(0, 3), create("a")), cmd: placed("a"),
			check: func(t *testing.T, h *harness, _ *Response) {
				s := wantState(t, h, "a", StateIdle)
				if s.Placement != placed("a").Placement {
					t.Errorf("placement = %+v", s.Placement)
				}
				if !s.AcquiredAt.IsZero() {
					t.Errorf("idle sandbox has AcquiredAt %v", s.AcquiredAt)
				}
			}},
		{name: "owned sandbox becomes active", setup: cmds(setPool(0, 3), acquire("alice", "a")), cmd: placed("a"),
			check: func(t *testing.T, h *harness, _ *Response) {
				s := wantState(t, h, "a", StateActive)
				if !s.AcquiredAt.Equal(h.now) || !s.LastActiveAt.Equal(h.now) {
					t.Errorf("acquired %v last active %v, want %v", s.AcquiredAt, s.LastActiveAt, h.now)
				}
			}},
		{name: "released while pending stays terminating with placement",
			setup: cmds(setPool(0, 3), acquire("alice", "a"), release("a", "alice")), cmd: placed("a"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := wantState(t, h, "a", StateTerminating); s.Placement.ContainerID != "c-a" {
					t.Errorf("placement not recorded: %+v", s.Placement)
				}
			}},
		{name: "idle is a conflict", setup: idle(3, "a"), cmd: placed("a"), wantErr: CodeConflict},
		{name: "failed is a conflict", setup: cmds(setPool(0, 3), create("a"), &SandboxFailed{ID: "a"}), cmd: placed("a"), wantErr: CodeConflict},
		{name: "unknown", cmd: placed("nope"), wantErr: CodeNotFound},
	})
}

// moved is a new placement on another node, as a Nomad resume reports it.
func moved(id string) *SandboxMoved {
	return &SandboxMoved{ID: id, Placement: Placement{Driver: "nomad", Node: "n2", ContainerID: "alloc-2-" + id, AgentEndpoint: "http://10.0.0.2:24001", AgentSecret: "s2"}}
}

func TestSandboxMoved(t *testing.T) {
	owned := join(idle(3, "a"), cmds(acquire("alice", "x")))
	session := join(idle(3, "a"), cmds(sessionCreate("s1", "alice", "sb1")))
	wantMoved := func(st SandboxState) func(*testing.T, *harness, *Response) {
		return func(t *testing.T, h *harness, r *Response) {
			s := wantState(t, h, "a", st)
			if s.Placement != moved("a").Placement {
				t.Errorf("placement = %+v, want the new one %+v", s.Placement, moved("a").Placement)
			}
			if s.ModifyIndex != h.index {
				t.Errorf("modify index %d, want %d", s.ModifyIndex, h.index)
			}
			if r.Sandbox == nil || r.Sandbox.Placement.AgentEndpoint != moved("a").Placement.AgentEndpoint {
				t.Errorf("response sandbox = %+v", r.Sandbox)
			}
		}
	}
	runCases(t, []applyCase{
		{name: "idle", setup: idle(3, "a"), cmd: moved("a"), check: wantMoved(StateIdle)},
		{name: "active keeps owner and activity", setup: owned, cmd: moved("a"),
			check: func(t *testing.T, h *harness, r *Response) {
				wantMoved(StateActive)(t, h, r)
				if s := h.sandbox("a"); s.Owner != "alice" || !s.LastActiveAt.Equal(t0) {
					t.Errorf("sandbox = %+v, want alice's with last activity %v kept", s, t0)
				}
			}},
		{name: "paused session sandbox", setup: join(session, cmds(&SessionPause{ID: "s1", Owner: "alice"})), cmd: moved("a"),
			check: func(t *testing.T, h *harness, r *Response) {
				wantMoved(StatePaused)(t, h, r)
				if s := h.session("s1"); s.State != SessionPaused {
					t.Errorf("session state %s, want paused", s.State)
				}
			}},
		{name: "terminating records the placement to destroy",
			setup: join(owned, cmds(release("a", "alice"))), cmd: moved("a"), check: wantMoved(StateTerminating)},
		{name: "pending is a conflict", setup: cmds(setPool(0, 3), create("a")), cmd: moved("a"), wantErr: CodeConflict},
		{name: "failed is a conflict", setup: join(owned, cmds(&SandboxFailed{ID: "a"})), cmd: moved("a"), wantErr: CodeConflict},
		{name: "no endpoint", setup: owned, cmd: &SandboxMoved{ID: "a", Placement: Placement{Driver: "nomad"}}, wantErr: CodeInvalid},
		{name: "unknown", cmd: moved("nope"), wantErr: CodeNotFound},
	})
}

func TestSandboxFailed(t *testing.T) {
	runCases(t, []applyCase{
		{name: "pending fails", setup: cmds(setPool(0, 3), create("a")), cmd: &SandboxFailed{ID: "a", Reason: "no such image"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := wantState(t, h, "a", StateFailed); s.FailReason != "no such image" {
					t.Errorf("reason = %q", s.FailReason)
				}
				if st := h.f.PoolStats(); st.Failed != 1 || st.Pending != 0 {
					t.Errorf("stats = %+v, want 1 failed 0 pending", st)
				}
			}},
		{name: "active fails", setup: join(idle(3, "a"), cmds(acquire("alice", "x"))), cmd: &SandboxFailed{ID: "a", Reason: "oom"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateFailed) }},
		{name: "terminating stays terminating", setup: join(idle(3, "a"), cmds(&SandboxRelease{ID: "a", Admin: true})),
			cmd:   &SandboxFailed{ID: "a", Reason: "died"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateTerminating) }},
		{name: "failed again is a no-op", setup: cmds(setPool(0, 3), create("a"), &SandboxFailed{ID: "a", Reason: "first"}),
			cmd: &SandboxFailed{ID: "a", Reason: "second"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); s.FailReason != "first" {
					t.Errorf("reason = %q, want the first one kept", s.FailReason)
				}
			}},
		{name: "unknown", cmd: &SandboxFailed{ID: "nope"}, wantErr: CodeNotFound},
	})
}

func TestSandboxAcquire(t *testing.T) {
	big := &Resources{CPUCount: 4, MemoryMB: 4096, DiskMB: 2048}
	resized := &Resources{CPUCount: 4, MemoryMB: 4096, DiskMB: testResources.DiskMB}
	runCases(t, []applyCase{
		{name: "oldest idle sandbox is handed out",
			setup: idle(5, "c", "a", "b"), // created in order c, a, b
			cmd:   &SandboxAcquire{Owner: "alice", NewID: "new", IdleTimeout: time.Minute, Lifetime: time.Hour},
			check: func(t *testing.T, h *harness, r *Response) {
				if r.Sandbox == nil || r.Sandbox.ID != "c" {
					t.Fatalf("handed out %+v, want the oldest idle sandbox c", r.Sandbox)
				}
				s := wantState(t, h, "c", StateActive)
				if s.Owner != "alice" || s.IdleTimeout != time.Minute || !s.ExpiresAt.Equal(h.now.Add(time.Hour)) ||
					!s.AcquiredAt.Equal(h.now) || !s.LastActiveAt.Equal(h.now) || s.ModifyIndex != h.index {
					t.Errorf("sandbox = %+v", s)
				}
				if !h.gone("new") {
					t.Error("a new sandbox was created although one was idle")
				}
				if st := h.f.PoolStats(); st.Idle != 2 || st.Active != 1 {
					t.Errorf("stats = %+v, want 2 idle 1 active", st)
				}
			}},
		{name: "cpu and memory given resize an idle sandbox", setup: idle(5, "a"),
			cmd: &SandboxAcquire{Owner: "alice", Resources: resized},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); s.Resources != *resized || !s.ExpiresAt.IsZero() {
					t.Errorf("sandbox = %+v, want resources %+v and no expiry", s, *resized)
				}
			}},
		{name: "another disk size is made to measure: a tmpfs is never resized", setup: idle(5, "a"),
			cmd: &SandboxAcquire{Owner: "alice", NewID: "n1", Resources: big},
			check: func(t *testing.T, h *harness, _ *Response) {
				wantState(t, h, "a", StateIdle)
				if s := wantState(t, h, "n1", StatePending); s.Resources != *big {
					t.Errorf("sandbox = %+v, want resources %+v", s, *big)
				}
			}},
		{name: "other image is not handed out",
			setup: join(idle(5), cmds(createImage("node1", "node", false), placed("node1"))),
			cmd:   acquire("alice", "new"),
			check: func(t *testing.T, h *harness, r *Response) {
				wantState(t, h, "node1", StateIdle)
				if r.Sandbox.ID != "new" {
					t.Errorf("handed out %s, want new", r.Sandbox.ID)
				}
			}},
		{name: "explicit image matches",
			setup: join(idle(5, "a"), cmds(createImage("node1", "node", false), placed("node1"))),
			cmd:   &SandboxAcquire{Owner: "alice", Image: "node"},
			check: func(t *testing.T, h *harness, r *Response) {
				if r.Sandbox.ID != "node1" {
					t.Errorf("handed out %s, want node1", r.Sandbox.ID)
				}
			}},
		{name: "network setting must match", setup: join(idle(5, "a"), cmds(grant("user:alice"))),
			cmd: &SandboxAcquire{Owner: "alice", NewID: "net", Network: true},
			check: func(t *testing.T, h *harness, r *Response) {
				wantState(t, h, "a", StateIdle)
				if s := wantState(t, h, "net", StatePending); !s.Network {
					t.Errorf("sandbox = %+v, want network", s)
				}
			}},
		{name: "none idle creates pending owned sandbox", setup: cmds(setPool(0, 2)),
			cmd: &SandboxAcquire{Owner: "alice", NewID: "n1", Lifetime: time.Hour},
			check: func(t *testing.T, h *harness, r *Response) {
				s := wantState(t, h, "n1", StatePending)
				if s.Owner != "alice" || s.Pool || s.Resources != testResources || s.Image != "python" ||
					!s.ExpiresAt.Equal(h.now.Add(time.Hour)) || s.CreateIndex != h.index {
					t.Errorf("sandbox = %+v", s)
				}
				if r.Sandbox.State != StatePending {
					t.Errorf("response state %s, want pending", r.Sandbox.State)
				}
			}},
		{name: "none idle with given resources", setup: cmds(setPool(0, 2)),
			cmd: &SandboxAcquire{Owner: "alice", NewID: "n1", Resources: big},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("n1"); s.Resources != *big {
					t.Errorf("resources = %+v, want %+v", s.Resources, *big)
				}
			}},
		{name: "empty pool at max", setup: join(idle(2, "a", "b"), cmds(acquire("bob", "x"), acquire("bob", "y"))),
			cmd: acquire("alice", "n1"), wantErr: CodePoolExhausted},
		{name: "pending sandboxes count toward max", setup: cmds(setPool(0, 1), create("a")),
			cmd: acquire("alice", "n1"), wantErr: CodePoolExhausted},
		{name: "owner required", setup: idle(3, "a"), cmd: acquire("", "n1"), wantErr: CodeInvalid},
		{name: "no image anywhere", cmd: acquire("alice", "n1"), wantErr: CodeInvalid},
		{name: "new id required", setup: cmds(setPool(0, 3)), cmd: acquire("alice", ""), wantErr: CodeInvalid},
		{name: "new id taken", setup: join(idle(3), cmds(createImage("n1", "node", false))), cmd: acquire("alice", "n1"), wantErr: CodeExists},
	})
}

func TestSandboxRelease(t *testing.T) {
	owned := join(idle(5, "a"), cmds(acquire("alice", "x")))
	runCases(t, []applyCase{
		{name: "owner releases active", setup: owned, cmd: release("a", "alice"),
			check: func(t *testing.T, h *harness, r *Response) {
				if s := wantState(t, h, "a", StateTerminating); s.ModifyIndex != h.index {
					t.Errorf("modify index %d, want %d", s.ModifyIndex, h.index)
				}
				if r.Sandbox.State != StateTerminating {
					t.Errorf("response = %+v", r.Sandbox)
				}
			}},
		{name: "another owner gets not found", setup: owned, cmd: release("a", "mallory"), wantErr: CodeNotFound},
		{name: "empty owner gets not found", setup: owned, cmd: release("a", ""), wantErr: CodeNotFound},
		{name: "admin releases anyone's", setup: owned, cmd: &SandboxRelease{ID: "a", Admin: true},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateTerminating) }},
		{name: "pool sandbox needs admin", setup: idle(5, "a"), cmd: release("a", "alice"), wantErr: CodeNotFound},
		{name: "admin releases pool sandbox", setup: idle(5, "a"), cmd: &SandboxRelease{ID: "a", Admin: true},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateTerminating) }},
		{name: "pending owned sandbox", setup: cmds(setPool(0, 3), acquire("alice", "n1")), cmd: release("n1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "n1", StateTerminating) }},
		{name: "failed sandbox", setup: join(owned, cmds(&SandboxFailed{ID: "a"})), cmd: release("a", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateTerminating) }},
		{name: "terminating is a no-op", setup: join(owned, cmds(release("a", "alice"))), cmd: release("a", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); s.ModifyIndex == h.index {
					t.Error("no-op release changed the sandbox")
				}
			}},
		{name: "session sandbox deletes the session",
			setup: join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "sb1"))), cmd: release("a", "alice"),
			check: func(t *testing.T, h *harness, r *Response) {
				if s := h.session("s1"); s.State != SessionDeleted || !s.UpdatedAt.Equal(h.now) {
					t.Errorf("session = %+v, want deleted at %v", s, h.now)
				}
				if r.Session == nil || r.Session.State != SessionDeleted {
					t.Errorf("response session = %+v", r.Session)
				}
			}},
		{name: "unknown", cmd: release("nope", "alice"), wantErr: CodeNotFound},
		{name: "idle only releases an idle one", setup: idle(5, "a"), cmd: &SandboxRelease{ID: "a", Admin: true, IdleOnly: true, Reason: "drained"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := wantState(t, h, "a", StateTerminating); s.EndReason != "drained" {
					t.Errorf("end reason %q, want drained", s.EndReason)
				}
			}},
		{name: "idle only leaves an acquired one alone", setup: owned, cmd: &SandboxRelease{ID: "a", Admin: true, IdleOnly: true},
			wantErr: CodeConflict},
	})
}

func TestSandboxRemoved(t *testing.T) {
	runCases(t, []applyCase{
		{name: "terminating is deleted", setup: join(idle(3, "a"), cmds(&SandboxRelease{ID: "a", Admin: true})), cmd: &SandboxRemoved{ID: "a"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if !h.gone("a") {
					t.Error("sandbox still readable")
				}
				if st := h.f.PoolStats(); st.Total != 0 || st.Terminating != 0 {
					t.Errorf("stats = %+v, want empty", st)
				}
			}},
		{name: "failed is deleted", setup: cmds(setPool(0, 3), create("a"), &SandboxFailed{ID: "a"}), cmd: &SandboxRemoved{ID: "a"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if !h.gone("a") {
					t.Error("sandbox still readable")
				}
			}},
		{name: "idle is a conflict", setup: idle(3, "a"), cmd: &SandboxRemoved{ID: "a"}, wantErr: CodeConflict},
		{name: "active is a conflict", setup: join(idle(3, "a"), cmds(acquire("alice", "x"))), cmd: &SandboxRemoved{ID: "a"}, wantErr: CodeConflict},
		{name: "unknown is idempotent", cmd: &SandboxRemoved{ID: "nope"}},
	})
}

func TestSandboxTouch(t *testing.T) {
	runCases(t, []applyCase{
		{name: "active sandboxes and their sessions",
			setup: join(idle(5, "a", "b", "c"), cmds(acquire("alice", "x"), sessionCreate("s1", "bob", "y"))),
			cmd:   &SandboxTouch{IDs: []string{"a", "b", "c", "nope"}},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); !s.LastActiveAt.Equal(h.now) {
					t.Errorf("active sandbox a last active %v, want %v", s.LastActiveAt, h.now)
				}
				if s := h.sandbox("b"); !s.LastActiveAt.Equal(h.now) {
					t.Errorf("session sandbox b last active %v, want %v", s.LastActiveAt, h.now)
				}
				if s := h.session("s1"); !s.LastActiveAt.Equal(h.now) {
					t.Errorf("session last active %v, want %v", s.LastActiveAt, h.now)
				}
				if s := h.sandbox("c"); !s.LastActiveAt.IsZero() {
					t.Errorf("idle sandbox c touched: %v", s.LastActiveAt)
				}
			}},
	})
}
