package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"
)

// stdinWriteTimeout bounds one stdin write: a process that does not read
// its input must not hold a request (and a goroutine) forever.
const stdinWriteTimeout = 10 * time.Second

// procTable holds the background processes of one agent. They belong to the
// agent, not to a request: a client or a control node that goes away leaves
// them running, and their output waits in a ring for whoever connects next.
type procTable struct {
	mu       sync.Mutex
	procs    map[int]*bgProc
	starting int // reserved by starts in flight, so that parallel starts cannot pass the bound
}

func newProcTable() *procTable { return &procTable{procs: make(map[int]*bgProc)} }

// bgProc is one background process.
type bgProc struct {
	pid       int
	tag       string
	argv      []string
	cwd       string
	startedAt time.Time

	mu       sync.Mutex
	ring     *outputRing
	changed  chan struct{} // closed (and replaced) when output or state changes
	stdin    *os.File      // pipe write end; nil without stdin or once closed
	pty      *os.File      // terminal master; nil for pipes
	hasStdin bool
	ended    bool // the process has been reaped
	drained  bool // ended, and every byte of output is in the ring
	ws       syscall.WaitStatus
	timedOut bool
	endedAt  time.Time
	done     chan struct{} // closed once drained
}

// notify wakes every reader; p.mu is held.
func (p *bgProc) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *bgProc) info() ProcessInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := ProcessInfo{PID: p.pid, Tag: p.tag, Argv: p.argv, Cwd: p.cwd, PTY: p.pty != nil,
		Stdin: p.hasStdin, Running: !p.ended, StartedAt: p.startedAt,
		OutputStart: p.ring.start, OutputEnd: p.ring.end, TimedOut: p.timedOut}
	if p.ended {
		code := exitCode(p.ws)
		in.ExitCode = &code
		if p.ws.Signaled() {
			in.Signal = signalName(p.ws.Signal())
		}
		t := p.endedAt
		in.EndedAt = &t
	}
	return in
}

// get returns the process with pid, or a 404.
func (t *procTable) get(pid int) (*bgProc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.procs[pid]; ok {
		return p, nil
	}
	return nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no background process %d", pid)}
}

// list returns every process the table holds, oldest first.
func (t *procTable) list() []ProcessInfo {
	t.mu.Lock()
	ps := make([]*bgProc, 0, len(t.procs))
	for _, p := range t.procs {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	out := make([]ProcessInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// reserve makes room for one more process: it forgets the oldest ended one
// when the table is full, and refuses when every process still runs.
func (t *procTable) reserve() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.procs)+t.starting < MaxProcesses {
		t.starting++
		return nil
	}
	var oldest *bgProc
	for _, p := range t.procs {
		p.mu.Lock()
		ended := p.ended
		p.mu.Unlock()
		if ended && (oldest == nil || p.startedAt.Before(oldest.startedAt)) {
			oldest = p
		}
	}
	if oldest == nil {
		return &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: fmt.Sprintf("this sandbox already runs %d background processes, the most it may; kill or wait for one first", MaxProcesses)}
	}
	delete(t.procs, oldest.pid)
	t.starting++
	return nil
}

// add records a started process (p nil: the start failed) and gives back
// its reservation. A pid the kernel reused replaces the ended process that
// had it.
func (t *procTable) add(p *bgProc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.starting--
	if p != nil {
		t.procs[p.pid] = p
	}
}

// startBackground validates req, starts the process and returns at once.
func (s *Server) startBackground(req ProcessStartRequest) (ProcessInfo, error) {
	if len(req.Tag) > MaxProcessTag {
		return ProcessInfo{}, errBadRequest("tag longer than %d bytes", MaxProcessTag)
	}
	if req.PTY != nil && (req.PTY.Rows < 1 || req.PTY.Cols < 1 || req.PTY.Rows > MaxPTYCells || req.PTY.Cols > MaxPTYCells) {
		return ProcessInfo{}, errUnprocessable("pty rows and cols must be between 1 and %d", MaxPTYCells)
	}
	if req.Timeout < 0 {
		return ProcessInfo{}, errUnprocessable("timeout must not be negative")
	}
	env := req.Env
	if req.PTY != nil {
		if _, ok := env["TERM"]; !ok {
			env = make(map[string]string, len(req.Env)+1)
			for k, v := range req.Env {
				env[k] = v
			}
			env["TERM"] = "xterm-256color"
		}
	}
	// prepare wants an exec timeout; a background process has its own.
	spec, cleanup, err := s.prepare(ExecRequest{Argv: req.Argv, Shell: req.Shell, Env: env, Cwd: req.Cwd, Timeout: time.Second})
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			return ProcessInfo{}, errUnprocessable("%v", se)
		}
		return ProcessInfo{}, err
	}
	defer cleanup()
	if err := s.procs.reserve(); err != nil {
		return ProcessInfo{}, err
	}
	startMemoryGuard(s.log)
	p := &bgProc{tag: req.Tag, argv: spec.argv, cwd: spec.dir, ring: newOutputRing(ProcessRingBytes),
		changed: make(chan struct{}), done: make(chan struct{})}
	var readers []*os.File
	var done <-chan syscall.WaitStatus
	if req.PTY != nil {
		readers, done, err = s.startPTY(p, spec, *req.PTY)
	} else {
		readers, done, err = s.startPiped(p, spec, req.Stdin)
	}
	if err != nil {
		s.procs.add(nil)
		return ProcessInfo{}, err
	}
	markUserProcess(s.log, p.pid)
	s.track(p.pid, true) // so Shutdown's signal reaches it too
	s.procs.add(p)
	s.log.Info("agent: background process started", "pid", p.pid, "tag", p.tag, "argv0", spec.argv[0], "pty", req.PTY != nil)
	go s.superviseBackground(p, readers, done, req.Timeout)
	return p.info(), nil
}

