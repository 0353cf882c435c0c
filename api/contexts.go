package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Stateful code contexts (api/DESIGN.md, "Code contexts"). A context lives
// in its sandbox's agent, not in the FSM: like exec output it is data, and
// it dies with the sandbox. Its public id is "<sandbox_id>-<agent id>", so
// every node can route a request to the sandbox, and check that the caller
// owns it, from the id alone.

// contextAgent is what the context routes ask of a sandbox's agent
// (*agent.Client); kept apart from sandboxAgent so other routes' fakes need
// not grow.
type contextAgent interface {
	CreateContext(ctx context.Context, req agent.ContextRequest) (*agent.ContextInfo, error)
	ListContexts(ctx context.Context) ([]agent.ContextInfo, error)
	RestartContext(ctx context.Context, id string) (*agent.ContextInfo, error)
	DeleteContext(ctx context.Context, id string) error
	RunCode(ctx context.Context, id string, req agent.RunCodeRequest) (*agent.RunCodeResult, error)
	RunCodeStream(ctx context.Context, id string, req agent.RunCodeRequest, fn func(agent.CodeEvent) error) (*agent.RunCodeResult, error)
}

// contextCallTimeout bounds the context calls that run no user code
// (create, list, restart, delete): an interpreter start is ~30 ms.
const contextCallTimeout = 30 * time.Second

// languageContext labels context cells (python and bash) in the execution metrics.
const languageContext = "context"

// contextRoutes mounts /api/v1/contexts.
func (s *Server) contextRoutes(r chi.Router) {
	r.Method(http.MethodPost, "/", handlerFunc(s.handleCreateContext))
	r.Method(http.MethodGet, "/", handlerFunc(s.handleListContexts))
	r.Route("/{context_id}", func(r chi.Router) {
		r.Method(http.MethodDelete, "/", handlerFunc(s.handleDeleteContext))
		r.Method(http.MethodPost, "/restart", handlerFunc(s.handleRestartContext))
		r.Method(http.MethodPost, "/run", s.withDeadline(s.execBudget, handlerFunc(s.handleRunContext)))
		r.With(s.limitStreams).Method(http.MethodPost, "/run/stream",
			s.withDeadline(s.execBudget, handlerFunc(s.handleRunContextStream)))
	})
}

// contextView is a context as the API shows it.
type contextView struct {
	ID        string    `json:"id"`
	SandboxID string    `json:"sandbox_id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd"`
	CreatedAt time.Time `json:"created_at"`
}

func viewContext(sandboxID string, c agent.ContextInfo) contextView {
	return contextView{ID: sandboxID + "-" + c.ID, SandboxID: sandboxID, Language: c.Language, Cwd: c.Cwd, CreatedAt: c.CreatedAt}
}

// runContextResponse is a cell's answer; the stream's last line carries the
// same fields after "type":"result".
type runContextResponse struct {
	Type            string             `json:"type,omitempty"`
	Stdout          string             `json:"stdout"`
	Stderr          string             `json:"stderr"`
	StdoutTruncated bool               `json:"stdout_truncated"`
	StderrTruncated bool               `json:"stderr_truncated"`
	Results         []agent.CodeOutput `json:"results"`
	Error           *agent.CodeError   `json:"error"`
	ExecutionCount  int                `json:"execution_count"`
	DurationMs      int64              `json:"duration_ms"`
	TimedOut        bool               `json:"timed_out"`
	Restarted       bool               `json:"restarted"`
}

func viewRunResult(res *agent.RunCodeResult) runContextResponse {
	out := runContextResponse{
		Stdout: res.Stdout, Stderr: res.Stderr, StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		Results: res.Results, Error: res.Error, ExecutionCount: res.ExecutionCount, DurationMs: res.DurationMs,
		TimedOut: res.TimedOut, Restarted: res.Restarted,
	}
	if out.Results == nil {
		out.Results = []agent.CodeOutput{}
	}
	return out
}

// isHexID reports whether s is n lowercase hex characters, the shape of our ids.
func isHexID(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// contextSandbox resolves a public context id to the caller's runnable
// sandbox, its agent and the agent's context id. A malformed id is as
// unknown as another user's: 404.
func (s *Server) contextSandbox(r *http.Request) (*fsm.Sandbox, contextAgent, string, error) {
	id := chi.URLParam(r, "context_id")
	sbID, agentID, ok := strings.Cut(id, "-")
	if !ok || !isHexID(sbID, 16) || !isHexID(agentID, 8) {
		return nil, nil, "", errNotFound("context " + id)
	}
	sb, ca, err := s.contextAgentFor(r, sbID)
	if err != nil {
		return nil, nil, "", err
	}
	return sb, ca, agentID, nil
}

// contextAgentFor returns the caller's sandbox if it can run code now, and
// its agent.
func (s *Server) contextAgentFor(r *http.Request, sandboxID string) (*fsm.Sandbox, contextAgent, error) {
	sb, err := s.runnableSandbox(r, sandboxID)
	if err != nil {
		return nil, nil, err
	}
	ca, ok := s.agents.get(sb).(contextAgent)
	if !ok {
		return nil, nil, errUnavailable("this sandbox's agent does not support code contexts", nil)
	}
	return sb, ca, nil
}

type createContextRequest struct {
	SandboxID string            `json:"sandbox_id"`
	Language  string            `json:"language"`
	Cwd       string            `json:"cwd"`
	Env       map[string]string `json:"env"`
}

func (s *Server) handleCreateContext(w http.ResponseWriter, r *http.Request) error {
	var req createContextRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.SandboxID == "" {
		return errBadRequest("sandbox_id is required")
	}
	lang := req.Language
	if lang == "" {
		lang = "python"
	}
	if lang != "python" && lang != "bash" {
		return errUnprocessable("language %q is not supported for code contexts; use python or bash", lang)
	}
	areq := agent.ContextRequest{Language: lang, Env: req.Env}
	if req.Cwd != "" {
		cwd, err := cleanPath("cwd", req.Cwd)
		if err != nil {
			return err
		}
		areq.Cwd = cwd
	}
	sb, ca, err := s.contextAgentFor(r, req.SandboxID)
	if err != nil {
		return err
	}
	areq.Env = sandboxEnv(sb, areq.Env)
	ctx, cancel := context.WithTimeout(r.Context(), contextCallTimeout)
	defer cancel()
	info, err := ca.CreateContext(ctx, areq)
	s.touches.mark(sb.ID)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusCreated, viewContext(sb.ID, *info))
	return nil
}

