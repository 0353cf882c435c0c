package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// TestCreateListDestroy follows one sandbox through its life as the
// reconciler sees it.
func TestCreateListDestroy(t *testing.T) {
	d := newDriver(t, nil)
	ctx := context.Background()
	id := "sb-" + randHex(6)
	p, err := d.Create(ctx, placement.Spec{ID: id, Image: testImage})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), id, fsm.Placement{}) })
	host, _ := os.Hostname()
	wantEndpoint := "unix://" + filepath.Join(testState, id, "agent.sock")
	if p.Driver != "docker" || p.Node != host || p.ContainerID == "" || p.IP != "" || p.AgentEndpoint != wantEndpoint {
		t.Fatalf("Placement = %+v, want docker on %s, a container, no IP, endpoint %s", p, host, wantEndpoint)
	}
	info, err := d.docker.ContainerInspect(ctx, p.ContainerID)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if want := "/cs-" + testCluster + "-" + id; info.Name != want {
		t.Errorf("container name %q, want %q", info.Name, want)
	}
	h, err := agent.NewClient(p.AgentEndpoint, "").Health(ctx)
	if err != nil || h.Status != "ok" || h.UID != 1000 || h.PID != 1 {
		t.Errorf("Health = %+v, %v; want ok from PID 1 as uid 1000", h, err)
	}

	var exists *ExistsError
	if _, err := d.Create(ctx, placement.Spec{ID: id, Image: testImage}); !errors.As(err, &exists) || exists.ContainerID != p.ContainerID {
		t.Errorf("second Create of %s: %v, want ExistsError naming %s", id, err, p.ContainerID)
	}
	if _, err := agent.NewClient(p.AgentEndpoint, "").Health(ctx); err != nil {
		t.Errorf("first sandbox after a refused second Create: %v, want it unharmed", err)
	}

	inst := findInstance(t, d, id)
	if inst == nil || !inst.Running || inst.Paused || inst.Placement.ContainerID != p.ContainerID || inst.Placement.AgentEndpoint != p.AgentEndpoint {
		t.Fatalf("List entry = %+v, want running, not paused, same placement", inst)
	}

	if err := d.Destroy(ctx, id, p); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := d.docker.ContainerInspect(ctx, p.ContainerID); !errdefs.IsNotFound(err) {
		t.Errorf("container after Destroy: %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(testState, id)); !os.IsNotExist(err) {
		t.Errorf("host dir after Destroy: %v, want gone", err)
	}
	if inst := findInstance(t, d, id); inst != nil {
		t.Errorf("List after Destroy still has %+v", inst)
	}
	if err := d.Destroy(ctx, id, p); err != nil {
		t.Errorf("second Destroy: %v, want nil (idempotent)", err)
	}
}

// TestMissingSandbox: operations on an unknown id report ErrNotFound, and
// Destroy succeeds.
func TestMissingSandbox(t *testing.T) {
	d := newDriver(t, nil)
	ctx := context.Background()
	ops := []struct {
		name string
		call func() error
	}{
		{"pause", func() error { return d.Pause(ctx, "sb-nope") }},
		{"resume", func() error { _, _, err := d.Resume(ctx, "sb-nope"); return err }},
		{"update", func() error { return d.Update(ctx, "sb-nope", fsm.Resources{MemoryMB: 64}) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.call(); !errors.Is(err, placement.ErrNotFound) {
				t.Errorf("%s of a missing sandbox: %v, want ErrNotFound", op.name, err)
			}
		})
	}
	if err := d.Destroy(ctx, "sb-nope", fsm.Placement{}); err != nil {
		t.Errorf("Destroy of a missing sandbox: %v, want nil", err)
	}
	if _, err := d.Create(ctx, placement.Spec{ID: "../etc", Image: testImage}); err == nil {
		t.Errorf("Create with id ../etc succeeded")
	}
}

// TestDestroyOldPlacementKeepsNewerContainer: a destroy that arrives late,
// naming a container that is gone, leaves the newer container of the same
// sandbox id and its host dir; one naming another sandbox's container
// removes nothing.
func TestDestroyOldPlacementKeepsNewerContainer(t *testing.T) {
	d := newDriver(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := "sb-" + randHex(6)
	old, err := d.Create(ctx, placement.Spec{ID: id, Image: testImage})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), id, fsm.Placement{}) })
	if err := d.Destroy(ctx, id, old); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	newer, err := d.Create(ctx, placement.Spec{ID: id, Image: testImage})
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if newer.ContainerID == old.ContainerID {
		t.Fatalf("second Create reused container %s", old.ContainerID)
	}

	if err := d.Destroy(ctx, id, old); err != nil {
		t.Fatalf("late Destroy of the old placement: %v", err)
	}
	if info, err := d.docker.ContainerInspect(ctx, newer.ContainerID); err != nil || info.State == nil || !info.State.Running {
		t.Fatalf("newer container after a late Destroy of the old one: %v, want running", err)
	}
	if _, err := agent.NewClient(newer.AgentEndpoint, "").Health(ctx); err != nil {
		t.Errorf("newer sandbox's agent after a late Destroy of the old one: %v (host dir removed?)", err)
	}

	other := newSandbox(t, d, placement.Spec{})
	if err := d.Destroy(ctx, id, other.p); err == nil {
		t.Errorf("Destroy of %s with %s's container succeeded, want refused", id, other.id)
	}
	if _, err := other.client.Health(ctx); err != nil {
		t.Errorf("the other sandbox after a Destroy naming its container: %v", err)
	}

	if err := d.Destroy(ctx, id, newer); err != nil {
		t.Fatalf("Destroy of the newer placement: %v", err)
	}
	if _, err := d.docker.ContainerInspect(ctx, newer.ContainerID); !errdefs.IsNotFound(err) {
		t.Errorf("newer container after its Destroy: %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(testState, id)); !os.IsNotExist(err) {
		t.Errorf("host dir after Destroy: %v, want gone", err)
	}
}

