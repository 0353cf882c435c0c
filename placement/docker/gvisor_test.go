package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// gvisorRuntime is the Docker runtime name deploy/gvisor/setup.sh registers.
const gvisorRuntime = "runsc"

// needGVisor skips without a runsc runtime in Docker, except under CI=true
// or GVISOR_REQUIRED=1 (make gvisor), where the suite must run for real.
func needGVisor(t testing.TB) {
	t.Helper()
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{json .Runtimes}}").Output()
	if err == nil && strings.Contains(string(out), `"`+gvisorRuntime+`"`) {
		return
	}
	msg := "Docker has no " + gvisorRuntime + " runtime (run deploy/gvisor/setup.sh as root, or make gvisor)"
	if err != nil {
		msg += ": docker info: " + err.Error()
	}
	if os.Getenv("CI") == "true" || os.Getenv("GVISOR_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// runscProcesses lists the host's runsc sandbox and gofer processes whose
// command line names id (runsc puts the container ID in its arguments).
func runscProcesses(t *testing.T, id string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "runsc") && strings.Contains(cmd, id) {
			found = append(found, e.Name()+": "+cmd)
		}
	}
	return found
}

// TestGVisor runs the package's sandbox tests again with Runtime "runsc":
// the same assertions as under runc, not copies of them. A test listed here
// passes under gVisor on this host; what does not is in the README.
func TestGVisor(t *testing.T) {
	needGVisor(t)
	testRuntime = gvisorRuntime
	t.Cleanup(func() { testRuntime = "" })

	tests := []struct {
		name string
		run  func(*testing.T)
	}{
		{"CreateListDestroy", TestCreateListDestroy},
		{"ExecInSandbox", TestExecInSandbox},
		{"MissingSandbox", TestMissingSandbox},
		{"CreateMissingImage", TestCreateMissingImage},
		{"CreateAgentFails", TestCreateAgentFails},
		{"MemoryBomb", TestMemoryBomb},
		{"AbuseMemoryBomb", TestAbuseMemoryBomb},
		{"AbuseMemoryLimitAsSet", TestAbuseMemoryLimitAsSet},
		{"AbuseDiskFull", TestAbuseDiskFull},
		{"AbuseOutputFlood", TestAbuseOutputFlood},
		{"AbuseBusyLoop", TestAbuseBusyLoop},
		{"Hardening", TestHardening},
		{"PauseResume", TestPauseResume},
		{"CodeContexts", TestCodeContextsInSandbox},
		{"NoLiveUpdate", testGVisorNoLiveUpdate},
		{"NetworkRefused", testGVisorNetworkRefused},
		{"FailedStartLeavesNoRunsc", testGVisorFailedStartLeavesNoRunsc},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// testGVisorNetworkRefused: a sandbox with network under runsc is refused
// with a NoNetworkError naming the runtime, and nothing is left behind.
func testGVisorNetworkRefused(t *testing.T) {
	d := newDriver(t, nil)
	id := "sb-" + randHex(6)
	_, err := d.Create(context.Background(), placement.Spec{ID: id, Image: testImage, Network: true})
	var nn *placement.NoNetworkError
	if !errors.As(err, &nn) || nn.Runtime != gvisorRuntime || !errors.Is(err, placement.ErrNoNetwork) {
		t.Fatalf("Create with network under %s: %v, want a NoNetworkError naming it", gvisorRuntime, err)
	}
	if !strings.Contains(err.Error(), `runtime "runsc"`) {
		t.Errorf("error %q does not name the runtime", err)
	}
	if inst := findInstance(t, d, id); inst != nil {
		t.Errorf("container left behind: %+v", inst)
	}
	if _, err := os.Stat(filepath.Join(testState, id)); !os.IsNotExist(err) {
		t.Errorf("host dir left behind: %v", err)
	}
}

// testGVisorFailedStartLeavesNoRunsc: an agent that cannot start fails
// Create (TestCreateAgentFails under runsc) and leaves no runsc-sandbox or
// runsc-gofer process of the container it made, found through Docker's
// events for that sandbox's label.
func testGVisorFailedStartLeavesNoRunsc(t *testing.T) {
	// The control: a running sandbox's runsc processes are found.
	good := newSandbox(t, newDriver(t, nil), placement.Spec{})
	if ps := runscProcesses(t, good.p.ContainerID); len(ps) < 2 {
		t.Fatalf("runsc processes of a running sandbox: %q, want its runsc-sandbox and runsc-gofer", ps)
	}
	since := time.Now().Add(-time.Second)
	id := "sb-" + randHex(6)
	bad := filepath.Join(filepath.Dir(testState), "bad-agent-gvisor")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho agent-cannot-start >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, func(c *Config) { c.AgentBinary = bad })
	_, err := d.Create(context.Background(), placement.Spec{ID: id, Image: testImage})
	if err == nil || !strings.Contains(err.Error(), "agent-cannot-start") {
		t.Fatalf("Create: %v, want the agent's output", err)
	}
	if inst := findInstance(t, d, id); inst != nil {
		t.Errorf("container left behind: %+v", inst)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "events", "--since", fmt.Sprint(since.Unix()), "--until", fmt.Sprint(time.Now().Add(time.Second).Unix()),
		"--filter", "type=container", "--filter", "event=create", "--filter", "label="+LabelSandbox+"="+id, "--format", "{{.Actor.ID}}").Output()
	if err != nil {
		t.Fatalf("docker events: %v", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		t.Fatalf("docker events show no container created for %s: cannot look for its runsc processes", id)
	}
	for _, cid := range ids {
		// runsc's processes end with the container; the removal is done
		// when Create returns, their exit may take a moment.
		eventually(t, 10*time.Second, "runsc processes of "+cid[:12]+" gone", func() error {
			if ps := runscProcesses(t, cid); len(ps) > 0 {
				return fmt.Errorf("still running: %q", ps)
			}
			return nil
		})
	}
}

// testGVisorNoLiveUpdate: runsc cannot change a running container's limits,
// so the driver says so in its Capabilities and Update refuses naming the
// runtime, and the sandbox keeps working.
func testGVisorNoLiveUpdate(t *testing.T) {
	d := newDriver(t, nil)
	if d.Capabilities().LiveUpdate {
		t.Errorf("Capabilities().LiveUpdate under %s = true, want false", gvisorRuntime)
	}
	s := newSandbox(t, d, placement.Spec{})
	err := d.Update(context.Background(), s.id, fsm.Resources{CPUCount: 2, MemoryMB: 256})
	if err == nil || !strings.Contains(err.Error(), `runtime "runsc"`) {
		t.Errorf("Update under %s: %v, want a refusal naming the runtime", gvisorRuntime, err)
	}
	if res := s.sh(t, "echo alive"); res.Stdout != "alive\n" {
		t.Errorf("after the refused update: %+v", res)
	}
}
