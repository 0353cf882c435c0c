package agent

import (
	"strconv"
	"strings"
	"syscall"
)

// signals are the names a signal request may use.
var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL,
	"SIGTERM": syscall.SIGTERM, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGCONT": syscall.SIGCONT,
	"SIGSTOP": syscall.SIGSTOP, "SIGWINCH": syscall.SIGWINCH, "SIGALRM": syscall.SIGALRM, "SIGPIPE": syscall.SIGPIPE,
}

// parseSignal accepts "SIGTERM", "TERM" and "15".
func parseSignal(name string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 1 || n > 64 {
			return 0, errUnprocessable("signal %d out of range (1 to 64)", n)
		}
		return syscall.Signal(n), nil
	}
	up := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	if sig, ok := signals[up]; ok {
		return sig, nil
	}
	return 0, errUnprocessable("unknown signal %q", name)
}

// signalName is the conventional name of sig ("SIGTERM"), or its number.
func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return name
		}
	}
	return strconv.Itoa(int(sig))
}
