package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/snapshot-v1.json from today's code")

// bufSink is an in-memory raft.SnapshotSink.
type bufSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { s.closed = true; return nil }

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(t *testing.T, data []byte) *FSM {
	t.Helper()
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return f
}

// fixtureHarness builds a state that fills every table: pool, sandboxes in
// every state, sessions in every state, request ids, revoked tokens and an
// egress grant (snapshot-v1.json predates grants: it was written without
// command 13, so its indices from there on are one lower).
// TestSnapshotFixtureV1 spells out what it contains.
func fixtureHarness(t *testing.T) *harness {
	h := newHarness(t)
	netSession := func(id, owner, sandboxID string) *SessionCreate {
		c := sessionCreate(id, owner, sandboxID)
		c.Network = true // never matches the idle pool, so the sandbox is sandboxID
		c.Role = "user"
		return c
	}
	h.mustApply(setPool(1, 10))                             // 1
	h.mustApply(create("active1"), placed("active1"))       // 2, 3
	h.mustApply(withRequest("req-acquire", &SandboxAcquire{ // 4
		Owner: "alice", NewID: "unused", IdleTimeout: 5 * time.Minute, Lifetime: time.Hour}))
	h.mustApply(create("idle1"), placed("idle1"))                                                                    // 5, 6
	h.mustApply(create("pending1"))                                                                                  // 7
	h.mustApply(create("failed1"), &SandboxFailed{ID: "failed1", Reason: "image missing"})                           // 8, 9
	h.mustApply(create("gone1"), placed("gone1"), &SandboxRelease{ID: "gone1", Admin: true})                         // 10-12
	h.mustApply(&EgressGrantSet{Grant: EgressGrant{Subject: "role:user", Allow: []string{"203.0.113.0/24"}}})        // 13
	h.mustApply(withRequest("req-session", netSession("sess-active", "bob", "sb-bob")), placed("sb-bob"))            // 14, 15
	h.mustApply(netSession("sess-paused", "carol", "sb-carol1"), placed("sb-carol1"), pause("sess-paused", "carol")) // 16-18
	h.mustApply(netSession("sess-deleted", "carol", "sb-carol2"), placed("sb-carol2"), del("sess-deleted", "carol")) // 19-21
	h.mustApply(&TokenRevoke{TokenID: "tok-1", ExpiresAt: t0.Add(24 * time.Hour)})                                   // 22
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := fixtureHarness(t)
	data := persist(t, h.f)
	f := restore(t, data)

	checks := []struct {
		name      string
		got, want any
	}{
		{"sandboxes", f.Sandboxes(), h.f.Sandboxes()},
		{"sessions", f.Sessions(), h.f.Sessions()},
		{"pool", f.Pool(), h.f.Pool()},
		{"stats", f.PoolStats(), h.f.PoolStats()},
		{"applied index", f.AppliedIndex(), h.f.AppliedIndex()},
		{"token revoked", f.TokenRevoked("tok-1"), true},
		{"egress grants", f.EgressGrants(), h.f.EgressGrants()},
		{"egress allow-list of a sandbox", mustSandbox(t, f, "sb-bob").EgressAllow, []string{"203.0.113.0/24"}},
		{"created counters", fmt.Sprint(f.Created()), "8 3"},
		{"owner index", f.SandboxesByOwner("carol"), h.f.SandboxesByOwner("carol")},
		{"state index", f.SandboxesByState(StateIdle), h.f.SandboxesByState(StateIdle)},
		{"persist again is identical", string(persist(t, f)), string(data)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s after restore:\n got  %+v\n want %+v", c.name, c.got, c.want)
		}
	}

	// The request table survived: a retried acquire still applies once.
	h2 := &harness{t: t, f: f, index: f.AppliedIndex(), now: t0}
	r := h2.apply(withRequest("req-acquire", &SandboxAcquire{Owner: "alice", NewID: "again"}))
	if r.Sandbox == nil || r.Sandbox.ID != "active1" || !h2.gone("again") {
		t.Errorf("retried acquire after restore = %+v, want the original active1", r.Sandbox)
	}
}

func TestRestoreReplacesState(t *testing.T) {
	empty := persist(t, New())
	h := fixtureHarness(t)
	watch := h.f.Watch()
	if err := h.f.Restore(io.NopCloser(bytes.NewReader(empty))); err != nil {
		t.Fatal(err)
	}
	if n := len(h.f.Sandboxes()) + len(h.f.Sessions()); n != 0 || h.f.TokenRevoked("tok-1") || h.f.PoolStats().Total != 0 {
		t.Errorf("state left over after restoring an empty snapshot: %d objects, stats %+v", n, h.f.PoolStats())
	}
	select {
	case <-watch:
	default:
		t.Error("Restore did not close the watch channel")
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	tests := []struct{ name, data string }{
		{"future version", `{"version":2}`},
		{"missing version", `{"pool":{}}`},
		{"not json", `garbage`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fixtureHarness(t)
			before := h.state()
			if err := h.f.Restore(io.NopCloser(bytes.NewReader([]byte(tc.data)))); err == nil {
				t.Fatal("Restore accepted a bad snapshot")
			}
			if h.state() != before {
				t.Error("a failed Restore changed state")
			}
		})
	}
}

