package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// maxBenchCreates bounds the container rows: each costs a container start.
const maxBenchCreates = 30

// BenchmarkSandbox prints one table of medians: exec through the agent vs
// raw docker exec (and a host fork+exec for reference), and the driver's
// Create vs a raw container create+start. Run it with a small count:
//
//	go test ./placement/docker -run '^$' -bench BenchmarkSandbox -benchtime 50x
func BenchmarkSandbox(b *testing.B) {
	d := newDriver(b, nil)
	s := newSandbox(b, d, placement.Spec{})
	ctx := context.Background()
	n := b.N
	creates := min(n, maxBenchCreates)

	// Round robin, so load from elsewhere on the machine hits every row alike.
	execs := measure(b, n, []func() error{
		func() error { return exec.Command("true").Run() },
		func() error { return agentExec(ctx, s.client, "true") },
		func() error { return dockerExec(ctx, d, s.p.ContainerID, "true") },
		func() error { return agentExec(ctx, s.client, "python3", "-c", "print(1)") },
		func() error { return dockerExec(ctx, d, s.p.ContainerID, "python3", "-c", "print(1)") },
	})
	hostTrue, agentTrue, dockerTrue, agentPy, dockerPy := execs[0], execs[1], execs[2], execs[3], execs[4]
	egressSpec := func(id string) placement.Spec {
		return placement.Spec{ID: id, Image: testImage, Network: true, EgressAllow: []string{"203.0.113.0/24"}}
	}
	starts := measureCreate(b, creates, []func(id string) error{
		func(id string) error { _, err := d.Create(ctx, placement.Spec{ID: id, Image: testImage}); return err },
		func(id string) error { return rawCreateStart(ctx, d, placement.Spec{ID: id, Image: testImage}) },
		func(id string) error { _, err := d.Create(ctx, egressSpec(id)); return err },
		func(id string) error { return rawCreateStart(ctx, d, egressSpec(id)) },
	}, func(id string) { _ = d.Destroy(ctx, id, fsm.Placement{}) })
	driverCreate, rawCreate, egressCreate, rawBridge := starts[0], starts[1], starts[2], starts[3]

	b.ReportMetric(ms(agentTrue), "agent-exec-ms")
	b.ReportMetric(ms(dockerTrue), "docker-exec-ms")
	b.ReportMetric(ms(driverCreate), "create-ms")
	if n == 1 {
		return // the framework's probe run; the table comes with the real count
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\nsandbox benchmark, medians (%d execs, %d creates, image %s)\n", n, creates, testImage)
	fmt.Fprintf(&t, "%-28s %12s   %-24s %12s %9s\n", "operation", "ours", "baseline", "baseline", "ratio")
	row := func(op string, ours time.Duration, base string, baseline time.Duration) {
		fmt.Fprintf(&t, "%-28s %9.2f ms   %-24s %9.2f ms %8.1fx\n", op, ms(ours), base, ms(baseline), float64(baseline)/float64(ours))
	}
	row("exec true via agent", agentTrue, "docker exec (API)", dockerTrue)
	row("python print(1) via agent", agentPy, "docker exec python3 -c", dockerPy)
	row("create+start+agent ready", driverCreate, "container create+start", rawCreate)
	row("same, egress + firewall", egressCreate, "create+start on bridge", rawBridge)
	fmt.Fprintf(&t, "%-28s %9.2f ms   %-24s %9.2f ms %+6.2f ms\n", "exec true via agent", ms(agentTrue), "host fork+exec true", ms(hostTrue), ms(agentTrue)-ms(hostTrue))
	fmt.Fprint(os.Stdout, t.String())
}

// measure runs each f n times, in turn, and returns their medians.
func measure(b *testing.B, n int, fs []func() error) []time.Duration {
	b.Helper()
	d := make([][]time.Duration, len(fs))
	for range n {
		for i, f := range fs {
			start := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			d[i] = append(d[i], time.Since(start))
		}
	}
	return medians(d)
}

// measureCreate runs each create n times, in turn, on fresh ids, and
// destroys each sandbox untimed; it returns their medians.
func measureCreate(b *testing.B, n int, creates []func(id string) error, destroy func(id string)) []time.Duration {
	b.Helper()
	d := make([][]time.Duration, len(creates))
	for range n {
		for i, create := range creates {
			id := "bench-" + randHex(4)
			start := time.Now()
			err := create(id)
			d[i] = append(d[i], time.Since(start))
			destroy(id)
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	return medians(d)
}

func medians(d [][]time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i := range d {
		out[i] = median(d[i])
	}
	return out
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func agentExec(ctx context.Context, c *agent.Client, argv ...string) error {
	res, err := c.Exec(ctx, agent.ExecRequest{Argv: argv})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("agent exec %v: exit %d: %s", argv, res.ExitCode, res.Stderr)
	}
	return nil
}

// dockerExec is `docker exec` through the API: create, attach, read to the
// end, inspect the exit code.
func dockerExec(ctx context.Context, d *Driver, id string, argv ...string) error {
	ex, err := d.docker.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return fmt.Errorf("exec create: %w", err)
	}
	att, err := d.docker.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("exec attach: %w", err)
	}
	_, err = stdcopy.StdCopy(io.Discard, io.Discard, att.Reader)
	att.Close()
	if err != nil {
		return fmt.Errorf("exec read: %w", err)
	}
	info, err := d.docker.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return fmt.Errorf("exec inspect: %w", err)
	}
	if info.ExitCode != 0 {
		return fmt.Errorf("docker exec %v: exit %d", argv, info.ExitCode)
	}
	return nil
}

