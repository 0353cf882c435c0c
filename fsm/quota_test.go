package fsm

import (
	"strconv"
	"testing"
	"time"
)

// quotaPool is a pool of max 20 whose default quota is q, with overrides.
func quotaPool(q Quota, users map[string]Quota) *SetPool {
	p := setPool(0, 20)
	p.Pool.Quota = &QuotaConfig{Default: q, Users: users}
	return p
}

// at stamps c with a time offset from t0.
func at[C Command](d time.Duration, c C) C {
	Hdr(c).Now = t0.Add(d)
	return c
}

// quotaCase is a command that must be accepted, or refused by limit with
// retryAfter seconds (and leave state unchanged).
type quotaCase struct {
	name       string
	setup      []Command
	cmd        Command
	limit      string // empty: accepted
	retryAfter int
}

func runQuotaCases(t *testing.T, cases []quotaCase) {
	t.Helper()
	var ac []applyCase
	for _, qc := range cases {
		c := applyCase{name: qc.name, setup: qc.setup, cmd: qc.cmd}
		if qc.limit != "" {
			c.wantErr = CodeQuotaExceeded
			limit, retry := qc.limit, qc.retryAfter
			c.check = func(t *testing.T, _ *harness, r *Response) {
				if r.Err.Limit != limit || r.Err.RetryAfter != retry {
					t.Errorf("refusal limit %q retry-after %d, want %q %d (%v)", r.Err.Limit, r.Err.RetryAfter, limit, retry, r.Err)
				}
			}
		}
		ac = append(ac, c)
	}
	runCases(t, ac)
}

func TestQuotaConcurrencyLimits(t *testing.T) {
	two := Quota{MaxSandboxes: 2}
	runQuotaCases(t, []quotaCase{
		{name: "sandboxes: under the limit", setup: cmds(quotaPool(two, nil), acquire("alice", "a")),
			cmd: acquire("alice", "b")},
		{name: "sandboxes: at the limit", setup: cmds(quotaPool(two, nil), acquire("alice", "a"), acquire("alice", "b")),
			cmd: acquire("alice", "c"), limit: LimitSandboxes, retryAfter: concurrencyRetryAfter},
		{name: "sandboxes: a session's sandbox counts",
			setup: cmds(quotaPool(two, nil), acquire("alice", "a"), sessionCreate("s1", "alice", "b")),
			cmd:   acquire("alice", "c"), limit: LimitSandboxes, retryAfter: concurrencyRetryAfter},
		{name: "sandboxes: an idle pool sandbox is refused too",
			setup: join(idle(20, "i"), cmds(quotaPool(two, nil), acquire("alice", "a"), acquire("alice", "b"))),
			cmd:   acquire("alice", "c"), limit: LimitSandboxes, retryAfter: concurrencyRetryAfter},
		{name: "sandboxes: a released one no longer counts",
			setup: cmds(quotaPool(two, nil), acquire("alice", "a"), acquire("alice", "b"), release("a", "alice")),
			cmd:   acquire("alice", "c")},
		{name: "sandboxes: other users are counted apart",
			setup: cmds(quotaPool(two, nil), acquire("alice", "a"), acquire("alice", "b")),
			cmd:   acquire("bob", "c")},
		{name: "sessions: at the limit",
			setup: cmds(quotaPool(Quota{MaxSessions: 1}, nil), sessionCreate("s1", "alice", "a")),
			cmd:   sessionCreate("s2", "alice", "b"), limit: LimitSessions, retryAfter: concurrencyRetryAfter},
		{name: "sessions: an acquire is not a session",
			setup: cmds(quotaPool(Quota{MaxSessions: 1}, nil), sessionCreate("s1", "alice", "a")),
			cmd:   acquire("alice", "b")},
		{name: "sessions: a deleted one no longer counts",
			setup: cmds(quotaPool(Quota{MaxSessions: 1}, nil), sessionCreate("s1", "alice", "a"), del("s1", "alice")),
			cmd:   sessionCreate("s2", "alice", "b")},
		{name: "cpu: exactly at the limit is accepted",
			setup: cmds(quotaPool(Quota{MaxCPU: 3}, nil), acquire("alice", "a")), // 1 vCPU
			cmd:   sessionCreate("s1", "alice", "b")},                            // 2 vCPU
		{name: "cpu: over the limit",
			setup: cmds(quotaPool(Quota{MaxCPU: 3}, nil), acquire("alice", "a"), acquire("alice", "b")),
			cmd:   sessionCreate("s1", "alice", "c"), limit: LimitCPU, retryAfter: concurrencyRetryAfter},
		{name: "memory: over the limit",
			setup: cmds(quotaPool(Quota{MaxMemoryMB: 1024}, nil), acquire("alice", "a")), // 512 MB
			cmd:   sessionCreate("s1", "alice", "b"), limit: LimitMemoryMB, retryAfter: concurrencyRetryAfter},
		{name: "memory: requested resources count, not the pool's",
			setup: cmds(quotaPool(Quota{MaxMemoryMB: 1024}, nil)),
			cmd:   &SandboxAcquire{Owner: "alice", NewID: "a", Resources: &Resources{CPUCount: 1, MemoryMB: 2048}},
			limit: LimitMemoryMB, retryAfter: concurrencyRetryAfter},
		{name: "override wins over the default: higher",
			setup: cmds(quotaPool(two, map[string]Quota{"alice": {MaxSandboxes: 3}}), acquire("alice", "a"), acquire("alice", "b")),
			cmd:   acquire("alice", "c")},
		{name: "override wins over the default: lower",
			setup: cmds(quotaPool(two, map[string]Quota{"alice": {MaxSandboxes: 1}}), acquire("alice", "a")),
			cmd:   acquire("alice", "b"), limit: LimitSandboxes, retryAfter: concurrencyRetryAfter},
		{name: "an unlimited override (an admin) is not limited",
			setup: cmds(quotaPool(Quota{MaxSandboxes: 1, CreatesPerMinute: 1}, map[string]Quota{"root": {}}), acquire("root", "a")),
			cmd:   acquire("root", "b")},
		{name: "the warmer's creates are not limited",
			setup: cmds(quotaPool(Quota{MaxSandboxes: 1, CreatesPerMinute: 1}, nil), create("a")),
			cmd:   create("b")},
		{name: "no quota configured limits nobody",
			setup: cmds(setPool(0, 20), acquire("alice", "a"), acquire("alice", "b")),
			cmd:   acquire("alice", "c")},
	})
}

