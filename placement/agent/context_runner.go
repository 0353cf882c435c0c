package agent

import (
	"bufio"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// contextRunnerScript is the Python side of a code context, passed with -c
// like the zygote: the sandbox's root file system is read-only.
//
//go:embed context_runner.py
var contextRunnerScript string

const (
	// runnerReadyTimeout bounds the interpreter's start-up.
	runnerReadyTimeout = 10 * time.Second
	// runnerKillTimeout bounds the wait for a SIGKILLed runner to be reaped.
	runnerKillTimeout = 10 * time.Second
	// runnerReapWait bounds the wait for the status of a runner whose
	// socket closed: it has exited, and the spawner reaps it at once, but
	// a loaded machine can take its time.
	runnerReapWait = 5 * time.Second
	// runnerMaxMessage bounds one message from the runner: a cell's final
	// value in every representation at the largest output cap, plus framing.
	// The runner is sandbox code: a bigger frame kills it, not the agent.
	runnerMaxMessage = 8*defaultOutputBound + 1<<20
)

// runnerMsg is one message of the runner (context_runner.py describes the wire).
type runnerMsg struct {
	T       string       `json:"t"` // ready, done
	PID     int          `json:"pid"`
	Mark    string       `json:"mark"`
	N       int          `json:"n"`
	Results []CodeOutput `json:"results"`
	Error   *CodeError   `json:"error"`
	Marked  []int        `json:"marked"`
}

// runnerProc is one running interpreter of a context.
type runnerProc struct {
	pid  int
	conn *os.File // what the runner answers on (python: the socketpair; bash: its status pipe)
	in   *os.File // what the agent sends cells on (python: the socketpair; bash: its stdin)
	// sendCell hands one cell to the runner; cleanup runs once the cell ended.
	sendCell func(code string, maxOut int64) (cleanup func(), err error)
	// group: an interrupt goes to the whole process group (bash, as Ctrl-C
	// would), not to the interpreter alone (python: the cell's children
	// are left to it).
	group bool
	// sent numbers the cells handed to a bash runner.
	sent atomic.Int64
	// dead closes once the runner's socket is closed: it exited, or was killed.
	dead chan struct{}
	// exited closes once the process is reaped; status is then set.
	exited chan struct{}
	status syscall.WaitStatus

	// out and err read the runner's fd 1 and 2 until every writer is gone.
	out, err *outputPipe

	mu   sync.Mutex
	sink *cellSink // the cell in flight, nil between cells
	wmu  sync.Mutex
}

// cellSink collects one cell's output as the pipes deliver it.
type cellSink struct {
	mu             sync.Mutex // the two pipes add concurrently; onOutput sees one at a time
	sealed         bool       // the cell's result is being read: add keeps nothing more
	stdout, stderr capture
	onOutput       outputFunc
	done           chan runnerMsg // the runner's "done", once
}

func newCellSink(max int64, onOutput outputFunc) *cellSink {
	return &cellSink{stdout: capture{max: max}, stderr: capture{max: max}, onOutput: onOutput, done: make(chan runnerMsg, 1)}
}

// add keeps what fits under the cap and passes it on to a stream.
func (c *cellSink) add(stream string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sealed {
		return
	}
	cp := &c.stdout
	if stream == EventStderr {
		cp = &c.stderr
	}
	if room := cp.max - int64(len(cp.buf)); int64(len(b)) > room {
		b = b[:max(room, 0)]
		cp.truncated = true
	}
	if len(b) == 0 {
		return
	}
	cp.keep(b)
	if c.onOutput != nil {
		c.onOutput(stream, strings.ToValidUTF8(string(b), "\uFFFD"))
	}
}

// spawnContext starts a context's process the way an exec starts one: the
// same spawner (own process group, reaped), the context's merged
// environment, the sandbox user and write containment inherited from the
// agent, and the OOM killer's first choice. fd 1 and 2 are pipes the agent
// reads for the process's whole life; fd0, fd3 and fd4 (when not nil) are
// the caller's.
func (s *Server) spawnContext(path string, argv []string, cwd string, env []string, fd0, fd3, fd4 *os.File) (rp *runnerProc, outR, errR *os.File, err error) {
	startMemoryGuard(s.log)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("context stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, nil, nil, fmt.Errorf("context stderr pipe: %w", err)
	}
	files := []uintptr{fd0.Fd(), outW.Fd(), errW.Fd(), fd3.Fd()}
	if fd4 != nil {
		files = append(files, fd4.Fd())
	}
	attr := &syscall.ProcAttr{Dir: cwd, Env: env, Files: files, Sys: &syscall.SysProcAttr{Setpgid: true}}
	pid, done, err := s.spawn.start(path, argv, attr)
	// The child has its copies; ours must go so that EOF comes when it exits.
	closeAll(outW, errW)
	if err != nil {
		closeAll(outR, errR)
		return nil, nil, nil, fmt.Errorf("start %s: %w", path, err)
	}
	markUserProcess(s.log, pid)
	s.track(pid, true)
	rp = &runnerProc{pid: pid, dead: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		rp.status = <-done
		s.track(pid, false)
		close(rp.exited)
	}()
	return rp, outR, errR, nil
}

// seal ends the cell's output: a pipe that took the sink before it was
// detached adds nothing after this, so the captures can be read.
func (c *cellSink) seal() {
	c.mu.Lock()
	c.sealed = true
	c.mu.Unlock()
}

// startRunner starts a python context: context_runner.py with the agent's
// socket on fd 3 and the agent's log on fd 4.
func (s *Server) startRunner(python, cwd string, env []string) (*runnerProc, error) {
	if s.devNull == nil {
		return nil, errors.New("context runner: no /dev/null")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("context socketpair: %w", err)
	}
	// Non-blocking, so the runtime's poller serves it: reads end when it is
	// closed, and a send to a wedged runner can time out.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		closeAll(os.NewFile(uintptr(fds[0]), ""), os.NewFile(uintptr(fds[1]), ""))
		return nil, fmt.Errorf("context socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "context")
	theirs := os.NewFile(uintptr(fds[1]), "context-runner")
	defer closeAll(theirs)
	logR, logW, err := os.Pipe()
	if err != nil {
		closeAll(mine)
		return nil, fmt.Errorf("context log pipe: %w", err)
	}
	rp, outR, errR, err := s.spawnContext(python, []string{python, "-c", contextRunnerScript}, cwd, env, s.devNull, theirs, logW)
	closeAll(logW)
	if err != nil {
		closeAll(mine, logR)
		return nil, err
	}
	rp.conn, rp.in = mine, mine
	rp.sendCell = func(code string, maxOut int64) (func(), error) {
		return func() {}, rp.send(map[string]any{"code": code, "max_output": maxOut})
	}
	go s.logRunnerStderr(logR, rp.pid)

	ready := make(chan runnerMsg, 1)
	go rp.read(ready)
	var m runnerMsg
	select {
	case m = <-ready:
		if m.T != "ready" || len(m.Mark) < 16 {
			err = fmt.Errorf("first message %q, want ready with a mark", m.T)
		}
	case <-rp.dead:
		err = fmt.Errorf("it ended before it was ready")
	case <-time.After(runnerReadyTimeout):
		err = fmt.Errorf("no answer within %s", runnerReadyTimeout)
	}
	rp.out = newOutputPipe(outR, EventStdout, []byte(m.Mark), rp.currentSink)
	rp.err = newOutputPipe(errR, EventStderr, []byte(m.Mark), rp.currentSink)
	if err != nil {
		rp.kill()
		return nil, fmt.Errorf("context runner start: %w", err)
	}
	return rp, nil
}

// logRunnerStderr passes the runner's own failures (never a cell's output,
// which has its own pipes) to the agent's log.
func (s *Server) logRunnerStderr(r *os.File, pid int) {
	defer closeAll(r)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.log.Warn("agent: context runner stderr", "pid", pid, "line", sc.Text())
	}
}

// read dispatches the runner's messages until its socket closes: the first
// ("ready") to ready, each cell's "done" to the cell in flight.
func (rp *runnerProc) read(ready chan<- runnerMsg) {
	defer close(rp.dead)
	defer closeAll(rp.conn)
	r := bufio.NewReaderSize(rp.conn, readChunk)
	for first := true; ; first = false {
		m, err := readRunnerMsg(r)
		if err != nil {
			return
		}
		if first {
			ready <- m
			continue
		}
		if sink := rp.currentSink(); sink != nil && m.T == "done" {
			select {
			case sink.done <- m:
			default:
			}
		}
	}
}

// pipe is the reader of the runner's fd 1 or 2.
func (rp *runnerProc) pipe(fd int) *outputPipe {
	switch fd {
	case 1:
		return rp.out
	case 2:
		return rp.err
	}
	return nil
}

func (rp *runnerProc) currentSink() *cellSink {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.sink
}

func readRunnerMsg(r io.Reader) (runnerMsg, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return runnerMsg{}, fmt.Errorf("read runner message: %w", err)
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > runnerMaxMessage {
		return runnerMsg{}, fmt.Errorf("runner message of %d bytes over the bound of %d", n, runnerMaxMessage)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return runnerMsg{}, fmt.Errorf("read runner message: %w", err)
	}
	var m runnerMsg
	if err := json.Unmarshal(body, &m); err != nil {
		return runnerMsg{}, fmt.Errorf("decode runner message: %w", err)
	}
	return m, nil
}

// send writes one request to the runner.
func (rp *runnerProc) send(v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode runner request: %w", err)
	}
	frame := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	frame = append(frame, body...)
	rp.wmu.Lock()
	defer rp.wmu.Unlock()
	// The runner reads between cells; one that does not take a cell within
	// the start-up bound is wedged, and the caller restarts it.
	_ = rp.in.SetWriteDeadline(time.Now().Add(runnerReadyTimeout))
	defer func() { _ = rp.in.SetWriteDeadline(time.Time{}) }()
	if _, err := rp.in.Write(frame); err != nil {
		return fmt.Errorf("send to runner: %w", err)
	}
	return nil
}

