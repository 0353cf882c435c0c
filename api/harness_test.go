package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// testImage is the pool image of every test cluster.
const testImage = "python:3.11-slim"

// Images the test reconciler treats specially: failImage fails placement,
// stuckImage is never placed (a slow start).
const (
	failImage  = "no-such-image:1"
	stuckImage = "stuck:1"
	// flakyImage fails every other placement, starting with the first: a
	// sandbox lost while starting, as when a node dies mid-create.
	flakyImage = "flaky:1"
)

// env is one real control node for a test: fsm + single-node Raft cluster,
// the API over httptest, and a real sandbox agent on a unix socket that
// stands in for every sandbox. A goroutine plays the reconciler.
type env struct {
	t       testing.TB
	fsm     *fsm.FSM
	node    *cluster.Node
	srv     *Server
	http    *httptest.Server
	reg     *prometheus.Registry
	cfg     Config
	sock    string
	workdir string
	// base, when set, is the URL call sends to instead of http's (another
	// node of the same cluster).
	base string
	// onNode, if set, is called with each node joinNodes adds.
	onNode func(*cluster.Node, *fsm.FSM)
}

type envOption func(*Config, *fsmPool)

// fsmPool is the pool configuration a test cluster starts with.
type fsmPool = fsm.PoolConfig

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReadyTimeout = 10 * time.Second
	cfg.TouchInterval = 200 * time.Millisecond
	// The images the test reconciler plays tricks with must pass the
	// allow-list to reach it.
	cfg.AllowedImages = []string{testImage, failImage, stuckImage, flakyImage}
	cfg.AdminUsers = []string{"root"}
	pool := fsm.PoolConfig{MinSize: 0, MaxSize: 20, Image: testImage,
		Resources: fsm.Resources{CPUCount: 1, MemoryMB: 512}}
	for _, o := range opts {
		o(&cfg, &pool)
	}

	f := fsm.New()
	node, err := cluster.Open(cluster.Config{
		ID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true, Logger: quiet,
	}, f)
	if err != nil {
		t.Fatalf("open cluster: %v", err)
	}
	t.Cleanup(func() { _ = node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatalf("wait for leader: %v", err)
	}
	if _, err := node.Apply(ctx, &fsm.SetPool{Pool: pool}); err != nil {
		t.Fatalf("set pool: %v", err)
	}

	e := &env{t: t, fsm: f, node: node, cfg: cfg, reg: prometheus.NewRegistry()}
	e.startAgent()
	srv, err := New(cfg, Deps{Cluster: node, State: f, Registry: e.reg, Gatherer: e.reg})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() { e.http.Close(); _ = srv.Close() })
	e.startReconciler()
	return e
}

// startAgent runs a real agent.Server on a unix socket. Its socket lives in
// a short temp dir: unix socket paths are limited to ~108 bytes.
func (e *env) startAgent() {
	dir, err := os.MkdirTemp("", "csapi")
	if err != nil {
		e.t.Fatalf("temp dir: %v", err)
	}
	e.t.Cleanup(func() { _ = os.RemoveAll(dir) })
	e.workdir = filepath.Join(dir, "workspace")
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{e.workdir, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			e.t.Fatalf("mkdir: %v", err)
		}
	}
	e.sock = filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", e.sock)
	if err != nil {
		e.t.Fatalf("listen agent socket: %v", err)
	}
	as := agent.NewServer(agent.ServerConfig{Workdir: e.workdir, TempDir: tmp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go func() { _ = as.Serve(ln) }()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = as.Shutdown(ctx)
	})
}

// startReconciler places pending sandboxes on the test agent (or fails those
// of failImage) and removes terminating ones, as the real reconciler would.
func (e *env) startReconciler() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	flaky := 0
	go func() {
		defer wg.Done()
		for {
			ch := e.fsm.Watch()
			for _, sb := range e.fsm.Sandboxes() {
				var cmd fsm.Command
				switch {
				case sb.State == fsm.StatePending && sb.Image == failImage:
					cmd = &fsm.SandboxFailed{ID: sb.ID, Reason: "image " + failImage + " not found"}
				case sb.State == fsm.StatePending && sb.Image == stuckImage:
					continue
				case sb.State == fsm.StatePending && sb.Image == flakyImage && flaky%2 == 0:
					flaky++
					cmd = &fsm.SandboxFailed{ID: sb.ID, Reason: "node lost mid-create"}
				case sb.State == fsm.StatePending && sb.Image == flakyImage:
					flaky++
					cmd = &fsm.SandboxPlaced{ID: sb.ID, Placement: fsm.Placement{
						Driver: "test", Node: "local", ContainerID: "c-" + sb.ID, AgentEndpoint: "unix://" + e.sock}}
				case sb.State == fsm.StatePending:
					cmd = &fsm.SandboxPlaced{ID: sb.ID, Placement: fsm.Placement{
						Driver: "test", Node: "local", ContainerID: "c-" + sb.ID, AgentEndpoint: "unix://" + e.sock}}
				case sb.State == fsm.StateTerminating:
					cmd = &fsm.SandboxRemoved{ID: sb.ID}
				case sb.State == fsm.StateResuming:
					cmd = &fsm.SandboxResumed{ID: sb.ID}
				default:
					continue
				}
				actx, acancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := e.node.Apply(actx, cmd)
				acancel()
				if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
					e.t.Logf("test reconciler: %v", err)
				}
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// result is one HTTP answer.
type result struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// str returns a top-level string field of a JSON answer.
func (r result) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// call sends a request; body may be nil, a string (sent raw), []byte or a
// value to encode as JSON.
func (e *env) call(method, path, token string, body any, headers ...string) result {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(buf)
	}
	base := e.http.URL
	if e.base != "" {
		base = e.base
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	r := result{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return r
}

// expect fails t unless the answer has status (and, for errors, the
// error code and a non-empty message).
func expect(t testing.TB, r result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.raw)
	}
	if code != "" && (r.str("code") != code || r.str("error") == "") {
		t.Fatalf("error body = %s, want code %q and a message", r.raw, code)
	}
}

// token gets an access token for user in development mode.
func (e *env) token(user, role string) string {
	e.t.Helper()
	r := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": user, "role": role})
	expect(e.t, r, http.StatusOK, "")
	return r.str("access_token")
}

// acquire returns a new active sandbox id for the token's user.
func (e *env) acquire(tok string) string {
	e.t.Helper()
	r := e.call("POST", "/api/v1/sandbox/acquire", tok, nil)
	expect(e.t, r, http.StatusOK, "")
	return r.str("sandbox_id")
}

// path joins name under the agent's workdir (the test's /workspace).
func (e *env) path(name string) string { return filepath.Join(e.workdir, name) }

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest(method, target, nil)
}

func httptestServer(t *testing.T, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