// TestSnapshotFixtureV1 restores a snapshot written by the first version of
// this code. It must keep passing unchanged in every later version.
// Regenerate (only when fixtureHarness changes) with: go test ./fsm -run FixtureV1 -update
func TestSnapshotFixtureV1(t *testing.T) {
	path := filepath.Join("testdata", "snapshot-v1.json")
	if *update {
		if err := os.WriteFile(path, persist(t, fixtureHarness(t).f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	f := restore(t, data)

	if got, want := f.Pool(), (PoolConfig{MinSize: 1, MaxSize: 10, Image: "python", Resources: testResources}); got != want {
		t.Errorf("pool = %+v, want %+v", got, want)
	}
	wantStats := PoolStats{Total: 8, Pending: 1, Idle: 1, Active: 2, Paused: 1, Terminating: 2, Failed: 1, MinSize: 1, MaxSize: 10}
	if got := f.PoolStats(); got != wantStats {
		t.Errorf("stats = %+v, want %+v", got, wantStats)
	}
	if got := f.AppliedIndex(); got != 21 {
		t.Errorf("applied index = %d, want 21", got)
	}

	sandboxes := []struct {
		id      string
		state   SandboxState
		owner   string
		session string
	}{
		{"active1", StateActive, "alice", ""},
		{"failed1", StateFailed, "", ""},
		{"gone1", StateTerminating, "", ""},
		{"idle1", StateIdle, "", ""},
		{"pending1", StatePending, "", ""},
		{"sb-bob", StateActive, "bob", "sess-active"},
		{"sb-carol1", StatePaused, "carol", "sess-paused"},
		{"sb-carol2", StateTerminating, "carol", "sess-deleted"},
	}
	all := f.Sandboxes()
	if len(all) != len(sandboxes) {
		t.Errorf("%d sandboxes, want %d", len(all), len(sandboxes))
	}
	for i, want := range sandboxes {
		if i >= len(all) {
			break
		}
		s := all[i]
		if s.ID != want.id || s.State != want.state || s.Owner != want.owner || s.SessionID != want.session {
			t.Errorf("sandbox %d = %s %s owner %q session %q, want %+v", i, s.ID, s.State, s.Owner, s.SessionID, want)
		}
	}
	a, _ := f.Sandbox("active1")
	if a == nil || a.CreateIndex != 2 || a.ModifyIndex != 4 || a.IdleTimeout != 5*time.Minute ||
		!a.ExpiresAt.Equal(t0.Add(time.Hour)) || !a.AcquiredAt.Equal(t0) || a.Placement.ContainerID != "c-active1" || !a.Pool {
		t.Errorf("active1 = %+v", a)
	}
	if s, _ := f.Sandbox("failed1"); s == nil || s.FailReason != "image missing" {
		t.Errorf("failed1 = %+v", s)
	}
	if s, _ := f.Sandbox("sb-carol1"); s == nil || s.Resources != (Resources{CPUCount: 2, MemoryMB: 1024, DiskMB: 1024}) || !s.Network {
		t.Errorf("sb-carol1 = %+v", s)
	}

	wantSessions := map[string]SessionState{"sess-active": SessionActive, "sess-paused": SessionPaused, "sess-deleted": SessionDeleted}
	for id, st := range wantSessions {
		s, err := f.Session(id)
		if err != nil || s.State != st || s.MaxLifetime != time.Hour || s.IdleTimeout != 10*time.Minute {
			t.Errorf("session %s = %+v (%v), want %s", id, s, err, st)
		}
	}
	if got := len(f.SessionsByOwner("carol")); got != 2 {
		t.Errorf("carol has %d sessions, want 2", got)
	}
	if !f.TokenRevoked("tok-1") || f.TokenRevoked("tok-2") {
		t.Error("revoked tokens not restored")
	}

	// Request ids survive: both retries return the original response.
	h := &harness{t: t, f: f, index: 21, now: t0}
	if r := h.apply(withRequest("req-acquire", acquire("alice", "x"))); r.Index != 4 || r.Sandbox == nil || r.Sandbox.ID != "active1" {
		t.Errorf("retried acquire = %+v, want active1 at index 4", r)
	}
	if r := h.apply(withRequest("req-session", sessionCreate("sess-x", "bob", "y"))); r.Index != 13 || r.Session == nil || r.Session.ID != "sess-active" {
		t.Errorf("retried session create = %+v, want sess-active at index 13", r)
	}
}

func mustSandbox(t *testing.T, f *FSM, id string) *Sandbox {
	t.Helper()
	s, err := f.Sandbox(id)
	if err != nil {
		t.Fatalf("sandbox %s: %v", id, err)
	}
	return s
}
