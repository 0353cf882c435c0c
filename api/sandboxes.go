package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// handleAcquire hands the caller a sandbox: an idle pool sandbox costs one
// Raft apply; with none idle the FSM adds a pending one for the caller and
// we wait (bounded) for the reconciler to place it.
func (s *Server) handleAcquire(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	var req acquireRequest
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	template, err := s.acquireCommand(req, p)
	if err != nil {
		return err
	}
	reqID, err := requestIDFor(r, p, "acquire")
	if err != nil {
		return err
	}
	var (
		resp *fsm.Response
		sb   *fsm.Sandbox
	)
	for attempt := 1; ; attempt++ {
		cmd := *template
		cmd.NewID = newID()
		if resp, err = s.apply(r.Context(), &cmd, reqID); err != nil {
			return err
		}
		sb, err = s.waitActive(r.Context(), resp.Sandbox.ID, resp.Index)
		if !errors.Is(err, errPlacementLost) || attempt == placementAttempts {
			break
		}
		s.log.Info("sandbox lost while starting, acquiring another", "sandbox.id", resp.Sandbox.ID, "attempt", attempt, "err", err)
		s.releaseQuietly(p, resp.Sandbox.ID, "lost while starting")
		reqID = retryRequestID(reqID, resp.Sandbox.ID)
	}
	if errors.Is(err, errNotReady) && reqID == "" {
		// Without an idempotency key the client cannot find this sandbox
		// again by retrying, so do not leave it running for nobody.
		s.releaseQuietly(p, resp.Sandbox.ID, "not ready in time")
	}
	if errors.Is(err, errNotReady) {
		return &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Msg: "sandbox not ready in time; retry with the same Idempotency-Key to keep waiting", RetryAfter: 2}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
	return nil
}

// releaseQuietly releases a sandbox from a background context (the request's
// may be done) and only logs a failure: the reaper catches what this misses.
func (s *Server) releaseQuietly(p *principal, id, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := &fsm.SandboxRelease{ID: id, Owner: p.User, Admin: p.admin(), Reason: reason}
	if _, err := s.apply(ctx, cmd, ""); err != nil {
		s.log.Warn("release sandbox", "sandbox.id", id, "err", err)
	}
}

type releaseRequest struct {
	SandboxID string `json:"sandbox_id"`
}

type releaseResponse struct {
	SandboxID string `json:"sandbox_id"`
	Status    string `json:"status"`
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	var req releaseRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.SandboxID == "" {
		return errBadRequest("sandbox_id is required")
	}
	reqID, err := requestIDFor(r, p, "release")
	if err != nil {
		return err
	}
	cmd := &fsm.SandboxRelease{ID: req.SandboxID, Owner: p.User, Admin: p.admin(), Reason: "released by user"}
	if _, err := s.apply(r.Context(), cmd, reqID); err != nil {
		return err
	}
	s.agents.forget(req.SandboxID)
	writeJSON(w, http.StatusOK, releaseResponse{SandboxID: req.SandboxID, Status: string(fsm.StateTerminating)})
	return nil
}

type statsResponse struct {
	Total       int    `json:"total"`
	Idle        int    `json:"idle"`
	Active      int    `json:"active"`
	Pending     int    `json:"pending"`
	Paused      int    `json:"paused"`
	Resuming    int    `json:"resuming"`
	Terminating int    `json:"terminating"`
	Failed      int    `json:"failed"`
	MinSize     int    `json:"min_size"`
	MaxSize     int    `json:"max_size"`
	Image       string `json:"image"`
}

// handleStats reports the pool: counts only, no user data, so it is also
// served on the operator listener without a token.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) error {
	st := s.state.PoolStats()
	writeJSON(w, http.StatusOK, statsResponse{
		Total: st.Total, Idle: st.Idle, Active: st.Active, Pending: st.Pending, Paused: st.Paused,
		Resuming: st.Resuming, Terminating: st.Terminating, Failed: st.Failed, MinSize: st.MinSize, MaxSize: st.MaxSize,
		Image: s.state.Pool().Image,
	})
	return nil
}

func (s *Server) handleGetSandbox(w http.ResponseWriter, r *http.Request) error {
	sb, err := s.ownedSandbox(r, chi.URLParam(r, "sandbox_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
	return nil
}

// handleListSandboxes lists the caller's sandboxes (an admin's: all), with
// the filters and paging of listing.go.
func (s *Server) handleListSandboxes(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var list []*fsm.Sandbox
	if p.admin() {
		list = s.state.Sandboxes()
	} else {
		list = s.state.SandboxesByOwner(p.User)
	}
	items, next := page(list, lq, func(sb *fsm.Sandbox) uint64 { return sb.CreateIndex }, lq.matchSandbox)
	out := make([]sandboxView, 0, len(items))
	for _, sb := range items {
		out = append(out, viewSandbox(sb))
	}
	body := map[string]any{"sandboxes": out}
	if next != "" {
		body["next_page_token"] = next
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// ownedSandbox returns sandbox id if the caller may see it. Another user's
// sandbox is "not found", exactly like an unknown id, so ids cannot be probed.
func (s *Server) ownedSandbox(r *http.Request, id string) (*fsm.Sandbox, error) {
	p := principalFrom(r.Context())
	if id == "" {
		return nil, errBadRequest("sandbox_id is required")
	}
	visible := func(sb *fsm.Sandbox, err error) bool {
		return err == nil && (sb.Owner == p.User || p.admin())
	}
	sb, err := s.state.Sandbox(id)
	if !visible(sb, err) {
		// This node may lag the write that created the sandbox, or that
		// handed a warm pool sandbox (no owner yet here) to the caller, on
		// another node: catch up once before answering 404. Unknown and
		// foreign ids take the same path, so the answer's timing says
		// nothing about whose an id is.
		if cerr := s.catchUp(r.Context()); cerr != nil {
			return nil, cerr
		}
		sb, err = s.state.Sandbox(id)
	}
	if !visible(sb, err) {
		return nil, errNotFound("sandbox " + id)
	}
	return sb, nil
}