// TestCreateMissingImage: an image neither present nor pullable gives an
// ImageNotFoundError naming it, and leaves nothing behind.
func TestCreateMissingImage(t *testing.T) {
	d := newDriver(t, func(c *Config) { c.PullTimeout = 30 * time.Second })
	id := "sb-" + randHex(6)
	image := "cloud-sandbox-test/missing-" + randHex(4) + ":v1"
	_, err := d.Create(context.Background(), placement.Spec{ID: id, Image: image})
	var inf *placement.ImageNotFoundError
	if !errors.As(err, &inf) || inf.Image != image {
		t.Fatalf("Create: %v, want ImageNotFoundError for %s", err, image)
	}
	t.Logf("missing image: %v", err)
	if !strings.Contains(err.Error(), image) {
		t.Errorf("error %q does not name the image", err)
	}
	if inst := findInstance(t, d, id); inst != nil {
		t.Errorf("container left behind: %+v", inst)
	}
	if _, err := os.Stat(filepath.Join(testState, id)); !os.IsNotExist(err) {
		t.Errorf("host dir left behind: %v", err)
	}
}

// TestCreateAgentFails: an agent that exits at once makes Create fail fast
// with its output, and removes the container and the host dir.
func TestCreateAgentFails(t *testing.T) {
	bad := filepath.Join(filepath.Dir(testState), "bad-agent")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho agent-cannot-start >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, func(c *Config) { c.AgentBinary = bad })
	id := "sb-" + randHex(6)
	_, err := d.Create(context.Background(), placement.Spec{ID: id, Image: testImage})
	if err == nil || !strings.Contains(err.Error(), "agent-cannot-start") || !strings.Contains(err.Error(), "exit code 3") {
		t.Fatalf("Create: %v, want the agent's exit code and output", err)
	}
	if inst := findInstance(t, d, id); inst != nil {
		t.Errorf("container left behind: %+v", inst)
	}
	if _, err := os.Stat(filepath.Join(testState, id)); !os.IsNotExist(err) {
		t.Errorf("host dir left behind: %v", err)
	}
}

// TestNetworkSandbox: a sandbox that asks for egress gets an interface and
// an IP; one that does not has loopback only (see TestHardening).
func TestNetworkSandbox(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Network: true})
	if s.p.IP == "" {
		t.Errorf("Placement.IP empty for a networked sandbox")
	}
	res := s.sh(t, "ls /sys/class/net")
	if ifs := strings.Fields(res.Stdout); len(ifs) < 2 {
		t.Errorf("interfaces %q, want loopback and one more", ifs)
	}
}

// TestUpdateLimits: Update changes the memory and CPU limits the sandbox's
// cgroup enforces, up and down.
func TestUpdateLimits(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{Resources: fsm.Resources{MemoryMB: 128, CPUCount: 1}})
	for _, res := range []fsm.Resources{{MemoryMB: 256, CPUCount: 2}, {MemoryMB: 96, CPUCount: 0.5}} {
		if err := d.Update(context.Background(), s.id, res); err != nil {
			t.Fatalf("Update %+v: %v", res, err)
		}
		info, err := d.docker.ContainerInspect(context.Background(), s.p.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		hc := info.HostConfig
		// The user's memory beside the default disk, /tmp and /dev/shm.
		limit := d.memoryLimitMB(d.resources(res)) << 20
		if hc.Memory != limit || hc.MemorySwap != hc.Memory || hc.NanoCPUs != int64(res.CPUCount*1e9) {
			t.Errorf("after Update %+v: Memory %d Swap %d NanoCPUs %d", res, hc.Memory, hc.MemorySwap, hc.NanoCPUs)
		}
		out := s.sh(t, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
		if got, want := strings.TrimSpace(out.Stdout), itoa(limit); got != want {
			t.Errorf("memory limit seen inside = %q, want %s", got, want)
		}
	}
}

// findInstance is the List entry for id, or nil.
func findInstance(t *testing.T, d *Driver, id string) *placement.Instance {
	t.Helper()
	list, err := d.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i := range list {
		if list[i].SandboxID == id {
			return &list[i]
		}
	}
	return nil
}

func containerState(t *testing.T, d *Driver, id string) *container.State {
	t.Helper()
	info, err := d.docker.ContainerInspect(context.Background(), d.containerName(id))
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return info.State
}
