package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// quotaState is the part of the replicated state that reports quota usage
// (*fsm.FSM implements it).
type quotaState interface {
	Quota(user string) fsm.Quota
	QuotaUsage(user string, now time.Time) fsm.QuotaUsage
}

// quotaLimits is a user's quota as the API shows it; 0 means unlimited.
type quotaLimits struct {
	Sandboxes        int     `json:"sandboxes"`
	Sessions         int     `json:"sessions"`
	CPU              float64 `json:"cpu"`
	MemoryMB         int64   `json:"memory_mb"`
	CreatesPerMinute int     `json:"creates_per_minute"`
}

type quotaResponse struct {
	User   string         `json:"user"`
	Limits quotaLimits    `json:"limits"`
	Usage  fsm.QuotaUsage `json:"usage"`
}

// handleQuota reports the caller's limits and what counts against them,
// read from this node's replica: the same numbers the FSM checks a create
// against (this node may lag the leader by the last few writes).
func (s *Server) handleQuota(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	qs, ok := s.state.(quotaState)
	if !ok {
		return errors.New("state does not report quota usage")
	}
	q := qs.Quota(p.User)
	writeJSON(w, http.StatusOK, quotaResponse{
		User: p.User,
		Limits: quotaLimits{Sandboxes: q.MaxSandboxes, Sessions: q.MaxSessions, CPU: q.MaxCPU,
			MemoryMB: q.MaxMemoryMB, CreatesPerMinute: q.CreatesPerMinute},
		Usage: qs.QuotaUsage(p.User, time.Now().UTC()),
	})
	return nil
}

// countQuotaRejection counts err in quota_rejections_total when it is a
// quota refusal from the FSM.
func (m *metrics) countQuotaRejection(err error) {
	var fe *fsm.Error
	if errors.As(err, &fe) && fe.Code == fsm.CodeQuotaExceeded {
		m.quotaRejections.WithLabelValues(fe.Limit).Inc()
	}
}
