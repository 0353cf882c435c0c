package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RunConfig is how the sandbox-agent binary is started.
type RunConfig struct {
	// Listen is "unix:///run/sandbox/agent.sock" or "tcp://0.0.0.0:7777".
	Listen string
	// Server configures the API; a TCP listener requires Server.Secret.
	Server ServerConfig
	// TLSCertPEM and TLSKeyPEM make a TCP listener serve TLS 1.3 with this
	// certificate (see tls.go). A TCP listener without them is refused
	// unless InsecurePlainTCP says plain HTTP is wanted (a test, a network
	// nobody else can see). A unix socket takes neither.
	TLSCertPEM, TLSKeyPEM []byte
	InsecurePlainTCP      bool
	// Subreaper makes the agent adopt and reap orphaned descendants when it
	// is not PID 1 (as PID 1 it does so anyway).
	Subreaper bool
	// ShutdownGrace is how long children get after SIGTERM is forwarded
	// before they are killed (default 5 s).
	ShutdownGrace time.Duration
	// Containment confines the writes of the agent and of every process it
	// starts (Landlock); it is applied once the listener exists, before the
	// first request. The zero value is off.
	Containment WriteContainment
}

// Run serves the agent API until ctx ends or SIGTERM/SIGINT arrives. It is
// the whole life of the sandbox-agent process: as PID 1 it reaps every
// zombie, and on a signal it forwards the signal to every process of the
// sandbox, waits up to ShutdownGrace, kills what is left and returns.
func Run(ctx context.Context, cfg RunConfig) error {
	log := cfg.Server.withDefaults().Logger.With("component", "sandbox-agent")
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	isInit := os.Getpid() == 1
	if cfg.Subreaper && !isInit {
		if err := SetChildSubreaper(); err != nil {
			return fmt.Errorf("agent: set child subreaper: %w", err)
		}
	}
	cfg.Server.ReapAll = isInit || cfg.Subreaper
	// Whatever we inherited beyond stdio is not for the sandbox's processes.
	closeInheritedOnExec()

	// Signals are subscribed before serving so none is lost at start-up.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	tlsCfg, err := runTLS(cfg)
	if err != nil {
		return err
	}
	l, cleanup, inheritedABI, err := listenOrInherit(cfg.Listen, cfg.Server.Secret)
	if err != nil {
		return err
	}
	defer cleanup()
	// After listen (the socket's directory need not be writable) and before
	// any child exists, so every exec and the python server inherit it.
	if len(cfg.Server.WriteRoots) == 0 {
		cfg.Server.WriteRoots = cfg.Containment.WritePaths // rename stays where writes may go
	}
	if err := cfg.Containment.apply(log, cfg.Server.withDefaults().Workdir, unixSocketDir(cfg.Listen), l, inheritedABI); err != nil {
		return err
	}
	srv := NewServer(cfg.Server)
	served := make(chan error, 1)
	// TLS wraps the listener only here: the Landlock re-exec above hands
	// over the bare socket, and the new image reads its key again.
	sl := l
	if tlsCfg != nil {
		sl = tls.NewListener(l, tlsCfg)
	}
	go func() { served <- srv.Serve(sl) }()
	log.Info("agent: serving", "listen", cfg.Listen, "tls", tlsCfg != nil, "pid", os.Getpid(), "uid", os.Getuid(), "init", isInit)

	var sig os.Signal
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		sig = syscall.SIGTERM
	case sig = <-sigs:
	}
	log.Info("agent: shutting down", "signal", sig.String())
	forward := func(s syscall.Signal) {
		if isInit {
			// As init of the sandbox's PID namespace, -1 is exactly the
			// sandbox's processes; never do this outside one.
			_ = syscall.Kill(-1, s)
		}
		srv.Signal(s)
	}
	forward(sig.(syscall.Signal))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if isInit {
		_ = syscall.Kill(-1, syscall.SIGKILL)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// runTLS checks the listener's TLS settings before anything is opened and
// returns what a TCP listener serves with (nil: plain HTTP).
func runTLS(cfg RunConfig) (*tls.Config, error) {
	tcp := strings.HasPrefix(cfg.Listen, "tcp://")
	given := len(cfg.TLSCertPEM) > 0 || len(cfg.TLSKeyPEM) > 0
	switch {
	case given && !tcp:
		return nil, fmt.Errorf("agent: listen %q: TLS is for a TCP listener; a unix socket's directory is its access control", cfg.Listen)
	case given && cfg.InsecurePlainTCP:
		return nil, fmt.Errorf("agent: listen %q: a TLS certificate and plain TCP both asked for", cfg.Listen)
	case given:
		return ServerTLSConfig(cfg.TLSCertPEM, cfg.TLSKeyPEM)
	case tcp && !cfg.InsecurePlainTCP:
		return nil, fmt.Errorf("agent: listen %q: a TCP listener serves TLS: give a certificate and key (-tls-cert-file and -tls-key-file, or SANDBOX_AGENT_TLS_CERT and SANDBOX_AGENT_TLS_KEY), or -insecure-plain-tcp", cfg.Listen)
	}
	return nil, nil
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec,
// so a descriptor left open by whoever started the agent never reaches an
// exec (the agent's own descriptors are close-on-exec already).
func closeInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// listen opens the listener and returns what removes it afterwards.
func listen(addr, secret string) (net.Listener, func(), error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		sock := strings.TrimPrefix(addr, "unix://")
		if !filepath.IsAbs(sock) {
			return nil, nil, fmt.Errorf("agent: listen %q: socket path must be absolute", addr)
		}
		// A socket left by a previous run of this sandbox would make bind fail.
		if fi, err := os.Lstat(sock); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			_ = os.Remove(sock)
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: listen %q: %w", addr, err)
		}
		// Access control is the per-sandbox host directory holding the
		// socket; the control plane may run under another uid than ours.
		// Under gVisor (runsc --host-uds=create) the host's end of the
		// socket belongs to the runtime and the chmod is refused; the
		// directory still guards it, and sandboxd runs as root there.
		if err := os.Chmod(sock, 0o666); err != nil && !errors.Is(err, fs.ErrPermission) {
			_ = l.Close()
			return nil, nil, fmt.Errorf("agent: chmod socket: %w", err)
		}
		return l, func() { _ = os.Remove(sock) }, nil
	case strings.HasPrefix(addr, "tcp://"):
		if secret == "" {
			return nil, nil, fmt.Errorf("agent: listen %q: a TCP listener needs a secret (-secret-file or SANDBOX_AGENT_SECRET)", addr)
		}
		l, err := net.Listen("tcp", strings.TrimPrefix(addr, "tcp://"))
		if err != nil {
			return nil, nil, fmt.Errorf("agent: listen %q: %w", addr, err)
		}
		return l, func() {}, nil
	}
	return nil, nil, fmt.Errorf("agent: listen %q: want unix:///path or tcp://host:port", addr)
}
