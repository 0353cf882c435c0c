package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Background processes and terminals (api/DESIGN.md, "Processes"). They live
// in the sandbox's agent, not in this node: every call here is a short
// request to the agent, and a client (or this node) that goes away leaves
// the process running. Output is a server stream of NDJSON events with byte
// offsets; input, resize and signals are small unary POSTs.

// processAgent is what the process routes ask of a sandbox's agent
// (*agent.Client).
type processAgent interface {
	StartProcess(ctx context.Context, req agent.ProcessStartRequest) (*agent.ProcessInfo, error)
	ListProcesses(ctx context.Context) ([]agent.ProcessInfo, error)
	Process(ctx context.Context, pid int) (*agent.ProcessInfo, error)
	WaitProcess(ctx context.Context, pid int, timeout time.Duration) (*agent.ProcessInfo, error)
	SendStdin(ctx context.Context, pid int, req agent.StdinRequest) error
	SignalProcess(ctx context.Context, pid int, signal string) error
	ResizeProcess(ctx context.Context, pid int, size agent.PTYSize) error
	ProcessOutput(ctx context.Context, pid int, offset int64, follow bool, onEvent func(agent.ProcessEvent) error) error
}

// defaultPTYCommand is what a pty runs when the request names no command:
// an interactive login shell, as a terminal would.
var defaultPTYCommand = []string{"/bin/bash", "-i", "-l"}

// maxProcessLifetime bounds a background process's own timeout; without
// one it lives as long as its sandbox.
const maxProcessLifetime = 7 * 24 * time.Hour

// processCallTimeout bounds the short agent calls (start, list, stdin...).
const processCallTimeout = 30 * time.Second

// processRoutes mounts under /api/v1/processes.
func (s *Server) processRoutes(r chi.Router) {
	r.Method(http.MethodPost, "/", handlerFunc(s.handleStartProcess))
	r.Method(http.MethodGet, "/", handlerFunc(s.handleListProcesses))
	r.Route("/{pid}", func(r chi.Router) {
		r.Method(http.MethodGet, "/", handlerFunc(s.handleGetProcess))
		r.With(s.limitStreams).Method(http.MethodGet, "/output",
			s.withDeadline(s.transferBudget, handlerFunc(s.handleProcessOutput)))
		r.Method(http.MethodPost, "/wait", s.withDeadline(s.execBudget, handlerFunc(s.handleWaitProcess)))
		r.Method(http.MethodPost, "/stdin", handlerFunc(s.handleProcessStdin))
		r.Method(http.MethodPost, "/signal", handlerFunc(s.handleSignalProcess))
		r.Method(http.MethodPost, "/resize", handlerFunc(s.handleResizeProcess))
	})
}

// processView is a process as the API shows it.
type processView struct {
	agent.ProcessInfo
	SandboxID string `json:"sandbox_id"`
	// SurvivesPause is false where a pause stops the sandbox instead of
	// freezing it (Nomad): its processes end, only /workspace is kept.
	SurvivesPause bool `json:"survives_pause"`
}

func viewProcess(sb *fsm.Sandbox, in agent.ProcessInfo) processView {
	if in.Argv == nil {
		in.Argv = []string{}
	}
	return processView{ProcessInfo: in, SandboxID: sb.ID, SurvivesPause: survivesPause(sb)}
}

// survivesPause: Docker freezes a paused container (its processes wait in
// memory); Nomad cannot, so a pause there archives /workspace and stops the
// allocation (placement/nomad/pause.go).
func survivesPause(sb *fsm.Sandbox) bool { return sb.Placement.Driver != "nomad" }

type startProcessRequest struct {
	SandboxID string            `json:"sandbox_id"`
	Command   json.RawMessage   `json:"command"`
	Env       map[string]string `json:"env"`
	Cwd       string            `json:"cwd"`
	Tag       string            `json:"tag"`
	Stdin     bool              `json:"stdin"`
	PTY       *agent.PTYSize    `json:"pty"`
	Timeout   *int64            `json:"timeout"`
}

// processTarget returns the caller's active sandbox and its agent.
func (s *Server) processTarget(r *http.Request, id string) (*fsm.Sandbox, processAgent, error) {
	if id == "" {
		return nil, nil, errBadRequest("sandbox_id is required")
	}
	sb, err := s.runnableSandbox(r, id)
	if err != nil {
		return nil, nil, err
	}
	s.touches.mark(sb.ID)
	pa, ok := s.agents.get(sb).(processAgent)
	if !ok {
		return nil, nil, errUnavailable("this sandbox's agent does not run background processes", nil)
	}
	return sb, pa, nil
}

// pidParam reads {pid}.
func pidParam(r *http.Request) (int, error) {
	pid, err := strconv.Atoi(chi.URLParam(r, "pid"))
	if err != nil || pid < 1 {
		return 0, errBadRequest("pid must be a positive integer")
	}
	return pid, nil
}

