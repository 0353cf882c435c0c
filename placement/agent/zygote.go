package agent

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// zygoteScript is the Python fork server, passed with -c: the sandbox's
// root file system is read-only, so nothing is written to run it.
//
//go:embed zygote.py
var zygoteScript string

// Bounds of the warm Python fork server.
const (
	// zygoteMaxFailures is how many times the server may fail to start or
	// die unexpectedly before the agent stops trying and runs python cold.
	zygoteMaxFailures = 5
	// zygoteReplyTimeout bounds the wait for start-up and for a fork's pid.
	zygoteReplyTimeout = 10 * time.Second
	// zygoteMaxRequest keeps a request within one SOCK_SEQPACKET message
	// (the socket's default send buffer is ~208 KiB); larger ones run cold.
	zygoteMaxRequest = 160 << 10
)

// errZygoteUnusable means the request runs cold: not an error a user sees.
var errZygoteUnusable = errors.New("python zygote unusable")

// zygote owns the warm "python3 -c" fork server: it starts it lazily on the
// first python exec, again after it dies (within zygoteMaxFailures), and
// hands it the requests whose interpreter start-up it reproduces exactly.
type zygote struct {
	log     *slog.Logger
	spawn   spawner
	script  string
	env     []string // the base environment the server starts with
	pathEnv string
	startup string // the start-up relevant part of env; see startupEnv
	devNull *os.File
	timeout time.Duration // for start-up and for each fork's pid

	mu       sync.Mutex
	cur      *zygoteProc
	failures int
	closed   bool
}

func newZygote(log *slog.Logger, spawn spawner, env []string, pathEnv string, devNull *os.File) *zygote {
	return &zygote{
		log:     log.With("component", "python-zygote"),
		spawn:   spawn,
		script:  zygoteScript,
		env:     env,
		pathEnv: pathEnv,
		startup: startupEnv(env),
		devNull: devNull,
		timeout: zygoteReplyTimeout,
	}
}

// startupEnv is what in an environment changes how python3 starts (flags,
// sys.path, site, locale, stdio): a request that differs from the server's
// here would not behave like "python3 -c", so it runs cold.
func startupEnv(env []string) string {
	var b strings.Builder
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PYTHON") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "HOME" {
			b.WriteString(kv)
			b.WriteByte(0)
		}
	}
	return b.String()
}

// eligible reports whether p is exactly "python3 -c CODE" as the server runs it.
func (z *zygote) eligible(p procSpec) bool {
	return z != nil && len(p.argv) == 3 && p.argv[1] == "-c" &&
		strings.HasPrefix(p.path[strings.LastIndexByte(p.path, '/')+1:], "python") &&
		startupEnv(p.env) == z.startup
}

// start forks p from the warm server. Any error means nothing of p ran and
// the caller runs it cold.
func (z *zygote) start(p procSpec, files []uintptr) (int, <-chan syscall.WaitStatus, error) {
	zp, err := z.process(p.path)
	if err != nil {
		return 0, nil, err
	}
	pid, done, err := zp.fork(p, files)
	if err != nil {
		return 0, nil, err
	}
	return pid, done, nil
}

// process returns the running server for interpreter path, starting one
// when there is none.
func (z *zygote) process(path string) (*zygoteProc, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed || z.failures >= zygoteMaxFailures {
		return nil, errZygoteUnusable
	}
	if zp := z.cur; zp != nil && zp.usable() {
		if zp.path != path {
			return nil, fmt.Errorf("%w: interpreter %s, not %s", errZygoteUnusable, path, zp.path)
		}
		return zp, nil
	}
	if want, ok := lookPath("python3", z.pathEnv, "/"); !ok || want != path {
		return nil, fmt.Errorf("%w: interpreter %s is not the base python3", errZygoteUnusable, path)
	}
	zp, err := z.startProcess(path)
	if err != nil {
		z.failed("start", err)
		return nil, fmt.Errorf("%w: %w", errZygoteUnusable, err)
	}
	z.cur = zp
	return zp, nil
}

// failed counts a failure towards the bound; the caller holds mu.
func (z *zygote) failed(what string, err error) {
	z.failures++
	if z.failures >= zygoteMaxFailures {
		z.log.Error("agent: python zygote disabled after repeated failures; python runs cold", "failures", z.failures, "err", err)
		return
	}
	z.log.Warn("agent: python zygote failed; this exec runs cold", "what", what, "failures", z.failures, "err", err)
}

