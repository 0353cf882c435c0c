package fsm

import (
	"testing"
	"time"
)

func TestSandboxLifecycleCommands(t *testing.T) {
	owned := join(idle(5, "a"), cmds(&SandboxAcquire{Owner: "alice", NewID: "n",
		Metadata: map[string]string{"team": "ml"}, Env: map[string]string{"A": "1"}, Lifetime: time.Hour}))
	inSession := join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "x")))
	runCases(t, []applyCase{
		{name: "metadata and env kept with the sandbox", setup: idle(5, "a"),
			cmd: &SandboxAcquire{Owner: "alice", NewID: "n", Metadata: map[string]string{"team": "ml"}, Env: map[string]string{"A": "1"}},
			check: func(t *testing.T, h *harness, _ *Response) {
				s := h.sandbox("a")
				if s.Metadata["team"] != "ml" || s.Env["A"] != "1" {
					t.Errorf("metadata %v env %v", s.Metadata, s.Env)
				}
			}},
		{name: "set timeout counts from now", setup: owned,
			cmd: &SandboxSetTimeout{ID: "a", Owner: "alice", Lifetime: 10 * time.Minute},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); !s.ExpiresAt.Equal(h.now.Add(10 * time.Minute)) {
					t.Errorf("expires %v, want now+10m", s.ExpiresAt)
				}
			}},
		{name: "timeout 0 removes the hard end", setup: owned,
			cmd: &SandboxSetTimeout{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) {
				if s := h.sandbox("a"); !s.ExpiresAt.IsZero() {
					t.Errorf("expires %v, want none", s.ExpiresAt)
				}
			}},
		{name: "set timeout of another's sandbox", setup: owned, cmd: &SandboxSetTimeout{ID: "a", Owner: "bob", Lifetime: time.Minute}, wantErr: CodeNotFound},
		{name: "set timeout of a pool sandbox", setup: idle(5, "a"), cmd: &SandboxSetTimeout{ID: "a", Owner: "bob", Lifetime: time.Minute}, wantErr: CodeNotFound},
		{name: "negative timeout", setup: owned, cmd: &SandboxSetTimeout{ID: "a", Owner: "alice", Lifetime: -time.Second}, wantErr: CodeInvalid},
		{name: "pause a pool-acquired sandbox", setup: owned, cmd: &SandboxPause{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StatePaused) }},
		{name: "pause twice is one pause", setup: join(owned, cmds(&SandboxPause{ID: "a", Owner: "alice"})), cmd: &SandboxPause{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StatePaused) }},
		{name: "resume", setup: join(owned, cmds(&SandboxPause{ID: "a", Owner: "alice"})), cmd: &SandboxResume{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateResuming) }},
		{name: "resume of a running sandbox is a no-op (connect)", setup: owned, cmd: &SandboxResume{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) { wantState(t, h, "a", StateActive) }},
		{name: "pause of a released sandbox", setup: join(owned, cmds(release("a", "alice"))), cmd: &SandboxPause{ID: "a", Owner: "alice"}, wantErr: CodeConflict},
		{name: "pause of another's sandbox", setup: owned, cmd: &SandboxPause{ID: "a", Owner: "bob"}, wantErr: CodeNotFound},
		{name: "pause through the sandbox moves its session", setup: inSession, cmd: &SandboxPause{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) {
				wantState(t, h, "a", StatePaused)
				if s := h.session("s1"); s.State != SessionPaused {
					t.Errorf("session %s, want paused", s.State)
				}
			}},
		{name: "resume through the sandbox moves its session", setup: join(inSession, cmds(pause("s1", "alice"))), cmd: &SandboxResume{ID: "a", Owner: "alice"},
			check: func(t *testing.T, h *harness, _ *Response) {
				wantState(t, h, "a", StateResuming)
				if s := h.session("s1"); s.State != SessionActive {
					t.Errorf("session %s, want active", s.State)
				}
			}},
	})
}
