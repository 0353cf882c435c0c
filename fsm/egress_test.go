package fsm

import (
	"fmt"
	"slices"
	"testing"
)

func grant(subject string, allow ...string) *EgressGrantSet {
	return &EgressGrantSet{Grant: EgressGrant{Subject: subject, Allow: allow, By: "root"}}
}

func TestEgressGrantSet(t *testing.T) {
	many := make([]string, MaxEgressAllow+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	runCases(t, []applyCase{
		{name: "user grant is stored", cmd: grant("user:alice", "203.0.113.0/24", "pypi.org"),
			check: func(t *testing.T, h *harness, _ *Response) {
				g := h.f.EgressGrantFor("alice", "")
				if g == nil || !slices.Equal(g.Allow, []string{"203.0.113.0/24", "pypi.org"}) || g.By != "root" || !g.At.Equal(h.now) {
					t.Errorf("grant = %+v", g)
				}
			}},
		{name: "setting again replaces", setup: cmds(grant("user:alice", "203.0.113.0/24")), cmd: grant("user:alice"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if g := h.f.EgressGrantFor("alice", ""); g == nil || len(g.Allow) != 0 {
					t.Errorf("grant = %+v, want open egress", g)
				}
			}},
		{name: "role grant applies to its users", cmd: grant("role:user", "198.51.100.7"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if g := h.f.EgressGrantFor("bob", "user"); g == nil || g.Subject != "role:user" {
					t.Errorf("grant = %+v", g)
				}
				if g := h.f.EgressGrantFor("bob", "admin"); g != nil {
					t.Errorf("another role got %+v", g)
				}
			}},
		{name: "user grant wins over role grant", setup: cmds(grant("role:user")), cmd: grant("user:bob", "198.51.100.7"),
			check: func(t *testing.T, h *harness, _ *Response) {
				if g := h.f.EgressGrantFor("bob", "user"); g == nil || g.Subject != "user:bob" {
					t.Errorf("grant = %+v", g)
				}
			}},
		{name: "delete removes", setup: cmds(grant("user:alice")),
			cmd: &EgressGrantSet{Grant: EgressGrant{Subject: "user:alice"}, Delete: true},
			check: func(t *testing.T, h *harness, _ *Response) {
				if g := h.f.EgressGrantFor("alice", ""); g != nil || len(h.f.EgressGrants()) != 0 {
					t.Errorf("grant left: %+v", g)
				}
			}},
		{name: "delete of a missing grant", cmd: &EgressGrantSet{Grant: EgressGrant{Subject: "user:alice"}, Delete: true}, wantErr: CodeNotFound},
		{name: "subject without kind", cmd: grant("alice"), wantErr: CodeInvalid},
		{name: "subject of unknown kind", cmd: grant("group:x"), wantErr: CodeInvalid},
		{name: "subject without name", cmd: grant("user:"), wantErr: CodeInvalid},
		{name: "too many destinations", cmd: grant("user:alice", many...), wantErr: CodeInvalid},
	})
}

func TestEgressAdmission(t *testing.T) {
	netAcquire := &SandboxAcquire{Owner: "alice", NewID: "net", Network: true, Role: "user"}
	netSession := &SessionCreate{ID: "s1", Owner: "alice", Image: "python", Network: true, Role: "user", SandboxID: "sb1"}
	wantAllow := func(id string, allow ...string) func(*testing.T, *harness, *Response) {
		return func(t *testing.T, h *harness, _ *Response) {
			s := h.sandbox(id)
			if s == nil || !s.Network || !slices.Equal(s.EgressAllow, allow) {
				t.Errorf("sandbox %s = %+v, want network with allow-list %v", id, s, allow)
			}
		}
	}
	runCases(t, []applyCase{
		{name: "acquire with network and no grant", setup: idle(5), cmd: netAcquire, wantErr: CodeForbidden},
		{name: "session with network and no grant", setup: idle(5), cmd: netSession, wantErr: CodeForbidden},
		{name: "another user's grant does not count", setup: join(idle(5), cmds(grant("user:bob"))), cmd: netAcquire, wantErr: CodeForbidden},
		{name: "another role's grant does not count", setup: join(idle(5), cmds(grant("role:admin"))), cmd: netSession, wantErr: CodeForbidden},
		{name: "acquire copies the role's allow-list", setup: join(idle(5), cmds(grant("role:user", "203.0.113.0/24"))),
			cmd: netAcquire, check: wantAllow("net", "203.0.113.0/24")},
		{name: "session copies the user's allow-list", setup: join(idle(5), cmds(grant("role:user", "203.0.113.0/24"), grant("user:alice", "pypi.org"))),
			cmd: netSession, check: wantAllow("sb1", "pypi.org")},
		{name: "open grant leaves the allow-list empty", setup: join(idle(5), cmds(grant("user:alice"))),
			cmd: netAcquire, check: wantAllow("net")},
		{name: "without network no grant is needed", setup: idle(5, "a"), cmd: &SandboxAcquire{Owner: "alice", Role: "user"},
			check: func(t *testing.T, h *harness, r *Response) {
				if r.Sandbox.ID != "a" || r.Sandbox.Network {
					t.Errorf("handed out %+v, want idle a", r.Sandbox)
				}
			}},
	})
}

// A grant removed later does not reach into sandboxes that exist: their
// allow-list was fixed when they were created, as their firewall was.
func TestEgressGrantRemovalKeepsCreatedSandboxes(t *testing.T) {
	h := newHarness(t)
	h.mustApply(setPool(0, 5), grant("user:alice", "203.0.113.9"),
		&SandboxAcquire{Owner: "alice", NewID: "net", Network: true},
		&EgressGrantSet{Grant: EgressGrant{Subject: "user:alice"}, Delete: true})
	if s := h.sandbox("net"); !slices.Equal(s.EgressAllow, []string{"203.0.113.9"}) {
		t.Errorf("sandbox = %+v", s)
	}
	if r := h.apply(&SandboxAcquire{Owner: "alice", NewID: "net2", Network: true}); r.Err == nil || r.Err.Code != CodeForbidden {
		t.Errorf("acquire after revoke = %+v, want forbidden", r)
	}
}
