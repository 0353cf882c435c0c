package fsm

import (
	"testing"
	"time"
)

func sessionCreate(id, owner, sandboxID string) *SessionCreate {
	return &SessionCreate{ID: id, Owner: owner, Image: "python", CPUCount: 2, MemoryMB: 1024, SandboxID: sandboxID,
		IdleTimeout: 10 * time.Minute, MaxLifetime: time.Hour}
}

func pause(id, owner string) *SessionPause   { return &SessionPause{ID: id, Owner: owner} }
func resume(id, owner string) *SessionResume { return &SessionResume{ID: id, Owner: owner} }
func del(id, owner string) *SessionDelete    { return &SessionDelete{ID: id, Owner: owner} }

// withSession is a pool with idle sandbox "a" given to alice's session "s1".
var withSession = join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "unused")))

// fixedPool is a pool whose driver cannot resize a running sandbox (Nomad).
func fixedPool(maxSize int) *SetPool {
	p := setPool(0, maxSize)
	p.Pool.FixedLimits = true
	return p
}

func TestSessionCreate(t *testing.T) {
	fitting := &SessionCreate{ID: "s1", Owner: "alice", Image: "python", CPUCount: testResources.CPUCount,
		MemoryMB: testResources.MemoryMB, SandboxID: "sb1"}
	runCases(t, []applyCase{
		{name: "fixed limits: an idle sandbox of other limits is not taken",
			setup: []Command{fixedPool(5), create("a"), placed("a")}, cmd: sessionCreate("s1", "alice", "sb1"),
			check: func(t *testing.T, h *harness, r *Response) {
				wantState(t, h, "a", StateIdle)
				if sb := wantState(t, h, "sb1", StatePending); sb.Resources.CPUCount != 2 || sb.Resources.MemoryMB != 1024 {
					t.Errorf("created to measure? %+v", sb.Resources)
				}
			}},
		{name: "fixed limits: an idle sandbox of the same limits is taken",
			setup: []Command{fixedPool(5), create("a"), placed("a")}, cmd: fitting,
			check: func(t *testing.T, h *harness, r *Response) {
				wantState(t, h, "a", StateActive)
				if !h.gone("sb1") {
					t.Error("created a sandbox although a fitting one was idle")
				}
			}},
		{name: "idle sandbox is taken and resized", setup: idle(5, "a", "b"), cmd: sessionCreate("s1", "alice", "sb1"),
			check: func(t *testing.T, h *harness, r *Response) {
				sb := wantState(t, h, "a", StateActive)
				want := Resources{CPUCount: 2, MemoryMB: 1024, DiskMB: testResources.DiskMB}
				if sb.Owner != "alice" || sb.SessionID != "s1" || sb.Resources != want || !sb.AcquiredAt.Equal(h.now) {
					t.Errorf("sandbox = %+v", sb)
				}
				s := h.session("s1")
				if s.State != SessionActive || s.SandboxID != "a" || s.Owner != "alice" || s.Image != "python" ||
					s.IdleTimeout != 10*time.Minute || s.MaxLifetime != time.Hour || s.CreateIndex != h.index ||
					!s.CreatedAt.Equal(h.now) || !s.UpdatedAt.Equal(h.now) || !s.LastActiveAt.Equal(h.now) {
					t.Errorf("session = %+v", s)
				}
				if r.Session == nil || r.Sandbox == nil || r.Sandbox.ID != "a" || r.Session.ID != "s1" {
					t.Errorf("response = %+v", r)
				}
				if !h.gone("sb1") {
					t.Error("created a sandbox although one was idle")
				}
			}},
		{name: "no idle sandbox creates a pending one", setup: cmds(setPool(0, 5)), cmd: sessionCreate("s1", "alice", "sb1"),
			check: func(t *testing.T, h *harness, r *Response) {
				sb := wantState(t, h, "sb1", StatePending)
				if sb.Owner != "alice" || sb.SessionID != "s1" || sb.Pool || sb.Resources.CPUCount != 2 {
					t.Errorf("sandbox = %+v", sb)
				}
				if s := h.session("s1"); s.SandboxID != "sb1" || s.State != SessionActive {
					t.Errorf("session = %+v", s)
				}
			}},
		{name: "idle sandbox with network off is not used for network on",
			setup: join(idle(5, "a"), cmds(grant("user:alice"))),
			cmd:   &SessionCreate{ID: "s1", Owner: "alice", Image: "python", Network: true, SandboxID: "sb1"},
			check: func(t *testing.T, h *harness, _ *Response) {
				wantState(t, h, "a", StateIdle)
				wantState(t, h, "sb1", StatePending)
			}},
		{name: "pool at max", setup: cmds(setPool(0, 1), acquire("bob", "x")), cmd: sessionCreate("s1", "alice", "sb1"), wantErr: CodePoolExhausted},
		{name: "id taken", setup: withSession, cmd: sessionCreate("s1", "bob", "sb2"), wantErr: CodeExists},
		{name: "sandbox id taken", setup: join(idle(5), cmds(createImage("sb1", "node", false))), cmd: sessionCreate("s1", "alice", "sb1"), wantErr: CodeExists},
		{name: "owner required", setup: idle(5, "a"), cmd: sessionCreate("s1", "", "sb1"), wantErr: CodeInvalid},
		{name: "image required", setup: idle(5, "a"), cmd: &SessionCreate{ID: "s1", Owner: "alice", SandboxID: "sb1"}, wantErr: CodeInvalid},
		{name: "id required", setup: idle(5, "a"), cmd: sessionCreate("", "alice", "sb1"), wantErr: CodeInvalid},
	})
}

