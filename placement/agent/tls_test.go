package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTLSAgent runs a server on loopback TCP behind TLS with a fresh
// identity, as the agent does in a Nomad sandbox, and returns its https
// endpoint, the identity and the server's workspace.
func startTLSAgent(t *testing.T, secret string) (string, TLSIdentity, string) {
	t.Helper()
	id, err := NewTLSIdentity("sandbox-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLSConfig(id.CertPEM, id.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	srv := NewServer(ServerConfig{Workdir: ws, TempDir: t.TempDir(), Secret: secret, DisablePythonZygote: true})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + l.Addr().String(), id, ws
}

func TestTLSIdentity(t *testing.T) {
	id, err := NewTLSIdentity("sb", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := CertSHA256(id.CertPEM)
	if err != nil || got != id.SHA256 || len(got) != 64 {
		t.Fatalf("CertSHA256 = %q, %v; identity says %q", got, err, id.SHA256)
	}
	pair, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf == nil || pair.Leaf.NotAfter.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Fatalf("certificate valid until %v, asked for an hour", pair.Leaf.NotAfter)
	}
	other, err := NewTLSIdentity("sb", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if other.SHA256 == id.SHA256 || string(other.KeyPEM) == string(id.KeyPEM) {
		t.Fatal("two identities share a key or certificate")
	}
	if _, err := CertSHA256(id.KeyPEM); err == nil {
		t.Fatal("CertSHA256 of a key: no error")
	}
}

// The control plane reaches a TLS agent only with the pinned certificate
// and the bearer secret; nothing useful answers in the clear.
func TestTLSAgentPinAndSecret(t *testing.T) {
	const secret = "s3cret"
	endpoint, id, ws := startTLSAgent(t, secret)
	ctx := ctxT(t)
	marker := filepath.Join(ws, "ran")
	touch := ExecRequest{Argv: []string{"touch", marker}}

	t.Run("right pin and secret", func(t *testing.T) {
		c := NewPinnedClient(endpoint, secret, id.SHA256)
		defer c.Close()
		res, err := c.Exec(ctx, ExecRequest{Argv: []string{"echo", "over tls"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 || res.Stdout != "over tls\n" {
			t.Fatalf("exec: %+v", res)
		}
		// Upper-case hex is the same pin.
		cu := NewPinnedClient(endpoint, secret, strings.ToUpper(id.SHA256))
		defer cu.Close()
		if _, err := cu.Health(ctx); err != nil {
			t.Fatalf("upper-case pin: %v", err)
		}
	})

	refused := []struct {
		name string
		c    *Client
	}{
		{"wrong pin", NewPinnedClient(endpoint, secret, strings.Repeat("ab", 32))},
		{"another sandbox's certificate", NewPinnedClient(endpoint, secret, mustIdentity(t).SHA256)},
		{"https without a pin", NewClient(endpoint, secret)},
		{"pin with a plain endpoint", NewPinnedClient(strings.Replace(endpoint, "https://", "http://", 1), secret, id.SHA256)},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.c.Close()
			_, err := tc.c.Exec(ctx, touch)
			if !errors.Is(err, ErrCertMismatch) {
				t.Fatalf("exec: %v, want ErrCertMismatch", err)
			}
			if _, err := tc.c.Health(ctx); !errors.Is(err, ErrCertMismatch) {
				t.Fatalf("health: %v, want ErrCertMismatch", err)
			}
		})
	}

	t.Run("no secret over TLS", func(t *testing.T) {
		c := NewPinnedClient(endpoint, "", id.SHA256)
		defer c.Close()
		_, err := c.Exec(ctx, touch)
		if e := wantAgentError(t, err, http.StatusUnauthorized); e.Code != CodeUnauthorized {
			t.Fatalf("code %q", e.Code)
		}
		bad := NewPinnedClient(endpoint, "not-the-secret", id.SHA256)
		defer bad.Close()
		_, err = bad.Exec(ctx, touch)
		wantAgentError(t, err, http.StatusUnauthorized)
	})

	t.Run("plain http to the TLS port", func(t *testing.T) {
		plainURL := strings.Replace(endpoint, "https://", "http://", 1)
		c := NewClient(plainURL, secret)
		defer c.Close()
		if h, err := c.Health(ctx); err == nil {
			t.Fatalf("plain health answered %+v", h)
		}
		if _, err := c.Exec(ctx, touch); err == nil {
			t.Fatal("plain exec answered")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, plainURL+"/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 || strings.Contains(string(body), `"status"`) {
				t.Fatalf("plain GET /health: %d %q", resp.StatusCode, body)
			}
		}
	})

	t.Run("TLS 1.2 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(endpoint, "https://"), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.2 handshake succeeded")
		}
	})

	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused client's exec ran: %v", err)
	}
}