// startPiped starts p with pipes for stdout and stderr (and stdin if asked).
func (s *Server) startPiped(p *bgProc, spec procSpec, withStdin bool) ([]*os.File, <-chan syscall.WaitStatus, error) {
	stdin := s.devNull
	var stdinW *os.File
	if withStdin || stdin == nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("stdin pipe: %w", err)
		}
		stdin, stdinW = r, w
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(stdinW)
		return nil, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(stdinW, outR, outW)
		return nil, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	attr := &syscall.ProcAttr{Dir: spec.dir, Env: spec.env,
		Files: []uintptr{stdin.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true}}
	p.startedAt = time.Now().UTC()
	pid, done, err := s.spawn.start(spec.path, spec.argv, attr)
	closeAll(outW, errW)
	if stdin != s.devNull {
		closeAll(stdin)
	}
	if err != nil {
		closeAll(stdinW, outR, errR)
		return nil, nil, errUnprocessable("start %s: %v", spec.argv[0], err)
	}
	p.pid, p.stdin, p.hasStdin = pid, stdinW, withStdin
	return []*os.File{outR, errR}, done, nil
}

// superviseBackground copies output into the ring until the process ends,
// then records how it ended. The timer, if any, kills the group.
func (s *Server) superviseBackground(p *bgProc, readers []*os.File, done <-chan syscall.WaitStatus, timeout time.Duration) {
	var wg sync.WaitGroup
	streams := []string{EventStdout, EventStderr}
	if p.pty != nil {
		streams = []string{EventPTY}
	}
	for i, r := range readers {
		wg.Add(1)
		go func(r *os.File, stream string) {
			defer wg.Done()
			p.collect(r, stream)
		}(r, streams[i])
	}
	var timedOut bool
	var timer *time.Timer
	var timerFired = make(chan struct{})
	if timeout > 0 {
		timer = time.AfterFunc(timeout, func() {
			close(timerFired)
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		})
	}
	ws := <-done
	if timer != nil && !timer.Stop() {
		<-timerFired
		timedOut = true
	}
	s.track(p.pid, false)
	p.mu.Lock()
	p.ended, p.ws, p.endedAt, p.timedOut = true, ws, time.Now().UTC(), timedOut
	if p.stdin != nil {
		_ = p.stdin.Close()
		p.stdin = nil
	}
	p.notify()
	p.mu.Unlock()
	// The group is gone; what it wrote is read now. Only a descendant that
	// left the group can hold the other end open past the grace.
	deadline := time.Now().Add(drainGrace)
	for _, r := range readers {
		_ = r.SetReadDeadline(deadline)
	}
	wg.Wait()
	closeAll(readers...)
	p.mu.Lock()
	if p.pty != nil {
		_ = p.pty.Close()
	}
	p.drained = true
	p.notify()
	p.mu.Unlock()
	close(p.done)
	s.log.Info("agent: background process ended", "pid", p.pid, "tag", p.tag, "exit_code", exitCode(ws), "timed_out", timedOut)
}

// collect reads one stream into the ring until EOF (or EIO: a terminal
// whose every slave end is closed), holding back a split rune so that each
// chunk is whole UTF-8 where the program wrote UTF-8.
func (p *bgProc) collect(r *os.File, stream string) {
	buf := make([]byte, readChunk)
	var carry []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			data := append(carry, buf[:n]...)
			data, rest := cutIncompleteRune(data)
			p.mu.Lock()
			p.ring.write(stream, data)
			p.notify()
			p.mu.Unlock()
			carry = append([]byte(nil), rest...)
		}
		if err != nil {
			break
		}
	}
	if len(carry) > 0 {
		p.mu.Lock()
		p.ring.write(stream, carry)
		p.notify()
		p.mu.Unlock()
	}
}

// sendStdin writes data to the process's stdin or terminal, then closes
// stdin when asked (a terminal gets ^D, its end-of-file character).
func (p *bgProc) sendStdin(req StdinRequest) error {
	if len(req.Data) > MaxStdinChunk {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("stdin data over %d bytes; send it in chunks", MaxStdinChunk)}
	}
	p.mu.Lock()
	w := p.stdin
	if p.pty != nil {
		w = p.pty
	}
	ended, has := p.ended, p.hasStdin || p.pty != nil
	p.mu.Unlock()
	switch {
	case ended:
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("process %d has ended", p.pid)}
	case !has:
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("process %d was started without stdin (start it with stdin: true)", p.pid)}
	case w == nil:
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("stdin of process %d is closed", p.pid)}
	}
	data := []byte(req.Data)
	if req.Close && p.pty != nil {
		data = append(data, 4) // ^D: EOF on a terminal in canonical mode
	}
	if len(data) > 0 {
		_ = w.SetWriteDeadline(time.Now().Add(stdinWriteTimeout))
		if _, err := w.Write(data); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return &Error{Status: http.StatusConflict, Code: CodeConflict,
					Message: fmt.Sprintf("process %d did not read its input within %s", p.pid, stdinWriteTimeout)}
			}
			return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("write stdin of process %d: %v", p.pid, err)}
		}
	}
	if req.Close && p.pty == nil {
		p.mu.Lock()
		if p.stdin != nil {
			_ = p.stdin.Close()
			p.stdin = nil
		}
		p.mu.Unlock()
	}
	return nil
}

// signal sends sig to the process's whole group (a shell's children too).
func (p *bgProc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	ended := p.ended
	p.mu.Unlock()
	if ended {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("process %d has ended", p.pid)}
	}
	// Until it is reaped the group id cannot be reused (see spawner).
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process %d: %w", p.pid, err)
	}
	return nil
}