func TestQuotaCreateRate(t *testing.T) {
	rate := quotaPool(Quota{CreatesPerMinute: 2}, nil)
	runQuotaCases(t, []quotaCase{
		{name: "under the limit", setup: cmds(rate, at(0, acquire("alice", "a"))),
			cmd: acquire("alice", "b")},
		// runCases applies the command at t0+1m: the first create at t0+10s
		// leaves the window at t0+1m10s, 10 s later.
		{name: "at the limit: retry when the oldest leaves the minute",
			setup: cmds(rate, at(10*time.Second, acquire("alice", "a")), at(20*time.Second, sessionCreate("s1", "alice", "b"))),
			cmd:   acquire("alice", "c"), limit: LimitCreatesPerMinute, retryAfter: 10},
		{name: "retry-after rounds up to a whole second",
			setup: cmds(rate, at(10*time.Second+time.Millisecond, acquire("alice", "a")), at(30*time.Second, acquire("alice", "b"))),
			cmd:   acquire("alice", "c"), limit: LimitCreatesPerMinute, retryAfter: 11},
		{name: "the window slides with Header.Now",
			setup: cmds(rate, at(0, acquire("alice", "a")), at(30*time.Second, acquire("alice", "b"))),
			cmd:   acquire("alice", "c")}, // at t0+1m the create at t0 is out
		{name: "releases do not give creates back",
			setup: cmds(rate, at(10*time.Second, acquire("alice", "a")), at(20*time.Second, acquire("alice", "b")),
				release("a", "alice"), release("b", "alice")),
			cmd: sessionCreate("s1", "alice", "c"), limit: LimitCreatesPerMinute, retryAfter: 10},
		{name: "other users have their own window",
			setup: cmds(rate, at(10*time.Second, acquire("alice", "a")), at(20*time.Second, acquire("alice", "b"))),
			cmd:   acquire("bob", "c")},
	})
}

