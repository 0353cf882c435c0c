package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testAgent is a Server on a unix socket in a temp dir, and a Client to it.
type testAgent struct {
	client  *Client
	workdir string
}

// startAgent serves cfg in-process. The socket lives in a short os.MkdirTemp
// directory because t.TempDir paths can pass the 108-byte sun_path limit.
func startAgent(t testing.TB, cfg ServerConfig) *testAgent {
	t.Helper()
	if cfg.Workdir == "" {
		cfg.Workdir = t.TempDir()
	}
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	return serveAgent(t, NewServer(cfg))
}

// serveAgent serves srv on a unix socket and shuts it down at cleanup.
func serveAgent(t testing.TB, srv *Server) *testAgent {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "ag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c := NewClient("unix://"+sock, srv.cfg.Secret)
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testAgent{client: c, workdir: srv.cfg.Workdir}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantAgentError checks that err is an *Error with the given status.
func wantAgentError(t *testing.T, err error, status int) *Error {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *agent.Error with status %d", err, status)
	}
	if ae.Status != status {
		t.Fatalf("status = %d (%s: %s), want %d", ae.Status, ae.Code, ae.Message, status)
	}
	return ae
}

// processGone reports whether pid no longer runs: absent, or a zombie that
// only waits for its new parent to reap it.
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// waitGone polls until pid is gone or the deadline passes.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running (kill(pid,0) = %v)", pid, syscall.Kill(pid, 0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthAndAuth(t *testing.T) {
	a := startAgent(t, ServerConfig{Secret: "s3cret"})
	ctx := ctxT(t)
	h, err := a.client.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.PID != os.Getpid() || h.UID != os.Getuid() {
		t.Fatalf("health = %+v", h)
	}
	tests := []struct {
		name   string
		secret string
		status int
	}{
		{"right secret", "s3cret", 0},
		{"wrong secret", "nope", 401},
		{"no secret", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Same socket and transport, another secret.
			c := &Client{base: a.client.base, secret: tt.secret, http: a.client.http}
			_, err := c.Exec(ctx, ExecRequest{Argv: []string{"true"}})
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantAgentError(t, err, tt.status)
		})
	}
}