func mustIdentity(t *testing.T) TLSIdentity {
	t.Helper()
	id, err := NewTLSIdentity("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Run refuses a listener whose TLS settings do not fit before it opens it.
func TestRunTLSSettings(t *testing.T) {
	id := mustIdentity(t)
	cases := []struct {
		name    string
		cfg     RunConfig
		wantTLS bool
		wantErr string
	}{
		{"tcp with TLS", RunConfig{Listen: "tcp://127.0.0.1:0", TLSCertPEM: id.CertPEM, TLSKeyPEM: id.KeyPEM}, true, ""},
		{"tcp plain, asked for", RunConfig{Listen: "tcp://127.0.0.1:0", InsecurePlainTCP: true}, false, ""},
		{"unix", RunConfig{Listen: "unix:///run/a.sock"}, false, ""},
		{"tcp plain, not asked for", RunConfig{Listen: "tcp://127.0.0.1:0"}, false, "serves TLS"},
		{"tcp with TLS and plain", RunConfig{Listen: "tcp://127.0.0.1:0", TLSCertPEM: id.CertPEM, TLSKeyPEM: id.KeyPEM, InsecurePlainTCP: true}, false, "both"},
		{"unix with TLS", RunConfig{Listen: "unix:///run/a.sock", TLSCertPEM: id.CertPEM, TLSKeyPEM: id.KeyPEM}, false, "unix socket"},
		{"key of another certificate", RunConfig{Listen: "tcp://127.0.0.1:0", TLSCertPEM: id.CertPEM, TLSKeyPEM: mustIdentity(t).KeyPEM}, false, "certificate and key"},
		{"certificate without key", RunConfig{Listen: "tcp://127.0.0.1:0", TLSCertPEM: id.CertPEM}, false, "certificate and key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runTLS(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != tc.wantTLS {
				t.Fatalf("tls config %v, want TLS %v", got, tc.wantTLS)
			}
			if got != nil && got.MinVersion != tls.VersionTLS13 {
				t.Fatalf("min version %x", got.MinVersion)
			}
		})
	}
}

// The binary on TCP serves TLS with the certificate beside its secret file
// (as a Nomad job gives it) or from the environment, keeps both from its
// execs, and will not serve plain TCP unless told to.
func TestBinaryTCPServesTLS(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "agent")
	buildAgent(t, bin)
	id := mustIdentity(t)
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"agent-secret": []byte("s3cret\n"), TLSCertFile: id.CertPEM, TLSKeyFile: id.KeyPEM} {
		if err := os.WriteFile(filepath.Join(secrets, name), data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	baseEnv := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	pemEnv := append(baseEnv, "SANDBOX_AGENT_SECRET=s3cret",
		"SANDBOX_AGENT_TLS_CERT="+string(id.CertPEM), "SANDBOX_AGENT_TLS_KEY="+string(id.KeyPEM))
	cases := []struct {
		name string
		args []string
		env  []string
	}{
		{"files beside the secret", []string{"-secret-file", filepath.Join(secrets, "agent-secret")}, baseEnv},
		{"PEM in the environment", nil, pemEnv},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeLoopbackAddr(t)
			startBinary(t, bin, append([]string{"-listen", "tcp://" + addr, "-workdir", t.TempDir(), "-subreaper", "-landlock", "off"}, tc.args...), tc.env)
			ctx := ctxT(t)
			c := NewPinnedClient("https://"+addr, "s3cret", id.SHA256)
			defer c.Close()
			waitHealthy(t, ctx, c)
			res, err := c.Exec(ctx, ExecRequest{Shell: `env | grep -c '^SANDBOX_AGENT_' || true`})
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(res.Stdout) != "0" {
				t.Fatalf("an exec sees %s SANDBOX_AGENT_* variables", strings.TrimSpace(res.Stdout))
			}
			plain := NewClient("http://"+addr, "s3cret")
			defer plain.Close()
			if _, err := plain.Health(ctx); err == nil {
				t.Fatal("the TLS port answered plain http")
			}
		})
	}

	t.Run("plain tcp refused unless asked for", func(t *testing.T) {
		addr := freeLoopbackAddr(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-listen", "tcp://"+addr, "-workdir", t.TempDir(), "-landlock", "off")
		cmd.Env = append(baseEnv, "SANDBOX_AGENT_SECRET=s3cret")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "serves TLS") {
			t.Fatalf("agent on plain tcp: %v\n%s", err, out)
		}

		startBinary(t, bin, []string{"-listen", "tcp://" + addr, "-workdir", t.TempDir(), "-subreaper", "-landlock", "off", "-insecure-plain-tcp"},
			append(baseEnv, "SANDBOX_AGENT_SECRET=s3cret"))
		c := NewClient("http://"+addr, "s3cret")
		defer c.Close()
		waitHealthy(t, ctxT(t), c)
	})
}

// freeLoopbackAddr is a loopback address with a port nothing listened on
// a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func startBinary(t *testing.T, bin string, args, env []string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = &testLogWriter{t: t}
	startUntilCleanup(t, cmd)
}

func waitHealthy(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.Health(ctx)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy within 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startUntilCleanup starts cmd and kills it (and reaps it) when the test
// ends. The channel receives its exit; a test that takes it must put it back
// for the cleanup.
func startUntilCleanup(t testing.TB, cmd *exec.Cmd) chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return exited
}
