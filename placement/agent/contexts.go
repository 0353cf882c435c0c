package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Stateful code contexts. Each context is one long-lived Python interpreter
// (context_runner.py) started like an exec, so it runs as the sandbox user,
// in its own process group, under the same write containment and OOM score.
// Cells of one context run one at a time; contexts are independent processes.

const (
	// MaxContexts bounds the contexts of one sandbox: each is an
	// interpreter (~10 MB) that lives until deleted.
	MaxContexts = 16
	// contextInterruptGrace is how long a cell may take to stop after its
	// SIGINT before its context is restarted.
	contextInterruptGrace = 2 * time.Second
	// defaultCellOutput caps each output stream of a cell by default.
	defaultCellOutput = 4 << 20
)

// contextManager owns the contexts of one agent.
type contextManager struct {
	s *Server

	mu     sync.Mutex
	ctxs   map[string]*codeContext
	closed bool
}

func newContextManager(s *Server) *contextManager {
	return &contextManager{s: s, ctxs: make(map[string]*codeContext)}
}

// codeContext is one context: its settings, and the interpreter now serving it.
type codeContext struct {
	info   ContextInfo
	interp string // the interpreter's path
	env    []string
	sem    chan struct{} // held by the cell in flight

	mu      sync.Mutex
	proc    *runnerProc // nil: not running; the next cell starts one
	lost    bool        // the interpreter ended between cells: the next result says restarted
	deleted bool
	// restarting: a restart request killed the interpreter; the cell in
	// flight leaves starting the next one to it.
	restarting bool
}

// contextInterpreters are the languages a context can run, and the
// interpreter each needs in the image.
var contextInterpreters = map[string]string{"python": "python3", "bash": "bash"}

// startContextProc starts a context's interpreter for lang.
func (s *Server) startContextProc(lang, path, cwd string, env []string) (*runnerProc, error) {
	if lang == "bash" {
		return s.startBashRunner(path, cwd, env)
	}
	return s.startRunner(path, cwd, env)
}

func errContextNotFound(id string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("code context %s not found", id)}
}

// create validates req and starts the context's interpreter.
func (m *contextManager) create(req ContextRequest) (*ContextInfo, error) {
	lang := strings.ToLower(req.Language)
	if lang == "" || lang == "python3" {
		lang = "python"
	}
	interp, ok := contextInterpreters[lang]
	if !ok {
		return nil, errUnprocessable("code contexts support languages python and bash, not %q", req.Language)
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = m.s.cfg.Workdir
	}
	if !filepath.IsAbs(cwd) {
		return nil, errBadRequest("cwd %q is not absolute", cwd)
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return nil, errBadRequest("cwd %q is not a directory in the sandbox", cwd)
	}
	env, pathEnv, err := m.s.mergeEnv(req.Env)
	if err != nil {
		return nil, err
	}
	path, ok := lookPath(interp, pathEnv, cwd)
	if !ok {
		return nil, errUnprocessable("language %s: interpreter %s is not installed in this sandbox image", lang, interp)
	}
	var raw [4]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("context id: %w", err)
	}
	cc := &codeContext{
		info:   ContextInfo{ID: hex.EncodeToString(raw[:]), Language: lang, Cwd: cwd, CreatedAt: time.Now().UTC()},
		interp: path,
		env:    env,
		sem:    make(chan struct{}, 1),
	}
	// Reserve the slot before the ~30 ms start, so parallel creates cannot
	// pass the bound together.
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeInternal, Message: "agent is shutting down"}
	case len(m.ctxs) >= MaxContexts:
		m.mu.Unlock()
		return nil, &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: fmt.Sprintf("this sandbox already has %d code contexts, the most it may have; delete one first", MaxContexts)}
	}
	m.ctxs[cc.info.ID] = cc
	m.mu.Unlock()

	proc, err := m.s.startContextProc(lang, path, cwd, env)
	if err != nil {
		m.mu.Lock()
		delete(m.ctxs, cc.info.ID)
		m.mu.Unlock()
		return nil, err
	}
	cc.mu.Lock()
	cc.proc = proc
	cc.mu.Unlock()
	m.s.log.Debug("agent: code context created", "context", cc.info.ID, "pid", proc.pid)
	info := cc.info
	return &info, nil
}

func (m *contextManager) get(id string) (*codeContext, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cc, ok := m.ctxs[id]
	if !ok {
		return nil, errContextNotFound(id)
	}
	return cc, nil
}