func (s *Server) handleStartProcess(w http.ResponseWriter, r *http.Request) error {
	var req startProcessRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	out := agent.ProcessStartRequest{Env: req.Env, Tag: req.Tag, Stdin: req.Stdin, PTY: req.PTY}
	if len(req.Tag) > agent.MaxProcessTag {
		return errBadRequest("tag must be at most %d bytes", agent.MaxProcessTag)
	}
	hasCommand := len(req.Command) > 0 && string(req.Command) != "null"
	switch {
	case hasCommand:
		argv, shell, err := parseCommand(req.Command)
		if err != nil {
			return err
		}
		out.Argv, out.Shell = argv, shell
	case req.PTY != nil:
		out.Argv = defaultPTYCommand
	default:
		return errBadRequest("command is required (a pty without one runs a login shell)")
	}
	if req.PTY != nil && (req.PTY.Rows < 1 || req.PTY.Cols < 1 || req.PTY.Rows > agent.MaxPTYCells || req.PTY.Cols > agent.MaxPTYCells) {
		return errUnprocessable("pty rows and cols must be between 1 and %d", agent.MaxPTYCells)
	}
	if req.Timeout != nil {
		maxSecs := int64(maxProcessLifetime / time.Second)
		if *req.Timeout < 0 || *req.Timeout > maxSecs {
			return errUnprocessable("timeout must be between 0 (none: the sandbox's lifetime) and %d seconds", maxSecs)
		}
		out.Timeout = time.Duration(*req.Timeout) * time.Second
	}
	if req.Cwd != "" {
		cwd, err := cleanPath("cwd", req.Cwd)
		if err != nil {
			return err
		}
		out.Cwd = cwd
	}
	sb, pa, err := s.processTarget(r, req.SandboxID)
	if err != nil {
		return err
	}
	out.Env = sandboxEnv(sb, out.Env)
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	info, err := pa.StartProcess(ctx, out)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewProcess(sb, *info))
	return nil
}

// parseCommand reads a command as /execute does: an argv array, or a
// string for /bin/sh -c.
func parseCommand(raw json.RawMessage) (argv []string, shell string, err error) {
	switch {
	case json.Unmarshal(raw, &argv) == nil:
		if len(argv) == 0 || argv[0] == "" {
			return nil, "", errBadRequest("command must not be empty")
		}
		return argv, "", nil
	case json.Unmarshal(raw, &shell) == nil:
		if shell == "" {
			return nil, "", errBadRequest("command must not be empty")
		}
		return nil, shell, nil
	}
	return nil, "", errBadRequest("command must be an array of strings or a string")
}

func (s *Server) handleListProcesses(w http.ResponseWriter, r *http.Request) error {
	sb, pa, err := s.processTarget(r, r.URL.Query().Get("sandbox_id"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	list, err := pa.ListProcesses(ctx)
	if err != nil {
		return agentFailure(err)
	}
	views := make([]processView, 0, len(list))
	for _, p := range list {
		views = append(views, viewProcess(sb, p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandbox_id": sb.ID, "survives_pause": survivesPause(sb), "processes": views})
	return nil
}

func (s *Server) handleGetProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	sb, pa, err := s.processTarget(r, r.URL.Query().Get("sandbox_id"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	info, err := pa.Process(ctx, pid)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewProcess(sb, *info))
	return nil
}

type waitProcessRequest struct {
	SandboxID string `json:"sandbox_id"`
	Timeout   *int64 `json:"timeout"`
}

// handleWaitProcess waits (bounded) for a process to end; a process still
// running when the wait runs out is a 200 with "running": true, so that a
// client simply waits again.
func (s *Server) handleWaitProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	var req waitProcessRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	timeout := s.cfg.DefaultExecTimeout
	if req.Timeout != nil {
		maxSecs := int64(s.cfg.MaxExecTimeout / time.Second)
		if *req.Timeout < 0 || *req.Timeout > maxSecs {
			return errUnprocessable("timeout must be between 0 and %d seconds", maxSecs)
		}
		timeout = time.Duration(*req.Timeout) * time.Second
	}
	sb, pa, err := s.processTarget(r, req.SandboxID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout+processCallTimeout)
	defer cancel()
	info, err := pa.WaitProcess(ctx, pid, timeout)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, viewProcess(sb, *info))
	return nil
}

type stdinRequest struct {
	SandboxID string `json:"sandbox_id"`
	Data      string `json:"data"`
	Close     bool   `json:"close"`
}

func (s *Server) handleProcessStdin(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	var req stdinRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if len(req.Data) > agent.MaxStdinChunk {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Msg: "stdin data is limited to " + strconv.Itoa(agent.MaxStdinChunk) + " bytes per request; send it in chunks"}
	}
	_, pa, err := s.processTarget(r, req.SandboxID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	if err := pa.SendStdin(ctx, pid, agent.StdinRequest{Data: req.Data, Close: req.Close}); err != nil {
		return agentFailure(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type signalRequest struct {
	SandboxID string `json:"sandbox_id"`
	Signal    string `json:"signal"`
}

func (s *Server) handleSignalProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	var req signalRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Signal == "" {
		req.Signal = "SIGKILL"
	}
	_, pa, err := s.processTarget(r, req.SandboxID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	if err := pa.SignalProcess(ctx, pid, req.Signal); err != nil {
		return agentFailure(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type resizeRequest struct {
	SandboxID string `json:"sandbox_id"`
	Rows      int    `json:"rows"`
	Cols      int    `json:"cols"`
}

func (s *Server) handleResizeProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	var req resizeRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	_, pa, err := s.processTarget(r, req.SandboxID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), processCallTimeout)
	defer cancel()
	if err := pa.ResizeProcess(ctx, pid, agent.PTYSize{Rows: req.Rows, Cols: req.Cols}); err != nil {
		return agentFailure(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
