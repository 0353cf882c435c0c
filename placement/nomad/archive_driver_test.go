package nomad

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad/nomadfake"
)

// A control node that paused a sandbox into S3 goes away; another one,
// sharing only Nomad and the bucket, lists it as paused and resumes it
// with its files.
func TestResumeByAnotherControlNode(t *testing.T) {
	srv := newS3Server(t)
	useS3 := func(c *Config) { c.ArchiveDir, c.S3 = "", srv.config() }
	e := newEnv(t, nomadfake.Options{AutoRun: true}, useS3)
	ctx := ctxT(t)
	p, err := e.d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	defer c.Close()
	if _, err := c.WriteFile(ctx, e.ws+"/src/main.py", strings.NewReader("print(42)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Pause(ctx, "sb1"); err != nil {
		t.Fatalf("pause on node 1: %v", err)
	}
	if got := srv.keys(t); len(got) != 2 || got[0] != "archives/v1/test/sb1.json" || got[1] != "archives/v1/test/sb1.tar" {
		t.Errorf("objects after pause = %v, want <prefix>/<cluster>/sb1.json and .tar", got)
	}
	cfg := e.d.cfg
	e.d = nil // node 1 is gone, and with it anything it kept in memory or on disk

	node2, err := New(cfg)
	if err != nil {
		t.Fatalf("node 2: %v", err)
	}
	node2.workspace = e.ws
	list, err := node2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SandboxID != "sb1" || !list[0].Paused {
		t.Fatalf("node 2 lists %+v, want sb1 paused", list)
	}
	np, moved, err := node2.Resume(ctx, "sb1")
	if err != nil {
		t.Fatalf("resume on node 2: %v", err)
	}
	if !moved || np.AgentSecret != p.AgentSecret || np.ContainerID == p.ContainerID {
		t.Errorf("resume = %+v moved %v, want a new allocation with the job's secret", np, moved)
	}
	nc := agent.NewPinnedClient(np.AgentEndpoint, np.AgentSecret, np.AgentCertSHA256)
	defer nc.Close()
	rc, err := nc.ReadFile(ctx, e.ws+"/src/main.py")
	if err != nil {
		t.Fatalf("read after resume: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "print(42)\n" {
		t.Errorf("file after resume = %q", got)
	}
	if left := srv.keys(t); len(left) != 0 {
		t.Errorf("objects after resume = %v, want the archive deleted", left)
	}
	if list, _ := node2.List(ctx); len(list) != 1 || list[0].Paused || !list[0].Running {
		t.Errorf("list after resume = %+v, want sb1 running", list)
	}
}

// A workspace tar larger than the sandbox's disk (plus the tar margin) is
// refused: the sandbox keeps running, nothing is stored, it is not paused.
func TestPauseRefusesWorkspaceOverDiskLimit(t *testing.T) {
	for _, sc := range []struct {
		name  string
		tweak func(t *testing.T, c *Config) (leftovers func() []string)
	}{
		{"dir", func(t *testing.T, c *Config) func() []string {
			dir := c.ArchiveDir
			return func() []string { return dirEntries(t, dir) }
		}},
		{"s3", func(t *testing.T, c *Config) func() []string {
			srv := newS3Server(t)
			c.ArchiveDir, c.S3 = "", srv.config()
			return func() []string { return srv.keys(t) }
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			var leftovers func() []string
			e := newEnv(t, nomadfake.Options{AutoRun: true}, func(c *Config) { leftovers = sc.tweak(t, c) })
			ctx := ctxT(t)
			small := spec
			small.Resources = fsm.Resources{CPUCount: 0.5, MemoryMB: 256, DiskMB: 1}
			p, err := e.d.Create(ctx, small)
			if err != nil {
				t.Fatal(err)
			}
			// The host directory standing in for /workspace has no tmpfs
			// limit: it holds what a misbehaving agent could send.
			c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
			defer c.Close()
			big := make([]byte, 3<<20)
			if _, err := rand.Read(big); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteFile(ctx, e.ws+"/big.bin", bytes.NewReader(big), 0o644); err != nil {
				t.Fatal(err)
			}

			err = e.d.Pause(ctx, "sb1")
			var tl *ArchiveTooLargeError
			if !errors.As(err, &tl) || tl.DiskMB != 1 || tl.Limit != archiveLimit(1) {
				t.Fatalf("pause of 3 MiB on a 1 MB disk: %v, want *ArchiveTooLargeError for 1 MB", err)
			}
			if !errors.Is(err, placement.ErrPauseRefused) {
				t.Errorf("%v is not placement.ErrPauseRefused: the reconciler would retry it forever", err)
			}
			if left := leftovers(); len(left) != 0 {
				t.Errorf("after the refused pause: %v left", left)
			}
			if _, err := c.Health(ctx); err != nil {
				t.Errorf("agent after the refused pause: %v, want the sandbox still running", err)
			}
			list, err := e.d.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Paused || !list[0].Running {
				t.Errorf("list = %+v, want sb1 running, not paused", list)
			}
			if _, _, err := e.d.Resume(ctx, "sb1"); err != nil {
				t.Errorf("resume of the still running sandbox: %v", err)
			}

			// Within the limit it pauses.
			if _, err := c.WriteFile(ctx, e.ws+"/big.bin", bytes.NewReader(big[:512<<10]), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := e.d.Pause(ctx, "sb1"); err != nil {
				t.Fatalf("pause of 512 KiB on a 1 MB disk: %v", err)
			}
		})
	}
}
