package api

import (
	"cmp"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Accepted session sizes (api/DESIGN.md).
const (
	minCPU      = 0.1
	maxCPU      = 16.0
	minMemoryMB = 64
	maxMemoryMB = 65536
)

type sessionRequest struct {
	Image       string   `json:"image"`
	CPUCount    *float64 `json:"cpu_count"`
	MemoryMB    *int64   `json:"memory_mb"`
	Network     bool     `json:"network"`
	IdleTimeout *int64   `json:"idle_timeout"`
	MaxLifetime *int64   `json:"max_lifetime"`
}

var imagePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$`)

// validImage accepts what a Docker image reference may contain.
func validImage(image string) error {
	if !imagePattern.MatchString(image) {
		return errUnprocessable("image %q is not a valid image reference", image)
	}
	return nil
}

// requestedSize checks the cpu_count and memory_mb a request names (nil:
// not named) and writes them over the defaults in cpu and mem.
func requestedSize(reqCPU *float64, reqMem *int64, cpu *float64, mem *int64) error {
	if reqCPU != nil {
		if *reqCPU < minCPU || *reqCPU > maxCPU {
			return errUnprocessable("cpu_count must be between %g and %g", minCPU, maxCPU)
		}
		*cpu = *reqCPU
	}
	if reqMem != nil {
		if *reqMem < minMemoryMB || *reqMem > maxMemoryMB {
			return errUnprocessable("memory_mb must be between %d and %d", minMemoryMB, maxMemoryMB)
		}
		*mem = *reqMem
	}
	return nil
}

// sessionCommand validates the request and fills defaults.
func (s *Server) sessionCommand(req sessionRequest, p *principal) (*fsm.SessionCreate, error) {
	// The replicated pool configuration is the one source of default sizes,
	// so every node fills them alike; this node's own settings stand in
	// only before the leader has written it.
	pool := s.state.Pool().Resources
	cmd := &fsm.SessionCreate{
		ID: newID(), Owner: p.User, Role: p.Role, SandboxID: newID(), Network: req.Network,
		Image: req.Image, CPUCount: cmp.Or(pool.CPUCount, s.cfg.DefaultCPUCount), MemoryMB: cmp.Or(pool.MemoryMB, s.cfg.DefaultMemoryMB),
		IdleTimeout: s.cfg.DefaultIdleTimeout, MaxLifetime: s.cfg.DefaultLifetime,
	}
	if cmd.Image == "" {
		cmd.Image = s.cfg.DefaultImage
	}
	if err := s.checkImage(cmd.Image); err != nil {
		return nil, err
	}
	if err := s.checkNetwork(req.Network); err != nil {
		return nil, err
	}
	if err := requestedSize(req.CPUCount, req.MemoryMB, &cmd.CPUCount, &cmd.MemoryMB); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		v    *int64
		dst  *time.Duration
	}{{"idle_timeout", req.IdleTimeout, &cmd.IdleTimeout}, {"max_lifetime", req.MaxLifetime, &cmd.MaxLifetime}} {
		if f.v == nil || *f.v == 0 {
			continue // the server default
		}
		if *f.v < 0 || *f.v > int64(365*24*time.Hour/time.Second) {
			return nil, errUnprocessable("%s must be between 0 and one year in seconds", f.name)
		}
		*f.dst = time.Duration(*f.v) * time.Second
	}
	return cmd, nil
}

// handleCreateSession creates a session and waits (bounded) for its sandbox.
// Placement failure deletes the session and answers 503; a timeout answers
// 201 with sandbox_status "pending" (the session exists and will come up).
func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	var req sessionRequest
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	if _, err := s.sessionCommand(req, p); err != nil {
		return err
	}
	reqID, err := requestIDFor(r, p, "session-create")
	if err != nil {
		return err
	}
	var se *fsm.Session
	for attempt := 1; ; attempt++ {
		cmd, _ := s.sessionCommand(req, p) // validated above; fresh ids each attempt
		resp, aerr := s.apply(r.Context(), cmd, reqID)
		if aerr != nil {
			return aerr
		}
		if attempt == 1 {
			s.metrics.sessionsCreated.Inc()
		}
		se = resp.Session
		_, err = s.waitActive(r.Context(), se.SandboxID, resp.Index)
		if !errors.Is(err, errPlacementLost) || attempt == placementAttempts {
			break
		}
		// This session's sandbox will never start (it failed, or a crashed
		// node's create was undone): delete the session and create another
		// under a request ID derived from what was lost, so a client retrying
		// with the same Idempotency-Key follows the same chain.
		s.log.Info("session sandbox lost while starting, creating another", "session.id", se.ID, "attempt", attempt, "err", err)
		del := &fsm.SessionDelete{ID: se.ID, Owner: p.User, Admin: p.admin(), Reason: "sandbox lost while starting"}
		if _, derr := s.apply(r.Context(), del, ""); derr != nil {
			return derr
		}
		reqID = retryRequestID(reqID, se.SandboxID)
	}
	switch {
	case errors.Is(err, errNotReady):
	case err != nil:
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable {
			del := &fsm.SessionDelete{ID: se.ID, Owner: p.User, Admin: p.admin(), Reason: "sandbox placement failed"}
			if _, derr := s.apply(r.Context(), del, ""); derr != nil {
				s.log.Warn("delete session after failed placement", "session.id", se.ID, "err", derr)
			}
		}
		return err
	}
	if cur, err := s.state.Session(se.ID); err == nil {
		se = cur
	}
	writeJSON(w, http.StatusCreated, s.viewSession(se))
	return nil
}

func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var list []*fsm.Session
	if p.admin() {
		list = s.state.Sessions()
	} else {
		list = s.state.SessionsByOwner(p.User)
	}
	items, next := page(list, lq, func(se *fsm.Session) uint64 { return se.CreateIndex }, lq.matchSession)
	out := make([]sessionView, 0, len(items))
	for _, se := range items {
		out = append(out, s.viewSession(se))
	}
	body := map[string]any{"sessions": out}
	if next != "" {
		body["next_page_token"] = next
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	id := chi.URLParam(r, "session_id")
	visible := func(se *fsm.Session, err error) bool {
		return err == nil && (se.Owner == p.User || p.admin())
	}
	se, err := s.state.Session(id)
	if !visible(se, err) {
		// Created through another node that this one may lag: catch up once
		// before answering 404 (ownedSandbox says why foreign ids too).
		if cerr := s.catchUp(r.Context()); cerr != nil {
			return cerr
		}
		se, err = s.state.Session(id)
	}
	if !visible(se, err) {
		return errNotFound("session " + id)
	}
	writeJSON(w, http.StatusOK, s.viewSession(se))
	return nil
}

// sessionAction applies a pause, resume or delete command built by mk and
// answers with the session after it. Ownership is checked by the FSM
// (another user's session is not_found there too).
func (s *Server) sessionAction(op string, mk func(id string, p *principal) fsm.Command) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := principalFrom(r.Context())
		id := chi.URLParam(r, "session_id")
		reqID := ""
		if op == "session-delete" {
			var err error
			if reqID, err = requestIDFor(r, p, op); err != nil {
				return err
			}
		}
		resp, err := s.apply(r.Context(), mk(id, p), reqID)
		if err != nil {
			return err
		}
		// Render the sandbox's state as of this write, not an older one.
		if err := s.waitApplied(r.Context(), resp.Index); err != nil {
			return err
		}
		se := resp.Session
		if se == nil {
			if se, err = s.state.Session(id); err != nil {
				return err
			}
		}
		if op == "session-delete" {
			s.agents.forget(se.SandboxID)
		}
		if op == "session-resume" {
			if _, err := s.waitResumed(r.Context(), se.SandboxID); err != nil {
				return err
			}
		}
		writeJSON(w, http.StatusOK, s.viewSession(se))
		return nil
	}
}

func (s *Server) handlePauseSession() handlerFunc {
	return s.sessionAction("session-pause", func(id string, p *principal) fsm.Command {
		return &fsm.SessionPause{ID: id, Owner: p.User, Admin: p.admin()}
	})
}

func (s *Server) handleResumeSession() handlerFunc {
	return s.sessionAction("session-resume", func(id string, p *principal) fsm.Command {
		return &fsm.SessionResume{ID: id, Owner: p.User, Admin: p.admin()}
	})
}

func (s *Server) handleDeleteSession() handlerFunc {
	return s.sessionAction("session-delete", func(id string, p *principal) fsm.Command {
		return &fsm.SessionDelete{ID: id, Owner: p.User, Admin: p.admin(), Reason: "deleted by user"}
	})
}