func TestSessionPause(t *testing.T) {
	runCases(t, []applyCase{
		{name: "active pauses with its sandbox", setup: withSession, cmd: pause("s1", "alice"),
			check: func(t *testing.T, h *harness, r *Response) {
				if s := h.session("s1"); s.State != SessionPaused || !s.UpdatedAt.Equal(h.now) {
					t.Errorf("session = %+v", s)
				}
				wantState(t, h, "a", StatePaused)
				if st := h.f.PoolStats(); st.Paused != 1 || st.Active != 0 {
					t.Errorf("stats = %+v", st)
				}
				if r.Session.State != SessionPaused || r.Sandbox.State != StatePaused {
					t.Errorf("response = %+v", r)
				}
			}},
		{name: "admin pauses another's", setup: withSession, cmd: &SessionPause{ID: "s1", Admin: true},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StatePaused) }},
		{name: "another owner gets not found", setup: withSession, cmd: pause("s1", "mallory"), wantErr: CodeNotFound},
		{name: "paused is a no-op", setup: join(withSession, cmds(pause("s1", "alice"))), cmd: pause("s1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.session("s1"); s.ModifyIndex == h.index {
					t.Error("no-op pause changed the session")
				}
			}},
		{name: "deleted is a conflict", setup: join(withSession, cmds(del("s1", "alice"))), cmd: pause("s1", "alice"), wantErr: CodeConflict},
		{name: "pending sandbox is a conflict", setup: cmds(setPool(0, 5), sessionCreate("s1", "alice", "sb1")), cmd: pause("s1", "alice"), wantErr: CodeConflict},
		{name: "failed sandbox is a conflict", setup: join(withSession, cmds(&SandboxFailed{ID: "a"})), cmd: pause("s1", "alice"), wantErr: CodeConflict},
		{name: "unknown", cmd: pause("nope", "alice"), wantErr: CodeNotFound},
	})
}

