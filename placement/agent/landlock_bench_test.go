package agent

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkExecTrueLandlock: exec of /bin/true through the real agent
// binary with -landlock=off and with Landlock on. The ruleset is applied
// once at start-up, so the difference should be noise; what Landlock adds
// per exec is a path check on the few writes the child makes.
func BenchmarkExecTrueLandlock(b *testing.B) {
	if _, err := landlockABI(); err != nil {
		b.Skipf("this kernel offers no Landlock (%v)", err)
	}
	dir, err := os.MkdirTemp("", "salbn")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sandbox-agent")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	uid := os.Getuid()
	if uid == 0 {
		uid = sandboxUID
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	off, _ := startAgentBinary(b, bin, uid, newContainmentDirs(b, uid), io.Discard, "-landlock=off")
	on, h := startAgentBinary(b, bin, uid, newContainmentDirs(b, uid), io.Discard, "-landlock=on")
	if !h.WriteContainment {
		b.Fatalf("health %+v: want write containment on", h)
	}
	ctx := ctxT(b)
	run := func(c *Client) func() error {
		return func() error {
			res, err := c.Exec(ctx, ExecRequest{Argv: []string{"/bin/true"}})
			if err == nil && res.ExitCode != 0 {
				b.Fatalf("exit %d", res.ExitCode)
			}
			return err
		}
	}
	_, _ = run(off)(), run(on)() // warm the keep-alive connections
	b.ResetTimer()
	n := max(b.N, 20)
	// Interleaved halves, so drift on the machine hits both alike.
	offA, onA := medianOf(b, n/2, run(off)), medianOf(b, n/2, run(on))
	onB, offB := medianOf(b, n/2, run(on)), medianOf(b, n/2, run(off))
	offMed, onMed := (offA+offB)/2, (onA+onB)/2
	b.ReportMetric(float64(offMed.Microseconds()), "off-median-µs")
	b.ReportMetric(float64(onMed.Microseconds()), "landlock-median-µs")
	b.ReportMetric(float64((onMed - offMed).Microseconds()), "diff-µs")
	b.Logf("exec /bin/true through the agent binary over %d runs each: -landlock=off median %v, Landlock on %v, difference %v",
		n, offMed, onMed, onMed-offMed)
}
