package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"
)

// maxBigRounds bounds the 1 GiB rows: each round moves 4 GiB on one disk.
const maxBigRounds = 3

// BenchmarkFiles1GiB prints the 1 GiB transfer rows: upload and download of
// one generated 1 GiB file through sandboxd's REST API (streamed, SHA-256
// checked on both sides) beside `docker cp` of the same bytes into and out
// of a plain container through the Docker API, medians of up to 3 rounds,
// with the growth of sandboxd's resident memory over the whole run.
//
//	go test ./cmd/sandboxd -run '^$' -bench Files1GiB -benchtime 3x
func BenchmarkFiles1GiB(b *testing.B) {
	if b.N == 1 {
		return // the framework's probe run; the rows come with the real count
	}
	n := startNode(b, nodeOpts{cluster: uniqueCluster(b), env: map[string]string{"SANDBOX_DISK_MB": "1100", "POOL_MIN_SIZE": "1"}})
	c := n.login(b, "bench-files", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	ctx := context.Background()
	raw := rawContainer(b, ctx, dc, n.dataDirName()+"-rawcp")

	pid := n.cmd.Process.Pid
	before := vmKB(pid, "VmRSS")
	s := sampleRSS(pid)
	rounds := min(b.N, maxBigRounds)
	var ups, downs, cpIns, cpOuts []time.Duration
	for i := range rounds {
		up, down := transfer1GiB(b, c, sb.SandboxID, "/workspace/big.bin", byte(i))
		ups, downs = append(ups, up), append(downs, down)
		c.exec(b, sb.SandboxID, "rm -f /workspace/big.bin")
		in, out, err := dockerCopy1GiB(ctx, dc, raw, byte(i))
		if err != nil {
			b.Fatal(err)
		}
		cpIns, cpOuts = append(cpIns, in), append(cpOuts, out)
		_ = dockerExec(ctx, dc, raw, "rm", "-f", "/tmp/big.bin")
	}
	peak := s.peakKB()

	var w strings.Builder
	fmt.Fprintf(&w, "\n1 GiB file transfer, medians of %d rounds (SHA-256 checked both ways)\n", rounds)
	fmt.Fprintf(&w, "%-30s %9s %9s   %-30s %9s %9s %7s\n", "through sandboxd REST", "median", "MiB/s", "raw Docker API", "median", "MiB/s", "ratio")
	row := func(op string, ours []time.Duration, base string, baseline []time.Duration) {
		o, r := median(ours), median(baseline)
		fmt.Fprintf(&w, "%-30s %7.2f s %9.0f   %-30s %7.2f s %9.0f %6.2fx\n", op, o.Seconds(), 1024/o.Seconds(), base, r.Seconds(), 1024/r.Seconds(), r.Seconds()/o.Seconds())
	}
	row("upload 1 GiB (PUT content)", ups, "docker cp in 1 GiB", cpIns)
	row("download 1 GiB (GET content)", downs, "docker cp out 1 GiB", cpOuts)
	fmt.Fprintf(&w, "sandboxd VmRSS: %d KiB before, %d KiB peak (sampled every 5 ms): +%d KiB\n", before, peak, peak-before)
	fmt.Fprint(os.Stdout, w.String())
}

// dataDirName is a short name unique to this node, for containers the test
// makes beside its cluster.
func (n *node) dataDirName() string {
	return "bench-" + strings.TrimPrefix(n.dataDir[strings.LastIndex(n.dataDir, "/")+1:], "cs")
}

// dockerCopy1GiB is `docker cp` of 1 GiB in and out through the Docker API:
// a tar with one generated file streamed into /tmp, then read back as a tar
// and hashed. The container's /tmp is its writable layer on the host disk.
func dockerCopy1GiB(ctx context.Context, dc *dockerclient.Client, id string, seed byte) (in, out time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	sent := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: gib})
		if err == nil {
			_, err = io.Copy(tw, io.TeeReader(newPRNG(seed, gib), sent))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	start := time.Now()
	if err := dc.CopyToContainer(ctx, id, "/tmp", pr, container.CopyToContainerOptions{}); err != nil {
		return 0, 0, fmt.Errorf("docker cp in: %w", err)
	}
	in = time.Since(start)
	start = time.Now()
	rc, _, err := dc.CopyFromContainer(ctx, id, "/tmp/big.bin")
	if err != nil {
		return 0, 0, fmt.Errorf("docker cp out: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return 0, 0, fmt.Errorf("docker cp out: %w", err)
	}
	recv := sha256.New()
	if _, err := io.Copy(recv, tr); err != nil {
		return 0, 0, fmt.Errorf("docker cp out: %w", err)
	}
	out = time.Since(start)
	if hexSum(recv) != hexSum(sent) {
		return 0, 0, fmt.Errorf("docker cp round trip: sha256 %s, sent %s", hexSum(recv), hexSum(sent))
	}
	return in, out, nil
}
