package fsm

import (
	"slices"
	"time"
)

// SandboxState is where a sandbox is in its lifecycle. The FSM holds the
// desired state; the reconciler makes the containers match it.
type SandboxState string

// Sandbox lifecycle: pending → idle → active → paused → resuming → active …
// → terminating → removed, and failed from any live state. A sandbox created
// on demand for an owner goes pending → active directly. A resume is
// "resuming" until the driver has it running again and the new placement is
// recorded, so "active" always means the agent answers where the state says.
// "removed" is never stored: the record is deleted.
const (
	StatePending     SandboxState = "pending"
	StateIdle        SandboxState = "idle"
	StateActive      SandboxState = "active"
	StatePaused      SandboxState = "paused"
	StateResuming    SandboxState = "resuming"
	StateTerminating SandboxState = "terminating"
	StateFailed      SandboxState = "failed"
)

// Resources are the limits a sandbox runs with.
type Resources struct {
	CPUCount float64 `json:"cpu_count"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb"`
}

// Placement records where the driver put a sandbox and how to reach its agent.
type Placement struct {
	Driver        string `json:"driver"`         // "docker" or "nomad"
	Node          string `json:"node"`           // host or Nomad node id
	ContainerID   string `json:"container_id"`   // Docker container id or Nomad allocation id
	IP            string `json:"ip"`             // empty when the sandbox has no network
	AgentEndpoint string `json:"agent_endpoint"` // "unix:///path/agent.sock", "https://host:port" (or "http://" before TLS)
	AgentSecret   string `json:"agent_secret,omitempty"`
	// AgentCertSHA256 is the hex SHA-256 of the agent's TLS certificate:
	// an https endpoint is trusted with exactly that certificate.
	AgentCertSHA256 string `json:"agent_cert_sha256,omitempty"`
}

// Sandbox is one isolated environment. Pool sandboxes have no Owner until
// acquired; a released sandbox is destroyed, never handed to someone else.
type Sandbox struct {
	ID        string    `json:"id"`
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
	Network   bool      `json:"network"` // egress allowed
	// EgressAllow is the owner's grant when the sandbox was created: the
	// CIDRs and host names it may reach (empty: any public address).
	// Meaningful only with Network.
	EgressAllow []string     `json:"egress_allow,omitempty"`
	State       SandboxState `json:"state"`
	Owner       string       `json:"owner,omitempty"`
	SessionID   string       `json:"session_id,omitempty"`
	Placement   Placement    `json:"placement"`
	// Pool is true for sandboxes the warmer created ahead of demand.
	Pool       bool   `json:"pool"`
	FailReason string `json:"fail_reason,omitempty"`
	// Metadata is the owner's labels; Env is applied to every process
	// started in the sandbox. A sandbox is never reused across owners, so
	// neither outlives its owner's claim.
	Metadata map[string]string `json:"metadata,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	// EndReason says why a sandbox was released when it was not its
	// owner's call (a lifetime or idle timeout): events report it.
	EndReason string `json:"end_reason,omitempty"`

	CreatedAt    time.Time `json:"created_at"`
	AcquiredAt   time.Time `json:"acquired_at,omitempty"`
	LastActiveAt time.Time `json:"last_active_at,omitempty"`
	// ExpiresAt is the hard end of the sandbox's life (zero: none).
	ExpiresAt time.Time `json:"expires_at,omitempty"`
	// IdleTimeout releases an owned sandbox unused for this long (zero: none).
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Live reports whether the sandbox is placed or being placed.
func (s *Sandbox) Live() bool {
	switch s.State {
	case StatePending, StateIdle, StateActive, StatePaused, StateResuming:
		return true
	}
	return false
}

// Placed reports whether the sandbox has a recorded placement that the
// driver should be running (paused and resuming included).
func (s *Sandbox) Placed() bool {
	switch s.State {
	case StateIdle, StateActive, StatePaused, StateResuming:
		return true
	}
	return false
}

// Copy returns a deep copy; objects read from state must be copied before they change.
func (s *Sandbox) Copy() *Sandbox {
	if s == nil {
		return nil
	}
	c := *s
	c.EgressAllow = slices.Clone(s.EgressAllow)
	c.Metadata = cloneStrings(s.Metadata)
	c.Env = cloneStrings(s.Env)
	return &c
}

// SessionState is where a session is in its lifecycle.
type SessionState string

// Session states.
const (
	SessionActive  SessionState = "active"
	SessionPaused  SessionState = "paused"
	SessionDeleted SessionState = "deleted"
)

// Session is a user's long-lived claim on one sandbox of a chosen image and size.
type Session struct {
	ID        string       `json:"id"`
	Owner     string       `json:"owner"`
	Image     string       `json:"image"`
	CPUCount  float64      `json:"cpu_count"`
	MemoryMB  int64        `json:"memory_mb"`
	Network   bool         `json:"network"`
	State     SessionState `json:"state"`
	SandboxID string       `json:"sandbox_id"`

	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	LastActiveAt time.Time     `json:"last_active_at"`
	IdleTimeout  time.Duration `json:"idle_timeout,omitempty"`
	MaxLifetime  time.Duration `json:"max_lifetime,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Copy returns a copy of the session.
func (s *Session) Copy() *Session {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

// PoolConfig is the warm pool's desired shape, replicated so every node agrees.
type PoolConfig struct {
	MinSize   int       `json:"min_size"`
	MaxSize   int       `json:"max_size"`
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
	// FixedLimits: the placement driver cannot change a running sandbox's
	// limits (Nomad would replace the allocation), so an idle sandbox is
	// handed out only to a request for exactly its resources.
	FixedLimits bool `json:"fixed_limits,omitempty"`
	// Quota limits each user's sandboxes, sessions, resources and create
	// rate (nil: nobody is limited). A pointer keeps PoolConfig comparable;
	// compare pools with Equal. Read-only once stored.
	Quota *QuotaConfig `json:"quota,omitempty"`
}

// PoolStats counts sandboxes by state.
type PoolStats struct {
	Total       int `json:"total"`
	Pending     int `json:"pending"`
	Idle        int `json:"idle"`
	Active      int `json:"active"`
	Paused      int `json:"paused"`
	Resuming    int `json:"resuming"`
	Terminating int `json:"terminating"`
	Failed      int `json:"failed"`
	MinSize     int `json:"min_size"`
	MaxSize     int `json:"max_size"`
}