func (s *Server) handleListContexts(w http.ResponseWriter, r *http.Request) error {
	sb, ca, err := s.contextAgentFor(r, r.URL.Query().Get("sandbox_id"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), contextCallTimeout)
	defer cancel()
	list, err := ca.ListContexts(ctx)
	if err != nil {
		return agentFailure(err)
	}
	out := make([]contextView, 0, len(list))
	for _, c := range list {
		out = append(out, viewContext(sb.ID, c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"contexts": out})
	return nil
}

func (s *Server) handleRestartContext(w http.ResponseWriter, r *http.Request) error {
	sb, ca, id, err := s.contextSandbox(r)
	if err != nil {
		return err
	}
	// A restart waits for the cell in flight to be killed and a new
	// interpreter to start; the exec bound covers both.
	ctx, cancel := context.WithTimeout(r.Context(), contextCallTimeout)
	defer cancel()
	info, err := ca.RestartContext(ctx, id)
	s.touches.mark(sb.ID)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewContext(sb.ID, *info))
	return nil
}

func (s *Server) handleDeleteContext(w http.ResponseWriter, r *http.Request) error {
	sb, ca, id, err := s.contextSandbox(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), contextCallTimeout)
	defer cancel()
	if err := ca.DeleteContext(ctx, id); err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": sb.ID + "-" + id, "deleted": true})
	return nil
}

type runContextRequest struct {
	Code    *string `json:"code"`
	Timeout *int64  `json:"timeout"`
}

// parseRunContext validates a run body: code is required, timeout in
// seconds as for /execute.
func (s *Server) parseRunContext(r *http.Request) (agent.RunCodeRequest, error) {
	var req runContextRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return agent.RunCodeRequest{}, err
	}
	if req.Code == nil {
		return agent.RunCodeRequest{}, errBadRequest("code is required")
	}
	timeout := s.cfg.DefaultExecTimeout
	if req.Timeout != nil {
		maxSecs := int64(s.cfg.MaxExecTimeout / time.Second)
		if *req.Timeout < 1 || *req.Timeout > maxSecs {
			return agent.RunCodeRequest{}, errUnprocessable("timeout must be between 1 and %d seconds", maxSecs)
		}
		timeout = time.Duration(*req.Timeout) * time.Second
	}
	return agent.RunCodeRequest{Code: *req.Code, Timeout: timeout, MaxOutputBytes: s.cfg.MaxOutputBytes}, nil
}

// runContext bounds the agent call: the cell's timeout, then at worst the
// interrupt's grace (2 s), a kill (bounded at 20 s) and a new interpreter's
// start (bounded at 10 s), plus room to answer.
func runContext(ctx context.Context, req agent.RunCodeRequest) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, req.Timeout+45*time.Second)
}

func (s *Server) handleRunContext(w http.ResponseWriter, r *http.Request) error {
	req, err := s.parseRunContext(r)
	if err != nil {
		return err
	}
	sb, ca, id, err := s.contextSandbox(r)
	if err != nil {
		return err
	}
	ctx, cancel := runContext(r.Context(), req)
	defer cancel()
	start := time.Now()
	res, err := ca.RunCode(ctx, id, req)
	s.observeCell(start, res, err)
	s.touches.mark(sb.ID)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewRunResult(res))
	return nil
}

// handleRunContextStream relays the cell's output as NDJSON as it is
// printed, as /execute/stream does; once the 200 header is out, a failure
// can only be reported in-band.
func (s *Server) handleRunContextStream(w http.ResponseWriter, r *http.Request) error {
	req, err := s.parseRunContext(r)
	if err != nil {
		return err
	}
	sb, ca, id, err := s.contextSandbox(r)
	if err != nil {
		return err
	}
	ctx, cancel := runContext(r.Context(), req)
	defer cancel()
	stream := newNDJSON(w)
	emit := func(v any) error {
		return stream.emit(v)
	}
	start := time.Now()
	res, err := ca.RunCodeStream(ctx, id, req, func(ev agent.CodeEvent) error {
		return emit(agent.Event{Type: ev.Type, Data: ev.Data})
	})
	s.observeCell(start, res, err)
	s.touches.mark(sb.ID)
	if err != nil {
		if !stream.Started() {
			return agentFailure(err)
		}
		_ = emit(agent.Event{Type: "error", Data: classify(agentFailure(err)).Msg})
		return nil
	}
	out := viewRunResult(res)
	out.Type = agent.EventResult
	return emit(out)
}

func (s *Server) observeCell(start time.Time, res *agent.RunCodeResult, err error) {
	status := "ok"
	switch {
	case err != nil:
		status = "error"
	case res.TimedOut:
		status = "timeout"
	case res.Error != nil:
		status = "error"
	}
	s.metrics.executions.WithLabelValues(languageContext, status).Inc()
	s.metrics.execDuration.WithLabelValues(languageContext).Observe(time.Since(start).Seconds())
}