// rawCreateStart is the same hardened container with a plain sleep instead
// of the agent: the floor that Create's agent wait is judged against.
func rawCreateStart(ctx context.Context, d *Driver, spec placement.Spec) error {
	id := spec.ID
	cfg, host := d.containerSpec(spec)
	cfg.Entrypoint = []string{"sleep", "infinity"}
	host.Mounts = nil
	c, err := d.docker.ContainerCreate(ctx, cfg, host, nil, nil, d.containerName(id))
	if err != nil {
		return fmt.Errorf("raw create: %w", err)
	}
	if err := d.docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("raw start: %w", err)
	}
	return nil
}

// BenchmarkGVisorExec prints exec medians under gVisor (runsc) beside runc,
// through the agent and through raw docker exec, with the gVisor/runc
// ratio. Skipped, and said so, without a runsc runtime in Docker.
//
//	go test ./placement/docker -run '^$' -bench GVisorExec -benchtime 30x
func BenchmarkGVisorExec(b *testing.B) {
	needGVisor(b)
	runc := newSandbox(b, newDriver(b, nil), placement.Spec{})
	dg := newDriver(b, func(c *Config) { c.Runtime = gvisorRuntime })
	gv := newSandbox(b, dg, placement.Spec{})
	ctx := context.Background()
	n := b.N
	py := []string{"python3", "-c", "print(1)"}
	m := measure(b, n, []func() error{
		func() error { return agentExec(ctx, runc.client, "true") },
		func() error { return agentExec(ctx, gv.client, "true") },
		func() error { return dockerExec(ctx, dg, runc.p.ContainerID, "true") },
		func() error { return dockerExec(ctx, dg, gv.p.ContainerID, "true") },
		func() error { return agentExec(ctx, runc.client, py...) },
		func() error { return agentExec(ctx, gv.client, py...) },
		func() error { return dockerExec(ctx, dg, runc.p.ContainerID, py...) },
		func() error { return dockerExec(ctx, dg, gv.p.ContainerID, py...) },
	})
	b.ReportMetric(ms(m[1]), "gvisor-agent-exec-ms")
	if n == 1 {
		return
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\ngVisor (runsc) beside runc, medians of %d execs each, image %s\n", n, testImage)
	fmt.Fprintf(&t, "%-34s %12s %12s %9s\n", "operation", "runc", "gVisor", "gVisor/runc")
	row := func(op string, r, g time.Duration) {
		fmt.Fprintf(&t, "%-34s %9.2f ms %9.2f ms %8.1fx\n", op, ms(r), ms(g), float64(g)/float64(r))
	}
	row("exec true via agent", m[0], m[1])
	row("docker exec true (API)", m[2], m[3])
	row("python print(1) via agent", m[4], m[5])
	row("docker exec python3 -c print(1)", m[6], m[7])
	fmt.Fprint(os.Stdout, t.String())
}
