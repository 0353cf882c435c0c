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
	"sync"
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
	// runnerMaxMessage bounds one message from the runner: a cell's final
	// value in every representation at the largest output cap, plus framing.
	// The runner is sandbox code: a bigger frame kills it, not the agent.
	runnerMaxMessage = 8*defaultOutputBound + 1<<20
)

// runnerMsg is one message of the runner (context_runner.py describes the wire).
type runnerMsg struct {
	T       string       `json:"t"` // ready, out, err, done
	D       string       `json:"d"`
	Cut     bool         `json:"cut"`
	PID     int          `json:"pid"`
	N       int          `json:"n"`
	Results []CodeOutput `json:"results"`
	Error   *CodeError   `json:"error"`
}

// runnerProc is one running interpreter of a context.
type runnerProc struct {
	pid  int
	conn *os.File // our end of the socketpair
	// dead closes once the runner's socket is closed: it exited, or was killed.
	dead chan struct{}
	// exited closes once the process is reaped; status is then set.
	exited chan struct{}
	status syscall.WaitStatus

	mu   sync.Mutex
	sink *cellSink // the cell in flight, nil between cells
	wmu  sync.Mutex
}

// cellSink collects one cell's output as the runner forwards it.
type cellSink struct {
	stdout, stderr capture
	onOutput       outputFunc
	done           chan runnerMsg // the runner's "done", once
}

func newCellSink(max int64, onOutput outputFunc) *cellSink {
	return &cellSink{stdout: capture{max: max}, stderr: capture{max: max}, onOutput: onOutput, done: make(chan runnerMsg, 1)}
}

// add keeps what fits under the cap and passes it on to a stream.
func (c *cellSink) add(stream string, cp *capture, data string, cut bool) {
	if cut {
		cp.truncated = true
	}
	if data == "" {
		return
	}
	b := []byte(data)
	if room := cp.max - int64(len(cp.buf)); int64(len(b)) > room {
		b = b[:max(room, 0)]
		cp.truncated = true
	}
	if len(b) == 0 {
		return
	}
	cp.keep(b)
	if c.onOutput != nil {
		c.onOutput(stream, string(b))
	}
}

// startRunner starts the context's interpreter the way an exec starts a
// process: the same spawner (own process group, reaped), the context's
// merged environment, the sandbox user and write containment inherited from
// the agent, and the OOM killer's first choice.
func (s *Server) startRunner(python, cwd string, env []string) (*runnerProc, error) {
	startMemoryGuard(s.log)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
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
	if s.devNull == nil {
		closeAll(mine, logR, logW)
		return nil, errors.New("context runner: no /dev/null")
	}
	null := s.devNull.Fd()
	attr := &syscall.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: []uintptr{null, null, logW.Fd(), theirs.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, done, err := s.spawn.start(python, []string{python, "-c", contextRunnerScript}, attr)
	closeAll(logW)
	if err != nil {
		closeAll(mine, logR)
		return nil, fmt.Errorf("start %s: %w", python, err)
	}
	markUserProcess(s.log, pid)
	s.track(pid, true)
	rp := &runnerProc{pid: pid, conn: mine, dead: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		rp.status = <-done
		s.track(pid, false)
		close(rp.exited)
	}()
	go s.logRunnerStderr(logR, pid)

	ready := make(chan error, 1)
	go rp.read(ready)
	select {
	case err = <-ready:
	case <-time.After(runnerReadyTimeout):
		err = fmt.Errorf("no answer within %s", runnerReadyTimeout)
	}
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

// read dispatches the runner's messages until its socket closes: output to
// the cell in flight (dropped between cells: a background process's), and
// the cell's end. The first message must be "ready".
func (rp *runnerProc) read(ready chan<- error) {
	defer close(rp.dead)
	defer closeAll(rp.conn)
	r := bufio.NewReaderSize(rp.conn, readChunk)
	first := true
	for {
		m, err := readRunnerMsg(r)
		if err != nil {
			if first {
				ready <- err
			}
			return
		}
		if first {
			first = false
			if m.T != "ready" {
				ready <- fmt.Errorf("first message %q, want ready", m.T)
				return
			}
			ready <- nil
			continue
		}
		rp.mu.Lock()
		sink := rp.sink
		rp.mu.Unlock()
		if sink == nil {
			continue
		}
		switch m.T {
		case "out":
			sink.add(EventStdout, &sink.stdout, m.D, m.Cut)
		case "err":
			sink.add(EventStderr, &sink.stderr, m.D, m.Cut)
		case "done":
			select {
			case sink.done <- m:
			default:
			}
		}
	}
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
	if _, err := rp.conn.Write(frame); err != nil {
		return fmt.Errorf("send to runner: %w", err)
	}
	return nil
}

func (rp *runnerProc) setSink(s *cellSink) {
	rp.mu.Lock()
	rp.sink = s
	rp.mu.Unlock()
}

// interrupt raises KeyboardInterrupt in the cell: SIGINT to the runner
// alone, so the processes the cell started are not hit.
func (rp *runnerProc) interrupt() {
	_ = syscall.Kill(rp.pid, syscall.SIGINT)
}

// kill ends the runner and everything in its process group, and waits
// (bounded) until it is reaped.
func (rp *runnerProc) kill() {
	_ = syscall.Kill(-rp.pid, syscall.SIGKILL)
	select {
	case <-rp.exited:
	case <-time.After(runnerKillTimeout):
	}
	select {
	case <-rp.dead:
	case <-time.After(runnerKillTimeout):
		_ = rp.conn.Close()
	}
}

// describeExit says how a runner that is gone ended, for a cell's error.
func (rp *runnerProc) describeExit() string {
	select {
	case <-rp.exited:
	case <-time.After(time.Second):
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
