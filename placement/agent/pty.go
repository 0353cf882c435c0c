package agent

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair with the standard library and
// x/sys only (the agent is static, CGO_ENABLED=0): the master from
// /dev/ptmx, unlocked, and its slave by number. Both are close-on-exec; the
// child gets the slave through ProcAttr.Files.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		_ = m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		_ = m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	s, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		_ = m.Close()
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	return m, s, nil
}

// setWinsize sets the terminal's size; the kernel sends SIGWINCH to its
// foreground process group when it changes.
func setWinsize(f *os.File, size PTYSize) error {
	ws := &unix.Winsize{Row: uint16(size.Rows), Col: uint16(size.Cols)}
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("set terminal size: %w", err)
	}
	return nil
}

// startPTY starts p as the leader of a new session whose controlling
// terminal is a new pty's slave; the agent keeps the master, which carries
// both the output (one stream) and the input.
func (s *Server) startPTY(p *bgProc, spec procSpec, size PTYSize) ([]*os.File, <-chan syscall.WaitStatus, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, nil, fmt.Errorf("start %s on a pty: %w", spec.argv[0], err)
	}
	if err := setWinsize(master, size); err != nil {
		closeAll(master, slave)
		return nil, nil, err
	}
	attr := &syscall.ProcAttr{Dir: spec.dir, Env: spec.env,
		Files: []uintptr{slave.Fd(), slave.Fd(), slave.Fd()},
		// Setsid makes it a session (and group) leader; Ctty is the child's
		// fd 0, which becomes its controlling terminal.
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}}
	p.startedAt = time.Now().UTC()
	pid, done, err := s.spawn.start(spec.path, spec.argv, attr)
	// Ours must go, or the master never sees EIO once the process is gone.
	closeAll(slave)
	if err != nil {
		closeAll(master)
		return nil, nil, errUnprocessable("start %s: %v", spec.argv[0], err)
	}
	p.pid, p.pty = pid, master
	return []*os.File{master}, done, nil
}

// resize changes the terminal size of a pty process.
func (p *bgProc) resize(size PTYSize) error {
	if size.Rows < 1 || size.Cols < 1 || size.Rows > MaxPTYCells || size.Cols > MaxPTYCells {
		return errUnprocessable("rows and cols must be between 1 and %d", MaxPTYCells)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.pty == nil:
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("process %d has no terminal (start it with pty)", p.pid)}
	case p.drained:
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("process %d has ended", p.pid)}
	}
	return setWinsize(p.pty, size)
}