// TestQuotaRefusalIsNotRecorded: a refused create leaves no trace in the
// rate window (the transaction is dropped), so a client retrying after the
// hint succeeds.
func TestQuotaRefusalIsNotRecorded(t *testing.T) {
	h := newHarness(t)
	h.mustApply(quotaPool(Quota{CreatesPerMinute: 1}, nil), acquire("alice", "a"))
	for i := range 5 {
		h.now = t0.Add(time.Duration(i+1) * 10 * time.Second)
		if r := h.apply(acquire("alice", "x")); r.Err == nil || r.Err.Code != CodeQuotaExceeded {
			t.Fatalf("create %d inside the minute: %v, want quota_exceeded", i, r.Err)
		}
	}
	h.now = t0.Add(time.Minute)
	h.mustApply(acquire("alice", "b"))
	if got := h.f.QuotaUsage("alice", h.now).CreatesLastMinute; got != 1 {
		t.Errorf("creates in the last minute = %d, want 1 (refusals recorded?)", got)
	}
}

func TestQuotaUsage(t *testing.T) {
	h := newHarness(t)
	h.mustApply(quotaPool(Quota{MaxSandboxes: 5}, map[string]Quota{"bob": {MaxSessions: 1}}),
		acquire("alice", "a"), sessionCreate("s1", "alice", "b"), acquire("alice", "c"), release("c", "alice"))
	want := QuotaUsage{Sandboxes: 2, Sessions: 1, CPU: 3, MemoryMB: 1536, CreatesLastMinute: 3}
	if got := h.f.QuotaUsage("alice", t0); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if got := h.f.QuotaUsage("alice", t0.Add(time.Minute)).CreatesLastMinute; got != 0 {
		t.Errorf("creates a minute later = %d, want 0", got)
	}
	if got := h.f.Quota("bob"); got != (Quota{MaxSessions: 1}) {
		t.Errorf("bob's quota = %+v", got)
	}
	if got := h.f.Quota("carol"); got != (Quota{MaxSandboxes: 5}) {
		t.Errorf("carol's quota = %+v", got)
	}
}

// TestQuotaCreatesKeepOnlyTheLimit: the record never grows past the limit
// (or the cap without one), whatever the number of creates.
func TestQuotaCreatesKeepOnlyTheLimit(t *testing.T) {
	h := newHarness(t)
	h.mustApply(quotaPool(Quota{MaxSandboxes: 1000}, map[string]Quota{"bob": {CreatesPerMinute: 3}}))
	for i := range 100 {
		h.now = t0.Add(time.Duration(i) * 100 * time.Millisecond)
		h.mustApply(acquire("alice", "a"+strconv.Itoa(i)), release("a"+strconv.Itoa(i), "alice"))
	}
	for i := range 3 {
		h.now = t0.Add(time.Duration(i) * 30 * time.Second)
		h.mustApply(acquire("bob", "b"+strconv.Itoa(i)))
	}
	txn := h.f.read()
	if n := len(readCreateLog(txn, "alice").Times); n != untrackedCreates {
		t.Errorf("alice (no rate limit) has %d times kept, want the cap %d", n, untrackedCreates)
	}
	if n := len(readCreateLog(txn, "bob").Times); n != 2 {
		t.Errorf("bob has %d times kept, want 2 (the one at t0 left the minute)", n)
	}
}

func TestPoolConfigEqual(t *testing.T) {
	base := PoolConfig{MinSize: 1, MaxSize: 5, Image: "python"}
	with := func(q *QuotaConfig) PoolConfig { p := base; p.Quota = q; return p }
	tests := []struct {
		name string
		a, b PoolConfig
		want bool
	}{
		{"no quotas", base, base, true},
		{"nil and empty quota", base, with(&QuotaConfig{}), true},
		{"same quota, different pointers",
			with(&QuotaConfig{Default: Quota{MaxSandboxes: 2}, Users: map[string]Quota{"a": {MaxCPU: 4}}}),
			with(&QuotaConfig{Default: Quota{MaxSandboxes: 2}, Users: map[string]Quota{"a": {MaxCPU: 4}}}), true},
		{"default differs", with(&QuotaConfig{Default: Quota{MaxSandboxes: 2}}), with(&QuotaConfig{Default: Quota{MaxSandboxes: 3}}), false},
		{"user differs",
			with(&QuotaConfig{Users: map[string]Quota{"a": {MaxCPU: 4}}}),
			with(&QuotaConfig{Users: map[string]Quota{"a": {MaxCPU: 5}}}), false},
		{"pool differs", base, PoolConfig{MinSize: 2, MaxSize: 5, Image: "python"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Equal(tc.b); got != tc.want {
				t.Errorf("Equal = %v, want %v", got, tc.want)
			}
			if got := tc.b.Equal(tc.a); got != tc.want {
				t.Errorf("Equal (swapped) = %v, want %v", got, tc.want)
			}
		})
	}
}
