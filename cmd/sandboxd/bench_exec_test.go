package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/docker/docker/client"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// BenchmarkExecLatency splits what `exec true` costs a user, in one run,
// round robin so that load from elsewhere on the machine hits every row
// alike: through sandboxd's REST API, straight to the same sandbox's agent
// over its unix socket (the part inside the sandbox), a raw `docker exec`
// into a plain container, and a fork+exec on the host (the floor); then a
// bare HTTP round trip to each server, which is what a hop costs here.
//
//	go test ./cmd/sandboxd -run '^$' -bench ExecLatency -benchtime 300x
func BenchmarkExecLatency(b *testing.B) {
	cluster := uniqueCluster(b)
	// Thousands of requests in a few seconds: above the per-user rate limit.
	n := startNode(b, nodeOpts{cluster: cluster, env: map[string]string{"RATE_LIMIT_RPS": "1000000", "RATE_LIMIT_BURST": "1000000"}})
	c := n.login(b, "bench", "user")
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	ctx := context.Background()
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	raw := rawContainer(b, ctx, dc, cluster+"-raw")
	// The docker driver keeps each sandbox's socket in DATA_DIR/sb/<id>.
	ag := agent.NewClient("unix://"+filepath.Join(n.dataDir, "sb", sb.SandboxID, "agent.sock"), "")
	defer ag.Close()

	restTrue := func() error {
		var r execResult
		if err := c.call("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"true"}}, &r); err != nil {
			return err
		}
		if r.ExitCode != 0 {
			return fmt.Errorf("exit %d", r.ExitCode)
		}
		return nil
	}
	agentTrue := func() error {
		r, err := ag.Exec(ctx, agent.ExecRequest{Argv: []string{"true"}})
		if err == nil && r.ExitCode != 0 {
			err = fmt.Errorf("exit %d", r.ExitCode)
		}
		return err
	}
	fs := []func() error{
		restTrue,
		agentTrue,
		func() error { return dockerExec(ctx, dc, raw, "true") },
		func() error { return exec.Command("true").Run() },
		// What one HTTP round trip costs here, with no exec behind it.
		func() error { return c.call("GET", "/api/v1/sandbox/"+sb.SandboxID, nil, nil) },
		func() error { _, err := ag.Health(ctx); return err },
	}
	for _, f := range fs { // warm connections, page cache and the agent
		for range 5 {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
	N := b.N
	// docker exec costs ~50 ms a call: a tenth of the rows is enough for its median.
	d := make([][]time.Duration, len(fs))
	for i := range N {
		for j, f := range fs {
			if j == 2 && i%10 != 0 {
				continue
			}
			start := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			d[j] = append(d[j], time.Since(start))
		}
	}
	if N == 1 {
		return // the framework's probe run
	}
	p := func(j int, q float64) time.Duration {
		s := slices.Clone(d[j])
		slices.Sort(s)
		return s[int(float64(len(s)-1)*q)]
	}
	rest, direct, docker, host := p(0, .5), p(1, .5), p(2, .5), p(3, .5)
	b.ReportMetric(ms(rest), "rest-p50-ms")
	b.ReportMetric(ms(docker), "docker-exec-p50-ms")
	b.ReportMetric(float64(docker)/float64(rest), "docker/rest")
	var out strings.Builder
	fmt.Fprintf(&out, "\nexec true, %d runs per row (docker exec: %d), round robin\n", N, len(d[2]))
	fmt.Fprintf(&out, "%-44s %9s %9s\n", "path", "p50", "p90")
	for j, name := range []string{"REST /api/v1/execute -> sandboxd -> agent", "agent over its unix socket (no sandboxd)",
		"docker exec true (API: create+attach+inspect)", "host fork+exec /bin/true (floor)"} {
		fmt.Fprintf(&out, "%-44s %6.2f ms %6.2f ms\n", name, ms(p(j, .5)), ms(p(j, .9)))
	}
	for j, name := range []string{"round trip: GET /api/v1/sandbox/{id}", "round trip: agent GET /health"} {
		fmt.Fprintf(&out, "%-44s %6.2f ms %6.2f ms\n", name, ms(p(j+4, .5)), ms(p(j+4, .9)))
	}
	fmt.Fprintf(&out, "REST p50 vs docker exec p50: %.1fx faster; sandboxd adds %.2f ms over the agent; the agent in its sandbox %.2f ms over the host floor\n",
		float64(docker)/float64(rest), ms(rest-direct), ms(direct-host))
	fmt.Fprint(os.Stdout, out.String())
}