func (rp *runnerProc) setSink(s *cellSink) {
	rp.mu.Lock()
	rp.sink = s
	rp.mu.Unlock()
}

// interrupt stops the cell: in python, SIGINT to the interpreter alone
// raises KeyboardInterrupt and leaves the processes the cell started alone;
// in bash, SIGINT to the group is a Ctrl-C.
func (rp *runnerProc) interrupt() {
	pid := rp.pid
	if rp.group {
		pid = -pid
	}
	_ = syscall.Kill(pid, syscall.SIGINT)
}

// kill ends the runner and everything in its process group, and waits
// (bounded) until it is reaped and its output read.
func (rp *runnerProc) kill() {
	_ = syscall.Kill(-rp.pid, syscall.SIGKILL)
	select {
	case <-rp.exited:
	case <-time.After(runnerKillTimeout):
	}
	if rp.in != rp.conn {
		closeAll(rp.in)
	}
	select {
	case <-rp.dead:
	case <-time.After(runnerKillTimeout):
		_ = rp.conn.Close()
	}
	rp.drain()
}

// drain waits until the output pipes have delivered what the dead runner
// wrote. Only a descendant that left the group (setsid) can hold them open
// longer, and it is cut off after drainGrace.
func (rp *runnerProc) drain() {
	for _, p := range []*outputPipe{rp.out, rp.err} {
		if p != nil {
			p.close(drainGrace)
		}
	}
}

// describeExit says how a runner that is gone ended, for a cell's error.
func (rp *runnerProc) describeExit() string {
	select {
	case <-rp.exited:
	case <-time.After(runnerReapWait):
		return "its socket closed"
	}
	ws := rp.status
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return "killed by SIGKILL (out of memory?)"
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
	return "ended"
}