func (z *zygote) startProcess(path string) (*zygoteProc, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "zygote")
	theirs := os.NewFile(uintptr(fds[1]), "zygote-child")
	defer closeAll(mine, theirs)
	logR, logW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("log pipe: %w", err)
	}
	c, err := net.FileConn(mine)
	if err != nil {
		closeAll(logR, logW)
		return nil, fmt.Errorf("zygote conn: %w", err)
	}
	conn := c.(*net.UnixConn)
	null := z.devNull.Fd()
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   z.env,
		Files: []uintptr{null, null, logW.Fd(), theirs.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, exited, err := z.spawn.start(path, []string{path, "-c", z.script}, attr)
	closeAll(logW)
	if err != nil {
		closeAll(logR)
		_ = conn.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	zp := &zygoteProc{z: z, path: path, pid: pid, conn: conn, exited: exited, finished: make(chan struct{}), pending: make(map[uint64]*zygoteCall)}
	go z.logStderr(logR, pid)
	if err := zp.awaitReady(); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = conn.Close()
		<-exited
		return nil, err
	}
	go zp.read()
	z.log.Info("agent: python zygote started", "pid", pid, "python", path)
	return zp, nil
}

// logStderr passes what the server itself writes (never a child's output,
// which goes to the exec's pipes) to the agent's log.
func (z *zygote) logStderr(r *os.File, pid int) {
	defer closeAll(r)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		z.log.Warn("agent: python zygote stderr", "pid", pid, "line", sc.Text())
	}
}

// close stops the server; execs it forked were killed by the caller.
func (z *zygote) close() {
	z.mu.Lock()
	z.closed = true
	zp := z.cur
	z.cur = nil
	z.mu.Unlock()
	if zp != nil {
		zp.stop()
		select {
		case <-zp.finished:
		case <-time.After(z.timeout):
			z.log.Warn("agent: python zygote did not stop", "pid", zp.pid)
		}
	}
}

// died records that zp ended; an unexpected end counts as a failure.
func (z *zygote) died(zp *zygoteProc, err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.cur == zp {
		z.cur = nil
	}
	if !z.closed && !zp.retired() {
		z.failed("died", err)
	}
}

// zygoteProc is one running fork server and the requests in flight on it.
type zygoteProc struct {
	z      *zygote
	path   string
	pid    int
	conn   *net.UnixConn
	exited <-chan syscall.WaitStatus
	// finished closes when the server is gone and its calls are settled.
	finished chan struct{}

	mu       sync.Mutex
	next     uint64
	pending  map[uint64]*zygoteCall
	dead     bool
	retiring bool // its site-packages changed: it finishes its children and exits
}

// zygoteCall is one request: started gets the child's pid (or why there is
// none), done its wait status.
type zygoteCall struct {
	started chan zygoteStarted
	done    chan syscall.WaitStatus
	pid     int
}

type zygoteStarted struct {
	pid int
	err error
}

func (zp *zygoteProc) usable() bool {
	zp.mu.Lock()
	defer zp.mu.Unlock()
	return !zp.dead && !zp.retiring
}

func (zp *zygoteProc) retired() bool {
	zp.mu.Lock()
	defer zp.mu.Unlock()
	return zp.retiring
}

func (zp *zygoteProc) awaitReady() error {
	buf := make([]byte, 64)
	_ = zp.conn.SetReadDeadline(time.Now().Add(zp.z.timeout))
	n, err := zp.conn.Read(buf)
	_ = zp.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("wait for python zygote: %w", err)
	}
	if n == 0 || buf[0] != 'R' {
		return fmt.Errorf("wait for python zygote: unexpected %q", buf[:n])
	}
	return nil
}