func TestSessionResume(t *testing.T) {
	paused := join(withSession, cmds(pause("s1", "alice")))
	runCases(t, []applyCase{
		{name: "paused resumes; its sandbox is resuming until recorded running", setup: paused, cmd: resume("s1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.session("s1"); s.State != SessionActive || !s.LastActiveAt.Equal(h.now) {
					t.Errorf("session = %+v", s)
				}
				if sb := wantState(t, h, "a", StateResuming); !sb.LastActiveAt.Equal(h.now) {
					t.Errorf("sandbox last active %v, want %v", sb.LastActiveAt, h.now)
				}
			}},
		{name: "resuming is a no-op", setup: join(paused, cmds(resume("s1", "alice"))), cmd: resume("s1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateResuming) }},
		{name: "resuming cannot be paused", setup: join(paused, cmds(resume("s1", "alice"))), cmd: pause("s1", "alice"), wantErr: CodeConflict},
		{name: "active is a no-op", setup: withSession, cmd: resume("s1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateActive) }},
		{name: "deleted is a conflict", setup: join(withSession, cmds(del("s1", "alice"))), cmd: resume("s1", "alice"), wantErr: CodeConflict},
		{name: "another owner gets not found", setup: paused, cmd: resume("s1", "mallory"), wantErr: CodeNotFound},
		{name: "sandbox failed while paused is a conflict", setup: join(paused, cmds(&SandboxFailed{ID: "a"})), cmd: resume("s1", "alice"), wantErr: CodeConflict},
	})
}

func TestSandboxResumed(t *testing.T) {
	resuming := join(withSession, cmds(pause("s1", "alice"), resume("s1", "alice")))
	moved := Placement{Driver: "nomad", Node: "n2", ContainerID: "alloc2", AgentEndpoint: "http://10.0.0.2:2345"}
	runCases(t, []applyCase{
		{name: "in place: active where it was", setup: resuming, cmd: &SandboxResumed{ID: "a"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if sb := wantState(t, h, "a", StateActive); sb.Placement.AgentEndpoint == "" {
					t.Errorf("placement lost: %+v", sb.Placement)
				}
			}},
		{name: "moved: active at the new placement", setup: resuming, cmd: &SandboxResumed{ID: "a", Moved: true, Placement: moved},
			check: func(t *testing.T, h *harness, _ *Response) {
				if sb := wantState(t, h, "a", StateActive); sb.Placement != moved {
					t.Errorf("placement = %+v, want %+v", sb.Placement, moved)
				}
			}},
		{name: "a retry is a no-op", setup: join(resuming, cmds(&SandboxResumed{ID: "a", Moved: true, Placement: moved})),
			cmd:   &SandboxResumed{ID: "a", Moved: true, Placement: moved},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateActive) }},
		{name: "moved without an endpoint is invalid", setup: resuming, cmd: &SandboxResumed{ID: "a", Moved: true}, wantErr: CodeInvalid},
		{name: "paused is a conflict", setup: join(withSession, cmds(pause("s1", "alice"))), cmd: &SandboxResumed{ID: "a"}, wantErr: CodeConflict},
		{name: "released while resuming is a conflict", setup: join(resuming, cmds(del("s1", "alice"))), cmd: &SandboxResumed{ID: "a"}, wantErr: CodeConflict},
		{name: "unknown", cmd: &SandboxResumed{ID: "nope"}, wantErr: CodeNotFound},
	})
}

func TestSessionDelete(t *testing.T) {
	runCases(t, []applyCase{
		{name: "active deletes and releases its sandbox", setup: withSession, cmd: del("s1", "alice"),
			check: func(t *testing.T, h *harness, r *Response) {
				if s := h.session("s1"); s.State != SessionDeleted || !s.UpdatedAt.Equal(h.now) {
					t.Errorf("session = %+v", s)
				}
				wantState(t, h, "a", StateTerminating)
				if r.Sandbox == nil || r.Sandbox.State != StateTerminating {
					t.Errorf("response sandbox = %+v", r.Sandbox)
				}
			}},
		{name: "paused deletes", setup: join(withSession, cmds(pause("s1", "alice"))), cmd: del("s1", "alice"),
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateTerminating) }},
		{name: "deleted is a no-op", setup: join(withSession, cmds(del("s1", "alice"))), cmd: del("s1", "alice")},
		{name: "sandbox already removed", setup: join(withSession, cmds(&SandboxRelease{ID: "a", Admin: true}, &SandboxRemoved{ID: "a"})),
			cmd: del("s1", "alice")},
		{name: "another owner gets not found", setup: withSession, cmd: del("s1", "mallory"), wantErr: CodeNotFound},
		{name: "unknown", cmd: del("nope", "alice"), wantErr: CodeNotFound},
	})
}

func TestSessionsPurge(t *testing.T) {
	setup := join(idle(5, "a", "b", "c"),
		cmds(sessionCreate("old", "alice", "x1"), sessionCreate("new", "alice", "x2"), sessionCreate("live", "alice", "x3"),
			&SessionDelete{Header: Header{Now: t0.Add(-time.Hour)}, ID: "old", Owner: "alice"},
			&SessionDelete{Header: Header{Now: t0.Add(time.Hour)}, ID: "new", Owner: "alice"}))
	runCases(t, []applyCase{
		{name: "only deleted sessions older than before", setup: setup, cmd: &SessionsPurge{Before: t0},
			check: func(t *testing.T, h *harness, _ *Response) {
				var ids []string
				for _, s := range h.f.Sessions() {
					ids = append(ids, s.ID)
				}
				if len(ids) != 2 || ids[0] != "live" || ids[1] != "new" {
					t.Errorf("sessions = %v, want [live new]", ids)
				}
			}},
	})
}

func TestTokenRevoke(t *testing.T) {
	runCases(t, []applyCase{
		{name: "revoked until expiry", cmd: &TokenRevoke{TokenID: "tok", ExpiresAt: t0.Add(time.Hour)},
			check: func(t *testing.T, h *harness, _ *Response) {
				if !h.f.TokenRevoked("tok") {
					t.Fatal("token not revoked")
				}
				if h.f.TokenRevoked("other") {
					t.Error("unrelated token reported revoked")
				}
				h.now = t0.Add(2 * time.Hour)
				h.mustApply(&SandboxTouch{})
				if h.f.TokenRevoked("tok") {
					t.Error("expired revocation still kept")
				}
			}},
		{name: "token id required", cmd: &TokenRevoke{ExpiresAt: t0.Add(time.Hour)}, wantErr: CodeInvalid},
		{name: "second revocation of a token fails (atomic rotation)",
			setup: []Command{&TokenRevoke{TokenID: "tok", ExpiresAt: t0.Add(time.Hour)}},
			cmd:   &TokenRevoke{TokenID: "tok", ExpiresAt: t0.Add(time.Hour)}, wantErr: CodeExists},
	})
}
