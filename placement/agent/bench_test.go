package agent

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

// medianOf runs f n times and returns the median duration.
func medianOf(b *testing.B, n int, f func() error) time.Duration {
	b.Helper()
	d := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// compare prints the agent's median beside the local baseline's.
func compare(b *testing.B, name string, agent, local func() error) {
	b.Helper()
	n := max(b.N, 20)
	_ = agent() // warm the keep-alive connection
	viaAgent := medianOf(b, n, agent)
	direct := medianOf(b, n, local)
	b.ReportMetric(float64(viaAgent.Microseconds()), "agent-median-µs")
	b.ReportMetric(float64(direct.Microseconds()), "local-median-µs")
	b.ReportMetric(float64((viaAgent - direct).Microseconds()), "diff-µs")
	b.ReportMetric(float64(viaAgent)/float64(direct), "ratio")
	b.Logf("%s over %d runs: agent median %v, local fork+exec median %v, difference %v, ratio %.2f",
		name, n, viaAgent, direct, viaAgent-direct, float64(viaAgent)/float64(direct))
}

// BenchmarkExecTrue: exec of /bin/true through the agent (client, unix
// socket, HTTP, fork+exec, wait, JSON) against a local fork+exec.
func BenchmarkExecTrue(b *testing.B) {
	a := startAgent(b, ServerConfig{})
	ctx := ctxT(b)
	b.ResetTimer()
	compare(b, "exec /bin/true", func() error {
		res, err := a.client.Exec(ctx, ExecRequest{Argv: []string{"/bin/true"}})
		if err == nil && res.ExitCode != 0 {
			b.Fatalf("exit %d", res.ExitCode)
		}
		return err
	}, func() error {
		return exec.Command("/bin/true").Run()
	})
}

// BenchmarkExecPython: python print(1) through the agent, forked from the
// warm zygote and started cold, against a local python3 -c fork+exec.
func BenchmarkExecPython(b *testing.B) {
	warm := startAgent(b, ServerConfig{})
	cold := startAgent(b, ServerConfig{DisablePythonZygote: true})
	ctx := ctxT(b)
	run := func(a *testAgent) func() error {
		return func() error {
			res, err := a.client.Exec(ctx, ExecRequest{Code: "print(1)", Language: "python"})
			if err == nil && res.Stdout != "1\n" {
				b.Fatalf("stdout %q", res.Stdout)
			}
			return err
		}
	}
	local := func() error { return exec.Command("/usr/bin/python3", "-c", "print(1)").Run() }
	_, _ = run(warm)(), run(cold)() // warm the connections and start the zygote
	b.ResetTimer()
	n := max(b.N, 20)
	zygote := medianOf(b, n, run(warm))
	coldAgent := medianOf(b, n, run(cold))
	direct := medianOf(b, n, local)
	b.ReportMetric(float64(zygote.Microseconds()), "zygote-median-µs")
	b.ReportMetric(float64(coldAgent.Microseconds()), "cold-median-µs")
	b.ReportMetric(float64(direct.Microseconds()), "local-median-µs")
	b.ReportMetric(float64(coldAgent)/float64(zygote), "cold/zygote")
	b.Logf("python print(1) over %d runs: agent+zygote median %v, agent cold python3 -c %v, local python3 -c fork+exec %v; cold/zygote %.1fx, local/zygote %.1fx",
		n, zygote, coldAgent, direct, float64(coldAgent)/float64(zygote), float64(direct)/float64(zygote))
}