func (m *contextManager) list() []ContextInfo {
	m.mu.Lock()
	out := make([]ContextInfo, 0, len(m.ctxs))
	for _, cc := range m.ctxs {
		out = append(out, cc.info)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// remove deletes a context: its interpreter and everything it started are
// killed, and a cell in flight ends as not found.
func (m *contextManager) remove(id string) error {
	m.mu.Lock()
	cc, ok := m.ctxs[id]
	delete(m.ctxs, id)
	m.mu.Unlock()
	if !ok {
		return errContextNotFound(id)
	}
	cc.mu.Lock()
	cc.deleted = true
	proc := cc.proc
	cc.proc = nil
	cc.mu.Unlock()
	if proc != nil {
		proc.kill()
	}
	return nil
}

// restart replaces the context's interpreter with a fresh one: every name
// it defined is gone. A cell in flight is killed and ends as ContextDied.
func (m *contextManager) restart(ctx context.Context, id string) (*ContextInfo, error) {
	cc, err := m.get(id)
	if err != nil {
		return nil, err
	}
	cc.setRestarting(true)
	defer cc.setRestarting(false)
	cc.kill()
	select {
	case cc.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("restart context %s: %w", id, ctx.Err())
	}
	defer func() { <-cc.sem }()
	cc.kill() // one the cell in flight may have started after the first
	if _, _, err := m.proc(cc); err != nil {
		return nil, err
	}
	cc.mu.Lock()
	cc.lost = false // the caller asked for the fresh state
	cc.mu.Unlock()
	info := cc.info
	return &info, nil
}

func (cc *codeContext) setRestarting(on bool) {
	cc.mu.Lock()
	cc.restarting = on
	cc.mu.Unlock()
}

// kill ends the context's interpreter, if any; the next cell starts another.
func (cc *codeContext) kill() {
	cc.mu.Lock()
	proc := cc.proc
	cc.proc = nil
	cc.mu.Unlock()
	if proc != nil {
		proc.kill()
	}
}

// proc returns the context's running interpreter, starting one when there
// is none or it has ended; restarted reports that the state was lost since
// the last cell. The caller holds cc.sem.
func (m *contextManager) proc(cc *codeContext) (rp *runnerProc, restarted bool, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.deleted {
		return nil, false, errContextNotFound(cc.info.ID)
	}
	if rp := cc.proc; rp != nil {
		select {
		case <-rp.dead:
			cc.proc, cc.lost = nil, true
		default:
			return rp, false, nil
		}
	}
	rp, err = m.s.startContextProc(cc.info.Language, cc.interp, cc.info.Cwd, cc.env)
	if err != nil {
		return nil, false, err
	}
	cc.proc = rp
	restarted, cc.lost = cc.lost, false
	return rp, restarted, nil
}

// dropProc forgets rp after it ended or was killed in a cell, and starts
// the next interpreter at once, so the context is usable again when the
// cell's result arrives. The caller holds cc.sem.
func (m *contextManager) dropProc(cc *codeContext, rp *runnerProc) {
	rp.kill()
	cc.mu.Lock()
	if cc.proc == rp {
		cc.proc = nil
	}
	cc.mu.Unlock()
	if _, _, err := m.proc(cc); err != nil {
		m.s.log.Warn("agent: code context restart failed; the next cell tries again", "context", cc.info.ID, "err", err)
		cc.mu.Lock()
		cc.lost = true
		cc.mu.Unlock()
	}
}

// run executes one cell. Past the timeout the cell gets SIGINT
// (KeyboardInterrupt); past the grace period after that the context is
// restarted. A client that goes away interrupts its cell the same way.
func (m *contextManager) run(ctx context.Context, id string, req RunCodeRequest, onOutput outputFunc) (*RunCodeResult, error) {
	timeout := req.Timeout
	switch {
	case timeout < 0 || timeout > m.s.cfg.MaxTimeout:
		return nil, errUnprocessable("timeout %s out of range (0 to %s)", timeout, m.s.cfg.MaxTimeout)
	case timeout == 0:
		timeout = m.s.cfg.DefaultTimeout
	}
	maxOut := req.MaxOutputBytes
	switch {
	case maxOut < 0 || maxOut > m.s.cfg.MaxOutputLimit:
		return nil, errUnprocessable("max_output_bytes %d out of range (0 to %d)", maxOut, m.s.cfg.MaxOutputLimit)
	case maxOut == 0:
		maxOut = min(defaultCellOutput, m.s.cfg.MaxOutputLimit)
	}
	cc, err := m.get(id)
	if err != nil {
		return nil, err
	}
	// Cells of one context queue; the wait counts against the timeout.
	began := time.Now()
	queue := time.NewTimer(timeout)
	select {
	case cc.sem <- struct{}{}:
		queue.Stop()
	case <-queue.C:
		return nil, &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: fmt.Sprintf("code context %s stayed busy with another cell for the whole timeout", id)}
	case <-ctx.Done():
		queue.Stop()
		return nil, fmt.Errorf("run in context %s: %w", id, ctx.Err())
	}
	defer func() { <-cc.sem }()

	rp, restarted, err := m.proc(cc)
	if err != nil {
		return nil, err
	}
	sink := newCellSink(maxOut, onOutput)
	rp.setSink(sink)
	defer rp.setSink(nil)
	res := &RunCodeResult{Restarted: restarted, Results: []CodeOutput{}}
	finish := func() *RunCodeResult {
		rp.setSink(nil)
		sink.seal() // what a background process writes from now on is not this cell's
		res.Stdout, res.Stderr = sink.stdout.text(), sink.stderr.text()
		res.StdoutTruncated, res.StderrTruncated = sink.stdout.truncated, sink.stderr.truncated
		res.DurationMs = time.Since(began).Milliseconds()
		return res
	}
	cleanup, err := rp.sendCell(req.Code, maxOut)
	defer cleanup()
	if err != nil {
		m.dropProc(cc, rp)
		res.Restarted = true
		res.Error = &CodeError{Name: ErrNameContextDied, Value: "the interpreter could not take the cell (" + err.Error() + "); the context was restarted and its state is lost"}
		return finish(), nil
	}

	timer := time.NewTimer(timeout - time.Since(began))
	defer timer.Stop()
	var escalate <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case msg := <-sink.done:
			for _, fd := range msg.Marked {
				if p := rp.pipe(fd); p != nil && !p.awaitMark() {
					m.s.log.Debug("agent: cell's end mark not read in time", "context", id, "fd", fd)
				}
			}
			res.Results, res.Error, res.ExecutionCount = msg.Results, msg.Error, msg.N
			if res.Results == nil {
				res.Results = []CodeOutput{}
			}
			if err := ctx.Err(); err != nil {
				return finish(), fmt.Errorf("run in context %s: %w", id, err)
			}
			return finish(), nil
		case <-rp.dead:
			// The interpreter ended mid-cell; what it printed first is kept.
			why := rp.describeExit()
			deleted, restarting := cc.state()
			if deleted {
				return nil, errContextNotFound(id)
			}
			res.Restarted = true
			if restarting {
				res.Error = &CodeError{Name: ErrNameContextDied, Value: "the context was restarted while the cell ran; its state is lost"}
				return finish(), ctx.Err()
			}
			m.dropProc(cc, rp)
			res.Error = &CodeError{Name: ErrNameContextDied, Value: "the interpreter ended during the cell (" + why + "); the context was restarted and its state is lost"}
			return finish(), ctx.Err()
		case <-timer.C:
			res.TimedOut = true
			rp.interrupt()
			escalate = time.After(contextInterruptGrace)
		case <-done:
			done = nil
			rp.interrupt()
			escalate = time.After(contextInterruptGrace)
		case <-escalate:
			m.s.log.Info("agent: cell ignored its interrupt; restarting the context", "context", id, "pid", rp.pid)
			m.dropProc(cc, rp)
			res.Restarted = true
			res.Error = &CodeError{Name: ErrNameContextRestarted, Value: fmt.Sprintf(
				"the cell did not stop within %s of its interrupt; the context was restarted and its state is lost", contextInterruptGrace)}
			return finish(), ctx.Err()
		}
	}
}

func (cc *codeContext) state() (deleted, restarting bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.deleted, cc.restarting
}

// close kills every context; the agent is stopping.
func (m *contextManager) close() {
	m.mu.Lock()
	m.closed = true
	ctxs := m.ctxs
	m.ctxs = map[string]*codeContext{}
	m.mu.Unlock()
	for _, cc := range ctxs {
		cc.mu.Lock()
		cc.deleted = true
		cc.mu.Unlock()
		cc.kill()
	}
}
