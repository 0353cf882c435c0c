package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// The test environment TestMain prepares; dockerErr is set when there is no
// Docker, and then every Docker test skips (or fails when CI=true).
var (
	dockerErr   error
	testCluster string
	testState   string
	testAgent   string
	testImage   string
	repoRoot    string
)

const testLabel = "cloud-sandbox.test"

// testRuntime is the OCI runtime newDriver's drivers use: "" (Docker's
// default, runc) for the package's tests, "runsc" while TestGVisor runs
// them again under gVisor. Tests never run in parallel here.
var testRuntime string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	testCluster = "t" + randHex(5)
	testImage = os.Getenv("SANDBOX_IMAGE")
	if testImage == "" {
		testImage = "python:3.11-slim"
	}
	if err := dockerPing(); err != nil {
		dockerErr = err
		return m.Run()
	}
	// /tmp, not t.TempDir: the agent socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "cs")
	if err != nil {
		fmt.Fprintln(os.Stderr, "state dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testState = filepath.Join(dir, "s")
	testAgent = filepath.Join(dir, "sandbox-agent")
	if err := buildAgent(testAgent); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := ensureImage(testImage); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removeClusterContainers(testCluster)
	return m.Run()
}

func dockerPing() error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx)
	return err
}

// buildAgent compiles the static sandbox-agent the containers run.
func buildAgent(out string) error {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "./cmd/sandbox-agent")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build sandbox-agent: %v\n%s", err, b)
	}
	return nil
}

// ensureImage runs the image build (a no-op when the image exists).
func ensureImage(image string) error {
	cmd := exec.Command("bash", filepath.Join(repoRoot, "deploy", "sandbox-image", "build.sh"), "cloud-sandbox/python:3.11-slim", image)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build sandbox image: %v\n%s", err, b)
	}
	return nil
}

// removeClusterContainers removes whatever a test left behind.
func removeClusterContainers(cluster string) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelCluster+"="+cluster))})
	if err != nil {
		return
	}
	for _, c := range cs {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// needDocker skips a test without Docker, except in CI where it must run.
func needDocker(tb testing.TB) {
	tb.Helper()
	if dockerErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("Docker is required in CI: %v", dockerErr)
	}
	tb.Skipf("no Docker: %v", dockerErr)
}

// newDriver is a driver for the test cluster; edit adjusts its config.
func newDriver(tb testing.TB, edit func(*Config)) *Driver {
	tb.Helper()
	needDocker(tb)
	cfg := Config{
		Cluster:     testCluster,
		AgentBinary: testAgent,
		StateDir:    testState,
		Labels:      map[string]string{testLabel: "1"},
		Runtime:     testRuntime,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// sandbox is one created sandbox and a client for its agent.
type sandbox struct {
	id     string
	p      fsm.Placement
	client *agent.Client
}

// newSandbox creates a sandbox that the test destroys when it ends.
func newSandbox(tb testing.TB, d *Driver, spec placement.Spec) *sandbox {
	tb.Helper()
	if spec.ID == "" {
		spec.ID = "sb-" + randHex(6)
	}
	if spec.Image == "" {
		spec.Image = testImage
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := d.Create(ctx, spec)
	if err != nil {
		tb.Fatalf("Create %s: %v", spec.ID, err)
	}
	c := agent.NewClient(p.AgentEndpoint, "")
	tb.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Destroy(ctx, spec.ID, p); err != nil {
			tb.Errorf("Destroy %s: %v", spec.ID, err)
		}
	})
	return &sandbox{id: spec.ID, p: p, client: c}
}

// exec runs req in the sandbox and fails the test if the agent cannot.
func (s *sandbox) exec(tb testing.TB, req agent.ExecRequest) *agent.ExecResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.client.Exec(ctx, req)
	if err != nil {
		tb.Fatalf("exec %v%q in %s: %v", req.Argv, req.Shell, s.id, err)
	}
	return res
}

// sh runs a shell command in the sandbox.
func (s *sandbox) sh(tb testing.TB, script string) *agent.ExecResult {
	tb.Helper()
	return s.exec(tb, agent.ExecRequest{Shell: script})
}

// eventually retries f every 100 ms until it returns nil or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func itoa(n int64) string { return fmt.Sprint(n) }

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

var readFile = os.ReadFile
