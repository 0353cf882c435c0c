package fsm

import (
	"maps"
	"time"
)

// Quota is one user's limits; zero in a field means unlimited.
type Quota struct {
	// MaxSandboxes bounds the user's live sandboxes, sessions' included.
	MaxSandboxes int `json:"max_sandboxes,omitempty"`
	// MaxSessions bounds the user's sessions that are not deleted.
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxCPU and MaxMemoryMB bound the summed resources of live sandboxes.
	MaxCPU      float64 `json:"max_cpu,omitempty"`
	MaxMemoryMB int64   `json:"max_memory_mb,omitempty"`
	// CreatesPerMinute bounds acquires plus session creates in any sliding
	// minute, measured with the commands' Header.Now.
	CreatesPerMinute int `json:"creates_per_minute,omitempty"`
}

// QuotaConfig is the replicated quota configuration (part of PoolConfig). A
// user listed in Users gets that Quota instead of Default, whole: fields the
// operator did not name were filled from the default when it was parsed.
type QuotaConfig struct {
	Default Quota            `json:"default"`
	Users   map[string]Quota `json:"users,omitempty"`
}

// For returns user's quota. A nil configuration limits nobody.
func (c *QuotaConfig) For(user string) Quota {
	if c == nil {
		return Quota{}
	}
	if q, ok := c.Users[user]; ok {
		return q
	}
	return c.Default
}

// Equal reports whether two configurations limit everyone alike; nil and an
// empty configuration are equal (both unlimited).
func (c *QuotaConfig) Equal(o *QuotaConfig) bool {
	var a, b QuotaConfig
	if c != nil {
		a = *c
	}
	if o != nil {
		b = *o
	}
	return a.Default == b.Default && maps.Equal(a.Users, b.Users)
}

// Equal compares pool configurations. PoolConfig holds the quota by pointer
// (so that == still compiles for callers comparing pools without quotas),
// which makes == compare the pointer: use Equal to compare contents.
func (p PoolConfig) Equal(o PoolConfig) bool {
	pq, oq := p.Quota, o.Quota
	p.Quota, o.Quota = nil, nil
	return p == o && pq.Equal(oq)
}

// Quota limit names, used in errors, in metrics labels and in the API.
const (
	LimitSandboxes        = "sandboxes"
	LimitSessions         = "sessions"
	LimitCPU              = "cpu"
	LimitMemoryMB         = "memory_mb"
	LimitCreatesPerMinute = "creates_per_minute"
)

// Retry-after hints of a quota refusal. A concurrency limit frees up only
// when the user releases something, so the hint is a short constant.
const (
	quotaWindow           = time.Minute
	concurrencyRetryAfter = 5
	// untrackedCreates is how many create times are kept for a user without
	// a rate limit, so that usage can still be reported (capped there).
	untrackedCreates = 64
)

// QuotaUsage is what counts against a user's quota at one moment.
type QuotaUsage struct {
	Sandboxes int     `json:"sandboxes"`
	Sessions  int     `json:"sessions"`
	CPU       float64 `json:"cpu"`
	MemoryMB  int64   `json:"memory_mb"`
	// CreatesLastMinute counts acquires and session creates in the minute
	// before the time asked about (for users without a rate limit it stops
	// counting at 64).
	CreatesLastMinute int `json:"creates_last_minute"`
}

// createLog is the replicated record of a user's recent creates: the times
// of at most N of them (N the rate limit), oldest first, all within a minute
// of the last one. It lives in its own table so that snapshots carry it.
type createLog struct {
	User  string      `json:"user"`
	Times []time.Time `json:"times"`
}

// recent returns the times within quotaWindow before now.
func (l *createLog) recent(now time.Time) []time.Time {
	if l == nil {
		return nil
	}
	cutoff := now.Add(-quotaWindow)
	for i, at := range l.Times {
		if at.After(cutoff) {
			return l.Times[i:]
		}
	}
	return nil
}
