package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Why the agent executes itself again once restricted: landlock_restrict_self
// applies to the calling thread only, so restricting every thread of a Go
// process (syscall.AllThreadsSyscall) gives each thread its own, sibling
// domain. Processes started from different threads would then be in
// different domains, and Landlock refuses ptrace-type access between them:
// one exec could not, at random, read /proc/<pid>/cwd of, strace or attach a
// debugger to what another exec started. A new image starts single-threaded
// with the domain of the thread that executed it, and every thread and child
// it makes shares that one domain. (Kernels with LANDLOCK_RESTRICT_SELF_TSYNC
// could do it in place; 6.18 has no such flag.)

// The handoff from the restricted agent to its re-executed self. They are
// the agent's, not the sandbox's: IsHandoffEnv keeps them from execs.
const (
	envListenFD    = "SANDBOX_AGENT_LISTEN_FD"
	envLandlockABI = "SANDBOX_AGENT_LANDLOCK_ABI"
)

// IsHandoffEnv reports whether name is a variable through which the agent
// hands its listener to its re-executed self; execs must not see them.
func IsHandoffEnv(name string) bool {
	return name == envListenFD || name == envLandlockABI
}

// listenOrInherit opens the listener, or takes over the one a restricted
// predecessor handed over (see reexecContained) and returns the Landlock
// ABI it runs under (0 when it opened its own).
func listenOrInherit(addr, secret string) (net.Listener, func(), int, error) {
	fdStr, ok := os.LookupEnv(envListenFD)
	if !ok {
		l, cleanup, err := listen(addr, secret)
		return l, cleanup, 0, err
	}
	abiStr := os.Getenv(envLandlockABI)
	_ = os.Unsetenv(envListenFD)
	_ = os.Unsetenv(envLandlockABI)
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd < 3 {
		return nil, nil, 0, fmt.Errorf("agent: inherited listener %s=%q: not a descriptor", envListenFD, fdStr)
	}
	abi, err := strconv.Atoi(abiStr)
	if err != nil || abi < 1 {
		return nil, nil, 0, fmt.Errorf("agent: inherited listener: %s=%q: not a Landlock ABI", envLandlockABI, abiStr)
	}
	f := os.NewFile(uintptr(fd), "inherited-listener")
	l, err := net.FileListener(f) // a close-on-exec duplicate
	_ = f.Close()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("agent: inherited listener fd %d: %w", fd, err)
	}
	cleanup := func() {}
	if sock, ok := strings.CutPrefix(addr, "unix://"); ok {
		cleanup = func() { _ = os.Remove(sock) }
	}
	return l, cleanup, abi, nil
}

// reexecContained replaces this process by a fresh image of the same
// binary, arguments and environment, handing over l's descriptor and the
// ABI. It returns only on failure, and then nothing has changed: the caller
// keeps serving with per-thread domains.
func reexecContained(l net.Listener, abi int) error {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return fmt.Errorf("re-exec: listener %T has no descriptor", l)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("re-exec: listener descriptor: %w", err)
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !IsHandoffEnv(k) {
			env = append(env, kv)
		}
	}
	var execErr error
	// Control, not File().Fd(): Fd would switch the listener to blocking
	// mode, which matters if the exec fails and we go on serving.
	if err := raw.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFD, 0); e != 0 {
			execErr = fmt.Errorf("re-exec: clear close-on-exec: %w", e)
			return
		}
		env = append(env, envListenFD+"="+strconv.Itoa(int(fd)), envLandlockABI+"="+strconv.Itoa(abi))
		// /proc/self/exe: the very binary running, wherever argv[0] points.
		execErr = fmt.Errorf("re-exec /proc/self/exe: %w", syscall.Exec("/proc/self/exe", os.Args, env))
		syscall.CloseOnExec(int(fd))
	}); err != nil {
		return fmt.Errorf("re-exec: listener descriptor: %w", err)
	}
	return execErr
}
