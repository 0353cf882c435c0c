package api

import (
	"maps"
	"slices"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// sandboxView is the sandbox JSON of api/DESIGN.md.
type sandboxView struct {
	SandboxID   string  `json:"sandbox_id"`
	ContainerID string  `json:"container_id"`
	Status      string  `json:"status"`
	IP          string  `json:"ip"`
	Image       string  `json:"image"`
	UserID      string  `json:"user_id"`
	SessionID   string  `json:"session_id"`
	CPUCount    float64 `json:"cpu_count"`
	MemoryMB    int64   `json:"memory_mb"`
	DiskMB      int64   `json:"disk_mb"`
	CreatedAt   string  `json:"created_at"`
	// ExpiresAt is the hard end of its life ("" for none); IdleTimeout
	// releases it after that many seconds unused (0: never).
	ExpiresAt   string            `json:"expires_at"`
	IdleTimeout int64             `json:"idle_timeout"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// EnvKeys names the variables every process gets; the values are not
	// shown (they often carry credentials).
	EnvKeys []string `json:"env_keys,omitempty"`
}

func viewSandbox(sb *fsm.Sandbox) sandboxView {
	return sandboxView{
		SandboxID:   sb.ID,
		ContainerID: sb.Placement.ContainerID,
		Status:      string(sb.State),
		IP:          sb.Placement.IP,
		Image:       sb.Image,
		UserID:      sb.Owner,
		SessionID:   sb.SessionID,
		CPUCount:    sb.Resources.CPUCount,
		MemoryMB:    sb.Resources.MemoryMB,
		DiskMB:      sb.Resources.DiskMB,
		CreatedAt:   rfc3339(sb.CreatedAt),
		ExpiresAt:   rfc3339(sb.ExpiresAt),
		IdleTimeout: int64(sb.IdleTimeout / time.Second),
		Metadata:    sb.Metadata,
		EnvKeys:     slices.Sorted(maps.Keys(sb.Env)),
	}
}

// sessionView is the session JSON of api/DESIGN.md.
type sessionView struct {
	SessionID string  `json:"session_id"`
	UserID    string  `json:"user_id"`
	Image     string  `json:"image"`
	CPUCount  float64 `json:"cpu_count"`
	MemoryMB  int64   `json:"memory_mb"`
	Network   bool    `json:"network"`
	// EgressAllow is what the sandbox may reach, fixed at its creation
	// from the owner's grant (absent: no network, or any public address).
	EgressAllow   []string `json:"egress_allow,omitempty"`
	Status        string   `json:"status"`
	SandboxID     string   `json:"sandbox_id"`
	SandboxStatus string   `json:"sandbox_status"`
	CreatedAt     string   `json:"created_at"`
	UpdatedAt     string   `json:"updated_at"`
	LastActiveAt  string   `json:"last_active_at"`
	IdleTimeout   int64    `json:"idle_timeout"`
	MaxLifetime   int64    `json:"max_lifetime"`
}

// viewSession renders a session with its sandbox's current state ("removed"
// once the sandbox record is gone, e.g. after delete).
func (s *Server) viewSession(se *fsm.Session) sessionView {
	sbStatus := "removed"
	var allow []string
	if sb, err := s.state.Sandbox(se.SandboxID); err == nil {
		sbStatus, allow = string(sb.State), sb.EgressAllow
	}
	return sessionView{
		SessionID:     se.ID,
		UserID:        se.Owner,
		Image:         se.Image,
		CPUCount:      se.CPUCount,
		MemoryMB:      se.MemoryMB,
		Network:       se.Network,
		EgressAllow:   allow,
		Status:        string(se.State),
		SandboxID:     se.SandboxID,
		SandboxStatus: sbStatus,
		CreatedAt:     rfc3339(se.CreatedAt),
		UpdatedAt:     rfc3339(se.UpdatedAt),
		LastActiveAt:  rfc3339(se.LastActiveAt),
		IdleTimeout:   int64(se.IdleTimeout / time.Second),
		MaxLifetime:   int64(se.MaxLifetime / time.Second),
	}
}

// rfc3339 formats t in UTC; the zero time is "" rather than year 1.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