// fork sends one request with the child's stdin, stdout and stderr.
func (zp *zygoteProc) fork(p procSpec, files []uintptr) (int, <-chan syscall.WaitStatus, error) {
	call := &zygoteCall{started: make(chan zygoteStarted, 1), done: make(chan syscall.WaitStatus, 1)}
	zp.mu.Lock()
	if zp.dead || zp.retiring {
		zp.mu.Unlock()
		return 0, nil, errZygoteUnusable
	}
	zp.next++
	id := zp.next
	zp.pending[id] = call
	zp.mu.Unlock()

	msg := make([]byte, 0, 64+len(p.dir)+len(p.argv[0])+len(p.argv[2]))
	msg = strconv.AppendUint(msg, id, 10)
	for _, f := range append([]string{p.dir, p.argv[0], p.argv[2]}, p.env...) {
		msg = append(append(msg, 0), f...)
	}
	if len(msg) > zygoteMaxRequest {
		zp.forget(id)
		return 0, nil, fmt.Errorf("%w: request of %d bytes", errZygoteUnusable, len(msg))
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f)
	}
	if _, _, err := zp.conn.WriteMsgUnix(msg, syscall.UnixRights(fds...), nil); err != nil {
		zp.forget(id)
		return 0, nil, fmt.Errorf("%w: send: %w", errZygoteUnusable, err)
	}
	select {
	case s := <-call.started:
		if s.err != nil {
			return 0, nil, s.err
		}
		return s.pid, call.done, nil
	case <-time.After(zp.z.timeout):
		// A wedged server: kill it; its death settles this call too.
		zp.z.log.Warn("agent: python zygote did not answer; killing it", "pid", zp.pid)
		_ = syscall.Kill(zp.pid, syscall.SIGKILL)
		s := <-call.started
		if s.err != nil {
			return 0, nil, s.err
		}
		return s.pid, call.done, nil
	}
}

func (zp *zygoteProc) forget(id uint64) {
	zp.mu.Lock()
	defer zp.mu.Unlock()
	delete(zp.pending, id)
}

// read dispatches the server's replies until it ends:
// "P id pid" forked, "X id status" exited, "E id why" refused, "S id" stale.
func (zp *zygoteProc) read() {
	buf := make([]byte, 512)
	var err error
	for {
		var n int
		n, _, _, _, err = zp.conn.ReadMsgUnix(buf, nil)
		if err != nil || n == 0 {
			break
		}
		f := strings.Fields(string(buf[:n]))
		if len(f) < 2 {
			err = fmt.Errorf("malformed reply %q", buf[:n])
			break
		}
		id, _ := strconv.ParseUint(f[1], 10, 64)
		zp.mu.Lock()
		call := zp.pending[id]
		switch {
		case call == nil:
		case f[0] == "P" && len(f) == 3:
			call.pid, _ = strconv.Atoi(f[2])
			call.started <- zygoteStarted{pid: call.pid}
		case f[0] == "X" && len(f) == 3:
			st, _ := strconv.Atoi(f[2])
			delete(zp.pending, id)
			call.done <- syscall.WaitStatus(st)
		case f[0] == "S":
			zp.retiring = true
			delete(zp.pending, id)
			call.started <- zygoteStarted{err: fmt.Errorf("%w: site-packages changed", errZygoteUnusable)}
		default:
			delete(zp.pending, id)
			call.started <- zygoteStarted{err: fmt.Errorf("%w: %s", errZygoteUnusable, strings.Join(f[2:], " "))}
		}
		zp.mu.Unlock()
	}
	if err == nil {
		err = errors.New("server closed its socket")
	}
	zp.shutdown(err)
}

// shutdown settles every call in flight once the server is gone. A child
// it already forked has lost its parent's report: it is killed and ends as
// killed, so no user code runs unsupervised or twice.
func (zp *zygoteProc) shutdown(cause error) {
	defer close(zp.finished)
	_ = zp.conn.Close()
	select {
	case <-zp.exited:
	default:
		_ = syscall.Kill(zp.pid, syscall.SIGKILL)
		<-zp.exited
	}
	zp.mu.Lock()
	zp.dead = true
	pending := zp.pending
	zp.pending = nil
	zp.mu.Unlock()
	for _, call := range pending {
		if call.pid == 0 {
			call.started <- zygoteStarted{err: fmt.Errorf("%w: %w", errZygoteUnusable, cause)}
			continue
		}
		_ = syscall.Kill(-call.pid, syscall.SIGKILL)
		zp.z.log.Warn("agent: python zygote died with an exec in flight; killed it", "pid", call.pid, "err", cause)
		call.done <- syscall.WaitStatus(syscall.SIGKILL)
	}
	zp.z.died(zp, cause)
}

// stop ends the server: it exits when its socket closes.
func (zp *zygoteProc) stop() {
	_ = zp.conn.Close()
}
