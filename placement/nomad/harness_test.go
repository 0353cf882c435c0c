package nomad

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad/nomadfake"
)

// env is a driver pointed at a fake Nomad whose "tasks" are real agent
// servers on loopback TCP, started with the secret and TLS certificate from
// the job the driver registered, so exec and file traffic take the production data path.
type env struct {
	t      *testing.T
	fake   *nomadfake.Server
	d      *Driver
	ws     string // the agents' workspace (one host dir stands in for /workspace)
	mu     sync.Mutex
	agents map[string]*runningAgent // by alloc-independent key: job id
}

type runningAgent struct {
	srv  *agent.Server
	port int
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newEnv(t *testing.T, opts nomadfake.Options, tweak func(*Config)) *env {
	t.Helper()
	e := &env{t: t, ws: filepath.Join(t.TempDir(), "workspace"), agents: map[string]*runningAgent{}}
	if err := os.MkdirAll(e.ws, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.PortFor = e.startAgent
	opts.OnStop = e.stopAgent
	opts.Logger = quietLogger()
	e.fake = nomadfake.New(opts)
	t.Cleanup(e.fake.Close)
	t.Cleanup(e.stopAll)
	cfg := Config{
		Address:       e.fake.URL(),
		Cluster:       "test",
		PlaceTimeout:  5 * time.Second,
		HealthTimeout: 5 * time.Second,
		ArchiveDir:    filepath.Join(t.TempDir(), "archives"),
		Logger:        quietLogger(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.workspace = e.ws
	e.d = d
	return e
}

// startAgent runs on the fake's placement: a real agent server listening
// where the allocation's port mapping says, with the job's secret.
func (e *env) startAgent(job *api.Job, label string, reserved int) int {
	if label != portLabel {
		return 0
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(reserved)))
	if err != nil {
		e.t.Errorf("agent listen on %d: %v", reserved, err)
		return 0
	}
	// TLS with the job's certificate, as the agent serves it in the task.
	tlsCfg, err := agent.ServerTLSConfig([]byte(jobTemplate(job, tlsCertFile)), []byte(jobTemplate(job, tlsKeyFile)))
	if err != nil {
		_ = l.Close()
		e.t.Errorf("agent tls from job %s: %v", *job.ID, err)
		return 0
	}
	srv := agent.NewServer(agent.ServerConfig{Workdir: e.ws, TempDir: e.t.TempDir(), Secret: jobSecret(job), Logger: quietLogger()})
	go func() {
		if err := srv.Serve(tls.NewListener(l, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.t.Errorf("agent serve: %v", err)
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	e.mu.Lock()
	e.agents[*job.ID] = &runningAgent{srv: srv, port: port}
	e.mu.Unlock()
	return port
}

// stopAgent ends the stand-in task and, as a container's tmpfs would,
// loses its workspace.
func (e *env) stopAgent(job *api.Job, _ string) {
	e.mu.Lock()
	a := e.agents[*job.ID]
	delete(e.agents, *job.ID)
	e.mu.Unlock()
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	ents, _ := os.ReadDir(e.ws)
	for _, ent := range ents {
		_ = os.RemoveAll(filepath.Join(e.ws, ent.Name()))
	}
}

func (e *env) stopAll() {
	e.mu.Lock()
	as := e.agents
	e.agents = map[string]*runningAgent{}
	e.mu.Unlock()
	for _, a := range as {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.srv.Shutdown(ctx)
		cancel()
	}
}

// waitAlloc returns the job's newest allocation id once there is one.
func (e *env) waitAlloc(jobID string, n int) string {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ids := e.fake.Allocs(jobID); len(ids) >= n {
			return ids[n-1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no allocation %d for %s", n, jobID)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
