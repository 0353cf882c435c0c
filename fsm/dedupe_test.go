package fsm

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func withRequest[C Command](id string, c C) C {
	Hdr(c).RequestID = id
	return c
}

func TestDedupeAppliesOnce(t *testing.T) {
	tests := []struct {
		name  string
		setup []Command
		cmd   func() Command
	}{
		{"acquire hands out one sandbox", idle(5, "a", "b"), func() Command { return withRequest("r1", acquire("alice", "n1")) }},
		{"acquire creating on demand", cmds(setPool(0, 5)), func() Command { return withRequest("r1", acquire("alice", "n1")) }},
		{"session create", idle(5, "a", "b"), func() Command { return withRequest("r1", sessionCreate("s1", "alice", "x")) }},
		{"failed command keeps its error", idle(1, "a"), func() Command { return withRequest("r1", release("a", "mallory")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustApply(tc.setup...)
			first := h.apply(tc.cmd())
			firstIndex := h.index
			after := h.state()

			h.now = t0.Add(time.Minute)
			second := h.apply(tc.cmd())
			if !reflect.DeepEqual(first, second) {
				t.Errorf("retry response differs:\nfirst  %+v\nsecond %+v", first, second)
			}
			if second.Index != firstIndex {
				t.Errorf("retry index = %d, want the original %d", second.Index, firstIndex)
			}
			if got := h.state(); got != after {
				t.Errorf("retry changed state:\nbefore %s\nafter  %s", after, got)
			}
			if h.f.AppliedIndex() != h.index {
				t.Errorf("applied index %d, want %d (a retry still advances it)", h.f.AppliedIndex(), h.index)
			}
		})
	}
}

// The response handed back must not share objects with the stored one.
func TestDedupeResponseIsACopy(t *testing.T) {
	h := newHarness(t)
	h.mustApply(idle(5, "a")...)
	first := h.apply(withRequest("r1", acquire("alice", "n1")))
	first.Sandbox.Owner = "mallory"
	second := h.apply(withRequest("r1", acquire("alice", "n1")))
	if second.Sandbox.Owner != "alice" {
		t.Errorf("stored response was changed through the first: owner %q", second.Sandbox.Owner)
	}
}

func TestDedupeRetention(t *testing.T) {
	tests := []struct {
		name      string
		retryAt   time.Duration
		wantTwice bool
	}{
		{"within 15 minutes", 14 * time.Minute, false},
		{"after 15 minutes", 16 * time.Minute, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustApply(setPool(0, 10))
			h.mustApply(withRequest("r1", acquire("alice", "n1")))
			h.now = t0.Add(tc.retryAt)
			r := h.apply(withRequest("r1", acquire("alice", "n2")))
			twice := !h.gone("n2")
			if twice != tc.wantTwice {
				t.Errorf("applied twice = %v, want %v (response %+v)", twice, tc.wantTwice, r.Sandbox)
			}
		})
	}
}

func TestDedupeKeepsAtMost50000(t *testing.T) {
	h := newHarness(t)
	for i := 0; i <= maxRequestsRetained; i++ {
		h.mustApply(withRequest(fmt.Sprintf("r%d", i), &SandboxTouch{}))
	}
	h.mustApply(setPool(0, 10))
	// r0 was the oldest and is forgotten; r1 is still known.
	kept := h.apply(withRequest("r1", acquire("alice", "n1")))
	if kept.Index == h.index || !h.gone("n1") {
		t.Errorf("request id r1 was dropped early: %+v", kept)
	}
	oldest := h.apply(withRequest("r0", acquire("alice", "n0")))
	if oldest.Index != h.index || h.gone("n0") {
		t.Errorf("oldest request id still deduplicated: %+v", oldest)
	}
}

// A "not now" refusal is not remembered: the same request id is judged
// again once the reason is gone (here a full pool, then a missing grant),
// while a "no" keeps its answer (TestDedupe).
func TestDedupeForgetsRetryableRefusals(t *testing.T) {
	h := newHarness(t)
	h.mustApply(setPool(0, 1), acquire("bob", "b1"))
	if r := h.apply(withRequest("r1", acquire("alice", "n1"))); r.Err == nil || r.Err.Code != CodePoolExhausted {
		t.Fatalf("first try = %+v, want pool exhausted", r)
	}
	h.mustApply(release("b1", "bob"), &SandboxRemoved{ID: "b1"})
	if r := h.apply(withRequest("r1", acquire("alice", "n1"))); r.Err != nil || r.Sandbox == nil || r.Sandbox.ID != "n1" {
		t.Fatalf("retry after room was made = %+v, want sandbox n1", r)
	}

	h.mustApply(setPool(0, 5))
	net := &SandboxAcquire{Owner: "carol", NewID: "c1", Network: true}
	if r := h.apply(withRequest("r2", net)); r.Err == nil || r.Err.Code != CodeForbidden {
		t.Fatalf("egress without a grant = %+v, want forbidden", r)
	}
	h.mustApply(grant("user:carol"))
	if r := h.apply(withRequest("r2", net)); r.Err != nil || r.Sandbox == nil || r.Sandbox.ID != "c1" {
		t.Fatalf("retry after the grant = %+v, want sandbox c1", r)
	}
}
