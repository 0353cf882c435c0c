package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// nomadMounts are the host directories Nomad bind-mounts into every Docker
// task: 0777, on the client's disk, with no size limit, and impossible to
// cover with another mount.
var nomadMounts = []string{"/alloc/data", "/alloc/tmp", "/local"}

// startWithHostMounts starts a sandbox as Create does, plus a bind mount of
// a fresh 0777 host dir at each target (as Nomad does) and extra agent
// flags. It returns the agent client and the host dir of each target.
func startWithHostMounts(t *testing.T, d *Driver, targets []string, agentFlags ...string) (*agent.Client, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := placement.Spec{ID: "sb-" + randHex(6), Image: testImage}
	if err := d.ensureImage(ctx, spec.Image); err != nil {
		t.Fatal(err)
	}
	if err := d.makeHostDir(d.hostDir(spec.ID)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Destroy(ctx, spec.ID, fsm.Placement{}); err != nil {
			t.Errorf("Destroy %s: %v", spec.ID, err)
		}
	})
	cfg, host := d.containerSpec(spec)
	cfg.Entrypoint = append(cfg.Entrypoint, agentFlags...)
	hostDirs := make(map[string]string, len(targets))
	for _, target := range targets {
		src := t.TempDir()
		if err := os.Chmod(src, 0o777); err != nil {
			t.Fatal(err)
		}
		hostDirs[target] = src
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: target})
	}
	created, err := d.docker.ContainerCreate(ctx, cfg, host, nil, nil, d.containerName(spec.ID))
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	if err := d.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	if err := d.waitReady(ctx, created.ID, d.endpoint(spec.ID)); err != nil {
		t.Fatal(err)
	}
	c := agent.NewClient(d.endpoint(spec.ID), "")
	t.Cleanup(c.Close)
	return c, hostDirs
}

// containmentCase is one exec and whether containment must refuse it.
type containmentCase struct {
	name    string
	req     agent.ExecRequest
	refused bool
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestContainment (issue 10): with Nomad's host directories mounted, a
// sandbox with the driver's default agent flags cannot write 300 MiB into
// them, or anything at all, while /workspace, /tmp and /dev/shm work. The
// same sandbox with -landlock=off is the control: there the host dirs take
// the write, so the refusal is the agent's containment and not permissions.
func TestContainment(t *testing.T) {
	d := newDriver(t, nil)
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION); e != 0 {
		t.Skipf("this kernel offers no Landlock (%v): write containment cannot be tested here", e)
	}
	t.Run("default flags", func(t *testing.T) {
		c, hostDirs := startWithHostMounts(t, d, nomadMounts)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		h, err := c.Health(ctx)
		if err != nil || !h.WriteContainment || h.LandlockABI < 1 || h.PID != 1 || h.UID != placement.SandboxUID {
			t.Fatalf("health %+v, %v: want write containment on, as PID 1, uid %d", h, err, placement.SandboxUID)
		}
		tests := []containmentCase{
			{"10 MiB into /workspace", agent.ExecRequest{Shell: `head -c 10485760 /dev/zero > /workspace/w && test $(stat -c %s /workspace/w) = 10485760`}, false},
			{"into /tmp, /dev/shm and /dev/null", agent.ExecRequest{Shell: `echo x > /tmp/t && echo x > /dev/shm/s && echo x > /dev/null`}, false},
			{"python into /workspace", agent.ExecRequest{Language: "python", Code: `open("/workspace/p", "w").write("x")`}, false},
		}
		for _, target := range nomadMounts {
			tests = append(tests,
				containmentCase{"300 MiB into " + target, agent.ExecRequest{Shell: "dd if=/dev/zero of=" + target + "/big bs=1M count=300"}, true},
				containmentCase{"python 300 MiB into " + target, agent.ExecRequest{Language: "python",
					Code: "f = open(\"" + target + "/py\", \"wb\")\nfor _ in range(300): f.write(bytes(1 << 20))"}, true},
				containmentCase{"mkdir in " + target, agent.ExecRequest{Shell: "mkdir " + target + "/d"}, true},
			)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := c.Exec(ctx, tt.req)
				if err != nil {
					t.Fatal(err)
				}
				if tt.refused {
					if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Permission denied") {
						t.Fatalf("exit %d stderr %q: want refused with Permission denied", res.ExitCode, res.Stderr)
					}
					return
				}
				if res.ExitCode != 0 {
					t.Fatalf("exit %d stderr %q, want 0", res.ExitCode, res.Stderr)
				}
			})
		}
		t.Run("file API into /alloc/data", func(t *testing.T) {
			_, err := c.WriteFile(ctx, "/alloc/data/api", strings.NewReader(strings.Repeat("x", 1<<20)), 0o644)
			var ae *agent.Error
			if !errors.As(err, &ae) || ae.Status != 403 {
				t.Fatalf("WriteFile /alloc/data/api: %v, want a 403", err)
			}
		})
		for target, src := range hostDirs {
			if n := dirBytes(t, src); n != 0 {
				t.Errorf("host dir of %s holds %d bytes, want 0", target, n)
			}
			if entries, _ := os.ReadDir(src); len(entries) != 0 {
				t.Errorf("host dir of %s holds %d entries, want none", target, len(entries))
			}
		}
	})

	t.Run("control: -landlock=off", func(t *testing.T) {
		c, hostDirs := startWithHostMounts(t, d, []string{"/alloc/data"}, "-landlock=off")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := c.Health(ctx)
		if err != nil || h.WriteContainment {
			t.Fatalf("health %+v, %v: want write containment off", h, err)
		}
		// 1 MiB, not 300: the control must not fill the host's disk.
		res, err := c.Exec(ctx, agent.ExecRequest{Shell: `head -c 1048576 /dev/zero > /alloc/data/small`})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("uncontained write into /alloc/data: %+v, %v; want it to land on the host", res, err)
		}
		if n := dirBytes(t, hostDirs["/alloc/data"]); n != 1<<20 {
			t.Fatalf("host dir holds %d bytes, want %d", n, 1<<20)
		}
	})
}
