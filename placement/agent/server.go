package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// Server is the agent's HTTP/1.1 API: exec, files and health.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	http    *http.Server
	spawn   spawner
	zygote  *zygote // nil when disabled
	devNull *os.File
	baseEnv map[string]string

	mu      sync.Mutex
	running map[int]struct{} // process groups of execs in flight

	watchSlots *slots          // watch streams in flight
	closing    chan struct{}   // closed when Shutdown starts: ends watch streams
	procs      *procTable      // background processes (procs.go)
	contexts   *contextManager // stateful code contexts (contexts.go)
}

// NewServer builds a server; it panics on a config that Validate refuses,
// since that is a wiring mistake, not a runtime condition.
func NewServer(cfg ServerConfig) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "sandbox-agent"),
		running: make(map[int]struct{}),
		procs:   newProcTable(),
	}
	s.watchSlots = newSlots(cfg.MaxWatchStreams)
	s.closing = make(chan struct{})
	if cfg.ReapAll {
		s.spawn = newReapAllSpawner(s.log)
	} else {
		s.spawn = pidSpawner{}
	}
	if f, err := os.Open(os.DevNull); err == nil {
		s.devNull = f
	}
	s.baseEnv = map[string]string{
		"PATH":             "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":             cfg.Workdir,
		"LANG":             "C.UTF-8",
		"PYTHONUNBUFFERED": "1", // so streamed python output arrives as printed
	}
	for k, v := range cfg.Env {
		s.baseEnv[k] = v
	}
	if !cfg.DisablePythonZygote && s.devNull != nil {
		if env, pathEnv, err := s.mergeEnv(nil); err == nil {
			s.zygote = newZygote(s.log, s.spawn, env, pathEnv, s.devNull)
		}
	}
	s.contexts = newContextManager(s)
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// Shutdown waits for handlers, and a watch stream lasts as long as
	// its client likes: tell them to end.
	var once sync.Once
	s.http.RegisterOnShutdown(func() { once.Do(func() { close(s.closing) }) })
	return s
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.contextRoutes(mux) // code contexts (context_handlers.go)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.Handle("POST /exec", s.auth(s.handleExec))
	mux.Handle("POST /exec/stream", s.auth(s.handleExecStream))
	mux.Handle("GET /files", s.auth(s.handleReadFile))
	mux.Handle("PUT /files", s.auth(s.handleWriteFile))
	mux.Handle("DELETE /files", s.auth(s.handleDelete))
	mux.Handle("GET /files/list", s.auth(s.handleList))
	mux.Handle("POST /files/mkdir", s.auth(s.handleMkdir))
	mux.Handle("GET /files/archive", s.auth(s.handleDownload))
	mux.Handle("PUT /files/archive", s.auth(s.handleUpload))
	mux.Handle("GET /files/stat", s.auth(s.handleStat))
	mux.Handle("GET /files/walk", s.auth(s.handleWalk))
	mux.Handle("POST /files/rename", s.auth(s.handleRename))
	mux.Handle("GET /files/watch", s.auth(s.handleWatch))
	mux.Handle("POST /procs", s.auth(s.handleProcStart))
	mux.Handle("GET /procs", s.auth(s.handleProcList))
	mux.Handle("GET /procs/{pid}", s.auth(s.handleProcGet))
	mux.Handle("GET /procs/{pid}/output", s.auth(s.handleProcOutput))
	mux.Handle("GET /procs/{pid}/wait", s.auth(s.handleProcWait))
	mux.Handle("POST /procs/{pid}/stdin", s.auth(s.handleProcStdin))
	mux.Handle("POST /procs/{pid}/signal", s.auth(s.handleProcSignal))
	mux.Handle("POST /procs/{pid}/resize", s.auth(s.handleProcResize))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	return s.recoverer(mux)
}

// Serve answers requests on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests, waits for those in flight until ctx
// ends, then kills every exec still running.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.contexts.close()
	s.Signal(syscall.SIGKILL)
	if s.zygote != nil {
		s.zygote.close()
	}
	s.spawn.close()
	if s.devNull != nil {
		_ = s.devNull.Close()
	}
	if err != nil {
		return fmt.Errorf("agent shutdown: %w", err)
	}
	return nil
}

// Signal sends sig to the process group of every exec in flight.
func (s *Server) Signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pgid := range s.running {
		_ = syscall.Kill(-pgid, sig)
	}
}

func (s *Server) track(pgid int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.running[pgid] = struct{}{}
	} else {
		delete(s.running, pgid)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	abi := ContainedABI()
	s.writeJSON(w, http.StatusOK, Health{Status: "ok", Version: Version, PID: os.Getpid(), UID: os.Getuid(),
		WriteContainment: abi > 0, LandlockABI: abi})
}

// auth requires the bearer secret when one is configured.
func (s *Server) auth(next http.HandlerFunc) http.Handler {
	if s.cfg.Secret == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.Secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			s.writeError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "missing or wrong agent secret"})
			return
		}
		next(w, r)
	})
}

// recoverer turns a handler panic into a 500 instead of a dropped connection.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("agent: handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				s.writeError(w, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("agent: write response", "err", err)
	}
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	e := toError(err)
	if e.Status >= 500 {
		s.log.Warn("agent: request failed", "err", err)
	}
	s.writeJSON(w, e.Status, ErrorBody{Error: e.Message, Code: e.Code})
}
