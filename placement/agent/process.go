package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"
)

// drainGrace bounds how long output is read after the process group is gone:
// only a descendant that escaped the group (setsid) can hold a pipe open.
const drainGrace = 500 * time.Millisecond

// readChunk is the read size per output stream; one streamed event at most.
const readChunk = 32 << 10

// procSpec is a validated, resolved exec request.
type procSpec struct {
	path      string
	argv      []string
	env       []string
	dir       string
	stdin     []byte
	timeout   time.Duration
	maxOutput int64
}

// outputFunc receives output as it arrives, already cut at rune boundaries
// and at the cap; it is called from one goroutine per stream.
type outputFunc func(stream string, data string)

// capture reads one output stream to EOF, keeping the first max bytes and
// discarding the rest so the child never blocks on a full pipe. Its buffer
// never grows past max: the agent's memory is the sandbox's (issue 11).
type capture struct {
	buf       []byte
	max       int64
	truncated bool
}

// keep appends b, growing the buffer by doubling but never beyond max.
func (c *capture) keep(b []byte) {
	if need := len(c.buf) + len(b); need > cap(c.buf) {
		grown := make([]byte, len(c.buf), min(max(2*cap(c.buf), need, readChunk), int(c.max)))
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, b...)
}

// text is what was kept, as valid UTF-8. It shares the buffer (no second
// copy of up to max bytes): call it once the stream is read.
func (c *capture) text() string {
	return strings.ToValidUTF8(unsafe.String(unsafe.SliceData(c.buf), len(c.buf)), "\uFFFD")
}

// readBufs recycles the per-stream read buffers: two fresh 32 KiB buffers
// per exec were cleared and collected again on every call, the largest
// allocation of an exec of "true".
var readBufs = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

func (c *capture) run(r *os.File, stream string, onOutput outputFunc) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	chunk := *bp
	var carry []byte // an incomplete UTF-8 sequence held back for the next event
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			keep := chunk[:n]
			if room := c.max - int64(len(c.buf)); int64(n) > room {
				keep = chunk[:max(room, 0)]
				c.truncated = true
			}
			c.keep(keep)
			if onOutput != nil && len(keep) > 0 {
				data := append(carry, keep...)
				data, carry = cutIncompleteRune(data)
				if len(data) > 0 {
					onOutput(stream, strings.ToValidUTF8(string(data), "\uFFFD"))
				}
				carry = bytes.Clone(carry)
			}
		}
		if err != nil {
			break
		}
	}
	if onOutput != nil && len(carry) > 0 {
		onOutput(stream, strings.ToValidUTF8(string(carry), "\uFFFD"))
	}
}

// cutIncompleteRune splits off a trailing UTF-8 sequence that the next read
// may complete.
func cutIncompleteRune(b []byte) (complete, rest []byte) {
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i], b[i:]
			}
			break
		}
	}
	return b, nil
}

// startError is a process that could not be started; it becomes an exit code
// the way a shell reports it (127 not found, 126 cannot execute).
type startError struct {
	name string
	err  error
}

func (e *startError) Error() string { return fmt.Sprintf("start %s: %v", e.name, e.err) }
func (e *startError) Unwrap() error { return e.err }

func (e *startError) result() *ExecResult {
	code := 126
	if errors.Is(e.err, fs.ErrNotExist) {
		code = 127
	}
	msg := e.err.Error()
	if code == 127 {
		msg = "command not found"
	}
	return &ExecResult{ExitCode: code, Stderr: fmt.Sprintf("%s: %s\n", e.name, msg)}
}

// run starts p, feeds its stdin, collects its output and returns how it
// ended. Cancelling ctx (the client went away) kills the process group.
func (s *Server) run(ctx context.Context, p procSpec, onOutput outputFunc) (*ExecResult, error) {
	startMemoryGuard(s.log)
	stdin, stdinW, err := s.stdinFor(p.stdin)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(stdin, stdinW)
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(stdin, stdinW, outR, outW)
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	attr := &syscall.ProcAttr{
		Dir:   p.dir,
		Env:   p.env,
		Files: []uintptr{stdin.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	began := time.Now()
	pid, done, err := s.startProc(p, attr)
	// The child has its copies; ours must go so that EOF comes when it exits.
	closeAll(outW, errW)
	if stdin != s.devNull {
		closeAll(stdin)
	}
	if err != nil {
		closeAll(stdinW, outR, errR)
		return nil, &startError{name: p.argv[0], err: err}
	}
	markUserProcess(s.log, pid)
	s.track(pid, true)
	defer s.track(pid, false)

	if stdinW != nil {
		go func() {
			_, _ = stdinW.Write(p.stdin) // EPIPE: the process did not read it all
			_ = stdinW.Close()
		}()
	}
	stdout := &capture{max: p.maxOutput}
	stderr := &capture{max: p.maxOutput}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); stdout.run(outR, EventStdout, onOutput) }()
	go func() { defer readers.Done(); stderr.run(errR, EventStderr, onOutput) }()

	var timedOut atomic.Bool
	timer := time.AfterFunc(p.timeout, func() {
		timedOut.Store(true)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	})
	var ws syscall.WaitStatus
	select {
	case ws = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case ws = <-done:
		case <-time.After(10 * time.Second):
			// A process stuck in uninterruptible sleep; its waiter stays behind.
			s.log.Warn("agent: process did not die after SIGKILL", "pid", pid)
		}
	}
	timer.Stop()
	elapsed := time.Since(began)

	// The group is dead; whatever it wrote is in the pipes and is read now.
	deadline := time.Now().Add(drainGrace)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	readers.Wait()
	closeAll(outR, errR)

	res := &ExecResult{
		ExitCode:        exitCode(ws),
		Stdout:          stdout.text(),
		Stderr:          stderr.text(),
		StdoutTruncated: stdout.truncated,
		StderrTruncated: stderr.truncated,
		DurationMs:      elapsed.Milliseconds(),
		TimedOut:        timedOut.Load(),
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("exec %s: %w", p.argv[0], err)
	}
	return res, nil
}

// startProc forks p from the warm Python server when it is "python3 -c"
// and the server can run it exactly so; otherwise, and whenever the server
// fails before the child exists, it fork+execs p.
func (s *Server) startProc(p procSpec, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	if s.zygote.eligible(p) {
		pid, done, err := s.zygote.start(p, attr.Files)
		if err == nil {
			return pid, done, nil
		}
		s.log.Info("agent: python exec runs cold", "reason", err)
	}
	return s.spawn.start(p.path, p.argv, attr)
}

// stdinFor returns the child's stdin and, when there is input, the write end
// the agent feeds it through.
func (s *Server) stdinFor(data []byte) (child, w *os.File, err error) {
	if len(data) == 0 && s.devNull != nil {
		return s.devNull, nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	return r, w, nil
}

// exitCode follows the shell: the exit status, or 128+signal.
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return -1
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}
