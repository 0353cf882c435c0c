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

// BenchmarkExecPython: python print(1) through the agent against a local
// python3 -c.
func BenchmarkExecPython(b *testing.B) {
	a := startAgent(b, ServerConfig{})
	ctx := ctxT(b)
	b.ResetTimer()
	compare(b, "python print(1)", func() error {
		res, err := a.client.Exec(ctx, ExecRequest{Code: "print(1)", Language: "python"})
		if err == nil && res.Stdout != "1\n" {
			b.Fatalf("stdout %q", res.Stdout)
		}
		return err
	}, func() error {
		return exec.Command("/usr/bin/python3", "-c", "print(1)").Run()
	})
}
