package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// languages accepted by /execute (api/DESIGN.md).
var languages = map[string]bool{"python": true, "bash": true, "sh": true}

// languageCommand labels executions of a command (not code) in metrics.
const languageCommand = "command"

type executeRequest struct {
	SandboxID string            `json:"sandbox_id"`
	Code      *string           `json:"code"`
	Language  string            `json:"language"`
	Command   json.RawMessage   `json:"command"`
	Env       map[string]string `json:"env"`
	Cwd       string            `json:"cwd"`
	Stdin     string            `json:"stdin"`
	Timeout   *int64            `json:"timeout"`
}

// executeResponse is the execute answer; the stream's last line carries the
// same fields after "type":"result".
type executeResponse struct {
	Type            string `json:"type,omitempty"`
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	DurationMs      int64  `json:"duration_ms"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

func viewResult(res *agent.ExecResult) executeResponse {
	return executeResponse{
		ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr, DurationMs: res.DurationMs,
		TimedOut: res.TimedOut, StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
	}
}

// parseExecute validates an execute body and builds the agent request. The
// returned label is the metrics language.
func (s *Server) parseExecute(r *http.Request) (string, agent.ExecRequest, string, error) {
	var req executeRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return "", agent.ExecRequest{}, "", err
	}
	if req.SandboxID == "" {
		return "", agent.ExecRequest{}, "", errBadRequest("sandbox_id is required")
	}
	hasCommand := len(req.Command) > 0 && string(req.Command) != "null"
	if (req.Code != nil) == hasCommand {
		return "", agent.ExecRequest{}, "", errBadRequest("exactly one of code and command is required")
	}
	out := agent.ExecRequest{Env: req.Env, MaxOutputBytes: s.cfg.MaxOutputBytes}
	label := languageCommand
	if req.Code != nil {
		lang := req.Language
		if lang == "" {
			lang = "python"
		}
		if !languages[lang] {
			return "", agent.ExecRequest{}, "", errUnprocessable("language %q is not supported; use python, bash or sh", lang)
		}
		out.Code, out.Language, label = *req.Code, lang, lang
	} else {
		if req.Language != "" {
			return "", agent.ExecRequest{}, "", errBadRequest("language applies to code, not to command")
		}
		var argv []string
		var shell string
		switch {
		case json.Unmarshal(req.Command, &argv) == nil:
			if len(argv) == 0 || argv[0] == "" {
				return "", agent.ExecRequest{}, "", errBadRequest("command must not be empty")
			}
			out.Argv = argv
		case json.Unmarshal(req.Command, &shell) == nil:
			if shell == "" {
				return "", agent.ExecRequest{}, "", errBadRequest("command must not be empty")
			}
			out.Shell = shell
		default:
			return "", agent.ExecRequest{}, "", errBadRequest("command must be an array of strings or a string")
		}
	}
	timeout := s.cfg.DefaultExecTimeout
	if req.Timeout != nil {
		maxSecs := int64(s.cfg.MaxExecTimeout / time.Second)
		if *req.Timeout < 1 || *req.Timeout > maxSecs {
			return "", agent.ExecRequest{}, "", errUnprocessable("timeout must be between 1 and %d seconds", maxSecs)
		}
		timeout = time.Duration(*req.Timeout) * time.Second
	}
	out.Timeout = timeout
	if req.Cwd != "" {
		cwd, err := cleanPath("cwd", req.Cwd)
		if err != nil {
			return "", agent.ExecRequest{}, "", err
		}
		out.Cwd = cwd
	}
	if req.Stdin != "" {
		out.Stdin = []byte(req.Stdin)
	}
	return req.SandboxID, out, label, nil
}

// runnableSandbox returns the caller's sandbox if it can run processes now.
func (s *Server) runnableSandbox(r *http.Request, id string) (*fsm.Sandbox, error) {
	sb, err := s.ownedSandbox(r, id)
	if err != nil {
		return nil, err
	}
	if sb.State != fsm.StateActive {
		// This node may lag a placement or a resume that the client already
		// saw on another node: catch up once before answering 409.
		if cerr := s.catchUp(r.Context()); cerr != nil {
			return nil, cerr
		}
		if fresh, ferr := s.state.Sandbox(id); ferr == nil {
			sb = fresh
		}
	}
	if sb.State == fsm.StateResuming {
		if sb, err = s.waitResumed(r.Context(), id); err != nil {
			return nil, err
		}
	}
	switch sb.State {
	case fsm.StateActive:
		return sb, nil
	case fsm.StatePaused:
		return nil, errConflict("sandbox is paused; resume it first (POST /api/v1/sandbox/{id}/resume or its session's resume)")
	}
	return nil, errConflict("sandbox is %s, not active", sb.State)
}

// execContext bounds the agent call: the exec's own timeout plus room for
// the agent to kill the process group and answer.
func execContext(ctx context.Context, req agent.ExecRequest) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, req.Timeout+15*time.Second)
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) error {
	id, req, label, err := s.parseExecute(r)
	if err != nil {
		return err
	}
	sb, err := s.runnableSandbox(r, id)
	if err != nil {
		return err
	}
	req.Env = sandboxEnv(sb, req.Env)
	ctx, cancel := execContext(r.Context(), req)
	defer cancel()
	start := time.Now()
	res, err := s.agents.get(sb).Exec(ctx, req)
	s.observeExec(label, start, res, err)
	s.touches.mark(sb.ID)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewResult(res))
	return nil
}

// handleExecuteStream relays the agent's NDJSON events as they come. Once
// the 200 header is out, a failure can only be reported in-band.
func (s *Server) handleExecuteStream(w http.ResponseWriter, r *http.Request) error {
	id, req, label, err := s.parseExecute(r)
	if err != nil {
		return err
	}
	sb, err := s.runnableSandbox(r, id)
	if err != nil {
		return err
	}
	req.Env = sandboxEnv(sb, req.Env)
	ctx, cancel := execContext(r.Context(), req)
	defer cancel()
	stream := newNDJSON(w)
	emit := func(ev agent.Event) error {
		var v any = ev
		if ev.Type == agent.EventResult && ev.Result != nil {
			res := viewResult(ev.Result)
			res.Type = agent.EventResult
			v = res
		}
		return stream.emit(v)
	}
	start := time.Now()
	res, err := s.agents.get(sb).ExecStream(ctx, req, func(ev agent.Event) error {
		if ev.Type == agent.EventResult {
			return nil // written below, once, with our field layout
		}
		return emit(ev)
	})
	s.observeExec(label, start, res, err)
	s.touches.mark(sb.ID)
	if err != nil {
		if !stream.Started() {
			return agentFailure(err)
		}
		e := classify(agentFailure(err))
		_ = emit(agent.Event{Type: "error", Data: e.Msg})
		return nil
	}
	return emit(agent.Event{Type: agent.EventResult, Result: res})
}

func (s *Server) observeExec(label string, start time.Time, res *agent.ExecResult, err error) {
	status := "ok"
	switch {
	case err != nil:
		status = "error"
	case res.TimedOut:
		status = "timeout"
	case res.ExitCode != 0:
		status = "error"
	}
	s.metrics.executions.WithLabelValues(label, status).Inc()
	s.metrics.execDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

// agentFailure keeps the agent's typed answers (they map to our statuses)
// and turns transport failures into 503: the sandbox is unreachable now.
func agentFailure(err error) error {
	var ae *agent.Error
	var mbe *http.MaxBytesError // our own body limit, hit while streaming an upload
	if errors.As(err, &ae) || errors.As(err, &mbe) || errors.Is(err, context.Canceled) {
		return err
	}
	return errUnavailable("sandbox agent unreachable", err)
}
